//! One tenant's supervisor: its agent registry, the parked long-polls waiting on each
//! agent's queue, job state changes and schedule timers. The database holds every fact;
//! this actor holds the live things (parked polls, timers) and a write-through cache of
//! the tenant's agents, which other replicas' news (see `cluster`) keeps current.
//!
//! Split by concern, each with its handlers and its pure decisions:
//! - [`agents`]: registration, heartbeats, liveness, deletion, the agent cache;
//! - [`heartbeats`]: the heartbeats of a short window written together;
//! - [`dispatch`]: parked polls, claims, handing jobs and cancel orders to agents;
//! - [`jobs`]: triggers, fan-outs, starts, results, cancels;
//! - [`commit`]: group commit of new jobs and results;
//! - [`output`]: live output of running jobs;
//! - [`rollout`]: the rollout controls of fan-outs;
//! - [`schedules`]: schedule timers and fires;
//! - [`targets`]: which agents a fan-out or a schedule fire goes to.

mod agents;
mod commit;
mod dispatch;
mod heartbeats;
mod jobs;
mod output;
mod rollout;
mod schedules;
pub mod targets;

use crate::cluster::Signal;
use crate::db::models::Job;
use crate::db::{self, Db};
use crate::error::Result;
use crate::events::{EventBus, EventType, Publish};
use crate::metrics::Metrics;
use crate::tenant::messages::{AdvanceRollout, CancelsOutstanding, ClusterNews};
use crate::views::job_view;
use crate::watch::Watchers;
use actix::prelude::*;
use actix::WeakAddr;
use agents::AgentEntry;
use shared_protocol::JobStatus;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub struct TenantSupervisor {
    tenant_id: String,
    db: Db,
    events: Addr<EventBus>,
    metrics: Metrics,
    /// Waiting requests of this process (sync triggers, `?wait=`) hear of finished jobs here.
    watchers: Arc<Watchers>,
    agents: HashMap<String, AgentEntry>,
    dispatch: dispatch::Queues,
    commits: commit::GroupCommit,
    heartbeats: heartbeats::HeartbeatBatches,
    /// A job handed to an agent that starts implicitly, and not in its held jobs this long
    /// after, never reached it (`DISPATCH_ACK_TIMEOUT_SECS`).
    dispatch_ack_timeout: Duration,
    /// The timers of the tenant's enabled schedules (see `schedules`).
    schedules: schedules::ScheduleTimers,
    rollouts: rollout::Rollouts,
    /// Its own address, for the steps a finished job asks for (set when started).
    me: Option<WeakAddr<TenantSupervisor>>,
}

/// What a supervisor is started with; cheap to clone.
#[derive(Clone)]
pub struct SupervisorDeps {
    pub db: Db,
    pub events: Addr<EventBus>,
    pub metrics: Metrics,
    pub watchers: Arc<Watchers>,
    pub dispatch_ack_timeout: Duration,
}

impl TenantSupervisor {
    pub fn new(tenant_id: String, deps: SupervisorDeps) -> TenantSupervisor {
        TenantSupervisor {
            tenant_id,
            db: deps.db,
            events: deps.events,
            metrics: deps.metrics,
            watchers: deps.watchers,
            agents: HashMap::new(),
            dispatch: dispatch::Queues::default(),
            commits: commit::GroupCommit::default(),
            heartbeats: heartbeats::HeartbeatBatches::default(),
            dispatch_ack_timeout: deps.dispatch_ack_timeout,
            schedules: schedules::ScheduleTimers::default(),
            rollouts: rollout::Rollouts::default(),
            me: None,
        }
    }

    fn publish(&self, event_type: EventType, payload: serde_json::Value) {
        self.events.do_send(Publish {
            tenant_id: self.tenant_id.clone(),
            event_type,
            payload,
        });
    }

