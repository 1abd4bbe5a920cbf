//! What people send to create or change a schedule, checked into a [`ScheduleSpec`]; how a
//! schedule and its runs are shown (the webhook URL masked: it is often a secret).

use super::cron::{parse_timezone, CronExpr};
use super::plan::MAX_MISFIRE_GRACE_SECS;
use crate::db::models::{Schedule, ScheduleRun};
use crate::db::{format_time, format_time_opt};
use crate::error::{Error, Result};
use crate::extract::required_text;
use crate::tenant::validate;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const DEFAULT_MISFIRE_GRACE_SECS: i64 = 60;
const MAX_WEBHOOK_URL_LEN: usize = 2048;

/// `POST /schedules`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewSchedule {
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(alias = "run_script")]
    pub script: String,
    #[serde(alias = "cron")]
    pub cron_expression: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Seconds before the agent kills the script.
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub overlap: Option<String>,
    /// Seconds a missed fire may be late and still run once.
    #[serde(default)]
    pub misfire_grace: Option<u64>,
}

/// `PATCH /schedules/{id}`: absent fields stay; `null` clears the optional ones.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct SchedulePatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub agent: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Option<Option<Vec<String>>>,
    #[serde(default, alias = "run_script")]
    pub script: Option<String>,
    #[serde(default, alias = "cron")]
    pub cron_expression: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub webhook_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub timeout: Option<Option<u64>>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub overlap: Option<String>,
    #[serde(default)]
    pub misfire_grace: Option<u64>,
}

/// A field that is present: `Some(None)` for `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Where a schedule runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Agent(String),
    /// Every online agent that has all these tags.
    Tags(Vec<String>),
}

/// What a schedule does when its previous run is still going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Record the fire as skipped; create no job.
    Skip,
    /// Create the job anyway; it waits in the agent's queue.
    Queue,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
    }

    fn parse(text: &str) -> Result<Overlap> {
        match text.trim() {
            "skip" => Ok(Overlap::Skip),
            "queue" => Ok(Overlap::Queue),
            other => Err(Error::Validation(format!(
                "overlap {other:?} is not one of \"skip\" (no new run while one is going) or \"queue\" (queue it anyway)"
            ))),
        }
    }
}

/// A checked schedule: everything but the agent's existence and manifest, which the
/// tenant's supervisor checks against its registry.
#[derive(Clone, Debug)]
pub struct ScheduleSpec {
    pub target: Target,
    pub script: String,
    pub cron: CronExpr,
    pub timezone: Tz,
    pub params: BTreeMap<String, String>,
    pub webhook_url: Option<String>,
    pub timeout_secs: Option<i64>,
    pub enabled: bool,
    pub overlap: Overlap,
    pub misfire_grace_secs: i64,
}

impl ScheduleSpec {
    pub fn from_request(request: NewSchedule) -> Result<ScheduleSpec> {
        let cron = cron_expression(&request.cron_expression)?;
        let timezone = timezone(request.timezone.as_deref())?;
        Ok(ScheduleSpec {
            target: target(request.agent, request.tags)?,
            script: script(&request.script)?,
            cron,
            timezone,
            params: validate::params(request.params)?,
            webhook_url: webhook_url(request.webhook_url)?,
            timeout_secs: validate::timeout(request.timeout)?,
            enabled: request.enabled.unwrap_or(true),
            overlap: request
                .overlap
                .as_deref()
                .map(Overlap::parse)
                .transpose()?
                .unwrap_or(Overlap::Skip),
            misfire_grace_secs: misfire_grace(request.misfire_grace)?.unwrap_or(DEFAULT_MISFIRE_GRACE_SECS),
        })
    }

