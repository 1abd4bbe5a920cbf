//! Tenant actors. The [`TenantRegistry`] maps a tenant id to its [`TenantSupervisor`],
//! starting supervisors lazily (spread over a few arbiters) under actix `Supervisor`s that
//! restart them on failure. Tenants never share a supervisor.
//!
//! The registry also runs this process's sweeps over all tenants: dispatched jobs no agent
//! confirmed go back to the queue, silent agents go offline (one replica wins each), and
//! on PostgreSQL a once-a-second re-check that stands in for any notification from
//! another replica that was lost with a dropped connection (see `cluster`).

pub mod messages;
pub mod supervisor;
pub mod validate;

pub use supervisor::{SupervisorDeps, TenantSupervisor};

use crate::auth::key_cache::KeyCache;
use crate::cluster::Signal;
use crate::config::Config;
use crate::db::{self};
use crate::error::Result;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How often the registry looks for dispatched jobs that no agent confirmed.
const UNSTARTED_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How often silent agents are looked for.
const LIVENESS_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How often, with replicas, the database is re-read for news that may have been missed.
const RESYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Replicas' clocks may differ by this much: changes are re-read with this overlap.
const CLOCK_MARGIN_MS: i64 = 5_000;

pub struct TenantRegistry {
    deps: SupervisorDeps,
    config: Arc<Config>,
    key_cache: Arc<KeyCache>,
    supervisors: HashMap<String, Addr<TenantSupervisor>>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    /// Liveness is judged from this instant at the earliest, so a restarted orchestrator
    /// gives every agent a full grace period to reconnect.
    started_at_ms: i64,
    /// The re-check reads changes made after this time (less [`CLOCK_MARGIN_MS`]).
    resynced_at_ms: i64,
    resyncing: bool,
}

/// Returns the supervisor of a tenant, starting it if needed.
#[derive(Message)]
#[rtype(result = "Addr<TenantSupervisor>")]
pub struct Lookup(pub String);

/// Re-read the database for other replicas' changes now (the listening connection was
/// just (re)established: anything may have been missed while it was down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResyncNow;

/// News from other replicas, for the tenants' supervisors.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route(pub Vec<Signal>);

impl TenantRegistry {
    pub fn new(
        deps: SupervisorDeps,
        config: Arc<Config>,
        key_cache: Arc<KeyCache>,
        arbiters: Vec<ArbiterHandle>,
    ) -> TenantRegistry {
        let now = db::now_ms();
        TenantRegistry {
            deps,
            config,
            key_cache,
            supervisors: HashMap::new(),
            arbiters,
            next_arbiter: 0,
            started_at_ms: now,
            resynced_at_ms: now,
            resyncing: false,
        }
    }

