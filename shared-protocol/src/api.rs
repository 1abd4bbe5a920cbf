//! Shapes of the public REST API that clients (tests, the CLI, scripts) read and write.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /trigger-script`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TriggerRequest {
    pub agent: String,
    pub run_script: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub params: Option<serde_json::Map<String, Value>>,
    /// The spec's flag; defaults to true (asynchronous).
    #[serde(default)]
    pub async_exec: Option<bool>,
    /// Seconds before the agent kills the script.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Names of params whose values are secret: masked in the job's output (by the agent,
    /// before it leaves the host) and never shown in job views.
    #[serde(default)]
    pub secret_params: Option<Vec<String>>,
}

/// `GET /jobs/{id}`: the spec's result shape plus where and what ran.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub job_id: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration_ms: Option<u64>,
    pub completed_at: Option<String>,
    pub agent: String,
    pub script: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub params: serde_json::Map<String, Value>,
    pub created_at: String,
    pub dispatched_at: Option<String>,
    pub started_at: Option<String>,
    pub timeout: Option<u64>,
    /// Why a job was lost, cancelled, rejected, or why it is still pending.
    pub reason: Option<String>,
    pub fanout_id: Option<String>,
    pub schedule_id: Option<String>,
}

/// `GET /jobs`: newest first; pass `next_cursor` back as `cursor` for the next page.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<JobView>,
    pub next_cursor: Option<String>,
}

/// `POST /fan-out`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FanOutRequest {
    pub run_script: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub params: Option<serde_json::Map<String, Value>>,
    /// Names of params whose values are secret, as for `/trigger-script`.
    #[serde(default)]
    pub secret_params: Option<Vec<String>>,
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub only_online: Option<bool>,
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Rollout: most jobs queued or running at once, a number of agents (`5`) or a share
    /// of the targets (`"25%"`, rounded up). The rest wait, in agent order, for a slot.
    #[serde(default)]
    pub max_concurrency: Option<MaxConcurrency>,
    /// Rollout: once this many jobs failed (failed, timeout, lost), the jobs not yet handed
    /// out end `cancelled` with the reason.
    #[serde(default)]
    pub max_errors: Option<i64>,
}

/// `max_concurrency` of a fan-out: a count, or a percentage of the targets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum MaxConcurrency {
    Count(i64),
    /// `"1%"` to `"100%"`.
    Percent(String),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FanOutJob {
    pub agent: String,
    pub job_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FanOutResponse {
    pub fanout_id: String,
    pub jobs: Vec<FanOutJob>,
}

/// `GET /metrics/json`: the caller's tenant over the last `window_hours`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantMetrics {
    pub generated_at: String,
    pub window_hours: u32,
    pub agents: AgentCounts,
    /// Every job of the window, those of deleted agents included.
    pub jobs: JobMetrics,
    /// Every registered agent, sorted by name (agents without jobs show zeros).
    pub per_agent: Vec<AgentMetrics>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentCounts {
    pub total: u64,
    pub online: u64,
    pub offline: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobMetrics {
    pub total: u64,
    pub by_status: JobStatusCounts,
    /// success / (success + failed + timeout + lost), rounded to 4 decimals; `null` when
    /// no job of the window ended in one of those.
    pub success_rate: Option<f64>,
    pub duration_ms: DurationPercentiles,
}

/// Jobs per status: always all eight.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobStatusCounts {
    pub pending: u64,
    pub dispatched: u64,
    pub running: u64,
    pub success: u64,
    pub failed: u64,
    pub timeout: u64,
    pub cancelled: u64,
    pub lost: u64,
}

/// Nearest-rank percentiles of finished jobs' durations; `null` when there are none.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DurationPercentiles {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentMetrics {
    pub name: String,
    pub status: String,
    pub last_heartbeat: Option<String>,
    pub tags: Vec<String>,
    pub jobs: JobMetrics,
}

/// A piece of a job's output as `GET /jobs/{id}/output` shows it: both pipes interleaved
/// in the order the script wrote them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputPiece {
    /// UTF-8 bytes of the job's output before this piece.
    pub offset: u64,
    pub stream: crate::protocol::OutputStream,
    pub data: String,
}

/// `GET /jobs/{id}/output` without `follow`: a page of the job's output from `offset`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobOutput {
    pub job_id: String,
    pub status: String,
    pub pieces: Vec<OutputPiece>,
    /// Where the next page (or a follower) starts.
    pub next_offset: u64,
    /// The job is finished and every piece up to its end was shown.
    pub complete: bool,
}

/// The `gap` event: the bytes from `from` to `to` were not kept (the output outgrew its cap,
/// or the agent dropped them while it could not reach the orchestrator).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputGap {
    pub from: u64,
    pub to: u64,
}

/// The `end` event: the job finished; the stream closes after it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputEnd {
    pub status: String,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub next_offset: u64,
}
