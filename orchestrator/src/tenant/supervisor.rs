//! One tenant's supervisor: its agent registry (liveness from heartbeats, manifests, tags),
//! the parked long-polls waiting on each agent's queue, and job state changes. The
//! database holds every fact; this actor holds the live things (parked polls, timers) and a
//! write-through cache of the tenant's agents.

mod schedules;

use super::messages::*;
use super::validate;
use crate::auth::sha256_hex;
use crate::db::jobs::{CancelOutcome, CompleteOutcome, Completion, StartOutcome};
use crate::db::models::{Agent, Fanout, Job};
use crate::db::{self, Db};
use crate::error::{Error, Result};
use crate::events::{EventBus, EventType, Publish};
use crate::metrics::Metrics;
use crate::views::{agent_scripts, agent_tags, job_view};
use actix::prelude::*;
use serde_json::json;
use shared_protocol::api::FanOutJob;
use shared_protocol::protocol::{
    HeartbeatResponse, JobAssignment, PollResponse, RegisterAgentResponse, ResultAck, RunOutcome,
};
use shared_protocol::{JobStatus, ManifestEntry};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::oneshot;

const LIVENESS_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// An agent is offline after this many heartbeat intervals without one.
const MISSED_HEARTBEATS: i64 = 3;
/// Most jobs handed out in one poll answer.
const MAX_BATCH: u32 = 100;

struct Waiter {
    capacity: u32,
    tx: oneshot::Sender<PollResponse>,
}

/// The cached agent row with its parsed manifest and tags.
struct AgentEntry {
    row: Agent,
    tags: Vec<String>,
    scripts: Vec<ManifestEntry>,
}

impl AgentEntry {
    fn new(row: Agent) -> AgentEntry {
        AgentEntry {
            tags: agent_tags(&row),
            scripts: agent_scripts(&row),
            row,
        }
    }

    fn online(&self) -> bool {
        self.row.status == "online"
    }

    fn allows(&self, script: &str) -> bool {
        !self.row.manifest_reported || self.scripts.iter().any(|s| s.name == script)
    }
}

pub struct TenantSupervisor {
    tenant_id: String,
    db: Db,
    events: Addr<EventBus>,
    metrics: Metrics,
    /// Liveness is judged from this instant at the earliest, so a restarted orchestrator
    /// gives every agent a full grace period to reconnect.
    started_at_ms: i64,
    agents: HashMap<String, AgentEntry>,
    waiters: HashMap<String, VecDeque<Waiter>>,
    pumping: HashSet<String>,
    repump: HashSet<String>,
    /// Agents whose queue was seen empty by the last claim, with nothing queued since: a
    /// trigger for them can go straight to a parked poll, in one write instead of two.
    drained: HashSet<String>,
    completions: HashMap<String, Vec<oneshot::Sender<()>>>,
    /// The timers of the tenant's enabled schedules (see `schedules`).
    schedules: schedules::ScheduleTimers,
}

impl TenantSupervisor {
    pub fn new(tenant_id: String, db: Db, events: Addr<EventBus>, metrics: Metrics) -> TenantSupervisor {
        TenantSupervisor {
            tenant_id,
            db,
            events,
            metrics,
            started_at_ms: db::now_ms(),
            agents: HashMap::new(),
            waiters: HashMap::new(),
            pumping: HashSet::new(),
            repump: HashSet::new(),
            drained: HashSet::new(),
            completions: HashMap::new(),
            schedules: schedules::ScheduleTimers::default(),
        }
    }

    fn publish(&self, event_type: EventType, payload: serde_json::Value) {
        self.events.do_send(Publish {
            tenant_id: self.tenant_id.clone(),
            event_type,
            payload,
        });
    }

    /// A job's final status was just written: counted, and published.
    fn publish_job_finished(&self, job: &Job) {
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
    }

    fn notify_completion(&mut self, job_id: &str) {
        for tx in self.completions.remove(job_id).unwrap_or_default() {
            let _ = tx.send(());
        }
    }

    /// The agent, if `api_key_id` is the key it registered with.
    fn authorized_agent(&self, name: &str, api_key_id: &str) -> Result<&AgentEntry> {
        let entry = self
            .agents
            .get(name)
            .ok_or_else(|| Error::not_found(format!("agent {name} (register it first)")))?;
        if entry.row.api_key_id.as_deref() != Some(api_key_id) {
            return Err(Error::forbidden(
                "agent_key_mismatch",
                format!("agent {name} is registered with another API key; register again with this key"),
            ));
        }
        Ok(entry)
    }