    fn supervisor(&mut self, tenant_id: &str) -> Addr<TenantSupervisor> {
        if let Some(addr) = self.running(tenant_id) {
            return addr;
        }
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter += 1;
        let (tenant, deps) = (tenant_id.to_owned(), self.deps.clone());
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| TenantSupervisor::new(tenant, deps));
        self.supervisors.insert(tenant_id.to_owned(), addr.clone());
        addr
    }

    /// The tenant's supervisor if it runs in this process.
    fn running(&self, tenant_id: &str) -> Option<Addr<TenantSupervisor>> {
        self.supervisors.get(tenant_id).filter(|addr| addr.connected()).cloned()
    }

    fn start_all(&mut self, tenants: Result<Vec<String>>, what: &str) {
        match tenants {
            Ok(tenants) => {
                for tenant in tenants {
                    self.supervisor(&tenant);
                }
            }
            Err(error) => tracing::error!(%error, "could not list tenants with {what} at start-up"),
        }
    }

    fn requeue_unstarted(&mut self, ctx: &mut Context<Self>) {
        let cutoff = db::now_ms() - self.config.dispatch_ack_timeout.as_millis() as i64;
        let db = self.deps.db.clone();
        ctx.spawn(async move { db::jobs::requeue_unstarted(&db, cutoff).await }.into_actor(self).map(
            |result, registry, _| match result {
                Ok(requeued) => {
                    for (tenant_id, agent) in requeued {
                        tracing::warn!(tenant = %tenant_id, %agent, "a dispatched job was never started; queued again");
                        registry.supervisor(&tenant_id).do_send(messages::Wake { agents: vec![agent] });
                    }
                }
                Err(error) => tracing::warn!(%error, "sweep for unstarted jobs failed"),
            },
        ));
    }

    /// Marks agents offline after three missed heartbeats, in one conditional write that
    /// exactly one replica wins; its supervisor publishes and loses their running jobs.
    fn sweep_silent_agents(&mut self, ctx: &mut Context<Self>) {
        let started_at = self.started_at_ms;
        let db = self.deps.db.clone();
        ctx.spawn(
            async move { db::agents::mark_silent_offline(&db, db::now_ms(), started_at).await }
                .into_actor(self)
                .map(|result, registry, _| match result {
                    Ok(silent) => {
                        let mut by_tenant: BTreeMap<String, Vec<_>> = BTreeMap::new();
                        for found in silent {
                            by_tenant.entry(found.0.tenant_id.clone()).or_default().push(found);
                        }
                        for (tenant, agents) in by_tenant {
                            registry.supervisor(&tenant).do_send(messages::AgentsSilent { agents });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "sweep for silent agents failed"),
                }),
        );
    }

    /// Re-reads what other replicas' notifications would have said: queued jobs, cancel
    /// orders, changed agents, schedules and keys, and rollouts waiting for a step. A lost notification costs at most this
    /// interval.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        if self.resyncing {
            return;
        }
        self.resyncing = true;
        let db = self.deps.db.clone();
        let started = db::now_ms();
        let since = self.resynced_at_ms - CLOCK_MARGIN_MS;
        let work = async move {
            Ok::<_, crate::error::Error>((
                db::jobs::queued_agents(&db).await?,
                db::jobs::outstanding_cancels(&db).await?,
                db::agents::changed_since(&db, since).await?,
                db::schedules::changed_since(&db, since).await?,
                db::accounts::keys_changed_since(&db, since).await?,
                db::jobs::rollout::awaiting(&db).await?,
            ))
        };
        ctx.spawn(work.into_actor(self).map(move |result, registry, _| {
            registry.resyncing = false;
            let (queued, cancels, agents, schedules, keys, rollouts) = match result {
                Ok(found) => found,
                Err(error) => {
                    tracing::warn!(%error, "re-check of other replicas' changes failed");
                    return;
                }
            };
            registry.resynced_at_ms = started;
            for key_id in keys {
                registry.key_cache.evict(&key_id);
            }
            let mut signals: Vec<Signal> = Vec::new();
            signals.extend(
                agents
                    .into_iter()
                    .map(|(tenant_id, agent)| Signal::AgentChanged { tenant_id, agent }),
            );
            signals.extend(
                schedules
                    .into_iter()
                    .map(|(tenant_id, schedule_id)| Signal::ScheduleChanged { tenant_id, schedule_id }),
            );
            registry.route(signals);
            let mut wake: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (tenant, agent) in queued {
                wake.entry(tenant).or_default().push(agent);
            }
            for (tenant, agents) in wake {
                if let Some(supervisor) = registry.running(&tenant) {
                    supervisor.do_send(messages::Wake { agents });
                }
            }
            // Rollouts with jobs awaiting a slot: a step lost to a crash, a failed write
            // or a result stored by a replica that has since gone is taken here.
            for (tenant, fanout_id) in rollouts {
                registry
                    .supervisor(&tenant)
                    .do_send(messages::AdvanceRollout { fanout_id });
            }
            let mut outstanding: HashMap<String, Vec<(String, String)>> = HashMap::new();
            for (tenant, agent, job) in cancels {
                outstanding.entry(tenant).or_default().push((agent, job));
            }
            for (tenant, supervisor) in &registry.supervisors {
                let orders = outstanding.remove(tenant).unwrap_or_default();
                supervisor.do_send(messages::CancelsOutstanding(orders));
            }
        }));
    }

    /// Hands news to the supervisors it concerns. A schedule change starts the tenant's
    /// supervisor here if needed, so every replica keeps its timers.
    fn route(&mut self, signals: Vec<Signal>) {
        let mut by_tenant: BTreeMap<String, Vec<Signal>> = BTreeMap::new();
        for signal in signals {
            if let Some(tenant) = signal.tenant_id() {
                by_tenant.entry(tenant.to_owned()).or_default().push(signal);
            }
        }
        for (tenant, signals) in by_tenant {
            let starts_supervisor = signals.iter().any(|s| matches!(s, Signal::ScheduleChanged { .. }));
            let supervisor = if starts_supervisor {
                Some(self.supervisor(&tenant))
            } else {
                self.running(&tenant)
            };
            if let Some(supervisor) = supervisor {
                supervisor.do_send(messages::ClusterNews(signals));
            }
        }
    }
}

