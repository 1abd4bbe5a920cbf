//! Integrations: recorded events become deliveries to the tenant's integrations (Slack,
//! Discord, Teams, PagerDuty, Datadog, Splunk, Prometheus, webhooks) and to schedules'
//! webhook URLs, which the [`IntegrationDispatcher`] sends, retries and records.
//!
//! The dispatcher runs on its own arbiter and the event bus only `do_send`s to it, so a
//! slow or dead receiver never holds up job processing. Deliveries live in the database
//! (pending ones are resumed after a restart); each target gets its deliveries in order,
//! one at a time, so a PagerDuty resolve never overtakes its trigger.

pub mod config;
pub mod datadog;
pub mod delivery;
pub mod discord;
pub mod message;
pub mod pagerduty;
pub mod prometheus;
pub mod render;
pub mod service;
pub mod slack;
pub mod splunk;
pub mod ssrf;
pub mod teams;
pub mod webhook;

use crate::config::Config;
use crate::db::integrations::{self as store, AlertChange, AttemptResult, PlannedDelivery};
use crate::db::models::{Delivery, DeliveryAttempt, Event, Integration};
use crate::db::{self, Db};
use crate::error::{Error, Result};
use crate::events::{EventType, Recorded};
use crate::metrics::{self, DeliveryOutcome, Metrics};
use actix::prelude::*;
use config::{IntegrationConfig, Kind};
use delivery::{AttemptOutcome, Verdict};
use message::{Envelope, TEST_EVENT};
use render::{RenderContext, Target};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// An attempt holds its delivery this long; longer than any attempt can take, so a lease
/// only runs out when its holder died.
const LEASE: Duration = Duration::from_secs(30);
/// Attempts running at once (each to a different target).
const MAX_IN_FLIGHT: usize = 32;
/// Targets looked at per round.
const PUMP_LIMIT: i64 = 1000;
/// A round even without news: deliveries another replica left, clocks that drifted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Sends a test event to an integration now, through the delivery path; answers the
/// delivery as it stands after its one attempt.
#[derive(Message)]
#[rtype(result = "Result<Delivery>")]
pub struct SendTest {
    pub tenant_id: String,
    pub integration_id: String,
}

pub struct IntegrationDispatcher {
    db: Db,
    config: Arc<Config>,
    metrics: Metrics,
    /// Made in `started`, on the dispatcher's own thread (`awc::Client` is `!Send`).
    client: Option<awc::Client>,
    /// Recorded batches waiting to become deliveries: planned one at a time, in order.
    backlog: VecDeque<Vec<Event>>,
    planning: bool,
    /// Deliveries with an attempt running here.
    in_flight: HashSet<String>,
    pumping: bool,
    repump: bool,
    /// The next timed round (when the earliest retry is due) and its timer.
    wake: Option<(i64, SpawnHandle)>,
}

impl IntegrationDispatcher {
    pub fn new(db: Db, config: Arc<Config>, metrics: Metrics) -> IntegrationDispatcher {
        IntegrationDispatcher {
            db,
            config,
            metrics,
            client: None,
            backlog: VecDeque::new(),
            planning: false,
            in_flight: HashSet::new(),
            pumping: false,
            repump: false,
            wake: None,
        }
    }

    /// Starts the dispatcher on a new arbiter of its own.
    pub fn start_on_own_thread(db: Db, config: Arc<Config>, metrics: Metrics) -> Addr<IntegrationDispatcher> {
        let arbiter = Arbiter::new();
        IntegrationDispatcher::start_in_arbiter(&arbiter.handle(), move |_| {
            IntegrationDispatcher::new(db, config, metrics)
        })
    }

    fn client(&mut self) -> awc::Client {
        self.client.get_or_insert_with(delivery::client).clone()
    }

    fn plan_next(&mut self, ctx: &mut Context<Self>) {
        if self.planning {
            return;
        }
        let Some(batch) = self.backlog.pop_front() else {
            return;
        };
        self.planning = true;
        let (db, config) = (self.db.clone(), self.config.clone());
        ctx.spawn(
            async move { plan(&db, &config, &batch).await }
                .into_actor(self)
                .map(|result, dispatcher, ctx| {
                    dispatcher.planning = false;
                    match result {
                        Ok(0) => {}
                        Ok(created) => {
                            tracing::debug!(created, "deliveries created");
                            dispatcher.pump(ctx);
                        }
                        Err(error) => tracing::error!(%error, "could not create deliveries for recorded events"),
                    }
                    dispatcher.plan_next(ctx);
                }),
        );
    }

