//! Microsoft Teams: `POST {webhook_url}` with an Adaptive Card message
//! (`{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", ...}]}`),
//! the format both Teams incoming webhooks and Power Automate "Workflows" webhooks accept
//! (the older MessageCard works only with the retired Office 365 connectors).

use super::config::ChatWebhookConfig;
use super::delivery::OutboundRequest;
use super::message::{summarize, tail, Envelope, Tone};
use serde_json::{json, Value};

const OUTPUT_MAX: usize = 3000;

pub fn render(config: &ChatWebhookConfig, envelope: &Envelope) -> OutboundRequest {
    OutboundRequest::post_json(&config.webhook_url, &message(envelope))
}

pub fn message(envelope: &Envelope) -> Value {
    let summary = summarize(envelope);
    let color = match summary.tone {
        Tone::Success => "Good",
        Tone::Failure => "Attention",
        Tone::Warning => "Warning",
        Tone::Info => "Accent",
    };
    let facts: Vec<Value> = summary
        .facts
        .iter()
        .map(|(name, value)| json!({"title": name, "value": value}))
        .collect();
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "text": format!("{} {}", summary.tone.emoji(), summary.title),
            "weight": "Bolder",
            "size": "Medium",
            "color": color,
            "wrap": true,
        }),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(output) = &summary.output {
        body.push(json!({"type": "TextBlock", "text": output.label, "weight": "Bolder", "spacing": "Medium"}));
        body.push(json!({
            "type": "TextBlock",
            "text": tail(&output.text, OUTPUT_MAX),
            "fontType": "Monospace",
            "size": "Small",
            "wrap": true,
        }));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": format!("ScriptMesh · {} · {}", envelope.event_type, envelope.id),
        "isSubtle": true,
        "size": "Small",
        "wrap": true,
    }));
    json!({
        "type": "message",
        "summary": summary.title,
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::message::tests::failed_job;

    #[test]
    fn a_failed_job_becomes_an_adaptive_card() {
        let message = message(&failed_job());
        assert_eq!(message["type"], "message");
        let attachment = &message["attachments"][0];
        assert_eq!(attachment["contentType"], "application/vnd.microsoft.card.adaptive");
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["body"][0]["text"], "❌ backup.sh failed on prod-1 (exit code 2)");
        assert_eq!(card["body"][0]["color"], "Attention");
        assert_eq!(
            card["body"][1]["facts"][0],
            json!({"title": "Agent", "value": "prod-1"})
        );
        assert_eq!(card["body"][3]["text"], "disk full");
    }
}