    /// Reads a stored schedule back (it was checked when written).
    pub fn from_row(row: &Schedule) -> Result<ScheduleSpec> {
        let corrupt = |what: String| Error::Internal(format!("stored schedule {}: {what}", row.id));
        let tags = row
            .tags
            .as_deref()
            .map(serde_json::from_str::<Vec<String>>)
            .transpose()
            .map_err(|e| corrupt(format!("tags: {e}")))?;
        Ok(ScheduleSpec {
            target: match (row.agent_name.clone(), tags) {
                (Some(agent), _) => Target::Agent(agent),
                (None, Some(tags)) => Target::Tags(tags),
                (None, None) => return Err(corrupt("neither agent nor tags".into())),
            },
            script: row.script.clone(),
            cron: CronExpr::parse(&row.cron_expression).map_err(corrupt)?,
            timezone: parse_timezone(&row.timezone).map_err(corrupt)?,
            params: serde_json::from_str(&row.params).map_err(|e| corrupt(format!("params: {e}")))?,
            webhook_url: row.webhook_url.clone(),
            timeout_secs: row.timeout_secs,
            enabled: row.enabled,
            overlap: Overlap::parse(&row.overlap).map_err(|e| corrupt(e.to_string()))?,
            misfire_grace_secs: row.misfire_grace_secs,
        })
    }

    /// This schedule changed by `patch`, checked like a new one.
    pub fn apply(mut self, patch: SchedulePatch) -> Result<ScheduleSpec> {
        let (mut agent, mut tags) = match self.target {
            Target::Agent(agent) => (Some(agent), None),
            Target::Tags(tags) => (None, Some(tags)),
        };
        // Naming one kind of target replaces the other, unless both are named (refused below).
        if let Some(new_agent) = patch.agent.clone() {
            if new_agent.is_some() && patch.tags.is_none() {
                tags = None;
            }
            agent = new_agent;
        }
        if let Some(new_tags) = patch.tags.clone() {
            if new_tags.is_some() && patch.agent.is_none() {
                agent = None;
            }
            tags = new_tags;
        }
        self.target = target(agent, tags)?;
        if let Some(text) = patch.script {
            self.script = script(&text)?;
        }
        if let Some(text) = patch.cron_expression {
            self.cron = cron_expression(&text)?;
        }
        if let Some(name) = patch.timezone {
            self.timezone = timezone(Some(&name))?;
        }
        if let Some(params) = patch.params {
            self.params = validate::params(params)?;
        }
        if let Some(url) = patch.webhook_url {
            self.webhook_url = webhook_url(url)?;
        }
        if let Some(timeout) = patch.timeout {
            self.timeout_secs = validate::timeout(timeout)?;
        }
        if let Some(enabled) = patch.enabled {
            self.enabled = enabled;
        }
        if let Some(overlap) = patch.overlap {
            self.overlap = Overlap::parse(&overlap)?;
        }
        if let Some(grace) = misfire_grace(patch.misfire_grace)? {
            self.misfire_grace_secs = grace;
        }
        Ok(self)
    }

    /// Whether the fire times differ from `other`'s.
    pub fn timing_differs(&self, other: &ScheduleSpec) -> bool {
        self.cron.source() != other.cron.source() || self.timezone != other.timezone || self.enabled != other.enabled
    }

    /// The first fire after `now_ms`, if enabled.
    pub fn next_fire_after(&self, now_ms: i64) -> Option<i64> {
        if self.enabled {
            self.cron.next_after_ms(&self.timezone, now_ms)
        } else {
            None
        }
    }

    /// The row that stores this spec.
    pub fn to_row(&self, identity: RowIdentity, next_fire_at: Option<i64>, updated_at: i64) -> Schedule {
        let (agent_name, tags) = match &self.target {
            Target::Agent(agent) => (Some(agent.clone()), None),
            Target::Tags(tags) => (None, Some(serde_json::to_string(tags).unwrap_or_else(|_| "[]".into()))),
        };
        Schedule {
            id: identity.id,
            tenant_id: identity.tenant_id,
            agent_name,
            tags,
            script: self.script.clone(),
            cron_expression: self.cron.source().to_owned(),
            timezone: self.timezone.name().to_owned(),
            params: serde_json::to_string(&self.params).unwrap_or_else(|_| "{}".into()),
            webhook_url: self.webhook_url.clone(),
            timeout_secs: self.timeout_secs,
            enabled: self.enabled,
            overlap: self.overlap.as_str().to_owned(),
            misfire_grace_secs: self.misfire_grace_secs,
            next_fire_at,
            last_fire_at: identity.last_fire_at,
            created_at: identity.created_at,
            updated_at,
        }
    }
}