    /// One round: starts the attempts that are due, one per target (its oldest pending
    /// delivery), and sets a timer for the earliest one that is not due yet.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.pumping {
            self.repump = true;
            return;
        }
        self.pumping = true;
        let db = self.db.clone();
        ctx.spawn(
            async move { store::pending_heads(&db, PUMP_LIMIT).await }
                .into_actor(self)
                .map(|result, dispatcher, ctx| {
                    dispatcher.pumping = false;
                    match result {
                        Ok(pending) => dispatcher.start_due(pending, ctx),
                        Err(error) => {
                            tracing::warn!(%error, "could not read pending deliveries; trying again shortly");
                            dispatcher.wake_at(db::now_ms() + 1000, ctx);
                        }
                    }
                    if std::mem::take(&mut dispatcher.repump) {
                        dispatcher.pump(ctx);
                    }
                }),
        );
    }

    fn start_due(&mut self, heads: Vec<Delivery>, ctx: &mut Context<Self>) {
        let now = db::now_ms();
        let mut earliest: Option<i64> = None;
        for delivery in heads {
            if self.in_flight.contains(&delivery.id) {
                continue;
            }
            let due = delivery.next_attempt_at.unwrap_or(now);
            if due <= now && self.in_flight.len() < MAX_IN_FLIGHT {
                self.start_attempt(delivery, ctx);
            } else {
                let at = due.max(now + 50);
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        if let Some(at) = earliest {
            self.wake_at(at, ctx);
        }
    }

    fn wake_at(&mut self, at: i64, ctx: &mut Context<Self>) {
        if let Some((planned, handle)) = self.wake {
            if planned <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = Duration::from_millis((at - db::now_ms()).max(0) as u64);
        let handle = ctx.run_later(delay, |dispatcher, ctx| {
            dispatcher.wake = None;
            dispatcher.pump(ctx);
        });
        self.wake = Some((at, handle));
    }

    fn start_attempt(&mut self, delivery: Delivery, ctx: &mut Context<Self>) {
        self.in_flight.insert(delivery.id.clone());
        let id = delivery.id.clone();
        let (db, config, client) = (self.db.clone(), self.config.clone(), self.client());
        let metrics = self.metrics.clone();
        ctx.spawn(
            async move { run_attempt(&db, &config, &metrics, &client, delivery, true).await }
                .into_actor(self)
                .map(move |result, dispatcher, ctx| {
                    dispatcher.in_flight.remove(&id);
                    if let Err(error) = result {
                        tracing::warn!(%error, delivery = %id, "a delivery attempt could not be recorded");
                    }
                    dispatcher.pump(ctx);
                }),
        );
    }
}

impl Actor for IntegrationDispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.client = Some(delivery::client());
        // Deliveries left pending by the last run are resumed now.
        self.pump(ctx);
        ctx.run_interval(SWEEP_INTERVAL, |dispatcher, ctx| dispatcher.pump(ctx));
    }
}

impl Handler<Recorded> for IntegrationDispatcher {
    type Result = ();

    fn handle(&mut self, Recorded(batch): Recorded, ctx: &mut Context<Self>) {
        self.backlog.push_back(batch);
        self.plan_next(ctx);
    }
}

impl Handler<SendTest> for IntegrationDispatcher {
    type Result = ResponseActFuture<Self, Result<Delivery>>;

    fn handle(&mut self, message: SendTest, _: &mut Context<Self>) -> Self::Result {
        let (db, config, client) = (self.db.clone(), self.config.clone(), self.client());
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                let integration = store::find(&db, &message.tenant_id, &message.integration_id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("integration {}", message.integration_id)))?;
                let target = IntegrationConfig::from_stored(&integration.kind, &integration.config)?;
                let now = db::now_ms();
                let envelope = Envelope::test(&integration.tenant_id, &integration.id, &integration.name, now);
                let delivery = Delivery {
                    id: db::new_id("dlv"),
                    tenant_id: integration.tenant_id.clone(),
                    integration_id: Some(integration.id.clone()),
                    schedule_id: None,
                    event_id: None,
                    event_type: TEST_EVENT.into(),
                    target_url: target.shown_target(&config.pagerduty_events_url, &config.datadog_api_url),
                    status: store::PENDING.into(),
                    attempts: 0,
                    max_attempts: 1,
                    last_response_code: None,
                    last_error: None,
                    // Held by this attempt, as a claim would.
                    next_attempt_at: Some(now + LEASE.as_millis() as i64),
                    created_at: now,
                    updated_at: now,
                    payload: serde_json::to_string(&envelope)?,
                };
                store::insert_delivery(&db, &delivery).await?;
                run_attempt(&db, &config, &metrics, &client, delivery.clone(), false)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("integration {}", message.integration_id)))
            }
            .into_actor(self),
        )
    }
}