    fn set_online(&mut self, name: &str, online: bool) {
        let Some(entry) = self.agents.get_mut(name) else { return };
        let was_online = entry.online();
        entry.row.status = if online { "online" } else { "offline" }.into();
        if was_online != online {
            let payload = json!({"agent": name, "status": entry.row.status, "tags": entry.tags});
            let event = if online {
                EventType::AgentOnline
            } else {
                EventType::AgentOffline
            };
            tracing::info!(tenant = %self.tenant_id, agent = %name, online, "agent status changed");
            self.publish(event, payload);
        }
    }

    /// Hands queued jobs to the agent's parked poll. One claim per agent is in flight at a
    /// time; a trigger that lands meanwhile asks for another round, so no job is missed.
    fn pump(&mut self, agent: &str, ctx: &mut Context<Self>) {
        let Some(queue) = self.waiters.get_mut(agent) else {
            return;
        };
        queue.retain(|w| !w.tx.is_closed());
        let Some(capacity) = queue.iter().find(|w| w.capacity > 0).map(|w| w.capacity.min(MAX_BATCH)) else {
            return;
        };
        if !self.pumping.insert(agent.to_owned()) {
            self.repump.insert(agent.to_owned());
            return;
        }
        let (db, tenant, name) = (self.db.clone(), self.tenant_id.clone(), agent.to_owned());
        let claim = async move { db::jobs::claim(&db, &tenant, &name, capacity as i64, db::now_ms()).await };
        let agent = agent.to_owned();
        ctx.spawn(claim.into_actor(self).map(move |result, act, ctx| {
            act.pumping.remove(&agent);
            match result {
                Ok(jobs) => {
                    let more = act.repump.remove(&agent);
                    if jobs.len() < capacity as usize && !more {
                        act.drained.insert(agent.clone());
                    } else {
                        act.drained.remove(&agent);
                    }
                    if !jobs.is_empty() {
                        act.deliver(&agent, jobs, None, ctx);
                    }
                    if more || !act.drained.contains(&agent) {
                        act.pump(&agent, ctx);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, agent = %agent, "claiming jobs failed; retrying shortly");
                    ctx.run_later(Duration::from_millis(500), move |act, ctx| act.pump(&agent, ctx));
                }
            }
        }));
    }

    /// Takes the first live parked poll of the agent that has room for jobs.
    fn take_capacity_waiter(&mut self, agent: &str) -> Option<Waiter> {
        let queue = self.waiters.get_mut(agent)?;
        queue.retain(|w| !w.tx.is_closed());
        let position = queue.iter().position(|w| w.capacity > 0)?;
        queue.remove(position)
    }

    /// Hands dispatched jobs to `waiter` or else to the agent's parked polls; jobs nobody
    /// takes go back to the queue.
    fn deliver(&mut self, agent: &str, jobs: Vec<Job>, waiter: Option<Waiter>, ctx: &mut Context<Self>) {
        let assignments: Vec<JobAssignment> = jobs
            .iter()
            .map(|job| JobAssignment {
                job_id: job.id.clone(),
                script: job.script.clone(),
                params: serde_json::from_str::<BTreeMap<String, String>>(&job.params).unwrap_or_default(),
                timeout_secs: job.timeout_secs.map(|t| t as u64),
            })
            .collect();
        let mut response = PollResponse {
            jobs: assignments,
            cancel: Vec::new(),
        };
        let mut next = waiter;
        while let Some(waiter) = next.take().or_else(|| self.take_capacity_waiter(agent)) {
            match waiter.tx.send(response) {
                Ok(()) => return,
                // That poll was abandoned a moment ago: try the next one.
                Err(returned) => response = returned,
            }
        }
        // Nobody took them: back to the queue.
        self.drained.remove(agent);
        let ids: Vec<String> = response.jobs.into_iter().map(|j| j.job_id).collect();
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        ctx.spawn(
            async move {
                if let Err(error) = db::jobs::requeue(&db, &tenant, &ids).await {
                    tracing::error!(%error, "could not requeue undelivered jobs; the sweep will");
                }
            }
            .into_actor(self),
        );
    }

