//! The tenant's agents: registration, heartbeats, liveness and deletion, and the cache of
//! agent rows every other concern reads. The cache is written through; another replica's
//! change arrives as news (`reload_agent`), and a row missing here is looked up in the
//! database before anyone is told the agent does not exist.

use super::heartbeats::{Beat, HeartbeatOutcome};
use super::targets::Candidate;
use super::TenantSupervisor;
use crate::auth::sha256_hex;
use crate::db::agents::HeartbeatWrite;
use crate::db::models::{Agent, Job};
use crate::db::{self, accounts};
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::tenant::messages::{AgentsSilent, DeleteAgent, Heartbeat, Register};
use crate::tenant::validate;
use crate::views::{agent_scripts, agent_tags};
use actix::prelude::*;
use serde_json::json;
use shared_protocol::protocol::{HeartbeatRequest, HeartbeatResponse, RegisterAgentResponse};
use shared_protocol::{JobStatus, ManifestEntry};

/// The cached agent row with its parsed manifest and tags.
pub(super) struct AgentEntry {
    pub row: Agent,
    pub tags: Vec<String>,
    pub scripts: Vec<ManifestEntry>,
}

impl AgentEntry {
    pub fn new(row: Agent) -> AgentEntry {
        AgentEntry {
            tags: agent_tags(&row),
            scripts: agent_scripts(&row),
            row,
        }
    }

    /// Whether a heartbeat reports something other than what is stored (besides the time).
    /// Compared parsed, so that an unchanged manifest is not serialised again.
    fn differs_from(&self, scripts: &[ManifestEntry], interval: i64, version: Option<&str>) -> bool {
        !self.row.manifest_reported
            || self.scripts != scripts
            || self.row.heartbeat_interval != interval
            || self.row.version.as_deref() != version
    }
}

impl Candidate for AgentEntry {
    fn name(&self) -> &str {
        &self.row.name
    }

    fn tags(&self) -> &[String] {
        &self.tags
    }

    fn online(&self) -> bool {
        self.row.status == "online"
    }

    fn allows(&self, script: &str) -> bool {
        !self.row.manifest_reported || self.scripts.iter().any(|s| s.name == script)
    }
}

impl TenantSupervisor {
    /// Rebuilds the agent cache from the database before any message is answered.
    pub(super) fn load_agents(&mut self, ctx: &mut Context<Self>) {
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
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
    }

    /// Another replica changed the agent: take the stored row (or forget a deleted agent).
    pub(super) fn reload_agent(&mut self, name: &str, ctx: &mut Context<Self>) {
        let (db, tenant, name) = (self.db.clone(), self.tenant_id.clone(), name.to_owned());
        let lookup = name.clone();
        ctx.spawn(
            async move { db::agents::find(&db, &tenant, &lookup).await }
                .into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(Some(row)) => {
                        act.agents.insert(name, AgentEntry::new(row));
                    }
                    Ok(None) => {
                        act.agents.remove(&name);
                        act.dispatch.release(&name);
                    }
                    Err(error) => tracing::warn!(%error, agent = %name, "could not reload an agent"),
                }),
        );
    }

    /// Runs `then` with the agent's row in the cache when it exists: at once when cached,
    /// else after looking in the database (it may have registered through another replica
    /// a moment ago).
    pub(super) fn with_agent_then<R: 'static>(
        &mut self,
        name: &str,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) -> ResponseActFuture<Self, Result<R>> + 'static,
    ) -> ResponseActFuture<Self, Result<R>> {
        // A name no agent can have is not looked for (it would only be refused as unknown).
        if self.agents.contains_key(name) || validate::agent_name(name).is_err() {
            return then(self, ctx);
        }
        let (db, tenant, name) = (self.db.clone(), self.tenant_id.clone(), name.to_owned());
        let lookup = name.clone();
        Box::pin(
            async move { db::agents::find(&db, &tenant, &lookup).await }
                .into_actor(self)
                .then(move |found, act, ctx| {
                    match found {
                        Ok(Some(row)) => {
                            act.agents.entry(name).or_insert_with(|| AgentEntry::new(row));
                        }
                        Ok(None) => {}
                        Err(error) => return Box::pin(fut::ready(Err(error))) as ResponseActFuture<Self, Result<R>>,
                    }
                    then(act, ctx)
                }),
        )
    }

    /// `with_agent_then` for work that answers at once.
    pub(super) fn with_agent<R: 'static>(
        &mut self,
        name: &str,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) -> Result<R> + 'static,
    ) -> ResponseActFuture<Self, Result<R>> {
        self.with_agent_then(name, ctx, move |act, ctx| Box::pin(fut::ready(then(act, ctx))))
    }

    /// The agent, if `api_key_id` is the key it registered with.
    pub(super) fn authorized_agent(&self, name: &str, api_key_id: &str) -> Result<&AgentEntry> {
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

    fn publish_status(&self, name: &str, online: bool, tags: &[String]) {
        let status = if online { "online" } else { "offline" };
        tracing::info!(tenant = %self.tenant_id, agent = %name, online, "agent status changed");
        let event = if online {
            EventType::AgentOnline
        } else {
            EventType::AgentOffline
        };
        self.publish(event, json!({"agent": name, "status": status, "tags": tags}));
    }

    /// Running jobs of the agent (but those in `keep`) end `lost`; unstarted ones are requeued.
    fn release_jobs(&mut self, agent: &str, keep: Vec<String>, reason: String, ctx: &mut Context<Self>) {
        self.dispatch.queued(agent);
        let (db, tenant, name) = (self.db.clone(), self.tenant_id.clone(), agent.to_owned());
        let work = async move { db::jobs::release_agent_jobs(&db, &tenant, &name, &keep, &reason, db::now_ms()).await };
        let agent = agent.to_owned();
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| match result {
            Ok(lost) => {
                act.jobs_lost(&agent, &lost);
                act.pump(&agent, ctx);
            }
            Err(error) => tracing::error!(%error, agent = %agent, "could not release the agent's jobs"),
        }));
    }
}

