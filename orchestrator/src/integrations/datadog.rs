//! Datadog: `POST {api_url}/api/v1/events` with the `DD-API-KEY` header and
//! `{"title", "text", "alert_type", "source_type_name": "scriptmesh", "tags", "aggregation_key", ...}`.
//! The API is https://api.<site> for a configured `site`, else `api_url`, else DATADOG_API_URL.

use super::config::DatadogConfig;
use super::delivery::OutboundRequest;
use super::message::{summarize, tail, truncate, Envelope, Tone};
use super::render::RenderContext;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Datadog's limits: title 100 characters, text 4000, aggregation_key 100.
const TITLE_MAX: usize = 100;
const TEXT_MAX: usize = 4000;
const AGGREGATION_KEY_MAX: usize = 100;
const OUTPUT_MAX: usize = 2500;

pub fn render(config: &DatadogConfig, envelope: &Envelope, context: &RenderContext) -> OutboundRequest {
    let body = event(envelope);
    let (base, tenant_given) = match (&config.api_url, &config.site) {
        (Some(url), _) => (url.trim_end_matches('/').to_owned(), true),
        (None, Some(site)) => (format!("https://api.{site}"), true),
        (None, None) => (context.datadog_api_url.trim_end_matches('/').to_owned(), false),
    };
    let request =
        OutboundRequest::post_json(format!("{base}/api/v1/events"), &body).header("DD-API-KEY", &config.api_key);
    if tenant_given {
        request
    } else {
        request.operator_configured()
    }
}

pub fn event(envelope: &Envelope) -> Value {
    let summary = summarize(envelope);
    let alert_type = match summary.tone {
        Tone::Success => "success",
        Tone::Failure => "error",
        Tone::Warning => "warning",
        Tone::Info => "info",
    };
    let mut text = String::from("%%%\n");
    for (name, value) in &summary.facts {
        text.push_str(&format!("**{name}:** {value}  \n"));
    }
    if let Some(output) = &summary.output {
        text.push_str(&format!(
            "\n**{}**\n```\n{}\n```\n",
            output.label,
            tail(&output.text, OUTPUT_MAX)
        ));
    }
    text.push_str("%%%");
    let mut tags = vec![
        format!("event:{}", envelope.event_type),
        format!("tenant:{}", envelope.tenant_id),
    ];
    for (tag, field) in [
        ("agent", "agent"),
        ("script", "script"),
        ("status", "status"),
        ("schedule", "schedule_id"),
    ] {
        if let Some(value) = envelope.text(field) {
            tags.push(format!("{tag}:{value}"));
        }
    }
    let mut event = json!({
        "title": truncate(&summary.title, TITLE_MAX),
        "text": truncate(&text, TEXT_MAX),
        "alert_type": alert_type,
        "source_type_name": "scriptmesh",
        "tags": tags,
        "aggregation_key": aggregation_key(envelope),
        "date_happened": envelope.time().timestamp(),
        "priority": "normal",
    });
    if let Some(agent) = envelope.agent() {
        event["host"] = json!(agent);
    }
    event
}

/// Groups the events of one agent and script (or one agent) in Datadog's event stream.
fn aggregation_key(envelope: &Envelope) -> String {
    let agent = envelope.agent().unwrap_or("-");
    let key = match envelope.script() {
        Some(script) => format!("scriptmesh/{agent}/{script}"),
        None => format!("scriptmesh/{agent}"),
    };
    if key.chars().count() <= AGGREGATION_KEY_MAX {
        key
    } else {
        format!("scriptmesh/{}", &hex::encode(Sha256::digest(key.as_bytes()))[..64])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::message::tests::{failed_job, succeeded_job};

    #[test]
    fn a_failed_job_becomes_an_error_event() {
        let event = event(&failed_job());
        assert_eq!(event["title"], "backup.sh failed on prod-1 (exit code 2)");
        assert_eq!(event["alert_type"], "error");
        assert_eq!(event["source_type_name"], "scriptmesh");
        assert_eq!(event["aggregation_key"], "scriptmesh/prod-1/backup.sh");
        assert_eq!(event["host"], "prod-1");
        let tags: Vec<&str> = event["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(
            tags,
            [
                "event:job.failed",
                "tenant:ten_1",
                "agent:prod-1",
                "script:backup.sh",
                "status:failed"
            ]
        );
        let text = event["text"].as_str().unwrap();
        assert!(
            text.starts_with("%%%\n") && text.ends_with("%%%") && text.contains("disk full"),
            "{text}"
        );
        assert_eq!(super::event(&succeeded_job())["alert_type"], "success");
    }

    #[test]
    fn the_site_picks_the_api() {
        let context = RenderContext {
            delivery_id: "dlv_1",
            now: chrono::Utc::now(),
            pagerduty_events_url: "https://events.pagerduty.com/v2/enqueue",
            datadog_api_url: "https://api.datadoghq.com",
        };
        let config = |site: Option<&str>, api_url: Option<&str>| DatadogConfig {
            api_key: "k".into(),
            site: site.map(Into::into),
            api_url: api_url.map(Into::into),
        };
        let request = render(&config(None, None), &failed_job(), &context);
        assert_eq!(request.url, "https://api.datadoghq.com/api/v1/events");
        assert!(!request.guarded);
        assert_eq!(request.headers, vec![("DD-API-KEY", "k".to_owned())]);
        let request = render(&config(Some("datadoghq.eu"), None), &failed_job(), &context);
        assert_eq!(request.url, "https://api.datadoghq.eu/api/v1/events");
        assert!(request.guarded);
        let request = render(
            &config(Some("datadoghq.eu"), Some("http://127.0.0.1:9/")),
            &failed_job(),
            &context,
        );
        assert_eq!(request.url, "http://127.0.0.1:9/api/v1/events");
    }
}
