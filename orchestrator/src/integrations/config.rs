//! Integration types and their settings: what each type needs (checked when an integration
//! is created or changed), which events it takes, and how its settings are shown (secrets
//! masked).

use crate::error::{Error, Result};
use crate::events::EventType;
use rand::distr::{Alphanumeric, SampleString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const MAX_URL_LEN: usize = 2048;
const MAX_SECRET_LEN: usize = 512;
const MIN_WEBHOOK_SECRET_LEN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Slack,
    Discord,
    Teams,
    PagerDuty,
    Datadog,
    Splunk,
    Prometheus,
    Webhook,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Slack,
        Kind::Discord,
        Kind::Teams,
        Kind::PagerDuty,
        Kind::Datadog,
        Kind::Splunk,
        Kind::Prometheus,
        Kind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Slack => "slack",
            Kind::Discord => "discord",
            Kind::Teams => "teams",
            Kind::PagerDuty => "pagerduty",
            Kind::Datadog => "datadog",
            Kind::Splunk => "splunk",
            Kind::Prometheus => "prometheus",
            Kind::Webhook => "webhook",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The events this type can subscribe to. PagerDuty alerts on failures (and resolves by
    /// itself on the next success); Prometheus records job runs and agent liveness.
    pub fn allowed_events(self) -> &'static [EventType] {
        use EventType::*;
        match self {
            Kind::PagerDuty => &[JobFailed, JobCompleted, AgentOffline, ScheduleMissed],
            Kind::Prometheus => &[JobSucceeded, JobFailed, JobCompleted, AgentOnline, AgentOffline],
            _ => &EventType::ALL,
        }
    }
}

