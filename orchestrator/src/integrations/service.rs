//! What the `/integrations` endpoints do: check and store integrations (settings per type,
//! events, the SSRF rule for the URLs a tenant gives), and show them and their deliveries.

use super::config::{self, IntegrationConfig, Kind};
use super::ssrf::{self, GuardError};
use crate::config::Config;
use crate::db::models::{Delivery, DeliveryAttempt, Integration};
use crate::db::{self, format_time, format_time_opt, Db};
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::extract::required_text;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

const MAX_NAME_CHARS: usize = 100;

/// `POST /integrations`. `events` may be given inside `config` (as the documentation
/// shows) or beside it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewIntegration {
    /// slack, discord, teams, pagerduty, datadog, splunk, prometheus or webhook.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// The type's settings (e.g. `webhook_url`, `routing_key`), and optionally `events`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PATCH /integrations/{id}`: what is given changes. `config` fields are merged into the
/// current settings (`null` removes an optional one; a masked secret sent back as GET
/// shows it, e.g. `"pd_l…"`, keeps the current one).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Map<String, Value>>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// A new integration, and the webhook secret it was given (shown only now).
pub struct Created {
    pub integration: Integration,
    pub generated_secret: Option<String>,
}

pub async fn create(db: &Db, settings: &Config, tenant_id: &str, request: NewIntegration) -> Result<Created> {
    let kind = parse_kind(&request.kind)?;
    let name = required_text("name", &request.name, MAX_NAME_CHARS)?;
    let mut fields = request.config;
    let events = take_events(&mut fields, request.events)?.ok_or_else(|| {
        Error::Validation(format!(
            "config.events must list the events to send, e.g. [\"job.failed\"]; the events are {}",
            event_names()
        ))
    })?;
    let events = config::parse_events(kind, &events)?;
    let mut parsed = IntegrationConfig::parse(kind, fields)?;
    guard_urls(&parsed, settings.allow_private_webhooks).await?;
    let generated_secret = parsed.ensure_secret();
    let now = db::now_ms();
    let integration = Integration {
        id: db::new_id("int"),
        tenant_id: tenant_id.to_owned(),
        kind: kind.as_str().to_owned(),
        name,
        config: Value::Object(parsed.to_fields()).to_string(),
        events: serde_json::to_string(&events.iter().map(|e| e.as_str()).collect::<Vec<_>>())?,
        enabled: request.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    db::integrations::insert(db, &integration)
        .await
        .map_err(|error| name_taken(error, &integration.name))?;
    tracing::info!(tenant = %tenant_id, integration = %integration.id, kind = %integration.kind, "integration created");
    Ok(Created {
        integration,
        generated_secret,
    })
}

pub async fn find(db: &Db, tenant_id: &str, id: &str) -> Result<Integration> {
    db::integrations::find(db, tenant_id, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("integration {id}")))
}

pub async fn update(
    db: &Db,
    settings: &Config,
    tenant_id: &str,
    id: &str,
    patch: IntegrationPatch,
) -> Result<Integration> {
    let mut integration = find(db, tenant_id, id).await?;
    let kind = parse_kind(&integration.kind)?;
    if let Some(name) = &patch.name {
        integration.name = required_text("name", name, MAX_NAME_CHARS)?;
    }
    if let Some(enabled) = patch.enabled {
        integration.enabled = enabled;
    }
    let mut changes = patch.config.unwrap_or_default();
    if let Some(events) = take_events(&mut changes, patch.events)? {
        let events = config::parse_events(kind, &events)?;
        integration.events = serde_json::to_string(&events.iter().map(|e| e.as_str()).collect::<Vec<_>>())?;
    }
    if !changes.is_empty() {
        let current = IntegrationConfig::from_stored(&integration.kind, &integration.config)?.to_fields();
        let shown = config::mask_fields(&current);
        let mut merged = current;
        for (field, value) in changes {
            if value.is_null() {
                merged.remove(&field);
            } else if !is_masked_echo(shown.get(&field), &value) {
                merged.insert(field, value);
            }
        }
        let mut parsed = IntegrationConfig::parse(kind, merged)?;
        guard_urls(&parsed, settings.allow_private_webhooks).await?;
        // A webhook's secret cannot be removed, only replaced.
        if let Some(secret) = parsed.ensure_secret() {
            return Err(Error::Validation(format!(
                "config.secret cannot be removed; give a new one of at least 16 characters (e.g. {})",
                config::mask_secret(&secret)
            )));
        }
        integration.config = Value::Object(parsed.to_fields()).to_string();
    }
    integration.updated_at = db::now_ms();
    let name = integration.name.clone();
    if !db::integrations::update(db, &integration)
        .await
        .map_err(|error| name_taken(error, &name))?
    {
        return Err(Error::not_found(format!("integration {id}")));
    }
    Ok(integration)
}