/// Turns recorded events into deliveries: one per enabled integration subscribed to the
/// event (PagerDuty: per alert action), and one per finished job of a schedule with a
/// webhook URL. Returns how many were created.
async fn plan(db: &Db, config: &Config, events: &[Event]) -> Result<usize> {
    let mut tenants: Vec<String> = events.iter().map(|e| e.tenant_id.clone()).collect();
    tenants.sort();
    tenants.dedup();
    let integrations = store::enabled_of(db, &tenants).await?;
    let completed = EventType::JobCompleted.as_str();
    // Only jobs of a schedule can have a webhook; the cheap test spares parsing the others.
    let mut schedule_ids: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == completed && e.payload.contains("\"schedule_id\":\""))
        .filter_map(|e| Envelope::from_event(e).text("schedule_id").map(str::to_owned))
        .collect();
    schedule_ids.sort();
    schedule_ids.dedup();
    let webhooks: HashMap<(String, String), String> = if schedule_ids.is_empty() {
        HashMap::new()
    } else {
        store::schedule_webhooks(db, &schedule_ids)
            .await?
            .into_iter()
            .map(|(tenant, id, url)| ((tenant, id), url))
            .collect()
    };
    if integrations.is_empty() && webhooks.is_empty() {
        return Ok(0);
    }
    let envelopes: Vec<Envelope> = events.iter().map(Envelope::from_event).collect();

    let subscriptions: Vec<(&Integration, IntegrationConfig, Vec<String>)> = integrations
        .iter()
        .filter_map(|row| match IntegrationConfig::from_stored(&row.kind, &row.config) {
            Ok(parsed) => Some((row, parsed, serde_json::from_str(&row.events).unwrap_or_default())),
            Err(error) => {
                tracing::error!(%error, integration = %row.id, "skipping an integration whose stored config is unreadable");
                None
            }
        })
        .collect();
    let now = db::now_ms();
    let new_delivery = |envelope: &Envelope, target_url: String| -> Result<Delivery> {
        Ok(Delivery {
            id: db::new_id("dlv"),
            tenant_id: envelope.tenant_id.clone(),
            integration_id: None,
            schedule_id: None,
            event_id: Some(envelope.id.clone()),
            event_type: envelope.event_type.clone(),
            target_url,
            status: store::PENDING.into(),
            attempts: 0,
            max_attempts: config.delivery_max_attempts as i32,
            last_response_code: None,
            last_error: None,
            next_attempt_at: Some(now),
            created_at: now,
            updated_at: now,
            payload: serde_json::to_string(envelope)?,
        })
    };
    let mut planned = Vec::new();
    for envelope in &envelopes {
        for (row, parsed, subscribed) in subscriptions
            .iter()
            .filter(|(row, ..)| row.tenant_id == envelope.tenant_id)
        {
            let alert = if parsed.kind() == Kind::PagerDuty {
                let dedup_key = pagerduty::dedup_key(envelope);
                match pagerduty::action_for(&envelope.event_type, subscribed) {
                    None => continue,
                    Some(pagerduty::Action::Trigger) if pagerduty::resolvable(&envelope.event_type) => {
                        AlertChange::Open(dedup_key)
                    }
                    Some(pagerduty::Action::Trigger) => AlertChange::None,
                    Some(pagerduty::Action::Resolve) => AlertChange::Close(dedup_key),
                }
            } else if subscribed.contains(&envelope.event_type) {
                AlertChange::None
            } else {
                continue;
            };
            let mut delivery = new_delivery(
                envelope,
                parsed.shown_target(&config.pagerduty_events_url, &config.datadog_api_url),
            )?;
            delivery.integration_id = Some(row.id.clone());
            planned.push(PlannedDelivery { delivery, alert });
        }
        if envelope.event_type == completed {
            let key = (
                envelope.tenant_id.clone(),
                envelope.text("schedule_id").unwrap_or_default().to_owned(),
            );
            if let Some(url) = webhooks.get(&key) {
                let mut delivery = new_delivery(envelope, config::mask_url(url))?;
                delivery.schedule_id = Some(key.1);
                planned.push(PlannedDelivery {
                    delivery,
                    alert: AlertChange::None,
                });
            }
        }
    }
    Ok(store::create_deliveries(db, planned).await?.len())
}

