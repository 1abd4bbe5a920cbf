//! Rows as Rust structs. Times are milliseconds since the Unix epoch.

use super::schema::*;
use diesel::prelude::*;

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub password_hash: String,
    pub email_verified: bool,
    pub created_at: i64,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = email_codes)]
pub struct EmailCode {
    pub user_id: String,
    pub code_hash: String,
    pub expires_at: i64,
    pub attempts: i32,
    pub created_at: i64,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub id: String,
    pub token_hash: String,
    pub family_id: String,
    pub user_id: String,
    pub tenant_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub name: String,
    pub key_prefix: String,
    pub key_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `admin`, `operator`, `viewer` or `agent` (`auth::permissions::Role`).
    pub role: String,
    /// JSON `auth::permissions::KeyScope`; none: not narrowed.
    pub scope: Option<String>,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships)]
pub struct Membership {
    pub tenant_id: String,
    pub user_id: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = invitations)]
pub struct Invitation {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub role: String,
    pub code_hash: String,
    pub invited_by: Option<String>,
    pub attempts: i32,
    pub expires_at: i64,
    pub created_at: i64,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = password_resets)]
pub struct PasswordReset {
    pub user_id: String,
    pub code_hash: String,
    pub expires_at: i64,
    pub attempts: i32,
    pub created_at: i64,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: String,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    /// What was done or tried, as `resource.verb`: `job.trigger`, `key.create`, ...
    pub action: String,
    pub detail: String,
    pub client_addr: Option<String>,
    pub created_at: i64,
    /// Who, as shown: the user's email, or `key_... (name)`.
    pub actor: Option<String>,
    /// The user's or the key's id.
    pub actor_id: Option<String>,
    /// What it was done to: a job, key, member, agent, ...
    pub target: Option<String>,
    /// `ok` or `denied`.
    pub outcome: String,
}

#[derive(Clone, Debug, Queryable, QueryableByName, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = agents, treat_none_as_null = true)]
pub struct Agent {
    pub tenant_id: String,
    pub name: String,
    /// JSON array of strings.
    pub tags: String,
    pub url: Option<String>,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub version: Option<String>,
    /// JSON array of manifest entries, as last reported.
    pub scripts: String,
    /// False until the agent itself reported a manifest (a manual registration has none).
    pub manifest_reported: bool,
    /// The API key the agent authenticates with; protocol calls must use it.
    pub api_key_id: Option<String>,
    /// SHA-256 of the key a manual registration gave (never stored in clear).
    pub agent_key_hash: Option<String>,
    pub status: String,
    pub heartbeat_interval: i64,
    pub last_heartbeat: Option<i64>,
    pub registered_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = jobs)]
pub struct Job {
    pub id: String,
    pub tenant_id: String,
    pub agent_name: String,
    pub script: String,
    /// JSON object of parameter name -> string value.
    pub params: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration_ms: Option<i64>,
    pub timeout_secs: Option<i64>,
    pub reason: Option<String>,
    pub fanout_id: Option<String>,
    pub schedule_id: Option<String>,
    pub cancel_requested: bool,
    pub attempts: i32,
    pub created_at: i64,
    pub dispatched_at: Option<i64>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// Pending, but waiting for a slot of its fan-out's rollout: not claimable yet.
    pub awaiting_slot: bool,
    /// JSON array of the names of params whose values are secret; None for none.
    pub secret_params: Option<String>,
}

impl Job {
    /// In a terminal status (it changes again only when a late result replaces `lost`).
    pub fn is_finished(&self) -> bool {
        shared_protocol::JobStatus::parse(&self.status).is_some_and(shared_protocol::JobStatus::is_terminal)
    }
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = fanouts)]
pub struct Fanout {
    pub id: String,
    pub tenant_id: String,
    pub script: String,
    pub params: String,
    pub selector: String,
    pub created_at: i64,
    /// Rollout controls: most jobs queued or running at once (resolved from a percent).
    pub max_concurrency: Option<i32>,
    /// Rollout controls: failures after which the jobs not yet handed out are cancelled.
    pub max_errors: Option<i32>,
    /// JSON array of the names of params whose values are secret; None for none.
    pub secret_params: Option<String>,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = schedules, treat_none_as_null = true)]
