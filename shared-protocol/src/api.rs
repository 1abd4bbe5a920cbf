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
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub only_online: Option<bool>,
    #[serde(default)]
    pub timeout: Option<u64>,
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
