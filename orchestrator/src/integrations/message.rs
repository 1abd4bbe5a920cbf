//! What is delivered: the event envelope (stored with each delivery, rendered by each
//! provider at send time) and the human summary chat-like providers build their messages from.

use crate::db::models::Event;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The event type of a test delivery (`POST /integrations/{id}/test`).
pub const TEST_EVENT: &str = "test";

/// An event as integrations see it: `data` is the job as `GET /jobs/{id}` shows it (job
/// events), `{agent, status, tags}` (agent events) or the missed fire (schedule.missed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub tenant_id: String,
    /// RFC 3339 with milliseconds.
    pub created_at: String,
    pub data: Value,
}

impl Envelope {
    pub fn from_event(event: &Event) -> Envelope {
        Envelope {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            tenant_id: event.tenant_id.clone(),
            created_at: format_ms(event.created_at),
            data: serde_json::from_str(&event.payload).unwrap_or(Value::Null),
        }
    }

    /// The event a test delivery sends.
    pub fn test(tenant_id: &str, integration_id: &str, integration_name: &str, now_ms: i64) -> Envelope {
        Envelope {
            id: crate::db::new_id("evt"),
            event_type: TEST_EVENT.into(),
            tenant_id: tenant_id.into(),
            created_at: format_ms(now_ms),
            data: json!({
                "integration_id": integration_id,
                "integration": integration_name,
                "message": format!("Test event from ScriptMesh: the integration {integration_name} works."),
            }),
        }
    }

    pub fn text(&self, field: &str) -> Option<&str> {
        self.data.get(field).and_then(Value::as_str)
    }

    pub fn agent(&self) -> Option<&str> {
        self.text("agent")
    }

    pub fn script(&self) -> Option<&str> {
        self.text("script")
    }

    pub fn is_job_event(&self) -> bool {
        self.event_type.starts_with("job.")
    }

    /// When the event happened.
    pub fn time(&self) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&self.created_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now())
    }

    /// When the job finished, for job events; else when the event happened.
    pub fn finished_at(&self) -> DateTime<Utc> {
        self.text("completed_at")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| self.time())
    }
}

pub fn format_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// How an event reads: good news, bad news, worth a look, or just so you know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Success,
    Failure,
    Warning,
    Info,
}

impl Tone {
    pub fn emoji(self) -> &'static str {
        match self {
            Tone::Success => "✅",
            Tone::Failure => "❌",
            Tone::Warning => "⚠️",
            Tone::Info => "ℹ️",
        }
    }
}

/// A job's output worth showing: stderr of a failure (stdout when stderr is empty), stdout
/// of a success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub label: &'static str,
    pub text: String,
}

/// One event in words, for Slack, Discord, Teams and Datadog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// One line, e.g. "backup.sh failed on prod-1 (exit code 2)".
    pub title: String,
    pub tone: Tone,
    pub facts: Vec<(&'static str, String)>,
    pub output: Option<Output>,
}

pub fn summarize(envelope: &Envelope) -> Summary {
    let data = &envelope.data;
    let text = |field: &str| data.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
    match envelope.event_type.as_str() {
        t if t.starts_with("job.") => summarize_job(data),
        "agent.online" | "agent.offline" | "agent.registered" => {
            let agent = text("agent");
            let (title, tone) = match envelope.event_type.as_str() {
                "agent.online" => (format!("Agent {agent} is online"), Tone::Success),
                "agent.offline" => (format!("Agent {agent} is offline"), Tone::Warning),
                _ => (format!("Agent {agent} registered"), Tone::Info),
            };
            let mut facts = vec![("Agent", agent)];
            if let Some(status) = data.get("status").and_then(Value::as_str) {
                facts.push(("Status", status.to_owned()));
            }
            let tags = string_list(data.get("tags"));
            if !tags.is_empty() {
                facts.push(("Tags", tags.join(", ")));
            }
            Summary {
                title,
                tone,
                facts,
                output: None,
            }
        }
        "schedule.missed" => {
            let script = text("script");
            let when = text("scheduled_for");
            let mut facts = vec![("Schedule", text("schedule_id")), ("Script", script.clone())];
            if let Some(agent) = data.get("agent").and_then(Value::as_str) {
                facts.push(("Agent", agent.to_owned()));
            }
            let tags = string_list(data.get("tags"));
            if !tags.is_empty() {
                facts.push(("Tags", tags.join(", ")));
            }
            facts.push(("Cron", text("cron_expression")));
            facts.push(("Scheduled for", when.clone()));
            if let Some(reason) = data.get("reason").and_then(Value::as_str) {
                facts.push(("Reason", reason.to_owned()));
            }
            Summary {
                title: format!("Schedule of {script} missed its run at {when}"),
                tone: Tone::Warning,
                facts,
                output: None,
            }
        }
        TEST_EVENT => Summary {
            title: text("message"),
            tone: Tone::Info,
            facts: vec![("Integration", text("integration"))],
            output: None,
        },
        other => Summary {
            title: format!("ScriptMesh event {other}"),
            tone: Tone::Info,
            facts: Vec::new(),
            output: None,
        },
    }
}

