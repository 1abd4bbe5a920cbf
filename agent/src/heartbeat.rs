//! The heartbeat actor: every HEARTBEAT_INTERVAL it re-reads the manifest (so edits take
//! effect without a restart), tells the orchestrator the agent is alive with its scripts
//! and running jobs, lists every job it holds (running, or with its result not yet
//! accepted: `held_jobs`), and passes on the cancellations it gets back.
//!
//! When the orchestrator takes heartbeats on the poll (`heartbeat_in_poll` in its
//! registration answer), the poller carries them instead: it asks for one with
//! [`Compose`] when one is due, and this actor only keeps the manifest fresh.

use crate::client::OrchestratorClient;
use crate::error::AgentError;
use crate::executor::{CancelJobs, Executor, ManifestReloaded, RunningJobIds};
use crate::manifest;
use crate::metrics::Metrics;
use crate::registration::{AgentIdentity, Register, Registered, Registrar};
use crate::reporter::{HeldResults, Reporter};
use actix::prelude::*;
use shared_protocol::manifest::ManifestEntry;
use shared_protocol::protocol::HeartbeatRequest;
use std::future::Future;
use std::time::Duration;

/// The orchestrator refused a heartbeat on the poll (a replica older than the one the
/// agent registered with): heartbeats go on their own again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BeatOnItsOwn;

/// This cycle's heartbeat, for the poller to carry (manifest re-read from disk).
#[derive(Message)]
#[rtype(result = "Result<HeartbeatRequest, AgentError>")]
pub struct Compose;

pub struct Heartbeat {
    client: OrchestratorClient,
    identity: AgentIdentity,
    interval: Duration,
    executor: Addr<Executor>,
    reporter: Addr<Reporter>,
    registrar: Addr<Registrar>,
    metrics: Metrics,
    /// No heartbeats before the orchestrator knows the agent (they would only 404).
    registered: bool,
    /// One heartbeat at a time: a slow orchestrator must not pile them up.
    in_flight: bool,
    /// The poller carries the heartbeats (see the module docs).
    in_poll: bool,
}

impl Heartbeat {
    pub fn new(
        client: OrchestratorClient,
        identity: AgentIdentity,
        executor: Addr<Executor>,
        reporter: Addr<Reporter>,
        registrar: Addr<Registrar>,
        metrics: Metrics,
    ) -> Heartbeat {
        Heartbeat {
            client,
            interval: Duration::from_secs(identity.heartbeat_interval_secs),
            identity,
            executor,
            reporter,
            registrar,
            metrics,
            registered: false,
            in_flight: false,
            in_poll: false,
        }
    }

    /// Re-reads the manifest, hands it to the executor, and returns its entries.
    fn reload_manifest(&self) -> Vec<ManifestEntry> {
        let manifest = manifest::load_or_empty(&self.identity.manifest_path, &self.identity.scripts_dir);
        let scripts = manifest.entries();
        self.executor.do_send(ManifestReloaded(manifest));
        scripts
    }

    /// The heartbeat: `scripts`, and the jobs the agent runs and holds right now.
    fn compose(&self, scripts: Vec<ManifestEntry>) -> impl Future<Output = Result<HeartbeatRequest, AgentError>> {
        let executor = self.executor.clone();
        let reporter = self.reporter.clone();
        let agent_name = self.identity.agent_name.clone();
        let heartbeat_interval = self.identity.heartbeat_interval_secs;
        async move {
            let running_jobs = executor.send(RunningJobIds).await?;
            // Asked second: a job leaves the executor only once the reporter has its
            // result, so no job can slip between the two answers.
            let unreported = reporter.send(HeldResults).await?;
            let held_jobs = running_jobs.iter().cloned().chain(unreported).collect();
            Ok(HeartbeatRequest {
                agent_name,
                scripts,
                running_jobs,
                heartbeat_interval,
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                held_jobs: Some(held_jobs),
            })
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        // The manifest is reloaded every cycle even while unregistered: the executor
        // must stop running a script the moment it leaves the file.
        let scripts = self.reload_manifest();
        if !self.registered || self.in_poll || self.in_flight {
            return;
        }
        self.in_flight = true;
        let client = self.client.clone();
        let request = self.compose(scripts);
        let beat = async move { client.heartbeat(&request.await?).await };
        ctx.spawn(beat.into_actor(self).map(|result, act, _| {
            act.in_flight = false;
            match result {
                Ok(response) => {
                    act.metrics.heartbeats_sent.inc();
                    act.metrics.set_connected(true);
                    if !response.cancel.is_empty() {
                        act.executor.do_send(CancelJobs(response.cancel));
                    }
                }
                Err(error) => {
                    act.metrics.heartbeats_failed.inc();
                    if error.http_status() == Some(404) {
                        tracing::warn!("the orchestrator does not know this agent any more; registering again");
                        act.metrics.set_connected(true);
                        act.registered = false;
                        act.registrar.do_send(Register);
                    } else if error.is_auth_failure() {
                        act.metrics.set_connected(true);
                        tracing::error!(%error, "heartbeat refused: API_KEY is invalid or has been revoked");
                    } else {
                        act.metrics.set_connected(!error.is_connectivity_problem());
                        tracing::warn!(%error, "heartbeat failed");
                    }
                }
            }
        }));
    }
}

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}

impl Handler<Registered> for Heartbeat {
    type Result = ();

    fn handle(&mut self, registered: Registered, _: &mut Context<Self>) {
        self.registered = true;
        self.in_poll = registered.heartbeat_in_poll;
    }
}

impl Handler<BeatOnItsOwn> for Heartbeat {
    type Result = ();

    fn handle(&mut self, _: BeatOnItsOwn, _: &mut Context<Self>) {
        self.in_poll = false;
    }
}

impl Handler<Compose> for Heartbeat {
    type Result = ResponseFuture<Result<HeartbeatRequest, AgentError>>;

    fn handle(&mut self, _: Compose, _: &mut Context<Self>) -> Self::Result {
        let scripts = self.reload_manifest();
        Box::pin(self.compose(scripts))
    }
}
