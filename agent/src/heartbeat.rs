//! The heartbeat actor: every HEARTBEAT_INTERVAL it re-reads the manifest (so edits take
//! effect without a restart), tells the orchestrator the agent is alive with its scripts
//! and running jobs, lists every job it holds (running, or with its result not yet
//! accepted: `held_jobs`), and passes on the cancellations it gets back.

use crate::client::OrchestratorClient;
use crate::executor::{CancelJobs, Executor, ManifestReloaded, RunningJobIds};
use crate::manifest;
use crate::metrics::Metrics;
use crate::registration::{AgentIdentity, Register, Registered, Registrar};
use crate::reporter::{HeldResults, Reporter};
use actix::prelude::*;
use shared_protocol::protocol::HeartbeatRequest;
use std::time::Duration;

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
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        // The manifest is reloaded every cycle even while unregistered: the executor
        // must stop running a script the moment it leaves the file.
        let manifest = manifest::load_or_empty(&self.identity.manifest_path, &self.identity.scripts_dir);
        let scripts = manifest.entries();
        self.executor.do_send(ManifestReloaded(manifest));

        if !self.registered || self.in_flight {
            return;
        }
        self.in_flight = true;
        let client = self.client.clone();
        let executor = self.executor.clone();
        let reporter = self.reporter.clone();
        let agent_name = self.identity.agent_name.clone();
        let heartbeat_interval = self.identity.heartbeat_interval_secs;
        let beat = async move {
            let running_jobs = executor.send(RunningJobIds).await?;
            // Asked second: a job leaves the executor only once the reporter has its
            // result, so no job can slip between the two answers.
            let unreported = reporter.send(HeldResults).await?;
            let held_jobs = running_jobs.iter().cloned().chain(unreported).collect();
            let request = HeartbeatRequest {
                agent_name,
                scripts,
                running_jobs,
                heartbeat_interval,
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                held_jobs: Some(held_jobs),
            };
            client.heartbeat(&request).await
        };
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

    fn handle(&mut self, _: Registered, _: &mut Context<Self>) {
        self.registered = true;
    }
}
