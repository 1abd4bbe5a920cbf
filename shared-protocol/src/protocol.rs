//! The agent protocol: what an agent sends to the orchestrator and what it gets back.
//!
//! Endpoints (all authenticated with the agent's `sm_live_` API key as a Bearer token):
//! - `POST /register-agent`            [`RegisterAgentRequest`] -> [`RegisterAgentResponse`]
//! - `POST /agent/heartbeat`           [`HeartbeatRequest`] -> [`HeartbeatResponse`]
//! - `GET  /agent/poll?agent=&capacity=&wait=&start=` -> [`PollResponse`] (held up to
//!   `wait` s). `POST /agent/poll` with a [`HeartbeatRequest`] body is a heartbeat and a
//!   poll in one request (offered when [`RegisterAgentResponse::heartbeat_in_poll`]); the
//!   heartbeat's cancel orders come back in the poll's `cancel`, at once. With `start=implicit` the jobs handed out are started by the answer itself
//!   (`running` from then on) and the agent sends no `/start`; such an agent lists the
//!   jobs it holds in each heartbeat (`held_jobs`), and a job handed to it that it does not
//!   hold a while later never arrived: it is queued again.
//! - `POST /agent/jobs/{id}/start`     [`StartRequest`] -> 200, or 409 when the job was
//!   cancelled or is not held by this agent (the agent must then not run it); only for
//!   polls without `start=implicit`
//! - `POST /agent/jobs/{id}/result`    [`JobResultReport`] -> [`ResultAck`]; idempotent
//! - `POST /agent/results`             [`ResultBatch`] -> [`ResultBatchAck`]: several
//!   results at once, each settled on its own
//! - `POST /agent/output`              [`OutputBatch`] -> [`OutputAck`]: live output of
//!   running jobs, batched across jobs. Best effort: the result stays the authoritative
//!   record of a job's output. An agent that streamed any chunk of a job sends the rest of
//!   its live output before that job's result, so followers see it whole.

