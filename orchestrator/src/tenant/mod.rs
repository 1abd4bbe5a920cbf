//! Tenant actors. The [`TenantRegistry`] maps a tenant id to its [`TenantSupervisor`],
//! starting supervisors lazily (spread over a few arbiters) under actix `Supervisor`s that
//! restart them on failure. Tenants never share a supervisor.

pub mod messages;
pub mod supervisor;
pub mod validate;

pub use supervisor::TenantSupervisor;

use crate::config::Config;
use crate::db::{self, Db};
use crate::error::Result;
use crate::events::EventBus;
use crate::metrics::Metrics;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the registry looks for dispatched jobs that no agent confirmed.
const UNSTARTED_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

pub struct TenantRegistry {
    db: Db,
    events: Addr<EventBus>,
    config: Arc<Config>,
    metrics: Metrics,
    supervisors: HashMap<String, Addr<TenantSupervisor>>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
}

/// Returns the supervisor of a tenant, starting it if needed.
#[derive(Message)]
#[rtype(result = "Addr<TenantSupervisor>")]
pub struct Lookup(pub String);

impl TenantRegistry {
    pub fn new(
        db: Db,
        events: Addr<EventBus>,
        config: Arc<Config>,
        metrics: Metrics,
        arbiters: Vec<ArbiterHandle>,
    ) -> TenantRegistry {
        TenantRegistry {
            db,
            events,
            config,
            metrics,
            supervisors: HashMap::new(),
            arbiters,
            next_arbiter: 0,
        }
    }

    fn supervisor(&mut self, tenant_id: &str) -> Addr<TenantSupervisor> {
        if let Some(addr) = self.supervisors.get(tenant_id) {
            if addr.connected() {
                return addr.clone();
            }
        }
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter += 1;
        let (tenant, db, events) = (tenant_id.to_owned(), self.db.clone(), self.events.clone());
        let metrics = self.metrics.clone();
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| TenantSupervisor::new(tenant, db, events, metrics));
        self.supervisors.insert(tenant_id.to_owned(), addr.clone());
        addr
    }

    fn requeue_unstarted(&mut self, ctx: &mut Context<Self>) {
        let cutoff = db::now_ms() - self.config.dispatch_ack_timeout.as_millis() as i64;
        let db = self.db.clone();
        ctx.spawn(async move { db::jobs::requeue_unstarted(&db, cutoff).await }.into_actor(self).map(
            |result, registry, _| match result {
                Ok(requeued) => {
                    for (tenant_id, agent) in requeued {
                        tracing::warn!(tenant = %tenant_id, %agent, "a dispatched job was never started; queued again");
                        registry.supervisor(&tenant_id).do_send(messages::Wake { agent });
                    }
                }
                Err(error) => tracing::warn!(%error, "sweep for unstarted jobs failed"),
            },
        ));
    }
}

impl Actor for TenantRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Tenants with agents get their supervisor now, so that offline detection and the
        // queues they own resume right after a restart, before any request arrives.
        let db = self.db.clone();
        ctx.wait(
            async move { db::agents::tenants_with_agents(&db).await }
                .into_actor(self)
                .map(|result: Result<Vec<String>>, registry, _| match result {
                    Ok(tenants) => {
                        for tenant in tenants {
                            registry.supervisor(&tenant);
                        }
                    }
                    Err(error) => tracing::error!(%error, "could not list tenants at start-up"),
                }),
        );
        // So do tenants with enabled schedules: their timers run (and fires missed while
        // the orchestrator was down are noticed) without waiting for a request.
        let db = self.db.clone();
        ctx.wait(
            async move { db::schedules::tenants_with_enabled(&db).await }
                .into_actor(self)
                .map(|result: Result<Vec<String>>, registry, _| match result {
                    Ok(tenants) => {
                        for tenant in tenants {
                            registry.supervisor(&tenant);
                        }
                    }
                    Err(error) => tracing::error!(%error, "could not list tenants with schedules at start-up"),
                }),
        );
        ctx.run_interval(UNSTARTED_SWEEP_INTERVAL, |registry, ctx| {
            registry.requeue_unstarted(ctx)
        });
    }
}

impl Handler<Lookup> for TenantRegistry {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, Lookup(tenant_id): Lookup, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.supervisor(&tenant_id))
    }
}

/// Sends `message` to the tenant's supervisor and waits for its answer.
pub async fn ask<M>(registry: &Addr<TenantRegistry>, tenant_id: &str, message: M) -> Result<M::Result>
where
    M: Message + Send + 'static,
    M::Result: Send,
    TenantSupervisor: Handler<M>,
{
    let supervisor = registry.send(Lookup(tenant_id.to_owned())).await?;
    Ok(supervisor.send(message).await?)
}
