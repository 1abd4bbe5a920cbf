//! Messages a tenant supervisor answers. Handlers build them from requests; the supervisor
//! holds the rules.

use crate::cluster::Signal;
use crate::db::jobs::Handover;
use crate::db::models::{Agent, Job};
use crate::error::Result;
use crate::tenant::validate::Concurrency;
use actix::Message;
use shared_protocol::api::{FanOutJob, JobView};
use shared_protocol::protocol::{
    BatchedResult, HeartbeatRequest, HeartbeatResponse, JobResultReport, OutputAck, OutputChunk, PollResponse,
    RegisterAgentRequest, RegisterAgentResponse, ResultAck, ResultBatchAck,
};
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// Registration by the agent itself (`api_key_id` set) or by a person (JWT).
#[derive(Message)]
#[rtype(result = "Result<RegisterAgentResponse>")]
pub struct Register {
    pub request: RegisterAgentRequest,
    pub api_key_id: Option<String>,
    /// Whether the caller may re-bind a name held by another live key (admins and owners).
    pub may_take_over: bool,
}

#[derive(Message)]
#[rtype(result = "Result<HeartbeatResponse>")]
pub struct Heartbeat {
    pub request: HeartbeatRequest,
    pub api_key_id: String,
}

/// Parks a long-poll; the receiver yields jobs or cancels, or nothing if the wait runs out.
#[derive(Message)]
#[rtype(result = "Result<oneshot::Receiver<PollResponse>>")]
pub struct Poll {
    pub agent: String,
    pub api_key_id: String,
    pub capacity: u32,
    /// How the jobs it gets are started (`start=implicit`: by the answer itself).
    pub handover: Handover,
}

#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct StartJob {
    pub agent: String,
    pub api_key_id: String,
    pub job_id: String,
    pub started_at_ms: i64,
}

#[derive(Message)]
#[rtype(result = "Result<ResultAck>")]
pub struct ReportResult {
    pub job_id: String,
    pub api_key_id: String,
    pub report: JobResultReport,
}

/// Several results of one agent (`POST /agent/results`), written in one transaction.
#[derive(Message)]
#[rtype(result = "Result<ResultBatchAck>")]
pub struct ReportResults {
    pub agent: String,
    pub api_key_id: String,
    pub results: Vec<BatchedResult>,
}

/// Live output of an agent's running jobs (`POST /agent/output`).
#[derive(Message)]
#[rtype(result = "Result<OutputAck>")]
pub struct AppendOutput {
    pub agent: String,
    pub api_key_id: String,
    pub chunks: Vec<OutputChunk>,
}

/// Queues one job; it is in the database before this returns.
#[derive(Message)]
#[rtype(result = "Result<Triggered>")]
pub struct Trigger {
    pub agent: String,
    pub script: String,
    pub params: BTreeMap<String, String>,
    /// Names of params whose values are secret.
    pub secret_params: Vec<String>,
    pub timeout_secs: Option<i64>,
    /// The agent must carry every one of these tags (a narrowed key's), else 403.
    pub required_tags: Vec<String>,
}

pub struct Triggered {
    pub job: Job,
    pub agent_online: bool,
}

#[derive(Message)]
#[rtype(result = "Result<FannedOut>")]
pub struct FanOut {
    pub script: String,
    pub params: BTreeMap<String, String>,
    /// Names of params whose values are secret.
    pub secret_params: Vec<String>,
    pub agents: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub only_online: bool,
    pub timeout_secs: Option<i64>,
    pub max_concurrency: Option<Concurrency>,
    pub max_errors: Option<i32>,
}

pub struct FannedOut {
    pub fanout_id: String,
    pub jobs: Vec<FanOutJob>,
    /// `max_concurrency` resolved against the targets.
    pub max_concurrency: Option<i32>,
    /// Agents that were asked for (or matched) but got no job, with why.
    pub skipped: Vec<(String, String)>,
}

/// A job of this fan-out finished (or the re-check found it waiting): take its rollout's
/// next step.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AdvanceRollout {
    pub fanout_id: String,
}

#[derive(Message)]
#[rtype(result = "Result<JobView>")]
pub struct Cancel {
    pub job_id: String,
}

#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct DeleteAgent {
    pub name: String,
}

/// Jobs were queued for these agents behind the supervisor's back (requeued by a sweep,
/// or found by the re-check of queued jobs).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake {
    pub agents: Vec<String>,
}

/// This replica's liveness sweep marked these agents offline (the rows as now stored,
/// and how long each was silent, in ms).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentsSilent {
    pub agents: Vec<(Agent, i64)>,
}

/// What other replicas changed in this tenant (see `cluster::Signal`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClusterNews(pub Vec<Signal>);

/// The re-check's list of cancel orders still outstanding: (agent, job id).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelsOutstanding(pub Vec<(String, String)>);

/// Creates a schedule (checked by `ScheduleSpec::from_request`) and arms its timer.
#[derive(Message)]
#[rtype(result = "Result<crate::db::models::Schedule>")]
pub struct CreateSchedule {
    pub spec: crate::schedule::ScheduleSpec,
}

#[derive(Message)]
#[rtype(result = "Result<crate::db::models::Schedule>")]
pub struct UpdateSchedule {
    pub id: String,
    pub patch: crate::schedule::SchedulePatch,
}

/// Pauses (false) or resumes (true) a schedule; resuming fires next at the next slot from now.
#[derive(Message)]
#[rtype(result = "Result<crate::db::models::Schedule>")]
pub struct SetScheduleEnabled {
    pub id: String,
    pub enabled: bool,
}

#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct DeleteSchedule {
    pub id: String,
}
