//! Integrations, their deliveries (and those to schedules' webhook URLs), every attempt,
//! and PagerDuty alerts still open. A delivery attempt is claimed by compare-and-set on
//! `next_attempt_at` (a lease), so two replicas never send one attempt twice and a crash
//! mid-attempt only delays it until the lease ends.

use super::models::{Delivery, DeliveryAttempt, Integration, IntegrationAlert};
use super::schema::{deliveries, delivery_attempts, integration_alerts, integrations, schedules};
use super::Db;
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

pub async fn insert(db: &Db, integration: &Integration) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::insert_into(integrations::table)
            .values(integration)
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// The tenant's integrations, oldest first.
pub async fn list(db: &Db, tenant_id: &str) -> Result<Vec<Integration>> {
    with_conn!(db, |conn| {
        Ok(integrations::table
            .filter(integrations::tenant_id.eq(tenant_id))
            .order(integrations::id)
            .select(Integration::as_select())
            .load(conn)
            .await?)
    })
}

pub async fn find(db: &Db, tenant_id: &str, id: &str) -> Result<Option<Integration>> {
    with_conn!(db, |conn| {
        Ok(integrations::table
            .filter(integrations::id.eq(id))
            .filter(integrations::tenant_id.eq(tenant_id))
            .select(Integration::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Stores a changed integration; false if it is gone.
pub async fn update(db: &Db, integration: &Integration) -> Result<bool> {
    with_conn!(db, |conn| {
        let changed = diesel::update(
            integrations::table
                .filter(integrations::id.eq(&integration.id))
                .filter(integrations::tenant_id.eq(&integration.tenant_id)),
        )
        .set(integration)
        .execute(conn)
        .await?;
        Ok(changed > 0)
    })
}

/// Deletes an integration with its deliveries, their attempts and its open alerts
/// (foreign keys cascade); false if there was none.
pub async fn delete(db: &Db, tenant_id: &str, id: &str) -> Result<bool> {
    with_conn!(db, |conn| {
        let deleted = diesel::delete(
            integrations::table
                .filter(integrations::id.eq(id))
                .filter(integrations::tenant_id.eq(tenant_id)),
        )
        .execute(conn)
        .await?;
        Ok(deleted > 0)
    })
}

/// The enabled integrations of these tenants.
pub async fn enabled_of(db: &Db, tenant_ids: &[String]) -> Result<Vec<Integration>> {
    with_conn!(db, |conn| {
        Ok(integrations::table
            .filter(integrations::tenant_id.eq_any(tenant_ids))
            .filter(integrations::enabled.eq(true))
            .order(integrations::id)
            .select(Integration::as_select())
            .load(conn)
            .await?)
    })
}

/// (tenant id, schedule id, webhook URL) of those of these schedules that have a webhook URL.
pub async fn schedule_webhooks(db: &Db, schedule_ids: &[String]) -> Result<Vec<(String, String, String)>> {
    let rows: Vec<(String, String, Option<String>)> = with_conn!(db, |conn| {
        schedules::table
            .filter(schedules::id.eq_any(schedule_ids))
            .filter(schedules::webhook_url.is_not_null())
            .select((schedules::tenant_id, schedules::id, schedules::webhook_url))
            .load(conn)
            .await?
    });
    Ok(rows
        .into_iter()
        .filter_map(|(tenant, id, url)| url.map(|url| (tenant, id, url)))
        .collect())
}

/// A schedule's webhook URL, if the schedule exists and has one.
pub async fn schedule_webhook(db: &Db, tenant_id: &str, schedule_id: &str) -> Result<Option<String>> {
    let url: Option<Option<String>> = with_conn!(db, |conn| {
        schedules::table
            .filter(schedules::id.eq(schedule_id))
            .filter(schedules::tenant_id.eq(tenant_id))
            .select(schedules::webhook_url)
            .first(conn)
            .await
            .optional()?
    });
    Ok(url.flatten())
}

/// What creating a delivery does to a PagerDuty alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertChange {
    None,
    /// A trigger: the alert is (or stays) open.
    Open(String),
    /// A resolve: sent only if the alert is open, which it no longer is afterwards.
    Close(String),
}

#[derive(Clone, Debug)]
pub struct PlannedDelivery {
    pub delivery: Delivery,
    pub alert: AlertChange,
}

/// Writes planned deliveries (and the alerts they open or close) in one transaction, in
/// order; returns those written (a resolve of an alert that is not open is dropped).
pub async fn create_deliveries(db: &Db, planned: Vec<PlannedDelivery>) -> Result<Vec<Delivery>> {
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            let mut written = Vec::with_capacity(planned.len());
            for PlannedDelivery { delivery, alert } in planned {
                match &alert {
                    AlertChange::None => {}
                    AlertChange::Open(dedup_key) => {
                        let row = IntegrationAlert {
                            integration_id: delivery.integration_id.clone().unwrap_or_default(),
                            dedup_key: dedup_key.clone(),
                            tenant_id: delivery.tenant_id.clone(),
                            opened_at: delivery.created_at,
                        };
                        diesel::insert_into(integration_alerts::table)
                            .values(&row)
                            .on_conflict_do_nothing()
                            .execute(conn)
                            .await?;
                    }
                    AlertChange::Close(dedup_key) => {
                        let closed = diesel::delete(
                            integration_alerts::table
                                .filter(
                                    integration_alerts::integration_id
                                        .eq(delivery.integration_id.clone().unwrap_or_default()),
                                )
                                .filter(integration_alerts::dedup_key.eq(dedup_key)),
                        )
                        .execute(conn)
                        .await?;
                        if closed == 0 {
                            continue;
                        }
                    }
                }
                diesel::insert_into(deliveries::table)
                    .values(&delivery)
                    .execute(conn)
                    .await?;
                written.push(delivery);
            }
            Ok(written)
        })
        .await
    })
}