/// Where a delivery goes now (an integration's current settings, a schedule's current
/// URL), or why it cannot go anywhere.
async fn load_target(db: &Db, delivery: &Delivery) -> Result<Result<Target, String>> {
    if let Some(id) = &delivery.integration_id {
        let Some(integration) = store::find(db, &delivery.tenant_id, id).await? else {
            return Ok(Err("the integration was deleted".into()));
        };
        if !integration.enabled && delivery.event_type != TEST_EVENT {
            return Ok(Err("the integration is disabled".into()));
        }
        let target = match IntegrationConfig::from_stored(&integration.kind, &integration.config) {
            Ok(config) => Ok(Target::Integration(config)),
            Err(error) => Err(format!("the integration's settings cannot be read: {error}")),
        };
        return Ok(target);
    }
    if let Some(id) = &delivery.schedule_id {
        return Ok(match store::schedule_webhook(db, &delivery.tenant_id, id).await? {
            Some(url) => Ok(Target::ScheduleWebhook { url }),
            None => Err("the schedule was deleted or no longer has a webhook_url".into()),
        });
    }
    Ok(Err("the delivery has no target".into()))
}

/// One attempt of `delivery`: claims it (unless the caller holds it already), sends,
/// records the attempt and the delivery's new state. `None` if another attempt took it
/// (or the delivery was deleted meanwhile).
async fn run_attempt(
    db: &Db,
    config: &Config,
    metrics: &Metrics,
    client: &awc::Client,
    delivery: Delivery,
    claim: bool,
) -> Result<Option<Delivery>> {
    let lease_until = db::now_ms() + LEASE.as_millis() as i64;
    if claim && !store::claim(db, &delivery.id, delivery.next_attempt_at, lease_until).await? {
        return Ok(None);
    }
    let attempt = delivery.attempts + 1;
    let target = load_target(db, &delivery).await?;
    let envelope: std::result::Result<Envelope, _> = serde_json::from_str(&delivery.payload);
    let provider = match &target {
        Ok(Target::Integration(settings)) => settings.kind().as_str(),
        Ok(Target::ScheduleWebhook { .. }) => metrics::SCHEDULE_WEBHOOK_PROVIDER,
        Err(_) if delivery.schedule_id.is_some() => metrics::SCHEDULE_WEBHOOK_PROVIDER,
        Err(_) => metrics::UNKNOWN_PROVIDER,
    };
    let outcome = match (target, envelope) {
        (Err(reason), _) => AttemptOutcome::not_sent(Verdict::GiveUp, reason),
        (_, Err(error)) => {
            AttemptOutcome::not_sent(Verdict::GiveUp, format!("the stored event is unreadable: {error}"))
        }
        (Ok(target), Ok(envelope)) => {
            let context = RenderContext {
                delivery_id: &delivery.id,
                now: chrono::Utc::now(),
                pagerduty_events_url: &config.pagerduty_events_url,
                datadog_api_url: &config.datadog_api_url,
            };
            let request = render::render(&target, &envelope, &context);
            delivery::attempt(client, &request, config.allow_private_webhooks).await
        }
    };
    let finished_at = db::now_ms();
    let (status, next_attempt_at, counted_as) = match outcome.verdict {
        Verdict::Delivered => (store::DELIVERED, None, DeliveryOutcome::Delivered),
        Verdict::Retry if attempt < delivery.max_attempts => {
            let wait = delivery::retry_delay(attempt as u32, config.delivery_base_delay, outcome.retry_after);
            (
                store::PENDING,
                Some(finished_at + wait.as_millis() as i64),
                DeliveryOutcome::Retried,
            )
        }
        _ => (store::FAILED, None, DeliveryOutcome::Failed),
    };
    let (code, error) = (outcome.response_code, outcome.error.as_deref().unwrap_or_default());
    if status == store::FAILED {
        tracing::warn!(delivery = %delivery.id, tenant = %delivery.tenant_id, event = %delivery.event_type, attempt, ?code, error, "delivery failed for good");
    } else {
        tracing::info!(delivery = %delivery.id, tenant = %delivery.tenant_id, event = %delivery.event_type, attempt, ?code, error, status, "delivery attempt");
    }
    let updated = store::record_attempt(
        db,
        &AttemptResult {
            attempt: DeliveryAttempt {
                delivery_id: delivery.id.clone(),
                attempt,
                tenant_id: delivery.tenant_id.clone(),
                at: finished_at,
                response_code: outcome.response_code.map(i32::from),
                error: outcome.error.clone(),
                duration_ms: outcome.duration_ms,
            },
            status,
            next_attempt_at,
        },
    )
    .await?;
    metrics.delivery_attempted(provider, counted_as);
    Ok(updated)
}
