//! The registrar actor: registers the agent with the orchestrator at start-up and again
//! whenever the orchestrator says it does not know the agent (a 404 to a heartbeat or a
//! poll), retrying with backoff until it succeeds. Subscribers hear `Registered` after
//! each success.

use crate::backoff::Backoff;
use crate::client::OrchestratorClient;
use crate::config::Config;
use crate::executor::{Executor, ManifestReloaded, RunningJobIds};
use crate::manifest;
use crate::metrics::Metrics;
use actix::prelude::*;
use shared_protocol::protocol::RegisterAgentRequest;
use std::path::PathBuf;

/// Ask for a (re-)registration. Ignored while one is already under way.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register;

/// The orchestrator accepted the registration.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Registered {
    /// It takes heartbeats on the poll (`POST /agent/poll`): the poller sends them, and
    /// the heartbeat actor only composes them.
    pub heartbeat_in_poll: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<Registered>);

/// What a registration says about this agent, fixed at start-up.
#[derive(Clone, Debug)]
pub struct AgentIdentity {
    pub agent_name: String,
    pub tags: Vec<String>,
    pub hostname: Option<String>,
    pub heartbeat_interval_secs: u64,
    pub manifest_path: PathBuf,
    pub scripts_dir: PathBuf,
}

impl AgentIdentity {
    pub fn from_config(config: &Config) -> AgentIdentity {
        AgentIdentity {
            agent_name: config.agent_name.to_string(),
            tags: config.tags.clone(),
            hostname: hostname(),
            heartbeat_interval_secs: config.heartbeat_interval.as_secs(),
            manifest_path: config.manifest_path.clone(),
            scripts_dir: config.scripts_dir.clone(),
        }
    }
}

pub struct Registrar {
    client: OrchestratorClient,
    identity: AgentIdentity,
    executor: Addr<Executor>,
    metrics: Metrics,
    subscribers: Vec<Recipient<Registered>>,
    in_progress: bool,
    backoff: Backoff,
}

impl Registrar {
    pub fn new(
        client: OrchestratorClient,
        identity: AgentIdentity,
        executor: Addr<Executor>,
        metrics: Metrics,
    ) -> Registrar {
        Registrar {
            client,
            identity,
            executor,
            metrics,
            subscribers: Vec::new(),
            in_progress: false,
            backoff: Backoff::default(),
        }
    }

    fn attempt(&mut self, ctx: &mut Context<Self>) {
        // Fresh from disk: the orchestrator checks triggers against what we send here.
        let manifest = manifest::load_or_empty(&self.identity.manifest_path, &self.identity.scripts_dir);
        let scripts = manifest.entries();
        self.executor.do_send(ManifestReloaded(manifest));

        let identity = self.identity.clone();
        let executor = self.executor.clone();
        let client = self.client.clone();
        let script_count = scripts.len();
        let register = async move {
            let running_jobs = executor.send(RunningJobIds).await?;
            let request = RegisterAgentRequest {
                agent_name: identity.agent_name,
                url: None,
                api_key: None,
                tags: identity.tags,
                hostname: identity.hostname,
                os: Some(std::env::consts::OS.to_owned()),
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                scripts: Some(scripts),
                heartbeat_interval: Some(identity.heartbeat_interval_secs),
                running_jobs: Some(running_jobs),
            };
            client.register(&request).await
        };
        ctx.spawn(register.into_actor(self).map(move |result, act, ctx| match result {
            Ok(response) => {
                act.in_progress = false;
                act.backoff.reset();
                act.metrics.registrations.inc();
                act.metrics.set_connected(true);
                tracing::info!(
                    scripts = script_count,
                    heartbeat_in_poll = response.heartbeat_in_poll,
                    "registered with the orchestrator"
                );
                let registered = Registered {
                    heartbeat_in_poll: response.heartbeat_in_poll,
                };
                for subscriber in &act.subscribers {
                    subscriber.do_send(registered);
                }
            }
            Err(error) => {
                let delay = if error.is_auth_failure() {
                    act.metrics.set_connected(true);
                    tracing::error!(%error, "registration refused: API_KEY is invalid or has been revoked; create a new key under Settings → API Keys");
                    act.backoff.slow_delay()
                } else {
                    act.metrics.set_connected(!error.is_connectivity_problem());
                    let delay = act.backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "registration failed; retrying (is ORCHESTRATOR_URL right and reachable?)");
                    delay
                };
                ctx.run_later(delay, |act, ctx| act.attempt(ctx));
            }
        }));
    }
}

impl Actor for Registrar {
    type Context = Context<Self>;
}

impl Handler<Register> for Registrar {
    type Result = ();

    fn handle(&mut self, _: Register, ctx: &mut Context<Self>) {
        if self.in_progress {
            return;
        }
        self.in_progress = true;
        self.attempt(ctx);
    }
}

impl Handler<Subscribe> for Registrar {
    type Result = ();

    fn handle(&mut self, Subscribe(subscriber): Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(subscriber);
    }
}

fn hostname() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its full length; gethostname writes at most that.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}