    /// Sends cancel orders to the agent's parked poll, if it has one; otherwise the next
    /// heartbeat answer carries them.
    fn send_cancel(&mut self, agent: &str, job_id: &str) {
        if let Some(queue) = self.waiters.get_mut(agent) {
            while let Some(waiter) = queue.pop_front() {
                let response = PollResponse {
                    jobs: Vec::new(),
                    cancel: vec![job_id.to_owned()],
                };
                if waiter.tx.send(response).is_ok() {
                    return;
                }
            }
        }
    }

    /// Marks agents offline after three missed heartbeats; their running jobs end `lost`.
    fn check_liveness(&mut self, ctx: &mut Context<Self>) {
        let now = db::now_ms();
        let silent: Vec<(String, i64)> = self
            .agents
            .values()
            .filter(|entry| entry.online())
            .filter_map(|entry| {
                let last_seen = entry.row.last_heartbeat.unwrap_or(0).max(self.started_at_ms);
                let silence = now - last_seen;
                (silence > MISSED_HEARTBEATS * entry.row.heartbeat_interval * 1000)
                    .then(|| (entry.row.name.clone(), silence))
            })
            .collect();
        for (name, silence) in silent {
            self.set_online(&name, false);
            // Its parked polls are most likely dead connections: never hand them jobs.
            self.waiters.remove(&name);
            let reason = format!(
                "agent {name} went offline (no heartbeat for {} s) while the job was running",
                silence / 1000
            );
            self.release_jobs(&name, Vec::new(), reason, true, ctx);
        }
    }

    /// Running jobs of the agent (but those in `keep`) end `lost`; unstarted ones are requeued.
    fn release_jobs(
        &mut self,
        agent: &str,
        keep: Vec<String>,
        reason: String,
        mark_offline: bool,
        ctx: &mut Context<Self>,
    ) {
        self.drained.remove(agent);
        let (db, tenant, name) = (self.db.clone(), self.tenant_id.clone(), agent.to_owned());
        let work = async move {
            let now = db::now_ms();
            if mark_offline {
                db::agents::set_status(&db, &tenant, &name, "offline", now).await?;
            }
            db::jobs::release_agent_jobs(&db, &tenant, &name, &keep, &reason, now).await
        };
        let agent = agent.to_owned();
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| match result {
            Ok(lost) => {
                for job in &lost {
                    tracing::warn!(job = %job.id, agent = %agent, "job lost");
                    act.publish_job_finished(job);
                    act.notify_completion(&job.id);
                }
                act.pump(&agent, ctx);
            }
            Err(error) => tracing::error!(%error, agent = %agent, "could not release the agent's jobs"),
        }));
    }
}

impl Actor for TenantSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        // Rebuild the agent cache from the database before answering any message.
        ctx.wait(
            async move { db::agents::list(&db, &tenant).await }
                .into_actor(self)
                .map(|result, act, _| match result {
                    Ok(rows) => {
                        act.agents = rows
                            .into_iter()
                            .map(|row| (row.name.clone(), AgentEntry::new(row)))
                            .collect();
                    }
                    Err(error) => tracing::error!(%error, tenant = %act.tenant_id, "could not load agents"),
                }),
        );
        ctx.run_interval(LIVENESS_CHECK_INTERVAL, |act, ctx| act.check_liveness(ctx));
        // After the agents: a fire needs them to pick its targets.
        self.load_schedules(ctx);
    }
}

impl Supervised for TenantSupervisor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(tenant = %self.tenant_id, "tenant supervisor restarting");
        self.waiters.clear();
        self.pumping.clear();
        self.repump.clear();
        self.drained.clear();
        self.completions.clear();
        self.schedules = schedules::ScheduleTimers::default();
        self.started_at_ms = db::now_ms();
    }
}

