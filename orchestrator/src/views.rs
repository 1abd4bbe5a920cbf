//! How stored rows are shown through the API (and in event payloads).

use crate::db::models::{Agent, Job};
use crate::db::{format_time, format_time_opt};
use serde_json::{json, Map, Value};
use shared_protocol::api::JobView;
use shared_protocol::ManifestEntry;

/// The spec's job result shape plus where and what ran. `agent_online` lets a pending job
/// say why it is waiting.
pub fn job_view(job: &Job, agent_online: Option<bool>) -> JobView {
    let params: Map<String, Value> = serde_json::from_str(&job.params).unwrap_or_default();
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

/// One value of `GET /agents` (keyed by name there).
pub fn agent_view(agent: &Agent) -> Value {
    json!({
        "name": agent.name,
        "status": agent.status,
        "tags": agent_tags(agent),
        "last_heartbeat": format_time_opt(agent.last_heartbeat),
        "version": agent.version,
        "scripts": agent_scripts(agent).into_iter().map(|s| s.name).collect::<Vec<_>>(),
        "hostname": agent.hostname,
        "os": agent.os,
        "url": agent.url,
        "heartbeat_interval": agent.heartbeat_interval,
        "registered_at": format_time(agent.registered_at),
        "manifest_reported": agent.manifest_reported,
    })
}
