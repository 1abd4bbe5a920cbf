//! Discord webhooks: `POST {webhook_url}` with `{"content", "embeds", "allowed_mentions"}`.
//! `content` stays under Discord's 2000 characters; mentions are switched off so that a
//! script printing `@everyone` pings nobody.

use super::config::DiscordConfig;
use super::delivery::OutboundRequest;
use super::message::{summarize, tail, truncate, Envelope, Tone};
use serde_json::{json, Value};

const CONTENT_MAX: usize = 2000;
const TITLE_MAX: usize = 256;
const FIELD_MAX: usize = 256;
const OUTPUT_MAX: usize = 3000;

pub fn render(config: &DiscordConfig, envelope: &Envelope) -> OutboundRequest {
    let mut body = message(envelope);
    if let Some(username) = &config.username {
        body["username"] = json!(username);
    }
    OutboundRequest::post_json(&config.webhook_url, &body)
}

pub fn message(envelope: &Envelope) -> Value {
    let summary = summarize(envelope);
    let color = match summary.tone {
        Tone::Success => 0x2EB67D,
        Tone::Failure => 0xE01E5A,
        Tone::Warning => 0xECB22E,
        Tone::Info => 0x5865F2,
    };
    let fields: Vec<Value> = summary
        .facts
        .iter()
        .take(25)
        .map(|(name, value)| {
            let value = if value.is_empty() {
                "—".to_owned()
            } else {
                truncate(value, FIELD_MAX)
            };
            json!({"name": name, "value": value, "inline": true})
        })
        .collect();
    let mut embed = json!({
        "title": truncate(&summary.title, TITLE_MAX),
        "color": color,
        "fields": fields,
        "timestamp": envelope.created_at,
        "footer": {"text": format!("ScriptMesh · {}", envelope.event_type)},
    });
    if let Some(output) = &summary.output {
        let text = tail(&output.text, OUTPUT_MAX).replace("```", "`\u{200b}`\u{200b}`");
        embed["description"] = json!(format!("**{}**\n```\n{text}\n```", output.label));
    }
    json!({
        "content": truncate(&format!("{} {}", summary.tone.emoji(), escape_markdown(&summary.title)), CONTENT_MAX),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}

fn escape_markdown(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '\\' | '*' | '_' | '~' | '`' | '|' | '>') {
            escaped.push('\\');
        }
        escaped.push(ch);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::message::tests::failed_job;

    #[test]
    fn a_failed_job_becomes_content_and_an_embed() {
        let mut envelope = failed_job();
        envelope.data["script"] = json!("back_up.sh");
        let message = message(&envelope);
        assert_eq!(message["content"], "❌ back\\_up.sh failed on prod-1 (exit code 2)");
        assert_eq!(message["embeds"][0]["color"], 0xE01E5A);
        assert_eq!(
            message["embeds"][0]["fields"][0],
            json!({"name": "Agent", "value": "prod-1", "inline": true})
        );
        assert_eq!(message["embeds"][0]["description"], "**stderr**\n```\ndisk full\n```");
        assert_eq!(message["allowed_mentions"], json!({"parse": []}));
    }

    #[test]
    fn content_stays_under_the_limit() {
        let mut envelope = failed_job();
        envelope.data["script"] = json!("x".repeat(5000));
        let message = message(&envelope);
        assert!(message["content"].as_str().unwrap().chars().count() <= CONTENT_MAX);
        assert!(message["embeds"][0]["title"].as_str().unwrap().chars().count() <= TITLE_MAX);
    }
}