impl Handler<Register> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<RegisterAgentResponse>>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let request = msg.request;
        let checked = (|| -> Result<Agent> {
            let name = request.agent_name.trim().to_owned();
            validate::agent_name(&name)?;
            let tags = validate::tags(&request.tags)?;
            validate::url(&request.url)?;
            for (field, value) in [
                ("hostname", &request.hostname),
                ("os", &request.os),
                ("version", &request.version),
            ] {
                validate::optional_text(field, value, 256)?;
            }
            validate::optional_text("api_key", &request.api_key, 1024)?;
            if let Some(scripts) = &request.scripts {
                validate::scripts(scripts)?;
            }
            let interval = request
                .heartbeat_interval
                .map(validate::heartbeat_interval)
                .transpose()?;
            let now = db::now_ms();
            let existing = self.agents.get(&name).map(|e| &e.row);
            let self_registration = msg.api_key_id.is_some();
            Ok(Agent {
                tenant_id: self.tenant_id.clone(),
                name: name.clone(),
                tags: serde_json::to_string(&tags)?,
                url: request.url.clone().or_else(|| existing.and_then(|e| e.url.clone())),
                hostname: request
                    .hostname
                    .clone()
                    .or_else(|| existing.and_then(|e| e.hostname.clone())),
                os: request.os.clone().or_else(|| existing.and_then(|e| e.os.clone())),
                version: request
                    .version
                    .clone()
                    .or_else(|| existing.and_then(|e| e.version.clone())),
                scripts: match &request.scripts {
                    Some(scripts) => serde_json::to_string(scripts)?,
                    None => existing.map(|e| e.scripts.clone()).unwrap_or_else(|| "[]".into()),
                },
                manifest_reported: request.scripts.is_some() || existing.is_some_and(|e| e.manifest_reported),
                api_key_id: msg
                    .api_key_id
                    .clone()
                    .or_else(|| existing.and_then(|e| e.api_key_id.clone())),
                agent_key_hash: request
                    .api_key
                    .as_deref()
                    .map(sha256_hex)
                    .or_else(|| existing.and_then(|e| e.agent_key_hash.clone())),
                status: if self_registration {
                    "online".into()
                } else {
                    existing.map(|e| e.status.clone()).unwrap_or_else(|| "offline".into())
                },
                heartbeat_interval: interval.or(existing.map(|e| e.heartbeat_interval)).unwrap_or(60),
                last_heartbeat: if self_registration {
                    Some(now)
                } else {
                    existing.and_then(|e| e.last_heartbeat)
                },
                registered_at: existing.map(|e| e.registered_at).unwrap_or(now),
                updated_at: now,
            })
        })();
        let running_jobs = request.running_jobs.clone();
        let db = self.db.clone();
        Box::pin(
            async move {
                let agent = checked?;
                db::agents::upsert(&db, &agent).await?;
                Ok(agent)
            }
            .into_actor(self)
            .map(move |result: Result<Agent>, act, ctx| {
                let agent = result?;
                let name = agent.name.clone();
                let online = agent.status == "online";
                let is_new = !act.agents.contains_key(&name);
                let previous_status = act.agents.get(&name).map(|e| e.row.status.clone());
                act.agents.insert(name.clone(), AgentEntry::new(agent));
                if is_new {
                    let tags = act.agents.get(&name).map(|e| e.tags.clone()).unwrap_or_default();
                    let status = if online { "online" } else { "offline" };
                    act.publish(
                        EventType::AgentRegistered,
                        json!({"agent": name, "status": status, "tags": tags}),
                    );
                }
                if online && previous_status.as_deref() != Some("online") {
                    // set_online only publishes on a change, so restore the old status first.
                    if let Some(entry) = act.agents.get_mut(&name) {
                        entry.row.status = previous_status.unwrap_or_else(|| "offline".into());
                    }
                    act.set_online(&name, true);
                }
                // An agent that (re)starts tells which jobs it still runs; the rest were lost.
                if let Some(running) = running_jobs {
                    let reason = format!("agent {name} restarted while the job was running");
                    act.release_jobs(&name, running, reason, false, ctx);
                }
                Ok(RegisterAgentResponse {
                    status: "ok".into(),
                    agent: name,
                })
            }),
        )
    }
}

