//! PagerDuty Events API v2: `POST {events_url}` (https://events.pagerduty.com/v2/enqueue).
//! A failure triggers an alert whose `dedup_key` is `scriptmesh/<tenant>/<agent>/<script>`;
//! the next success of that agent and script resolves it (with the same key), if ScriptMesh
//! had triggered it. An offline agent alerts as `scriptmesh/<tenant>/<agent>` until it is
//! back online; a missed schedule fire alerts as a warning.

use super::config::PagerDutyConfig;
use super::delivery::OutboundRequest;
use super::message::{summarize, tail, truncate, Envelope, TEST_EVENT};
use super::render::RenderContext;
use serde_json::{json, Map, Value};

/// PagerDuty's limits: summary 1024 characters, dedup_key 255.
const SUMMARY_MAX: usize = 1024;
const DEDUP_KEY_MAX: usize = 255;
const OUTPUT_MAX: usize = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Trigger,
    Resolve,
}

/// What an event does to an alert, for an integration subscribed to `subscribed`; `None`:
/// nothing (PagerDuty is told about alerts, not about everything).
pub fn action_for(event_type: &str, subscribed: &[String]) -> Option<Action> {
    let has = |name: &str| subscribed.iter().any(|s| s == name);
    let on_job_failures = has("job.failed") || has("job.completed");
    match event_type {
        "job.failed" if on_job_failures => Some(Action::Trigger),
        "job.succeeded" if on_job_failures => Some(Action::Resolve),
        "agent.offline" if has("agent.offline") => Some(Action::Trigger),
        "agent.online" if has("agent.offline") => Some(Action::Resolve),
        "schedule.missed" if has("schedule.missed") => Some(Action::Trigger),
        _ => None,
    }
}

/// Which action a stored delivery's event stands for (the planner only stores resolves
/// for alerts that are open).
fn action_of(event_type: &str) -> Action {
    match event_type {
        "job.succeeded" | "agent.online" => Action::Resolve,
        _ => Action::Trigger,
    }
}

/// Whether triggering this event opens an alert a later event resolves (schedule misses
/// and tests are left for people to resolve).
pub fn resolvable(event_type: &str) -> bool {
    matches!(event_type, "job.failed" | "agent.offline")
}

/// The alert an event belongs to.
pub fn dedup_key(envelope: &Envelope) -> String {
    let tenant = &envelope.tenant_id;
    let agent = envelope.agent().unwrap_or("-");
    let key = if envelope.is_job_event() {
        format!("scriptmesh/{tenant}/{agent}/{}", envelope.script().unwrap_or("-"))
    } else if envelope.event_type == "schedule.missed" {
        format!(
            "scriptmesh/{tenant}/schedule/{}",
            envelope.text("schedule_id").unwrap_or("-")
        )
    } else if envelope.event_type == TEST_EVENT {
        format!(
            "scriptmesh/{tenant}/test/{}",
            envelope.text("integration_id").unwrap_or("-")
        )
    } else {
        format!("scriptmesh/{tenant}/{agent}")
    };
    key.chars().take(DEDUP_KEY_MAX).collect()
}

pub fn render(config: &PagerDutyConfig, envelope: &Envelope, context: &RenderContext) -> OutboundRequest {
    let body = event(config, envelope);
    match &config.events_url {
        Some(url) => OutboundRequest::post_json(url, &body),
        None => OutboundRequest::post_json(context.pagerduty_events_url, &body).operator_configured(),
    }
}

pub fn event(config: &PagerDutyConfig, envelope: &Envelope) -> Value {
    let dedup_key = dedup_key(envelope);
    if action_of(&envelope.event_type) == Action::Resolve {
        return json!({
            "routing_key": config.routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let summary = summarize(envelope);
    let severity = match envelope.event_type.as_str() {
        "schedule.missed" => "warning",
        TEST_EVENT => "info",
        _ => "error",
    };
    let source = envelope.agent().unwrap_or("scriptmesh");
    let mut details = Map::new();
    details.insert("event".into(), json!(envelope.event_type));
    details.insert("event_id".into(), json!(envelope.id));
    details.insert("tenant_id".into(), json!(envelope.tenant_id));
    if let Some(data) = envelope.data.as_object() {
        for (name, value) in data {
            let value = match (name.as_str(), value.as_str()) {
                ("stdout" | "stderr", Some(text)) => json!(tail(text, OUTPUT_MAX)),
                _ => value.clone(),
            };
            details.insert(name.clone(), value);
        }
    }
    let mut payload = json!({
        "summary": truncate(&summary.title, SUMMARY_MAX),
        "source": source,
        "severity": severity,
        "timestamp": envelope.finished_at().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "class": envelope.event_type,
        "group": envelope.tenant_id,
        "custom_details": details,
    });
    if let Some(script) = envelope.script() {
        payload["component"] = json!(script);
    }
    json!({
        "routing_key": config.routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": payload,
        "client": "ScriptMesh",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::message::tests::{failed_job, succeeded_job};

    fn config() -> PagerDutyConfig {
        PagerDutyConfig {
            routing_key: "R0UT1NGKEY".into(),
            events_url: None,
        }
    }

    #[test]
    fn a_failure_triggers_and_the_next_success_resolves() {
        let trigger = event(&config(), &failed_job());
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["routing_key"], "R0UT1NGKEY");
        assert_eq!(trigger["dedup_key"], "scriptmesh/ten_1/prod-1/backup.sh");
        assert_eq!(
            trigger["payload"]["summary"],
            "backup.sh failed on prod-1 (exit code 2)"
        );
        assert_eq!(trigger["payload"]["source"], "prod-1");
        assert_eq!(trigger["payload"]["severity"], "error");
        assert_eq!(trigger["payload"]["component"], "backup.sh");
        assert_eq!(trigger["payload"]["timestamp"], "2026-03-10T14:32:11.000Z");
        assert_eq!(trigger["payload"]["custom_details"]["job_id"], "job_1");
        assert_eq!(trigger["payload"]["custom_details"]["exit_code"], 2);
        let resolve = event(&config(), &succeeded_job());
        assert_eq!(
            resolve,
            json!({"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": "scriptmesh/ten_1/prod-1/backup.sh"})
        );
    }

    #[test]
    fn subscriptions_decide_the_action() {
        let subscribed = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            action_for("job.failed", &subscribed(&["job.failed"])),
            Some(Action::Trigger)
        );
        assert_eq!(
            action_for("job.succeeded", &subscribed(&["job.failed"])),
            Some(Action::Resolve)
        );
        assert_eq!(action_for("job.succeeded", &subscribed(&["agent.offline"])), None);
        assert_eq!(
            action_for("agent.online", &subscribed(&["agent.offline"])),
            Some(Action::Resolve)
        );
        assert_eq!(action_for("job.completed", &subscribed(&["job.completed"])), None);
        assert_eq!(
            action_for("job.failed", &subscribed(&["job.completed"])),
            Some(Action::Trigger)
        );
    }
}