    /// A job's final status was just written here: counted, published, and its waiters
    /// (in this process; other replicas hear of it from the database) woken.
    fn job_finished(&self, job: &Job) {
        let status = JobStatus::parse(&job.status);
        if let Some(status) = status.filter(|s| s.is_terminal()) {
            self.metrics.job_finished(status);
        }
        let view = serde_json::to_value(job_view(job, None)).unwrap_or_default();
        let specific = match status {
            Some(JobStatus::Success) => Some(EventType::JobSucceeded),
            Some(JobStatus::Failed | JobStatus::Timeout | JobStatus::Lost) => Some(EventType::JobFailed),
            Some(JobStatus::Cancelled) => Some(EventType::JobCancelled),
            _ => None,
        };
        if let Some(event_type) = specific {
            self.publish(event_type, view.clone());
        }
        self.publish(EventType::JobCompleted, view);
        self.watchers.touch(&job.id);
        if let Some(fanout_id) = &job.fanout_id {
            self.watchers.touch(fanout_id);
            // A slot freed, or an error counted: the rollout (if it has controls) moves on.
            if let Some(me) = self.me.as_ref().and_then(WeakAddr::upgrade) {
                me.do_send(AdvanceRollout {
                    fanout_id: fanout_id.clone(),
                });
            }
        }
    }

    fn new_job(
        &self,
        agent: &str,
        script: &str,
        params: &BTreeMap<String, String>,
        timeout_secs: Option<i64>,
        fanout_id: Option<String>,
    ) -> Result<Job> {
        Ok(Job {
            id: db::new_id("job"),
            tenant_id: self.tenant_id.clone(),
            agent_name: agent.to_owned(),
            script: script.to_owned(),
            params: serde_json::to_string(params)?,
            status: JobStatus::Pending.as_str().into(),
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration_ms: None,
            timeout_secs,
            reason: None,
            fanout_id,
            schedule_id: None,
            cancel_requested: false,
            attempts: 0,
            created_at: db::now_ms(),
            dispatched_at: None,
            started_at: None,
            completed_at: None,
            awaiting_slot: false,
            secret_params: None,
        })
    }
}

impl Actor for TenantSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address().downgrade());
        self.load_agents(ctx);
        // After the agents: a fire needs them to pick its targets.
        self.load_schedules(ctx);
    }
}

impl Supervised for TenantSupervisor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(tenant = %self.tenant_id, "tenant supervisor restarting");
        self.dispatch = dispatch::Queues::default();
        self.commits = commit::GroupCommit::default();
        self.heartbeats = heartbeats::HeartbeatBatches::default();
        self.schedules = schedules::ScheduleTimers::default();
        self.rollouts = rollout::Rollouts::default();
    }
}

impl Handler<ClusterNews> for TenantSupervisor {
    type Result = ();

    fn handle(&mut self, ClusterNews(signals): ClusterNews, ctx: &mut Context<Self>) {
        for signal in signals {
            match signal {
                Signal::JobQueued { agent, .. } => self.queued_elsewhere(&[agent], ctx),
                Signal::CancelRequested { agent, job_id, .. } => {
                    self.dispatch.send_cancel(&agent, &job_id);
                }
                Signal::AgentChanged { agent, .. } => self.reload_agent(&agent, ctx),
                Signal::ScheduleChanged { schedule_id, .. } => self.reload_schedule(&schedule_id, ctx),
                // Waiters hear of these directly (see `cluster::Router`).
                Signal::JobFinished { .. } | Signal::OutputAppended { .. } | Signal::KeyChanged { .. } => {}
            }
        }
    }
}

impl Handler<CancelsOutstanding> for TenantSupervisor {
    type Result = ();

    fn handle(&mut self, CancelsOutstanding(outstanding): CancelsOutstanding, _: &mut Context<Self>) {
        for (agent, job_id) in self.dispatch.unsent_cancels(&outstanding) {
            self.dispatch.send_cancel(&agent, &job_id);
        }
    }
}