impl Handler<Heartbeat> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<HeartbeatResponse>>;

    fn handle(&mut self, msg: Heartbeat, _: &mut Context<Self>) -> Self::Result {
        let request = msg.request;
        let checked = self
            .authorized_agent(&request.agent_name, &msg.api_key_id)
            .map(|_| ())
            .and_then(|_| {
                validate::scripts(&request.scripts)?;
                validate::optional_text("version", &request.version, 256)?;
                let interval = validate::heartbeat_interval(request.heartbeat_interval)?;
                Ok((serde_json::to_string(&request.scripts)?, interval))
            });
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        let name = request.agent_name.clone();
        let version = request.version.clone();
        Box::pin(
            async move {
                let (scripts, interval) = checked?;
                let now = db::now_ms();
                db::agents::record_heartbeat(&db, &tenant, &name, now, &scripts, interval, version.as_deref()).await?;
                let cancel = db::jobs::cancel_requests(&db, &tenant, &name).await?;
                Ok((now, scripts, interval, cancel))
            }
            .into_actor(self)
            .map(move |result: Result<(i64, String, i64, Vec<String>)>, act, _| {
                let (now, scripts, interval, cancel) = result?;
                if let Some(entry) = act.agents.get_mut(&request.agent_name) {
                    entry.row.last_heartbeat = Some(now);
                    entry.row.heartbeat_interval = interval;
                    entry.row.manifest_reported = true;
                    entry.row.version = request.version.clone();
                    entry.scripts = request.scripts;
                    entry.row.scripts = scripts;
                }
                act.set_online(&request.agent_name, true);
                Ok(HeartbeatResponse {
                    status: "ok".into(),
                    cancel,
                })
            }),
        )
    }
}

impl Handler<Poll> for TenantSupervisor {
    type Result = Result<oneshot::Receiver<PollResponse>>;

    fn handle(&mut self, msg: Poll, ctx: &mut Context<Self>) -> Self::Result {
        self.authorized_agent(&msg.agent, &msg.api_key_id)?;
        let (tx, rx) = oneshot::channel();
        let queue = self.waiters.entry(msg.agent.clone()).or_default();
        // An agent keeps one poll open: an older one still parked was abandoned (the agent
        // restarted, or replaced it to ask for more capacity). Release it rather than risk
        // handing a job to a connection nobody reads.
        for stale in queue.drain(..) {
            let _ = stale.tx.send(PollResponse::default());
        }
        queue.push_back(Waiter {
            capacity: msg.capacity,
            tx,
        });
        self.pump(&msg.agent, ctx);
        Ok(rx)
    }
}

impl Handler<StartJob> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: StartJob, _: &mut Context<Self>) -> Self::Result {
        let checked = self.authorized_agent(&msg.agent, &msg.api_key_id).map(|_| ());
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                checked?;
                match db::jobs::mark_started(&db, &tenant, &msg.agent, &msg.job_id, msg.started_at_ms).await? {
                    StartOutcome::Started { created_at } => {
                        // Measured on this clock (the one that stamped created_at) when the
                        // report arrives, so an agent's clock skew cannot distort it.
                        if let Some(created_at) = created_at {
                            metrics.dispatch_latency(db::now_ms() - created_at);
                        }
                        Ok(())
                    }
                    StartOutcome::Refused(why) => Err(Error::conflict(
                        "job_not_startable",
                        format!("do not run job {}: {why}", msg.job_id),
                    )),
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<ReportResult> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<ResultAck>>;

    fn handle(&mut self, msg: ReportResult, _: &mut Context<Self>) -> Self::Result {
        let checked = self
            .authorized_agent(&msg.report.agent_name, &msg.api_key_id)
            .map(|_| ());
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        let job_id = msg.job_id.clone();
        Box::pin(
            async move {
                checked?;
                let report = &msg.report;
                let status = match report.outcome {
                    RunOutcome::Success => JobStatus::Success,
                    RunOutcome::Failed | RunOutcome::Rejected => JobStatus::Failed,
                    RunOutcome::Timeout => JobStatus::Timeout,
                    RunOutcome::Cancelled => JobStatus::Cancelled,
                };
                let rejected_reason = (report.outcome == RunOutcome::Rejected).then(|| {
                    format!(
                        "refused by the agent: {}",
                        report.reason.as_deref().unwrap_or("not allowed")
                    )
                });
                let completion = Completion {
                    status,
                    exit_code: report.exit_code,
                    stdout: &report.stdout,
                    stderr: &report.stderr,
                    stdout_truncated: report.stdout_truncated,
                    stderr_truncated: report.stderr_truncated,
                    duration_ms: report.duration_ms.min(i64::MAX as u64) as i64,
                    started_at: report.started_at_ms,
                    completed_at: report.completed_at_ms,
                    reason: rejected_reason.as_deref().or(report.reason.as_deref()),
                };
                db::jobs::complete(&db, &tenant, &report.agent_name, &msg.job_id, &completion).await
            }
            .into_actor(self)
            .map(move |result, act, _| match result? {
                CompleteOutcome::Stored(job) => {
                    if let Some(duration_ms) = job.duration_ms {
                        act.metrics.job_duration(duration_ms);
                    }
                    act.publish_job_finished(&job);
                    act.notify_completion(&job.id);
                    Ok(ResultAck {
                        status: "ok".into(),
                        duplicate: false,
                    })
                }
                CompleteOutcome::Duplicate => Ok(ResultAck {
                    status: "ok".into(),
                    duplicate: true,
                }),
                CompleteOutcome::Refused(why) => Err(Error::conflict(
                    "result_refused",
                    format!("result for job {job_id} refused: {why}"),
                )),
            }),
        )
    }
}

impl TenantSupervisor {
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
        })
    }
}

