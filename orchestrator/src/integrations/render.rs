//! From an event envelope to the HTTP request a target expects: each provider module knows
//! its service's format; this module picks the provider and carries what they share.

use super::config::IntegrationConfig;
use super::delivery::OutboundRequest;
use super::message::Envelope;
use super::{datadog, discord, pagerduty, prometheus, slack, splunk, teams, webhook};
use chrono::{DateTime, Utc};

/// What a rendering may depend on besides the event and the settings.
#[derive(Clone, Debug)]
pub struct RenderContext<'a> {
    /// Sent as X-ScriptMesh-Delivery: the same on every retry, so receivers can drop repeats.
    pub delivery_id: &'a str,
    /// The attempt's time (webhook signatures are made per attempt).
    pub now: DateTime<Utc>,
    /// PAGERDUTY_EVENTS_URL.
    pub pagerduty_events_url: &'a str,
    /// DATADOG_API_URL.
    pub datadog_api_url: &'a str,
}

/// Where a delivery goes.
#[derive(Clone, Debug)]
pub enum Target {
    Integration(IntegrationConfig),
    /// A schedule's `webhook_url`: receives the job as `GET /jobs/{id}` shows it.
    ScheduleWebhook {
        url: String,
    },
}

pub fn render(target: &Target, envelope: &Envelope, context: &RenderContext) -> OutboundRequest {
    match target {
        Target::Integration(config) => match config {
            IntegrationConfig::Slack(c) => slack::render(c, envelope),
            IntegrationConfig::Discord(c) => discord::render(c, envelope),
            IntegrationConfig::Teams(c) => teams::render(c, envelope),
            IntegrationConfig::PagerDuty(c) => pagerduty::render(c, envelope, context),
            IntegrationConfig::Datadog(c) => datadog::render(c, envelope, context),
            IntegrationConfig::Splunk(c) => splunk::render(c, envelope),
            IntegrationConfig::Prometheus(c) => prometheus::render(c, envelope),
            IntegrationConfig::Webhook(c) => webhook::render(c, envelope, context),
        },
        Target::ScheduleWebhook { url } => webhook::render_schedule_webhook(url, envelope, context),
    }
}
