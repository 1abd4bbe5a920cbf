//! Generic webhooks: the event envelope POSTed as JSON with `X-ScriptMesh-Event`,
//! `X-ScriptMesh-Delivery`, `X-ScriptMesh-Timestamp` (Unix seconds) and
//! `X-ScriptMesh-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! Receivers recompute the signature over the raw body and reject timestamps older than
//! five minutes (replays). Also: schedules' `webhook_url`s, which get the job itself.

use super::config::WebhookConfig;
use super::delivery::OutboundRequest;
use super::message::Envelope;
use super::render::RenderContext;
use super::{discord, slack, teams};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const EVENT_HEADER: &str = "X-ScriptMesh-Event";
pub const DELIVERY_HEADER: &str = "X-ScriptMesh-Delivery";
pub const TIMESTAMP_HEADER: &str = "X-ScriptMesh-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-ScriptMesh-Signature";

pub fn render(config: &WebhookConfig, envelope: &Envelope, context: &RenderContext) -> OutboundRequest {
    let timestamp = context.now.timestamp();
    let mut request = OutboundRequest::post_json(&config.url, &serde_json::to_value(envelope).unwrap_or_default());
    let signature = sign(&config.secret, timestamp, &request.body);
    request.headers = vec![
        (EVENT_HEADER, envelope.event_type.clone()),
        (DELIVERY_HEADER, context.delivery_id.to_owned()),
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (SIGNATURE_HEADER, format!("sha256={signature}")),
    ];
    request
}

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A schedule's webhook gets the finished job as `GET /jobs/{id}` shows it (unsigned: a
/// schedule has no secret). Slack, Discord and Teams webhook URLs, which refuse arbitrary
/// JSON, get the same message their integrations send instead.
pub fn render_schedule_webhook(url: &str, envelope: &Envelope, context: &RenderContext) -> OutboundRequest {
    let body = match chat_service(url) {
        Some(ChatService::Slack) => slack::message(envelope),
        Some(ChatService::Discord) => discord::message(envelope),
        Some(ChatService::Teams) => teams::message(envelope),
        None => envelope.data.clone(),
    };
    OutboundRequest::post_json(url, &body)
        .header(EVENT_HEADER, envelope.event_type.clone())
        .header(DELIVERY_HEADER, context.delivery_id)
        .header(TIMESTAMP_HEADER, context.now.timestamp().to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChatService {
    Slack,
    Discord,
    Teams,
}

fn chat_service(url: &str) -> Option<ChatService> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_ascii_lowercase();
    if host == "hooks.slack.com" {
        Some(ChatService::Slack)
    } else if matches!(
        host.as_str(),
        "discord.com" | "discordapp.com" | "ptb.discord.com" | "canary.discord.com"
    ) && parsed.path().starts_with("/api/webhooks/")
    {
        Some(ChatService::Discord)
    } else if host.ends_with(".webhook.office.com") || host.ends_with(".logic.azure.com") {
        Some(ChatService::Teams)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::message::tests::failed_job;

    fn context() -> RenderContext<'static> {
        RenderContext {
            delivery_id: "dlv_1",
            now: chrono::DateTime::from_timestamp(1_773_153_200, 0).unwrap(),
            pagerduty_events_url: "https://events.pagerduty.com/v2/enqueue",
            datadog_api_url: "https://api.datadoghq.com",
        }
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let config = WebhookConfig {
            url: "https://example.com/hook".into(),
            secret: "whsec_0123456789abcdef".into(),
        };
        let request = render(&config, &failed_job(), &context());
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header(EVENT_HEADER), Some("job.failed"));
        assert_eq!(header(DELIVERY_HEADER), Some("dlv_1"));
        assert_eq!(header(TIMESTAMP_HEADER), Some("1773153200"));
        let expected = sign("whsec_0123456789abcdef", 1_773_153_200, &request.body);
        assert_eq!(header(SIGNATURE_HEADER), Some(format!("sha256={expected}").as_str()));
        assert_ne!(expected, sign("whsec_0123456789abcdef", 1_773_153_201, &request.body));
        // A known answer, computed independently (Python's hmac module).
        assert_eq!(
            sign("whsec_0123456789abcdef", 1_773_153_200, br#"{"a":1}"#),
            "e02dd2111ebd148318a92e59a048790a2c9ce56c122ec274016f3bc7f0ade9b1"
        );
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["type"], "job.failed");
        assert_eq!(body["data"]["job_id"], "job_1");
    }

    #[test]
    fn schedule_webhooks_get_the_job_or_a_chat_message() {
        let request = render_schedule_webhook("https://hooks.example.com/job-done", &failed_job(), &context());
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body, failed_job().data);
        assert!(request.headers.iter().all(|(name, _)| *name != SIGNATURE_HEADER));
        let slack = render_schedule_webhook("https://hooks.slack.com/services/T/B/x", &failed_job(), &context());
        let body: serde_json::Value = serde_json::from_slice(&slack.body).unwrap();
        assert_eq!(body["text"], "❌ backup.sh failed on prod-1 (exit code 2)");
        assert_eq!(
            chat_service("https://discord.com/api/webhooks/1/x"),
            Some(ChatService::Discord)
        );
        assert_eq!(
            chat_service("https://contoso.webhook.office.com/webhookb2/x"),
            Some(ChatService::Teams)
        );
        assert_eq!(chat_service("https://discord.com/channels/1"), None);
    }
}