use crate::manifest::ManifestEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A job's lifecycle: `pending` -> `dispatched` -> `running` -> a terminal status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Dispatched,
    Running,
    Success,
    Failed,
    Timeout,
    Cancelled,
    Lost,
}

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Pending,
        JobStatus::Dispatched,
        JobStatus::Running,
        JobStatus::Success,
        JobStatus::Failed,
        JobStatus::Timeout,
        JobStatus::Cancelled,
        JobStatus::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Dispatched => "dispatched",
            JobStatus::Running => "running",
            JobStatus::Success => "success",
            JobStatus::Failed => "failed",
            JobStatus::Timeout => "timeout",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Lost => "lost",
        }
    }

    pub fn parse(value: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// A terminal job never changes status again (except a late result replacing `lost`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Success | JobStatus::Failed | JobStatus::Timeout | JobStatus::Cancelled | JobStatus::Lost
        )
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sent by an agent at start-up (and by people registering one by hand, as in the spec).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterAgentRequest {
    pub agent_name: String,
    #[serde(default)]
    pub url: Option<String>,
    /// A key the agent accepts from callers (the spec's manual registration); kept hashed.
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// The manifest as the agent read it; absent for a manual registration.
    #[serde(default)]
    pub scripts: Option<Vec<ManifestEntry>>,
    #[serde(default)]
    pub heartbeat_interval: Option<u64>,
    /// Jobs the agent is running right now; any other job the orchestrator believes
    /// this agent runs was lost (the agent restarted).
    #[serde(default)]
    pub running_jobs: Option<Vec<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterAgentResponse {
    pub status: String,
    pub agent: String,
    /// The orchestrator takes heartbeats as the body of `POST /agent/poll`, so an agent can
    /// beat on its poll's connection instead of opening another. Absent (false) from
    /// orchestrators that do not.
    #[serde(default)]
    pub heartbeat_in_poll: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatRequest {
    pub agent_name: String,
    /// The manifest re-read from disk this cycle.
    pub scripts: Vec<ManifestEntry>,
    #[serde(default)]
    pub running_jobs: Vec<String>,
    /// Seconds until the next heartbeat; the orchestrator marks the agent offline after
    /// three missed intervals.
    pub heartbeat_interval: u64,
    #[serde(default)]
    pub version: Option<String>,
    /// Every job this agent holds: running, or finished with its result not yet accepted.
    /// Sent by agents that poll with `start=implicit`: a job handed to them that is not
    /// listed (well after it was handed out) never reached them, and is queued again.
    #[serde(default)]
    pub held_jobs: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResponse {
    pub status: String,
    /// Running jobs the agent must kill: they were cancelled.
    #[serde(default)]
    pub cancel: Vec<String>,
}

/// One job handed to an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobAssignment {
    pub job_id: String,
    pub script: String,
    /// Parameter name -> value; each becomes an environment variable of the script.
    pub params: BTreeMap<String, String>,
    /// Seconds before the agent sends SIGTERM (then SIGKILL); none means the agent default.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Names of params whose values are secret: the agent replaces every occurrence of
    /// their values in the script's output with [`SECRET_MASK`] before it leaves the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_params: Vec<String>,
}

/// What a secret param's value is replaced with, in output and in job views.
pub const SECRET_MASK: &str = "********";

/// The answer to a long-poll: jobs to start (at most the capacity asked for) and running
/// jobs to kill. Both empty when the wait ran out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PollResponse {
    #[serde(default)]
    pub jobs: Vec<JobAssignment>,
    #[serde(default)]
    pub cancel: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartRequest {
    pub agent_name: String,
    /// Milliseconds since the Unix epoch, on the agent's clock.
    pub started_at_ms: i64,
}

/// How a run ended, as the agent saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Exit code 0.
    Success,
    /// Non-zero exit, or killed by a signal.
    Failed,
    /// Killed after its timeout.
    Timeout,
    /// Killed because the job was cancelled.
    Cancelled,
    /// Never started: not in the manifest, path outside SCRIPTS_DIR, bad parameter...
    Rejected,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobResultReport {
    pub agent_name: String,
    pub outcome: RunOutcome,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    #[serde(default)]
    pub stdout_truncated: bool,
    #[serde(default)]
    pub stderr_truncated: bool,
    pub duration_ms: u64,
    pub started_at_ms: i64,
    pub completed_at_ms: i64,
    /// Why the run was rejected or how it was killed, in words.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResultAck {
    pub status: String,
    /// True when this result had already been stored (a retried report).
    #[serde(default)]
    pub duplicate: bool,
}

/// Several results in one request (`POST /agent/results`), e.g. of quick jobs that
/// finished together.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResultBatch {
    pub agent_name: String,
    pub results: Vec<BatchedResult>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchedResult {
    pub job_id: String,
    pub report: JobResultReport,
}

/// How each result of a batch was settled, in the batch's order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResultBatchAck {
    pub results: Vec<BatchedAck>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchedAck {
    pub job_id: String,
    pub outcome: BatchedOutcome,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BatchedOutcome {
    /// Stored now.
    Stored,
    /// Stored before (a retried report).
    Duplicate,
    /// Never accepted (not this agent's job, or not running): do not retry it.
    Refused,
}

/// Which of a script's pipes a chunk of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }

    pub fn parse(value: &str) -> Option<OutputStream> {
        match value {
            "stdout" => Some(OutputStream::Stdout),
            "stderr" => Some(OutputStream::Stderr),
            _ => None,
        }
    }
}

/// Live output of running jobs (`POST /agent/output`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputBatch {
    pub agent_name: String,
    pub chunks: Vec<OutputChunk>,
}

/// A piece of one job's output, in the order the script wrote it (both pipes
/// interleaved, as a terminal shows them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputChunk {
    pub job_id: String,
    pub stream: OutputStream,
    /// UTF-8 bytes of this job's live output (both pipes) before this chunk. A chunk that
    /// starts past the previous one's end means the bytes between were dropped.
    pub offset: u64,
    /// Never empty; secret params already masked.
    pub data: String,
}

impl OutputChunk {
    /// The offset just past this chunk.
    pub fn end(&self) -> u64 {
        self.offset + self.data.len() as u64
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputAck {
    /// Chunks stored now or before (a retried batch).
    pub accepted: usize,
    /// Jobs whose live output is no longer wanted (finished, cancelled, unknown, or not
    /// this agent's): the agent stops streaming them.
    #[serde(default)]
    pub stop: Vec<String>,
}