pub async fn delete(db: &Db, tenant_id: &str, id: &str) -> Result<()> {
    if !db::integrations::delete(db, tenant_id, id).await? {
        return Err(Error::not_found(format!("integration {id}")));
    }
    tracing::info!(tenant = %tenant_id, integration = %id, "integration deleted");
    Ok(())
}

/// A secret sent back exactly as GET shows it (`pd_l…`): the caller means "unchanged".
fn is_masked_echo(shown: Option<&Value>, given: &Value) -> bool {
    shown.is_some_and(|shown| shown == given && shown.as_str().is_some_and(|text| text.contains('…')))
}

fn parse_kind(name: &str) -> Result<Kind> {
    Kind::parse(name.trim()).ok_or_else(|| {
        Error::Validation(format!(
            "type must be one of {}",
            Kind::ALL.map(Kind::as_str).join(", ")
        ))
    })
}

fn event_names() -> String {
    EventType::ALL.map(EventType::as_str).join(", ")
}

/// `events` from inside `config` or beside it (the same list if both).
fn take_events(fields: &mut Map<String, Value>, top_level: Option<Vec<String>>) -> Result<Option<Vec<String>>> {
    let inside = match fields.remove("events") {
        None | Some(Value::Null) => None,
        Some(value) => Some(serde_json::from_value::<Vec<String>>(value).map_err(|_| {
            Error::Validation(format!(
                "config.events must be a list of event names: {}",
                event_names()
            ))
        })?),
    };
    match (inside, top_level) {
        (Some(inside), Some(outside)) if inside != outside => Err(Error::Validation(
            "events is given twice (in config and beside it) with different lists; give it once".into(),
        )),
        (inside, outside) => Ok(inside.or(outside)),
    }
}

/// The SSRF rule at creation: every URL the tenant gave must resolve to public addresses.
async fn guard_urls(config: &IntegrationConfig, allow_private: bool) -> Result<()> {
    for (field, text) in config.tenant_urls() {
        let url = url::Url::parse(text).map_err(|_| Error::Validation(format!("config.{field} is not a URL")))?;
        match ssrf::check_url(&url, allow_private).await {
            Ok(_) => {}
            Err(GuardError::Refused(message)) => return Err(Error::Validation(format!("config.{field}: {message}"))),
            Err(GuardError::Unresolvable(message)) => {
                return Err(Error::Validation(format!(
                    "config.{field}: {message}; give a URL whose host resolves"
                )))
            }
        }
    }
    Ok(())
}

fn name_taken(error: Error, name: &str) -> Error {
    match error {
        Error::Conflict { .. } => Error::conflict(
            "integration_exists",
            format!("an integration named {name:?} already exists; pick another name"),
        ),
        other => other,
    }
}

/// An integration as the API shows it: secrets masked, `events` beside and inside `config`.
/// An integration as the API shows it (secrets masked).
#[derive(Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub id: String,
    /// slack, discord, teams, pagerduty, datadog, splunk, prometheus or webhook.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub enabled: bool,
    pub events: Vec<String>,
    /// The type's settings, secrets masked (e.g. `"pd_l…"`), and `events`.
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

pub fn view(integration: &Integration) -> IntegrationView {
    let events: Vec<String> = serde_json::from_str(&integration.events).unwrap_or_default();
    let mut shown = match IntegrationConfig::from_stored(&integration.kind, &integration.config) {
        Ok(parsed) => parsed.masked(),
        Err(_) => Map::new(),
    };
    shown.insert("events".into(), json!(events));
    IntegrationView {
        id: integration.id.clone(),
        kind: integration.kind.clone(),
        name: integration.name.clone(),
        enabled: integration.enabled,
        events,
        config: shown,
        created_at: format_time(integration.created_at),
        updated_at: format_time(integration.updated_at),
    }
}