pub struct Schedule {
    pub id: String,
    pub tenant_id: String,
    /// The one agent it runs on, or None when it targets `tags`.
    pub agent_name: Option<String>,
    /// JSON array of tags: it runs on every online agent that has them all.
    pub tags: Option<String>,
    pub script: String,
    /// As the user wrote it: five fields or an @-shorthand.
    pub cron_expression: String,
    /// IANA name, e.g. "Europe/Berlin".
    pub timezone: String,
    /// JSON object of parameter name -> string value.
    pub params: String,
    pub webhook_url: Option<String>,
    pub timeout_secs: Option<i64>,
    pub enabled: bool,
    /// "skip" or "queue".
    pub overlap: String,
    pub misfire_grace_secs: i64,
    /// The next slot to fire (None while paused); claimed by compare-and-set.
    pub next_fire_at: Option<i64>,
    pub last_fire_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One fire of a schedule: when it was due, what happened and which jobs it made.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = schedule_runs)]
pub struct ScheduleRun {
    pub id: String,
    pub tenant_id: String,
    pub schedule_id: String,
    pub scheduled_for: i64,
    pub fired_at: Option<i64>,
    /// "fired", "skipped", "missed" or "caught_up".
    pub outcome: String,
    /// JSON array of job ids.
    pub job_ids: String,
    pub reason: Option<String>,
    pub created_at: i64,
}

/// A tenant's integration: where (and for which events) notifications go.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = integrations)]
pub struct Integration {
    pub id: String,
    pub tenant_id: String,
    /// slack, discord, teams, pagerduty, datadog, splunk, prometheus or webhook.
    pub kind: String,
    pub name: String,
    /// JSON object of the type's settings, secrets included.
    pub config: String,
    /// JSON array of event types.
    pub events: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One event (or test) on its way to an integration or a schedule's webhook URL.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = deliveries)]
pub struct Delivery {
    pub id: String,
    pub tenant_id: String,
    pub integration_id: Option<String>,
    pub schedule_id: Option<String>,
    pub event_id: Option<String>,
    pub event_type: String,
    /// Masked: scheme://host/….
    pub target_url: String,
    /// "pending", "delivered" or "failed".
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_response_code: Option<i32>,
    pub last_error: Option<String>,
    /// When a pending delivery is due (or its in-flight attempt's lease ends).
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The event envelope as JSON.
    pub payload: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = delivery_attempts)]
pub struct DeliveryAttempt {
    pub delivery_id: String,
    pub attempt: i32,
    pub tenant_id: String,
    pub at: i64,
    pub response_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A PagerDuty incident ScriptMesh triggered and has not resolved yet.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = integration_alerts)]
pub struct IntegrationAlert {
    pub integration_id: String,
    pub dedup_key: String,
    pub tenant_id: String,
    pub opened_at: i64,
}

/// A chunk of a running job's live output (see [`crate::db::jobs::output`]).
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = job_output)]
pub struct OutputRow {
    pub job_id: String,
    pub tenant_id: String,
    /// UTF-8 bytes of the job's live output before this chunk.
    pub start_offset: i64,
    pub end_offset: i64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub data: String,
    pub created_at: i64,
}

impl OutputRow {
    pub fn new(tenant_id: &str, chunk: &shared_protocol::protocol::OutputChunk, now: i64) -> OutputRow {
        OutputRow {
            job_id: chunk.job_id.clone(),
            tenant_id: tenant_id.to_owned(),
            start_offset: chunk.offset as i64,
            end_offset: chunk.end() as i64,
            stream: chunk.stream.as_str().to_owned(),
            data: chunk.data.clone(),
            created_at: now,
        }
    }
}