impl TenantSupervisor {
    fn jobs_lost(&mut self, agent: &str, lost: &[Job]) {
        for job in lost {
            tracing::warn!(job = %job.id, agent = %agent, "job lost");
            self.job_finished(job);
        }
    }
}

impl Handler<Register> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<RegisterAgentResponse>>;

    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) -> Self::Result {
        let name = msg.request.agent_name.trim().to_owned();
        self.with_agent_then(&name, ctx, move |act, _| act.register(msg))
    }
}

impl TenantSupervisor {
    fn register(&mut self, msg: Register) -> ResponseActFuture<Self, Result<RegisterAgentResponse>> {
        let request = msg.request;
        let checked = (|| -> Result<(Agent, Option<String>)> {
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
            // Held by another key: re-binding it is for admins, or once that key is dead.
            let held_by = existing
                .and_then(|e| e.api_key_id.clone())
                .filter(|held| msg.api_key_id.as_ref().is_some_and(|mine| mine != held) && !msg.may_take_over);
            // A manual re-registration that names no tags keeps the agent's own.
            let tags = match existing {
                Some(e) if !self_registration && tags.is_empty() => e.tags.clone(),
                _ => serde_json::to_string(&tags)?,
            };
            let agent = Agent {
                tenant_id: self.tenant_id.clone(),
                name: name.clone(),
                tags,
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
            };
            Ok((agent, held_by))
        })();
        let running_jobs = request.running_jobs.clone();
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        Box::pin(
            async move {
                let (agent, held_by) = checked?;
                if let Some(held_by) = held_by {
                    let now = db::now_ms();
                    let live = accounts::find_api_key(&db, &tenant, &held_by)
                        .await?
                        .is_some_and(|key| {
                            key.revoked_at.is_none() && key.expires_at.is_none_or(|expires| expires > now)
                        });
                    if live {
                        return Err(Error::conflict(
                            "agent_bound_to_other_key",
                            format!(
                                "agent {} is bound to another live API key; revoke that key first, or ask an admin",
                                agent.name
                            ),
                        ));
                    }
                }
                db::agents::upsert(&db, &agent).await?;
                // An agent that (re)starts tells which jobs it still runs; the rest were
                // lost. Released before the answer: the agent's next poll may be handed
                // (and so start) jobs, which a later release would wrongly count as lost.
                let lost = match running_jobs {
                    Some(keep) => {
                        let reason = format!("agent {} restarted while the job was running", agent.name);
                        db::jobs::release_agent_jobs(&db, &tenant, &agent.name, &keep, &reason, db::now_ms()).await?
                    }
                    None => Vec::new(),
                };
                Ok((agent, lost))
            }
            .into_actor(self)
            .map(move |result: Result<(Agent, Vec<Job>)>, act, ctx| {
                let (agent, lost) = result?;
                let name = agent.name.clone();
                let online = agent.status == "online";
                let previous = act.agents.get(&name).map(|e| e.online());
                let entry = AgentEntry::new(agent);
                let tags = entry.tags.clone();
                act.agents.insert(name.clone(), entry);
                if previous.is_none() {
                    let status = if online { "online" } else { "offline" };
                    act.publish(
                        EventType::AgentRegistered,
                        json!({"agent": name, "status": status, "tags": tags}),
                    );
                }
                if online && previous != Some(true) {
                    act.publish_status(&name, true, &tags);
                }
                if !lost.is_empty() {
                    act.jobs_lost(&name, &lost);
                }
                act.dispatch.queued(&name);
                act.pump(&name, ctx);
                Ok(RegisterAgentResponse {
                    status: "ok".into(),
                    agent: name,
                    heartbeat_in_poll: true,
                })
            }),
        )
    }
}