fn not_in_manifest(agent: &AgentEntry, script: &str) -> Error {
    let listed: Vec<&str> = agent.scripts.iter().map(|s| s.name.as_str()).collect();
    Error::forbidden(
        "script_not_allowed",
        format!(
            "script {script:?} is not in the manifest of agent {}; its manifest lists: [{}]",
            agent.row.name,
            listed.join(", ")
        ),
    )
}

impl Handler<Trigger> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<Triggered>>;

    fn handle(&mut self, msg: Trigger, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            let agent = self
                .agents
                .get(&msg.agent)
                .ok_or_else(|| Error::not_found(format!("agent {}", msg.agent)))?;
            if !agent.allows(&msg.script) {
                return Err(not_in_manifest(agent, &msg.script));
            }
            let job = self.new_job(&msg.agent, &msg.script, &msg.params, msg.timeout_secs, None)?;
            Ok((job, agent.online()))
        })();
        // Fast path: nothing queued ahead and a poll parked, so the job is written as
        // dispatched and handed over at once.
        let direct = match &checked {
            Ok(_) if self.drained.contains(&msg.agent) && !self.pumping.contains(&msg.agent) => {
                self.take_capacity_waiter(&msg.agent)
            }
            _ => None,
        };
        let checked = checked.map(|(mut job, online)| {
            if direct.is_some() {
                job.status = JobStatus::Dispatched.as_str().into();
                job.dispatched_at = Some(job.created_at);
                job.attempts = 1;
            }
            (job, online)
        });
        let db = self.db.clone();
        Box::pin(
            async move {
                let (job, online) = checked?;
                db::jobs::insert(&db, &job).await?;
                Ok(Triggered {
                    job,
                    agent_online: online,
                })
            }
            .into_actor(self)
            .map(move |result: Result<Triggered>, act, ctx| {
                let triggered = match result {
                    Ok(triggered) => triggered,
                    Err(error) => {
                        if let Some(waiter) = direct {
                            act.waiters.entry(msg.agent.clone()).or_default().push_front(waiter);
                        }
                        return Err(error);
                    }
                };
                let agent = triggered.job.agent_name.clone();
                if direct.is_some() {
                    act.deliver(&agent, vec![triggered.job.clone()], direct, ctx);
                    // The caller sees the job as queued: the agent has not confirmed it yet.
                } else {
                    act.drained.remove(&agent);
                    act.pump(&agent, ctx);
                }
                Ok(triggered)
            }),
        )
    }
}