/// Checks an `events` list: known names, allowed for the type, at least one; duplicates dropped.
pub fn parse_events(kind: Kind, names: &[String]) -> Result<Vec<EventType>> {
    let known = || EventType::ALL.map(EventType::as_str).join(", ");
    if names.is_empty() {
        return Err(Error::Validation(format!(
            "events must list at least one event type: {}",
            kind.allowed_events()
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut events = Vec::new();
    for name in names {
        let event = EventType::parse(name.trim())
            .ok_or_else(|| Error::Validation(format!("unknown event {name:?}; the events are {}", known())))?;
        if !kind.allowed_events().contains(&event) {
            return Err(Error::Validation(format!(
                "a {} integration does not take {}; it takes {}",
                kind.as_str(),
                event.as_str(),
                kind.allowed_events()
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(events)
}

/// Slack and Teams: an incoming-webhook URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatWebhookConfig {
    pub webhook_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    pub webhook_url: String,
    /// Overrides the webhook's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The integration key of an Events API v2 integration on a PagerDuty service.
    pub routing_key: String,
    /// Default: PAGERDUTY_EVENTS_URL (https://events.pagerduty.com/v2/enqueue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogConfig {
    pub api_key: String,
    /// The Datadog site, e.g. "datadoghq.eu" or "us5.datadoghq.com": the API is https://api.<site>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The API base URL itself (wins over `site`). Default: DATADOG_API_URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkConfig {
    /// The HTTP Event Collector's base URL, e.g. https://splunk.example.com:8088.
    pub hec_url: String,
    /// The HEC token.
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// The Pushgateway's base URL, e.g. http://pushgateway.example.com:9091.
    pub pushgateway_url: String,
    /// The `job` grouping label. Default: "scriptmesh".
    #[serde(default, alias = "job_name", skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The HMAC-SHA256 signing secret; generated when not given.
    #[serde(default)]
    pub secret: String,
}

/// One integration's settings, by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntegrationConfig {
    Slack(ChatWebhookConfig),
    Discord(DiscordConfig),
    Teams(ChatWebhookConfig),
    PagerDuty(PagerDutyConfig),
    Datadog(DatadogConfig),
    Splunk(SplunkConfig),
    Prometheus(PrometheusConfig),
    Webhook(WebhookConfig),
}

impl IntegrationConfig {
    /// Reads and checks the settings of a `kind` integration (without `events`).
    pub fn parse(kind: Kind, fields: Map<String, Value>) -> Result<IntegrationConfig> {
        let config = match kind {
            Kind::Slack => IntegrationConfig::Slack(read(kind, fields)?),
            Kind::Discord => IntegrationConfig::Discord(read(kind, fields)?),
            Kind::Teams => IntegrationConfig::Teams(read(kind, fields)?),
            Kind::PagerDuty => IntegrationConfig::PagerDuty(read(kind, fields)?),
            Kind::Datadog => IntegrationConfig::Datadog(read(kind, fields)?),
            Kind::Splunk => IntegrationConfig::Splunk(read(kind, fields)?),
            Kind::Prometheus => IntegrationConfig::Prometheus(read(kind, fields)?),
            Kind::Webhook => IntegrationConfig::Webhook(read(kind, fields)?),
        };
        config.check()?;
        Ok(config)
    }

    /// Settings as stored (they were checked when written).
    pub fn from_stored(kind: &str, config: &str) -> Result<IntegrationConfig> {
        let kind = Kind::parse(kind).ok_or_else(|| Error::Internal(format!("stored integration kind {kind:?}")))?;
        let fields: Map<String, Value> =
            serde_json::from_str(config).map_err(|e| Error::Internal(format!("stored integration config: {e}")))?;
        IntegrationConfig::parse(kind, fields)
    }

    pub fn kind(&self) -> Kind {
        match self {
            IntegrationConfig::Slack(_) => Kind::Slack,
            IntegrationConfig::Discord(_) => Kind::Discord,
            IntegrationConfig::Teams(_) => Kind::Teams,
            IntegrationConfig::PagerDuty(_) => Kind::PagerDuty,
            IntegrationConfig::Datadog(_) => Kind::Datadog,
            IntegrationConfig::Splunk(_) => Kind::Splunk,
            IntegrationConfig::Prometheus(_) => Kind::Prometheus,
            IntegrationConfig::Webhook(_) => Kind::Webhook,
        }
    }

    /// The settings as a JSON object, secrets in clear (for storage only).
    pub fn to_fields(&self) -> Map<String, Value> {
        let value = match self {
            IntegrationConfig::Slack(c) | IntegrationConfig::Teams(c) => serde_json::to_value(c),
            IntegrationConfig::Discord(c) => serde_json::to_value(c),
            IntegrationConfig::PagerDuty(c) => serde_json::to_value(c),
            IntegrationConfig::Datadog(c) => serde_json::to_value(c),
            IntegrationConfig::Splunk(c) => serde_json::to_value(c),
            IntegrationConfig::Prometheus(c) => serde_json::to_value(c),
            IntegrationConfig::Webhook(c) => serde_json::to_value(c),
        };
        match value {
            Ok(Value::Object(fields)) => fields,
            // Plain structs of strings always serialise to an object.
            _ => Map::new(),
        }
    }

    /// The settings as the API shows them: secrets cut to their first characters, secret
    /// URLs (webhooks carry their token in the path) cut to scheme://host/….
    pub fn masked(&self) -> Map<String, Value> {
        mask_fields(&self.to_fields())
    }

    /// The URLs a tenant gave (with their field), each to pass the SSRF guard.
    pub fn tenant_urls(&self) -> Vec<(&'static str, &str)> {
        match self {
            IntegrationConfig::Slack(c) | IntegrationConfig::Teams(c) => vec![("webhook_url", c.webhook_url.as_str())],
            IntegrationConfig::Discord(c) => vec![("webhook_url", c.webhook_url.as_str())],
            IntegrationConfig::PagerDuty(c) => c.events_url.as_deref().map(|u| ("events_url", u)).into_iter().collect(),
            IntegrationConfig::Datadog(c) => match (&c.api_url, &c.site) {
                (Some(url), _) => vec![("api_url", url.as_str())],
                _ => Vec::new(),
            },
            IntegrationConfig::Splunk(c) => vec![("hec_url", c.hec_url.as_str())],
            IntegrationConfig::Prometheus(c) => vec![("pushgateway_url", c.pushgateway_url.as_str())],
            IntegrationConfig::Webhook(c) => vec![("url", c.url.as_str())],
        }
    }

    /// Where deliveries go, as deliveries show it (scheme://host/…).
    pub fn shown_target(&self, pagerduty_events_url: &str, datadog_api_url: &str) -> String {
        let url = match self {
            IntegrationConfig::Slack(c) | IntegrationConfig::Teams(c) => c.webhook_url.clone(),
            IntegrationConfig::Discord(c) => c.webhook_url.clone(),
            IntegrationConfig::PagerDuty(c) => c.events_url.clone().unwrap_or_else(|| pagerduty_events_url.to_owned()),
            IntegrationConfig::Datadog(c) => match (&c.api_url, &c.site) {
                (Some(url), _) => url.clone(),
                (None, Some(site)) => format!("https://api.{site}"),
                (None, None) => datadog_api_url.to_owned(),
            },
            IntegrationConfig::Splunk(c) => c.hec_url.clone(),
            IntegrationConfig::Prometheus(c) => c.pushgateway_url.clone(),
            IntegrationConfig::Webhook(c) => c.url.clone(),
        };
        mask_url(&url)
    }

    /// Gives a webhook without a secret a new one, and returns it (shown once).
    pub fn ensure_secret(&mut self) -> Option<String> {
        match self {
            IntegrationConfig::Webhook(c) if c.secret.is_empty() => {
                c.secret = format!("whsec_{}", Alphanumeric.sample_string(&mut rand::rng(), 40));
                Some(c.secret.clone())
            }
            _ => None,
        }
    }

    fn check(&self) -> Result<()> {
        match self {
            IntegrationConfig::Slack(c) | IntegrationConfig::Teams(c) => check_url("webhook_url", &c.webhook_url),
            IntegrationConfig::Discord(c) => {
                check_url("webhook_url", &c.webhook_url)?;
                if let Some(name) = &c.username {
                    check_text("username", name, 80)?;
                }
                Ok(())
            }
            IntegrationConfig::PagerDuty(c) => {
                check_secret("routing_key", &c.routing_key)?;
                c.events_url
                    .as_deref()
                    .map_or(Ok(()), |url| check_url("events_url", url))
            }
            IntegrationConfig::Datadog(c) => {
                check_secret("api_key", &c.api_key)?;
                if let Some(site) = &c.site {
                    let valid = !site.is_empty()
                        && site.len() <= 100
                        && site.contains('.')
                        && site
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '-');
                    if !valid {
                        return Err(Error::Validation(
                            "config.site must be a Datadog site such as datadoghq.com, datadoghq.eu or us5.datadoghq.com"
                                .into(),
                        ));
                    }
                }
                c.api_url.as_deref().map_or(Ok(()), |url| check_url("api_url", url))
            }
            IntegrationConfig::Splunk(c) => {
                check_url("hec_url", &c.hec_url)?;
                check_secret("token", &c.token)?;
                if let Some(index) = &c.index {
                    check_label("index", index)?;
                }
                Ok(())
            }
            IntegrationConfig::Prometheus(c) => {
                check_url("pushgateway_url", &c.pushgateway_url)?;
                if let Some(job) = &c.job {
                    check_label("job", job)?;
                }
                Ok(())
            }
            IntegrationConfig::Webhook(c) => {
                check_url("url", &c.url)?;
                if !c.secret.is_empty() {
                    check_secret("secret", &c.secret)?;
                    if c.secret.chars().count() < MIN_WEBHOOK_SECRET_LEN {
                        return Err(Error::Validation(format!(
                            "config.secret must be at least {MIN_WEBHOOK_SECRET_LEN} characters (or leave it out to have one generated)"
                        )));
                    }
                }
                Ok(())
            }
        }
    }
}

fn read<T: DeserializeOwned>(kind: Kind, fields: Map<String, Value>) -> Result<T> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| Error::Validation(format!("config of a {} integration: {e}", kind.as_str())))
}

fn check_url(field: &str, url: &str) -> Result<()> {
    let invalid = || {
        Error::Validation(format!(
            "config.{field} must be an http:// or https:// URL of at most {MAX_URL_LEN} characters"
        ))
    };
    if url.len() > MAX_URL_LEN || url.trim() != url {
        return Err(invalid());
    }
    let parsed = url::Url::parse(url).map_err(|_| invalid())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    Ok(())
}

fn check_secret(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_SECRET_LEN || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Validation(format!(
            "config.{field} must be 1 to {MAX_SECRET_LEN} characters without spaces"
        )));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(Error::Validation(format!(
            "config.{field} must be 1 to {max} characters"
        )));
    }
    Ok(())
}

/// Index and job names: letters, digits, `_`, `-` and `.`.
fn check_label(field: &str, value: &str) -> Result<()> {
    let valid = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Err(Error::Validation(format!(
            "config.{field} must be 1 to 128 letters, digits, '_', '-' or '.'"
        )));
    }
    Ok(())
}

/// Fields that are secrets in themselves.
const SECRET_FIELDS: [&str; 4] = ["routing_key", "api_key", "token", "secret"];
/// URLs whose path and query are the secret (Slack, Discord and Teams webhooks, ...).
const SECRET_URL_FIELDS: [&str; 2] = ["webhook_url", "url"];
/// Base URLs: shown without credentials and query.
const BASE_URL_FIELDS: [&str; 4] = ["events_url", "api_url", "hec_url", "pushgateway_url"];

pub fn mask_fields(fields: &Map<String, Value>) -> Map<String, Value> {
    fields
        .iter()
        .map(|(name, value)| {
            let shown = match value.as_str() {
                Some(text) if SECRET_FIELDS.contains(&name.as_str()) => Value::from(mask_secret(text)),
                Some(text) if SECRET_URL_FIELDS.contains(&name.as_str()) => Value::from(mask_url(text)),
                Some(text) if BASE_URL_FIELDS.contains(&name.as_str()) => Value::from(base_url(text)),
                _ => value.clone(),
            };
            (name.clone(), shown)
        })
        .collect()
}

/// `pd_live_abc123` -> `pd_l…`; short values show nothing of themselves.
pub fn mask_secret(secret: &str) -> String {
    if secret.chars().count() <= 8 {
        return "…".into();
    }
    format!("{}…", secret.chars().take(4).collect::<String>())
}

/// `https://hooks.slack.com/services/T0/B0/xyz` -> `https://hooks.slack.com/…`.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}/…",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default()
            )
        }
        Err(_) => "…".into(),
    }
}