pub async fn insert_delivery(db: &Db, delivery: &Delivery) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::insert_into(deliveries::table)
            .values(delivery)
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// The oldest pending delivery of each target (integration or schedule), oldest first:
/// a target's deliveries go out in order, so only its oldest one can be due.
pub async fn pending_heads(db: &Db, limit: i64) -> Result<Vec<Delivery>> {
    use diesel::dsl::min;
    with_conn!(db, |conn| {
        let heads: Vec<Option<String>> = deliveries::table
            .filter(deliveries::status.eq(PENDING))
            .group_by((deliveries::integration_id, deliveries::schedule_id))
            .select(min(deliveries::id))
            .load(conn)
            .await?;
        let mut heads: Vec<String> = heads.into_iter().flatten().collect();
        heads.sort();
        heads.truncate(limit.max(0) as usize);
        Ok(deliveries::table
            .filter(deliveries::id.eq_any(heads))
            .order(deliveries::id)
            .select(Delivery::as_select())
            .load(conn)
            .await?)
    })
}

/// Takes the next attempt of a pending delivery: moves `next_attempt_at` from what was
/// seen to the end of a lease. False if someone else took it (or it changed) meanwhile.
pub async fn claim(db: &Db, id: &str, seen_next_attempt_at: Option<i64>, lease_until: i64) -> Result<bool> {
    with_conn!(db, |conn| {
        let target = deliveries::table
            .filter(deliveries::id.eq(id))
            .filter(deliveries::status.eq(PENDING));
        let changed = match seen_next_attempt_at {
            Some(seen) => {
                diesel::update(target.filter(deliveries::next_attempt_at.eq(seen)))
                    .set(deliveries::next_attempt_at.eq(lease_until))
                    .execute(conn)
                    .await?
            }
            None => {
                diesel::update(target.filter(deliveries::next_attempt_at.is_null()))
                    .set(deliveries::next_attempt_at.eq(lease_until))
                    .execute(conn)
                    .await?
            }
        };
        Ok(changed > 0)
    })
}

/// How an attempt left its delivery.
#[derive(Clone, Debug)]
pub struct AttemptResult {
    pub attempt: DeliveryAttempt,
    pub status: &'static str,
    pub next_attempt_at: Option<i64>,
}

/// Records an attempt and its delivery's new state in one transaction; returns the
/// delivery, or `None` if it was deleted meanwhile (with its integration).
pub async fn record_attempt(db: &Db, result: &AttemptResult) -> Result<Option<Delivery>> {
    let attempt = &result.attempt;
    with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            let changed = diesel::update(deliveries::table.filter(deliveries::id.eq(&attempt.delivery_id)))
                .set((
                    deliveries::status.eq(result.status),
                    deliveries::attempts.eq(attempt.attempt),
                    deliveries::last_response_code.eq(attempt.response_code),
                    deliveries::last_error.eq(&attempt.error),
                    deliveries::next_attempt_at.eq(result.next_attempt_at),
                    deliveries::updated_at.eq(attempt.at),
                ))
                .execute(conn)
                .await?;
            if changed == 0 {
                return Ok(None);
            }
            diesel::insert_into(delivery_attempts::table)
                .values(attempt)
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            Ok(Some(
                deliveries::table
                    .filter(deliveries::id.eq(&attempt.delivery_id))
                    .select(Delivery::as_select())
                    .first(conn)
                    .await?,
            ))
        })
        .await
    })
}

#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub integration_id: Option<String>,
    pub schedule_id: Option<String>,
    pub status: Option<String>,
    /// Only deliveries older than this one (the page cursor).
    pub before_id: Option<String>,
}

/// The tenant's deliveries, newest first.
pub async fn list_deliveries(db: &Db, tenant_id: &str, filter: &DeliveryFilter, limit: i64) -> Result<Vec<Delivery>> {
    with_conn!(db, |conn| {
        let mut query = deliveries::table
            .filter(deliveries::tenant_id.eq(tenant_id))
            .select(Delivery::as_select())
            .order(deliveries::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(id) = &filter.integration_id {
            query = query.filter(deliveries::integration_id.eq(id.clone()));
        }
        if let Some(id) = &filter.schedule_id {
            query = query.filter(deliveries::schedule_id.eq(id.clone()));
        }
        if let Some(status) = &filter.status {
            query = query.filter(deliveries::status.eq(status.clone()));
        }
        if let Some(before) = &filter.before_id {
            query = query.filter(deliveries::id.lt(before.clone()));
        }
        Ok(query.load(conn).await?)
    })
}

pub async fn find_delivery(db: &Db, tenant_id: &str, id: &str) -> Result<Option<Delivery>> {
    with_conn!(db, |conn| {
        Ok(deliveries::table
            .filter(deliveries::id.eq(id))
            .filter(deliveries::tenant_id.eq(tenant_id))
            .select(Delivery::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// The attempts of these deliveries, in order.
pub async fn attempts_of(db: &Db, tenant_id: &str, delivery_ids: &[String]) -> Result<Vec<DeliveryAttempt>> {
    if delivery_ids.is_empty() {
        return Ok(Vec::new());
    }
    with_conn!(db, |conn| {
        Ok(delivery_attempts::table
            .filter(delivery_attempts::tenant_id.eq(tenant_id))
            .filter(delivery_attempts::delivery_id.eq_any(delivery_ids))
            .order((delivery_attempts::delivery_id, delivery_attempts::attempt))
            .select(DeliveryAttempt::as_select())
            .load(conn)
            .await?)
    })
}
