//! Prometheus through a Pushgateway: job runs become gauges pushed (`POST`, text exposition
//! format) to `{pushgateway_url}/metrics/job/<job>/instance/<agent>/script/<script>`.
//!
//! Each agent and script is its own group: a push replaces only the metrics it names, in its
//! own group, so one script's run never erases another's, and a failure keeps the last
//! success's timestamp. Agent events push `scriptmesh_agent_up` to `.../instance/<agent>`.

use super::config::PrometheusConfig;
use super::delivery::OutboundRequest;
use super::message::{Envelope, TEST_EVENT};
use awc::http::Method;
use base64::Engine;
use serde_json::Value;

pub const DEFAULT_JOB: &str = "scriptmesh";
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn render(config: &PrometheusConfig, envelope: &Envelope) -> OutboundRequest {
    let job = config.job.as_deref().unwrap_or(DEFAULT_JOB);
    let base = config.pushgateway_url.trim_end_matches('/');
    let agent = envelope.agent().unwrap_or("scriptmesh");
    let (group, body) = if envelope.is_job_event() {
        let script = envelope.script().unwrap_or_default();
        (
            format!("{}{}{}", segment("instance", agent), "/", segment("script", script)),
            job_metrics(envelope),
        )
    } else if envelope.event_type == TEST_EVENT {
        (segment("instance", "scriptmesh"), test_metrics(envelope))
    } else {
        (segment("instance", agent), agent_metrics(envelope))
    };
    OutboundRequest {
        method: Method::POST,
        url: format!("{base}/metrics/{}/{group}", segment("job", job)),
        content_type: CONTENT_TYPE,
        headers: Vec::new(),
        body: body.into_bytes(),
        guarded: true,
    }
}

/// `label/value` for a grouping key in the URL path: URL-escaped, or base64url (the
/// `@base64` form) when the value has a `/` or is empty, as the Pushgateway requires.
fn segment(label: &str, value: &str) -> String {
    if value.is_empty() || value.contains('/') {
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(value.as_bytes());
        let encoded = if encoded.is_empty() { "=".to_owned() } else { encoded };
        format!("{label}@base64/{encoded}")
    } else {
        let escaped: String = url::form_urlencoded::byte_serialize(value.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        format!("{label}/{escaped}")
    }
}

/// A label value in the exposition format.
fn label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Exposition {
    text: String,
}

impl Exposition {
    fn new() -> Exposition {
        Exposition { text: String::new() }
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &str, value: f64) {
        self.text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}\n"
        ));
    }
}

fn job_metrics(envelope: &Envelope) -> String {
    let data = &envelope.data;
    let labels = format!(
        "{{script=\"{}\",agent=\"{}\"}}",
        label_value(envelope.script().unwrap_or_default()),
        label_value(envelope.agent().unwrap_or_default())
    );
    let success = data.get("status").and_then(Value::as_str) == Some("success");
    let finished = envelope.finished_at().timestamp() as f64;
    let mut out = Exposition::new();
    out.gauge(
        "scriptmesh_job_last_exit_code",
        "Exit code of the script's last finished run (-1 when it had none: timeout, lost, cancelled).",
        &labels,
        data.get("exit_code").and_then(Value::as_i64).unwrap_or(-1) as f64,
    );
    if let Some(ms) = data.get("duration_ms").and_then(Value::as_u64) {
        out.gauge(
            "scriptmesh_job_last_duration_seconds",
            "Duration of the script's last finished run.",
            &labels,
            ms as f64 / 1000.0,
        );
    }
    out.gauge(
        "scriptmesh_job_last_success",
        "1 if the script's last finished run succeeded, else 0.",
        &labels,
        if success { 1.0 } else { 0.0 },
    );
    out.gauge(
        "scriptmesh_job_last_run_timestamp_seconds",
        "When the script's last run finished (Unix time).",
        &labels,
        finished,
    );
    if success {
        out.gauge(
            "scriptmesh_job_last_success_timestamp_seconds",
            "When the script last finished successfully (Unix time).",
            &labels,
            finished,
        );
    } else {
        out.gauge(
            "scriptmesh_job_last_failure_timestamp_seconds",
            "When the script last failed (Unix time).",
            &labels,
            finished,
        );
    }
    out.text
}

fn agent_metrics(envelope: &Envelope) -> String {
    let labels = format!("{{agent=\"{}\"}}", label_value(envelope.agent().unwrap_or_default()));
    let mut out = Exposition::new();
    out.gauge(
        "scriptmesh_agent_up",
        "1 while the agent is online, 0 once it went offline.",
        &labels,
        if envelope.event_type == "agent.online" {
            1.0
        } else {
            0.0
        },
    );
    out.gauge(
        "scriptmesh_agent_status_change_timestamp_seconds",
        "When the agent last went online or offline (Unix time).",
        &labels,
        envelope.time().timestamp() as f64,
    );
    out.text
}

fn test_metrics(envelope: &Envelope) -> String {
    let mut out = Exposition::new();
    out.gauge(
        "scriptmesh_integration_test_timestamp_seconds",
        "When ScriptMesh last sent a test push (Unix time).",
        "",
        envelope.time().timestamp() as f64,
    );
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::message::tests::{failed_job, succeeded_job};

    fn config() -> PrometheusConfig {
        PrometheusConfig {
            pushgateway_url: "http://pushgateway:9091/".into(),
            job: None,
        }
    }

    #[test]
    fn a_job_run_is_pushed_to_its_own_group() {
        let request = render(&config(), &succeeded_job());
        assert_eq!(request.method, Method::POST);
        assert_eq!(
            request.url,
            "http://pushgateway:9091/metrics/job/scriptmesh/instance/prod-1/script/backup.sh"
        );
        let text = String::from_utf8(request.body).unwrap();
        assert!(text.contains("# TYPE scriptmesh_job_last_exit_code gauge\nscriptmesh_job_last_exit_code{script=\"backup.sh\",agent=\"prod-1\"} 0\n"), "{text}");
        assert!(text.contains("scriptmesh_job_last_duration_seconds{script=\"backup.sh\",agent=\"prod-1\"} 4.231\n"));
        assert!(text.contains(
            "scriptmesh_job_last_success_timestamp_seconds{script=\"backup.sh\",agent=\"prod-1\"} 1773153131\n"
        ));
        assert!(!text.contains("failure_timestamp"));
        let text = String::from_utf8(render(&config(), &failed_job()).body).unwrap();
        assert!(text.contains("scriptmesh_job_last_exit_code{script=\"backup.sh\",agent=\"prod-1\"} 2\n"));
        assert!(text.contains("scriptmesh_job_last_success{script=\"backup.sh\",agent=\"prod-1\"} 0\n"));
        assert!(!text.contains("success_timestamp"));
    }

    #[test]
    fn every_sample_line_is_valid_exposition() {
        let text = String::from_utf8(render(&config(), &failed_job()).body).unwrap();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                assert!(comment.starts_with("HELP ") || comment.starts_with("TYPE "), "{line}");
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        }
    }

    #[test]
    fn awkward_names_are_encoded() {
        assert_eq!(segment("script", "a b.sh"), "script/a%20b.sh");
        assert_eq!(segment("script", "dir/x.sh"), "script@base64/ZGlyL3guc2g=");
        assert_eq!(segment("script", ""), "script@base64/=");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
