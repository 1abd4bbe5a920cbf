//! How stored rows are shown through the API (and in event payloads).

use crate::db::models::{Agent, Job};
use crate::db::{format_time, format_time_opt};
use serde::Serialize;

use shared_protocol::api::JobView;
use shared_protocol::ManifestEntry;

/// The spec's job result shape plus where and what ran. `agent_online` lets a pending job
/// say why it is waiting.
pub fn job_view(job: &Job, agent_online: Option<bool>) -> JobView {
    let params = crate::secrets::masked_params(&job.params, job.secret_params.as_deref());
    let reason = job
        .reason
        .clone()
        .or_else(|| match (job.status.as_str(), agent_online) {
            ("pending", Some(false)) => Some(format!(
                "agent {} is offline; the job runs when it reconnects",
                job.agent_name
            )),
            ("pending", None) => Some(format!("agent {} is no longer registered", job.agent_name)),
            _ => None,
        });
    JobView {
        job_id: job.id.clone(),
        status: job.status.clone(),
        exit_code: job.exit_code,
        stdout: job.stdout.clone(),
        stderr: job.stderr.clone(),
        stdout_truncated: job.stdout_truncated,
        stderr_truncated: job.stderr_truncated,
        duration_ms: job.duration_ms.map(|d| d.max(0) as u64),
        completed_at: format_time_opt(job.completed_at),
        agent: job.agent_name.clone(),
        script: job.script.clone(),
        params,
        created_at: format_time(job.created_at),
        dispatched_at: format_time_opt(job.dispatched_at),
        started_at: format_time_opt(job.started_at),
        timeout: job.timeout_secs.map(|t| t.max(0) as u64),
        reason,
        fanout_id: job.fanout_id.clone(),
        schedule_id: job.schedule_id.clone(),
    }
}

pub fn agent_tags(agent: &Agent) -> Vec<String> {
    serde_json::from_str(&agent.tags).unwrap_or_default()
}

pub fn agent_scripts(agent: &Agent) -> Vec<ManifestEntry> {
    serde_json::from_str(&agent.scripts).unwrap_or_default()
}

/// An agent as `GET /agents/{name}` shows it (and `GET /agents`, keyed by name).
#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentView {
    pub name: String,
    /// `online` or `offline`.
    pub status: String,
    pub tags: Vec<String>,
    pub last_heartbeat: Option<String>,
    pub version: Option<String>,
    /// Names of the scripts in the agent's manifest.
    pub scripts: Vec<String>,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub url: Option<String>,
    /// Seconds between heartbeats.
    pub heartbeat_interval: i64,
    pub registered_at: String,
    /// False until the agent itself reported its manifest (a manual registration).
    pub manifest_reported: bool,
}

pub fn agent_view(agent: &Agent) -> AgentView {
    AgentView {
        name: agent.name.clone(),
        status: agent.status.clone(),
        tags: agent_tags(agent),
        last_heartbeat: format_time_opt(agent.last_heartbeat),
        version: agent.version.clone(),
        scripts: agent_scripts(agent).into_iter().map(|s| s.name).collect(),
        hostname: agent.hostname.clone(),
        os: agent.os.clone(),
        url: agent.url.clone(),
        heartbeat_interval: agent.heartbeat_interval,
        registered_at: format_time(agent.registered_at),
        manifest_reported: agent.manifest_reported,
    }
}