/// A base URL without user, password, query or fragment.
fn base_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => "…".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn parse(kind: &str, value: Value) -> Result<IntegrationConfig> {
        IntegrationConfig::parse(Kind::parse(kind).unwrap(), fields(value))
    }

    #[test]
    fn every_event_type_is_listed() {
        // A new EventType variant fails to compile here until EventType::ALL lists it.
        let position = |event: EventType| match event {
            EventType::JobSucceeded
            | EventType::JobFailed
            | EventType::JobCompleted
            | EventType::JobCancelled
            | EventType::AgentOnline
            | EventType::AgentOffline
            | EventType::AgentRegistered
            | EventType::ScheduleMissed => EventType::ALL.iter().position(|e| *e == event),
        };
        for event in EventType::ALL {
            assert!(position(event).is_some());
            assert_eq!(EventType::parse(event.as_str()), Some(event));
        }
    }

    #[test]
    fn required_fields_per_type() {
        for (kind, missing) in [
            ("slack", "webhook_url"),
            ("discord", "webhook_url"),
            ("teams", "webhook_url"),
            ("pagerduty", "routing_key"),
            ("datadog", "api_key"),
            ("splunk", "hec_url"),
            ("prometheus", "pushgateway_url"),
            ("webhook", "url"),
        ] {
            let error = parse(kind, json!({})).unwrap_err().to_string();
            assert!(error.contains(missing), "{kind}: {error}");
        }
        let error = parse("splunk", json!({"hec_url": "https://s:8088"}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("token"), "{error}");
        assert!(parse(
            "slack",
            json!({"webhook_url": "https://hooks.slack.com/services/T/B/x", "channel": "#x"})
        )
        .unwrap_err()
        .to_string()
        .contains("unknown field"));
        assert!(parse("slack", json!({"webhook_url": "ftp://x/y"})).is_err());
        assert!(parse("webhook", json!({"url": "https://e.com/h", "secret": "short"})).is_err());
        assert!(parse("datadog", json!({"api_key": "k", "site": "not a site"})).is_err());
        assert!(parse("prometheus", json!({"pushgateway_url": "http://p:9091", "job": "a/b"})).is_err());
    }

    #[test]
    fn valid_configs_parse() {
        let config = parse(
            "prometheus",
            json!({"pushgateway_url": "http://p:9091", "job_name": "nightly"}),
        )
        .unwrap();
        assert_eq!(
            config,
            IntegrationConfig::Prometheus(PrometheusConfig {
                pushgateway_url: "http://p:9091".into(),
                job: Some("nightly".into())
            })
        );
        assert!(parse("datadog", json!({"api_key": "abcd", "site": "datadoghq.eu"})).is_ok());
        assert!(parse(
            "splunk",
            json!({"hec_url": "https://s:8088", "token": "t", "index": "main"})
        )
        .is_ok());
        assert!(parse(
            "pagerduty",
            json!({"routing_key": "pd_live_x", "events_url": "http://127.0.0.1:9/e"})
        )
        .is_ok());
    }

    #[test]
    fn events_are_checked_per_type() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_events(Kind::Slack, &names(&["job.failed", "agent.offline", "job.failed"])).unwrap(),
            vec![EventType::JobFailed, EventType::AgentOffline]
        );
        assert!(parse_events(Kind::Slack, &names(&["job.exploded"]))
            .unwrap_err()
            .to_string()
            .contains("unknown event"));
        assert!(parse_events(Kind::Slack, &[]).is_err());
        assert!(parse_events(Kind::PagerDuty, &names(&["agent.registered"])).is_err());
        assert!(parse_events(Kind::Prometheus, &names(&["schedule.missed"])).is_err());
    }

    #[test]
    fn secrets_are_masked() {
        let config = parse(
            "webhook",
            json!({"url": "https://example.com/hooks/abc?token=zzz", "secret": "whsec_0123456789abcdef"}),
        )
        .unwrap();
        assert_eq!(
            Value::Object(config.masked()),
            json!({"url": "https://example.com/…", "secret": "whse…"})
        );
        let config = parse(
            "pagerduty",
            json!({"routing_key": "R0UT1NGKEY1234567890", "events_url": "https://u:p@pd.example:8443/v2/enqueue?x=1"}),
        )
        .unwrap();
        assert_eq!(
            Value::Object(config.masked()),
            json!({"routing_key": "R0UT…", "events_url": "https://pd.example:8443/v2/enqueue"})
        );
        assert_eq!(mask_secret("short"), "…");
        assert_eq!(mask_url("http://127.0.0.1:9000/x/y"), "http://127.0.0.1:9000/…");
    }

    #[test]
    fn webhooks_get_a_generated_secret() {
        let mut config = parse("webhook", json!({"url": "https://example.com/h"})).unwrap();
        let secret = config.ensure_secret().unwrap();
        assert!(secret.starts_with("whsec_") && secret.len() == 46);
        assert_eq!(config.ensure_secret(), None);
    }
}