/// A delivery of an event to an integration or a schedule's webhook, with its attempts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub integration_id: Option<String>,
    pub schedule_id: Option<String>,
    /// The event type, e.g. `job.failed`.
    pub event: String,
    pub event_id: Option<String>,
    /// Where it is sent.
    pub target_url: String,
    /// pending, delivered or failed.
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_response_code: Option<i32>,
    pub last_error: Option<String>,
    /// When the next retry is due; only while pending.
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub attempt_log: Vec<AttemptView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub attempt: i32,
    /// With milliseconds: attempts can be milliseconds apart.
    pub at: String,
    pub response_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A delivery with its attempts, as the API shows it.
pub fn delivery_view(delivery: &Delivery, attempts: &[DeliveryAttempt]) -> DeliveryView {
    let log = attempts
        .iter()
        .filter(|a| a.delivery_id == delivery.id)
        .map(|a| AttemptView {
            attempt: a.attempt,
            at: super::message::format_ms(a.at),
            response_code: a.response_code,
            error: a.error.clone(),
            duration_ms: a.duration_ms,
        })
        .collect();
    DeliveryView {
        id: delivery.id.clone(),
        integration_id: delivery.integration_id.clone(),
        schedule_id: delivery.schedule_id.clone(),
        event: delivery.event_type.clone(),
        event_id: delivery.event_id.clone(),
        target_url: delivery.target_url.clone(),
        status: delivery.status.clone(),
        attempts: delivery.attempts,
        max_attempts: delivery.max_attempts,
        last_response_code: delivery.last_response_code,
        last_error: delivery.last_error.clone(),
        next_attempt_at: if delivery.status == db::integrations::PENDING {
            format_time_opt(delivery.next_attempt_at)
        } else {
            None
        },
        created_at: format_time(delivery.created_at),
        updated_at: format_time(delivery.updated_at),
        attempt_log: log,
    }
}

/// A page of deliveries, newest first; pass `next_cursor` back as `cursor` for the next.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

/// A page of the tenant's deliveries, newest first, with their attempts:
/// `{"deliveries": [...], "next_cursor": ...}`.
pub async fn deliveries_page(
    db: &Db,
    tenant_id: &str,
    mut filter: db::integrations::DeliveryFilter,
    limit: Option<i64>,
) -> Result<DeliveryPage> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Error::Validation("limit must be 1 to 500".into()));
    }
    if let Some(status) = &filter.status {
        let statuses = [
            db::integrations::PENDING,
            db::integrations::DELIVERED,
            db::integrations::FAILED,
        ];
        if !statuses.contains(&status.as_str()) {
            return Err(Error::Validation(format!(
                "status must be one of {}",
                statuses.join(", ")
            )));
        }
    }
    filter.before_id = filter.before_id.filter(|cursor| !cursor.is_empty());
    let mut rows = db::integrations::list_deliveries(db, tenant_id, &filter, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let ids: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
    let attempts = db::integrations::attempts_of(db, tenant_id, &ids).await?;
    Ok(DeliveryPage {
        deliveries: rows.iter().map(|d| delivery_view(d, &attempts)).collect(),
        next_cursor: if has_more {
            rows.last().map(|d| d.id.clone())
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_may_be_inside_config_or_beside_it() {
        let mut fields = json!({"webhook_url": "https://x", "events": ["job.failed"]})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            take_events(&mut fields, None).unwrap(),
            Some(vec!["job.failed".to_owned()])
        );
        assert!(!fields.contains_key("events"));
        let mut fields = Map::new();
        assert_eq!(
            take_events(&mut fields, Some(vec!["agent.offline".into()])).unwrap(),
            Some(vec!["agent.offline".to_owned()])
        );
        let mut fields = json!({"events": ["job.failed"]}).as_object().cloned().unwrap();
        assert!(take_events(&mut fields, Some(vec!["agent.offline".into()])).is_err());
        let mut fields = json!({"events": "job.failed"}).as_object().cloned().unwrap();
        assert!(take_events(&mut fields, None).is_err());
    }
}