impl Actor for TenantRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Tenants with agents get their supervisor now, so that the queues they own resume
        // right after a restart, before any request arrives; so do tenants with enabled
        // schedules: their timers run (and fires missed while the orchestrator was down are
        // noticed) without waiting for a request.
        let db = self.deps.db.clone();
        ctx.wait(
            async move { db::agents::tenants_with_agents(&db).await }
                .into_actor(self)
                .map(|result, registry, _| registry.start_all(result, "agents")),
        );
        let db = self.deps.db.clone();
        ctx.wait(
            async move { db::schedules::tenants_with_enabled(&db).await }
                .into_actor(self)
                .map(|result, registry, _| registry.start_all(result, "schedules")),
        );
        ctx.run_interval(UNSTARTED_SWEEP_INTERVAL, |registry, ctx| {
            registry.requeue_unstarted(ctx)
        });
        ctx.run_interval(LIVENESS_SWEEP_INTERVAL, |registry, ctx| {
            registry.sweep_silent_agents(ctx)
        });
        // On SQLite too: one orchestrator process writes, but the database stays the truth,
        // so a job written by anything else (an operator, a restore) is found within the
        // interval even by a poll that knows its queue as drained.
        ctx.run_interval(RESYNC_INTERVAL, |registry, ctx| registry.resync(ctx));
    }
}

impl Handler<Lookup> for TenantRegistry {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, Lookup(tenant_id): Lookup, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.supervisor(&tenant_id))
    }
}

impl Handler<Route> for TenantRegistry {
    type Result = ();

    fn handle(&mut self, Route(signals): Route, _: &mut Context<Self>) {
        self.route(signals);
    }
}

impl Handler<ResyncNow> for TenantRegistry {
    type Result = ();

    fn handle(&mut self, _: ResyncNow, ctx: &mut Context<Self>) {
        if matches!(self.deps.db, db::Db::Postgres(_)) {
            self.resync(ctx);
        }
    }
}

/// Sends `message` to the tenant's supervisor and waits for its answer.
pub async fn ask<M>(registry: &Addr<TenantRegistry>, tenant_id: &str, message: M) -> Result<M::Result>
where
    M: Message + Send + 'static,
    M::Result: Send,
    TenantSupervisor: Handler<M>,
{
    let supervisor = match known_supervisor(registry, tenant_id) {
        Some(supervisor) => supervisor,
        None => {
            let supervisor = registry.send(Lookup(tenant_id.to_owned())).await?;
            remember_supervisor(registry, tenant_id, &supervisor);
            supervisor
        }
    };
    Ok(supervisor.send(message).await?)
}

type KnownSupervisors = HashMap<Addr<TenantRegistry>, HashMap<String, Addr<TenantSupervisor>>>;

thread_local! {
    /// The supervisors this thread has been given by each registry: a request then goes
    /// straight to its tenant's supervisor, without a round trip through the registry's
    /// thread first. A supervisor is never replaced while it runs (a restart keeps its
    /// address), so a connected address is the one the registry would give.
    static KNOWN_SUPERVISORS: std::cell::RefCell<KnownSupervisors> = std::cell::RefCell::default();
}

fn known_supervisor(registry: &Addr<TenantRegistry>, tenant_id: &str) -> Option<Addr<TenantSupervisor>> {
    KNOWN_SUPERVISORS.with_borrow(|known| {
        known
            .get(registry)?
            .get(tenant_id)
            .filter(|supervisor| supervisor.connected())
            .cloned()
    })
}

fn remember_supervisor(registry: &Addr<TenantRegistry>, tenant_id: &str, supervisor: &Addr<TenantSupervisor>) {
    KNOWN_SUPERVISORS.with_borrow_mut(|known| {
        known
            .entry(registry.clone())
            .or_default()
            .insert(tenant_id.to_owned(), supervisor.clone());
    });
}