impl Handler<FanOut> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<FannedOut>>;

    fn handle(&mut self, msg: FanOut, _: &mut Context<Self>) -> Self::Result {
        let fanout_id = db::new_id("fan");
        let mut skipped: Vec<(String, String)> = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        let candidates: Vec<&AgentEntry> = match &msg.agents {
            Some(names) => names
                .iter()
                .filter_map(|name| {
                    let found = self.agents.get(name);
                    if found.is_none() {
                        skipped.push((name.clone(), "not registered".into()));
                    }
                    found
                })
                .collect(),
            None => {
                let mut all: Vec<&AgentEntry> = self.agents.values().collect();
                all.sort_by(|a, b| a.row.name.cmp(&b.row.name));
                all
            }
        };
        let wanted_tags = msg.tags.clone().unwrap_or_default();
        let build = || -> Result<()> {
            for agent in candidates {
                if !wanted_tags.iter().all(|tag| agent.tags.contains(tag)) {
                    continue;
                }
                if msg.only_online && !agent.online() {
                    skipped.push((agent.row.name.clone(), "offline".into()));
                    continue;
                }
                if !agent.allows(&msg.script) {
                    skipped.push((agent.row.name.clone(), format!("{} is not in its manifest", msg.script)));
                    continue;
                }
                jobs.push(self.new_job(
                    &agent.row.name,
                    &msg.script,
                    &msg.params,
                    msg.timeout_secs,
                    Some(fanout_id.clone()),
                )?);
            }
            Ok(())
        };
        let built = build();
        let fanout = Fanout {
            id: fanout_id.clone(),
            tenant_id: self.tenant_id.clone(),
            script: msg.script.clone(),
            params: serde_json::to_string(&msg.params).unwrap_or_else(|_| "{}".into()),
            selector: json!({"agents": msg.agents, "tags": msg.tags, "only_online": msg.only_online}).to_string(),
            created_at: db::now_ms(),
        };
        let db = self.db.clone();
        Box::pin(
            async move {
                built?;
                if jobs.is_empty() {
                    let why: Vec<String> = skipped.iter().map(|(agent, why)| format!("{agent}: {why}")).collect();
                    return Err(Error::Validation(format!(
                        "no agent matches this fan-out{}",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", why.join("; "))
                        }
                    )));
                }
                db::jobs::insert_fanout(&db, &fanout, &jobs).await?;
                Ok((jobs, skipped))
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let (jobs, skipped) = result?;
                for job in &jobs {
                    act.drained.remove(&job.agent_name);
                    act.pump(&job.agent_name, ctx);
                }
                Ok(FannedOut {
                    fanout_id,
                    jobs: jobs
                        .into_iter()
                        .map(|j| FanOutJob {
                            agent: j.agent_name,
                            job_id: j.id,
                        })
                        .collect(),
                    skipped,
                })
            }),
        )
    }
}

impl Handler<Cancel> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<shared_protocol::api::JobView>>;

    fn handle(&mut self, msg: Cancel, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let tenant = self.tenant_id.clone();
        Box::pin(
            async move { db::jobs::cancel(&db, &tenant, &msg.job_id, "cancelled by request", db::now_ms()).await }
                .into_actor(self)
                .map(|result, act, _| {
                    Ok(match result? {
                        CancelOutcome::Cancelled(job) => {
                            act.publish_job_finished(&job);
                            act.notify_completion(&job.id);
                            job_view(&job, None)
                        }
                        CancelOutcome::Requested(job) => {
                            act.send_cancel(&job.agent_name, &job.id);
                            job_view(&job, None)
                        }
                        CancelOutcome::AlreadyFinished(job) => job_view(&job, None),
                    })
                }),
        )
    }
}

impl Handler<AwaitCompletion> for TenantSupervisor {
    type Result = MessageResult<AwaitCompletion>;

    fn handle(&mut self, msg: AwaitCompletion, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let waiting = self.completions.entry(msg.job_id).or_default();
        waiting.retain(|tx| !tx.is_closed());
        waiting.push(tx);
        MessageResult(rx)
    }
}

impl Handler<DeleteAgent> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: DeleteAgent, _: &mut Context<Self>) -> Self::Result {
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        let name = msg.name.clone();
        Box::pin(
            async move {
                if !db::agents::delete(&db, &tenant, &name).await? {
                    return Err(Error::not_found(format!("agent {name}")));
                }
                db::jobs::cancel_queued_for_agent(&db, &tenant, &name, "the agent was deleted", db::now_ms()).await
            }
            .into_actor(self)
            .map(move |result, act, _| {
                let cancelled = result?;
                act.metrics.jobs_finished_by(JobStatus::Cancelled, cancelled as u64);
                act.agents.remove(&msg.name);
                for waiter in act.waiters.remove(&msg.name).unwrap_or_default() {
                    let _ = waiter.tx.send(PollResponse::default());
                }
                Ok(())
            }),
        )
    }
}

impl Handler<Wake> for TenantSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Wake, ctx: &mut Context<Self>) {
        self.drained.remove(&msg.agent);
        self.pump(&msg.agent, ctx);
    }
}