impl Handler<Heartbeat> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<HeartbeatResponse>>;

    fn handle(&mut self, msg: Heartbeat, ctx: &mut Context<Self>) -> Self::Result {
        let name = msg.request.agent_name.clone();
        self.with_agent_then(&name, ctx, move |act, ctx| {
            let answer = act
                .checked_heartbeat(msg.request, &msg.api_key_id)
                .map(|beat| act.queue_heartbeat(beat, ctx));
            Box::pin(async move { answer?.await }.into_actor(act))
        })
    }
}

impl TenantSupervisor {
    fn checked_heartbeat(&self, request: HeartbeatRequest, api_key_id: &str) -> Result<Beat> {
        let entry = self.authorized_agent(&request.agent_name, api_key_id)?;
        validate::scripts(&request.scripts)?;
        validate::optional_text("version", &request.version, 256)?;
        let interval = validate::heartbeat_interval(request.heartbeat_interval)?;
        let manifest_changed = entry.differs_from(&request.scripts, interval, request.version.as_deref());
        Ok(Beat {
            agent: request.agent_name,
            held: request.held_jobs,
            scripts: request.scripts,
            interval_secs: interval,
            version: request.version,
            manifest_changed,
        })
    }

    /// The heartbeat is written: the cache follows, and the agent gets its answer.
    pub(super) fn heartbeat_written(
        &mut self,
        beat: Beat,
        outcome: HeartbeatOutcome,
        ctx: &mut Context<Self>,
    ) -> Result<HeartbeatResponse> {
        if outcome.requeued > 0 {
            tracing::warn!(agent = %beat.agent, requeued = outcome.requeued, "jobs handed to the agent never reached it; queued again");
            self.queued_elsewhere(std::slice::from_ref(&beat.agent), ctx);
        }
        if outcome.written == HeartbeatWrite::Unknown {
            self.agents.remove(&beat.agent);
            return Err(Error::not_found(format!("agent {} (register it first)", beat.agent)));
        }
        if let Some(entry) = self.agents.get_mut(&beat.agent) {
            entry.row.last_heartbeat = Some(outcome.now);
            if entry.row.status != "online" {
                entry.row.status = "online".into();
            }
            if beat.manifest_changed {
                entry.row.scripts = serde_json::to_string(&beat.scripts)?;
                entry.row.heartbeat_interval = beat.interval_secs;
                entry.row.manifest_reported = true;
                entry.row.version = beat.version;
                entry.scripts = beat.scripts;
            }
            if outcome.written == HeartbeatWrite::CameOnline {
                let tags = entry.tags.clone();
                self.publish_status(&beat.agent, true, &tags);
            }
        }
        Ok(HeartbeatResponse {
            status: "ok".into(),
            cancel: outcome.cancel,
        })
    }
}

impl Handler<AgentsSilent> for TenantSupervisor {
    type Result = ();

    /// This replica's sweep marked them offline (exactly one replica does, per silence):
    /// published, their polls forgotten, their running jobs lost.
    fn handle(&mut self, msg: AgentsSilent, ctx: &mut Context<Self>) {
        for (row, silence_ms) in msg.agents {
            let name = row.name.clone();
            let entry = AgentEntry::new(row);
            let tags = entry.tags.clone();
            self.agents.insert(name.clone(), entry);
            self.publish_status(&name, false, &tags);
            self.dispatch.forget(&name);
            let reason = format!(
                "agent {name} went offline (no heartbeat for {} s) while the job was running",
                silence_ms / 1000
            );
            self.release_jobs(&name, Vec::new(), reason, ctx);
        }
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
                act.dispatch.release(&msg.name);
                Ok(())
            }),
        )
    }
}
