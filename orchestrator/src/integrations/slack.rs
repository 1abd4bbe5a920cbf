//! Slack incoming webhooks: `POST {webhook_url}` with `{"text", "blocks"}` (Block Kit). `text`
//! is the notification and fallback line; the blocks show the facts and the output's end.

use super::config::ChatWebhookConfig;
use super::delivery::OutboundRequest;
use super::message::{summarize, truncate, Envelope};
use serde_json::{json, Value};

/// Block Kit limits: header text 150, a section field 2000, section text 3000 characters.
const HEADER_MAX: usize = 150;
const FIELD_MAX: usize = 2000;
const OUTPUT_MAX: usize = 2800;
const MAX_FIELDS: usize = 10;

pub fn render(config: &ChatWebhookConfig, envelope: &Envelope) -> OutboundRequest {
    OutboundRequest::post_json(&config.webhook_url, &message(envelope))
}

pub fn message(envelope: &Envelope) -> Value {
    let summary = summarize(envelope);
    let headline = format!("{} {}", summary.tone.emoji(), summary.title);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&headline, HEADER_MAX), "emoji": true},
    })];
    let fields: Vec<Value> = summary
        .facts
        .iter()
        .take(MAX_FIELDS)
        .map(|(name, value)| json!({"type": "mrkdwn", "text": truncate(&format!("*{name}*\n{}", escape(value)), FIELD_MAX)}))
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if let Some(output) = &summary.output {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*{}*\n```{}```", output.label, escaped_tail(&output.text, OUTPUT_MAX))},
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("ScriptMesh · {} · {}", envelope.event_type, envelope.id)}],
    }));
    json!({"text": escape(&headline), "blocks": blocks})
}

/// Slack's three control characters in message text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The end of `text`, escaped, at most `max` characters, safe inside a ``` block.
fn escaped_tail(text: &str, max: usize) -> String {
    let text = text.trim_end().replace("```", "`\u{200b}`\u{200b}`");
    let mut pieces: Vec<String> = Vec::new();
    let mut length = 0;
    for ch in text.chars().rev() {
        let piece = escape(&ch.to_string());
        if length + piece.chars().count() > max - 1 {
            pieces.push("…".into());
            break;
        }
        length += piece.chars().count();
        pieces.push(piece);
    }
    pieces.reverse();
    pieces.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::message::tests::failed_job;

    #[test]
    fn a_failed_job_becomes_text_and_blocks() {
        let mut envelope = failed_job();
        envelope.data["stderr"] = json!("x < y && ```boom```\n");
        let message = message(&envelope);
        assert_eq!(message["text"], "❌ backup.sh failed on prod-1 (exit code 2)");
        assert_eq!(message["blocks"][0]["type"], "header");
        assert_eq!(message["blocks"][1]["fields"][0]["text"], "*Agent*\nprod-1");
        let output = message["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(output.starts_with("*stderr*\n```x &lt; y &amp;&amp; `"), "{output}");
        assert_eq!(message["blocks"][3]["type"], "context");
    }

    #[test]
    fn long_output_is_cut_to_fit_a_section() {
        let tail = escaped_tail(&"<".repeat(5000), 100);
        assert!(tail.starts_with('…') && tail.chars().count() <= 100, "{tail}");
        assert!(tail[3..].starts_with("&lt;"));
    }
}