/// What a row keeps across changes of its spec.
pub struct RowIdentity {
    pub id: String,
    pub tenant_id: String,
    pub last_fire_at: Option<i64>,
    pub created_at: i64,
}

impl RowIdentity {
    pub fn of(row: &Schedule) -> RowIdentity {
        RowIdentity {
            id: row.id.clone(),
            tenant_id: row.tenant_id.clone(),
            last_fire_at: row.last_fire_at,
            created_at: row.created_at,
        }
    }
}

fn target(agent: Option<String>, tags: Option<Vec<String>>) -> Result<Target> {
    match (agent, tags) {
        (Some(_), Some(_)) => Err(Error::Validation(
            "give either agent (one agent) or tags (every online agent with all of them), not both".into(),
        )),
        (None, None) => Err(Error::Validation(
            "a schedule needs a target: agent (one agent's name) or tags (every online agent with all of them)".into(),
        )),
        (Some(agent), None) => {
            let agent = agent.trim().to_owned();
            validate::agent_name(&agent)?;
            Ok(Target::Agent(agent))
        }
        (None, Some(tags)) => {
            let tags = validate::tags(&tags)?;
            if tags.is_empty() {
                return Err(Error::Validation("tags must list at least one tag".into()));
            }
            Ok(Target::Tags(tags))
        }
    }
}

fn script(text: &str) -> Result<String> {
    let script = required_text("script", text, 256)?;
    if script.chars().any(char::is_control) {
        return Err(Error::Validation("script must not contain control characters".into()));
    }
    Ok(script)
}

/// Most fire times `GET /schedules/preview` lists at once.
pub const MAX_PREVIEW_FIRES: usize = 20;

/// The next `count` fire times of an expression in a time zone, strictly after `after`,
/// checked exactly as creating a schedule checks them (same errors): what the dashboard's
/// schedule form shows as the user types.
pub fn preview_fires(
    cron_text: &str,
    timezone_name: Option<&str>,
    count: usize,
    after: DateTime<Utc>,
) -> Result<(CronExpr, Tz, Vec<DateTime<Utc>>)> {
    let cron = cron_expression(cron_text)?;
    let timezone = timezone(timezone_name)?;
    let fires = std::iter::successors(cron.next_after(&timezone, after), |previous| {
        cron.next_after(&timezone, *previous)
    })
    .take(count.min(MAX_PREVIEW_FIRES))
    .collect();
    Ok((cron, timezone, fires))
}

fn cron_expression(text: &str) -> Result<CronExpr> {
    CronExpr::parse(text)
        .map_err(|why| Error::Validation(format!("cron_expression {:?} is not valid: {why}", text.trim())))
}

fn timezone(name: Option<&str>) -> Result<Tz> {
    match name.map(str::trim) {
        None | Some("") => Ok(Tz::UTC),
        Some(name) => parse_timezone(name).map_err(|why| Error::Validation(format!("timezone {why}"))),
    }
}

fn misfire_grace(secs: Option<u64>) -> Result<Option<i64>> {
    match secs {
        Some(secs) if secs > MAX_MISFIRE_GRACE_SECS as u64 => Err(Error::Validation(format!(
            "misfire_grace must be 0 to {MAX_MISFIRE_GRACE_SECS} seconds"
        ))),
        other => Ok(other.map(|secs| secs as i64)),
    }
}

/// An http(s) URL of at most 2048 characters; empty means none.
fn webhook_url(url: Option<String>) -> Result<Option<String>> {
    let Some(url) = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let invalid = || {
        Error::Validation(format!(
            "webhook_url must be an http:// or https:// URL of at most {MAX_WEBHOOK_URL_LEN} characters"
        ))
    };
    if url.len() > MAX_WEBHOOK_URL_LEN {
        return Err(invalid());
    }
    let parsed = url::Url::parse(&url).map_err(|_| invalid())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    Ok(Some(url))
}

/// Webhook URLs are shown as scheme and host only: the path and query often hold the secret.
pub use crate::integrations::config::mask_url;

