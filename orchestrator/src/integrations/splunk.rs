//! Splunk HTTP Event Collector: `POST {hec_url}/services/collector/event` with
//! `Authorization: Splunk <token>` and `{"time", "host", "source": "scriptmesh",
//! "sourcetype": "_json", "index"?, "event": <the event envelope>}`.

use super::config::SplunkConfig;
use super::delivery::OutboundRequest;
use super::message::Envelope;
use serde_json::{json, Value};

pub fn render(config: &SplunkConfig, envelope: &Envelope) -> OutboundRequest {
    OutboundRequest::post_json(endpoint(&config.hec_url), &event(config, envelope))
        .header("Authorization", format!("Splunk {}", config.token))
}

/// The event endpoint under a HEC base URL (also accepted: the endpoint itself).
fn endpoint(hec_url: &str) -> String {
    let base = hec_url.trim_end_matches('/');
    if base.ends_with("/services/collector/event") {
        base.to_owned()
    } else if base.ends_with("/services/collector") {
        format!("{base}/event")
    } else {
        format!("{base}/services/collector/event")
    }
}

pub fn event(config: &SplunkConfig, envelope: &Envelope) -> Value {
    let time = envelope.time().timestamp_millis() as f64 / 1000.0;
    let mut event = json!({
        "time": time,
        "host": envelope.agent().unwrap_or("scriptmesh"),
        "source": "scriptmesh",
        "sourcetype": "_json",
        "event": envelope,
    });
    if let Some(index) = &config.index {
        event["index"] = json!(index);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::message::tests::failed_job;

    #[test]
    fn events_carry_the_envelope() {
        let config = SplunkConfig {
            hec_url: "https://splunk.example.com:8088".into(),
            token: "t0k3n".into(),
            index: Some("ops".into()),
        };
        let request = render(&config, &failed_job());
        assert_eq!(request.url, "https://splunk.example.com:8088/services/collector/event");
        assert_eq!(request.headers, vec![("Authorization", "Splunk t0k3n".to_owned())]);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["time"], 1773153131.5);
        assert_eq!(body["host"], "prod-1");
        assert_eq!(body["source"], "scriptmesh");
        assert_eq!(body["sourcetype"], "_json");
        assert_eq!(body["index"], "ops");
        assert_eq!(body["event"]["type"], "job.failed");
        assert_eq!(body["event"]["data"]["job_id"], "job_1");
        assert_eq!(
            endpoint("https://s:8088/services/collector/"),
            "https://s:8088/services/collector/event"
        );
    }
}