fn summarize_job(data: &Value) -> Summary {
    let text = |field: &str| data.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (agent, script, status) = (text("agent"), text("script"), text("status"));
    let exit_code = data.get("exit_code").and_then(Value::as_i64);
    let (title, tone) = match status.as_str() {
        "success" => (format!("{script} succeeded on {agent}"), Tone::Success),
        "failed" => match exit_code {
            Some(code) => (format!("{script} failed on {agent} (exit code {code})"), Tone::Failure),
            None => (format!("{script} failed on {agent}"), Tone::Failure),
        },
        "timeout" => (format!("{script} timed out on {agent}"), Tone::Failure),
        "lost" => (format!("{script} was lost on {agent}"), Tone::Failure),
        "cancelled" => (format!("{script} was cancelled on {agent}"), Tone::Warning),
        other => (format!("{script} on {agent}: {other}"), Tone::Info),
    };
    let mut facts = vec![("Agent", agent), ("Script", script), ("Status", status.clone())];
    if let Some(code) = exit_code {
        facts.push(("Exit code", code.to_string()));
    }
    if let Some(ms) = data.get("duration_ms").and_then(Value::as_u64) {
        facts.push(("Duration", format!("{:.1} s", ms as f64 / 1000.0)));
    }
    facts.push(("Job", text("job_id")));
    if let Some(schedule) = data.get("schedule_id").and_then(Value::as_str) {
        facts.push(("Schedule", schedule.to_owned()));
    }
    if let Some(reason) = data.get("reason").and_then(Value::as_str) {
        facts.push(("Reason", reason.to_owned()));
    }
    let (stdout, stderr) = (text("stdout"), text("stderr"));
    let output = match tone {
        Tone::Success if !stdout.trim().is_empty() => Some(Output {
            label: "stdout",
            text: stdout,
        }),
        Tone::Failure if !stderr.trim().is_empty() => Some(Output {
            label: "stderr",
            text: stderr,
        }),
        Tone::Failure if !stdout.trim().is_empty() => Some(Output {
            label: "stdout",
            text: stdout,
        }),
        _ => None,
    };
    Summary {
        title,
        tone,
        facts,
        output,
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// At most `max` characters of `text`, its start cut (`…` in front): the end of a script's
/// output says how it ended.
pub fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let skip = count - max.saturating_sub(1);
    format!("…{}", text.chars().skip(skip).collect::<String>())
}

/// At most `max` characters, cut at the end with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    format!("{}…", text.chars().take(max.saturating_sub(1)).collect::<String>())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A job.failed envelope as the event bus records it.
    pub fn failed_job() -> Envelope {
        Envelope {
            id: "evt_1".into(),
            event_type: "job.failed".into(),
            tenant_id: "ten_1".into(),
            created_at: "2026-03-10T14:32:11.500Z".into(),
            data: json!({
                "job_id": "job_1", "status": "failed", "exit_code": 2, "stdout": "starting\n",
                "stderr": "disk full\n", "duration_ms": 4231, "completed_at": "2026-03-10T14:32:11Z",
                "agent": "prod-1", "script": "backup.sh", "params": {}, "schedule_id": null,
            }),
        }
    }

    pub fn succeeded_job() -> Envelope {
        let mut envelope = failed_job();
        envelope.event_type = "job.succeeded".into();
        envelope.data["status"] = json!("success");
        envelope.data["exit_code"] = json!(0);
        envelope.data["stdout"] = json!("Backup complete.\n");
        envelope.data["stderr"] = json!("");
        envelope
    }

    #[test]
    fn jobs_read_as_what_happened() {
        let summary = summarize(&failed_job());
        assert_eq!(summary.title, "backup.sh failed on prod-1 (exit code 2)");
        assert_eq!(summary.tone, Tone::Failure);
        assert!(summary.facts.contains(&("Duration", "4.2 s".into())));
        assert_eq!(
            summary.output,
            Some(Output {
                label: "stderr",
                text: "disk full\n".into()
            })
        );
        let summary = summarize(&succeeded_job());
        assert_eq!(summary.title, "backup.sh succeeded on prod-1");
        assert_eq!(summary.output.unwrap().label, "stdout");
    }

    #[test]
    fn long_output_keeps_its_end() {
        assert_eq!(tail("abcdef", 4), "…def");
        assert_eq!(tail("abc\n", 4), "abc");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("ab", 4), "ab");
    }
}