/// A schedule as the API shows it.
/// A schedule as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub id: String,
    /// The agent it runs on, or null when it targets `tags`.
    pub agent: Option<String>,
    /// Every agent carrying all these tags, or null when it targets one `agent`.
    pub tags: Option<Vec<String>>,
    pub script: String,
    #[schema(example = "0 2 * * *")]
    pub cron_expression: String,
    pub timezone: String,
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// Masked: credentials and query are hidden.
    pub webhook_url: Option<String>,
    pub timeout: Option<i64>,
    pub enabled: bool,
    /// `active` or `paused`.
    pub status: &'static str,
    /// `skip`, `queue` or `allow`: what a fire does while the previous run is still going.
    pub overlap: String,
    pub misfire_grace: i64,
    pub next_fire: Option<String>,
    pub last_fire: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

pub fn view(row: &Schedule) -> ScheduleView {
    let tags: Option<Vec<String>> = row.tags.as_deref().and_then(|t| serde_json::from_str(t).ok());
    let params: Map<String, Value> = serde_json::from_str(&row.params).unwrap_or_default();
    ScheduleView {
        id: row.id.clone(),
        agent: row.agent_name.clone(),
        tags,
        script: row.script.clone(),
        cron_expression: row.cron_expression.clone(),
        timezone: row.timezone.clone(),
        params,
        webhook_url: row.webhook_url.as_deref().map(mask_url),
        timeout: row.timeout_secs,
        enabled: row.enabled,
        status: if row.enabled { "active" } else { "paused" },
        overlap: row.overlap.clone(),
        misfire_grace: row.misfire_grace_secs,
        next_fire: format_time_opt(row.next_fire_at),
        last_fire: format_time_opt(row.last_fire_at),
        created_at: format_time(row.created_at),
        updated_at: format_time(row.updated_at),
    }
}

/// One fire of a schedule.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleRunView {
    pub id: String,
    /// When it was due.
    pub scheduled_for: String,
    pub fired_at: Option<String>,
    /// What came of it, e.g. `fired`, `caught_up`, `skipped`.
    pub outcome: String,
    pub job_ids: Vec<String>,
    pub reason: Option<String>,
}

/// One fire of a schedule as the API shows it.
pub fn run_view(run: &ScheduleRun) -> ScheduleRunView {
    ScheduleRunView {
        id: run.id.clone(),
        scheduled_for: format_time(run.scheduled_for),
        fired_at: format_time_opt(run.fired_at),
        outcome: run.outcome.clone(),
        job_ids: serde_json::from_str(&run.job_ids).unwrap_or_default(),
        reason: run.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> Result<ScheduleSpec> {
        ScheduleSpec::from_request(serde_json::from_value(body).unwrap())
    }

    #[test]
    fn a_preview_lists_the_next_fires_in_the_time_zone() {
        let after = DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (_, timezone, fires) = preview_fires("0 2 * * *", Some("Europe/Berlin"), 3, after).unwrap();
        assert_eq!(timezone, Tz::Europe__Berlin);
        let shown: Vec<String> = fires.iter().map(|t| t.to_rfc3339()).collect();
        // 02:00 CET is 01:00 UTC.
        assert_eq!(
            shown,
            [
                "2026-03-11T01:00:00+00:00",
                "2026-03-12T01:00:00+00:00",
                "2026-03-13T01:00:00+00:00"
            ]
        );
        let (_, _, many) = preview_fires("* * * * *", None, 500, after).unwrap();
        assert_eq!(many.len(), MAX_PREVIEW_FIRES);
        assert!(matches!(
            preview_fires("61 * * * *", None, 5, after),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            preview_fires("* * * * *", Some("Mars/Olympus"), 5, after),
            Err(Error::Validation(_))
        ));
    }

    #[test]
    fn the_spec_example_is_accepted_with_defaults() {
        let spec = request(json!({
            "agent": "prod-server-1",
            "script": "backup.sh",
            "cron_expression": "0 2 * * *",
            "params": {"target": "s3://my-bucket"},
            "webhook_url": "https://hooks.example.com/job-done",
            "timeout": 600
        }))
        .unwrap();
        assert_eq!(spec.target, Target::Agent("prod-server-1".into()));
        assert_eq!(spec.timezone, Tz::UTC);
        assert_eq!(spec.timeout_secs, Some(600));
        assert_eq!(spec.overlap, Overlap::Skip);
        assert_eq!(spec.misfire_grace_secs, 60);
        assert!(spec.enabled);
        assert_eq!(spec.params["target"], "s3://my-bucket");
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        for (body, says) in [
            (
                json!({"script": "a.sh", "cron_expression": "* * * * *"}),
                "needs a target",
            ),
            (
                json!({"agent": "a", "tags": ["x"], "script": "a.sh", "cron_expression": "* * * * *"}),
                "not both",
            ),
            (
                json!({"tags": [], "script": "a.sh", "cron_expression": "* * * * *"}),
                "at least one tag",
            ),
            (
                json!({"agent": "a", "script": " ", "cron_expression": "* * * * *"}),
                "script",
            ),
            (
                json!({"agent": "a", "script": "a.sh", "cron_expression": "0 0 * * * *"}),
                "seconds",
            ),
            (
                json!({"agent": "a", "script": "a.sh", "cron_expression": "* * * * *", "timezone": "Mars/Base"}),
                "IANA",
            ),
            (
                json!({"agent": "a", "script": "a.sh", "cron_expression": "* * * * *", "overlap": "maybe"}),
                "overlap",
            ),
            (
                json!({"agent": "a", "script": "a.sh", "cron_expression": "* * * * *", "misfire_grace": 999_999_999}),
                "misfire_grace",
            ),
            (
                json!({"agent": "a", "script": "a.sh", "cron_expression": "* * * * *", "webhook_url": "ftp://x/y"}),
                "webhook_url",
            ),
            (
                json!({"agent": "a", "script": "a.sh", "cron_expression": "* * * * *", "webhook_url": "not a url"}),
                "webhook_url",
            ),
            (
                json!({"agent": "a", "script": "a.sh", "cron_expression": "* * * * *", "timeout": 0}),
                "timeout",
            ),
        ] {
            match request(body.clone()) {
                Err(Error::Validation(message)) => assert!(message.contains(says), "{body}: {message}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let long = format!("https://example.com/{}", "a".repeat(2100));
        assert!(
            request(json!({"agent": "a", "script": "a.sh", "cron_expression": "@daily", "webhook_url": long})).is_err()
        );
    }

    #[test]
    fn webhook_urls_are_shown_masked() {
        assert_eq!(
            mask_url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            mask_url("http://user:pw@10.0.0.5:8080/hook?token=s"),
            "http://10.0.0.5:8080/…"
        );
        assert_eq!(mask_url("https://example.com"), "https://example.com/…");
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let spec = request(json!({
            "agent": "web-1", "script": "a.sh", "cron_expression": "@daily",
            "webhook_url": "https://h.example/x", "timeout": 30
        }))
        .unwrap();
        let patch: SchedulePatch = serde_json::from_value(json!({"tags": ["prod"], "timeout": null})).unwrap();
        let changed = spec.clone().apply(patch).unwrap();
        assert_eq!(changed.target, Target::Tags(vec!["prod".into()]));
        assert_eq!(changed.timeout_secs, None);
        assert_eq!(changed.webhook_url.as_deref(), Some("https://h.example/x"));
        assert!(!changed.timing_differs(&spec));

        let patch: SchedulePatch =
            serde_json::from_value(json!({"cron_expression": "0 3 * * *", "timezone": "Europe/Berlin"})).unwrap();
        let changed = spec.clone().apply(patch).unwrap();
        assert!(changed.timing_differs(&spec));
        assert_eq!(changed.target, spec.target);

        let both: SchedulePatch = serde_json::from_value(json!({"agent": "b", "tags": ["x"]})).unwrap();
        assert!(spec.clone().apply(both).is_err());
        let none: SchedulePatch = serde_json::from_value(json!({"agent": null})).unwrap();
        assert!(spec.apply(none).is_err());
    }
}
