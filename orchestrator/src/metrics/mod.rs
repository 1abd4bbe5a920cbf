//! The orchestrator's Prometheus metrics (`GET /metrics`): counters and histograms fed where
//! things happen, plus job and agent gauges read from the database at scrape time (the
//! database is the source of truth, and replicas sharing it must agree).

pub mod http;
pub mod summary;

use crate::db::{self, Db};
use crate::integrations::config::Kind;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use shared_protocol::JobStatus;
use std::sync::Arc;
use std::time::Duration;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Job run times: from a quick script (10 ms) to the default job timeout (an hour).
const JOB_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Trigger to start: a parked poll takes a job within milliseconds; a busy or offline agent
/// may take minutes to hours.
const DISPATCH_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Request times: long-polls are held up to `MAX_POLL_WAIT_SECS` (50 s by default).
const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How a schedule slot that came due was handled (the `outcome` of its run record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FireOutcome {
    /// On time.
    Fired,
    /// Late, within the misfire grace.
    CaughtUp,
    /// No job: no target could run it, or the previous run was still active.
    Skipped,
}

impl FireOutcome {
    const ALL: [FireOutcome; 3] = [FireOutcome::Fired, FireOutcome::CaughtUp, FireOutcome::Skipped];

    fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Fired => "fired",
            FireOutcome::CaughtUp => "caught_up",
            FireOutcome::Skipped => "skipped",
        }
    }

    /// From a stored run record's outcome.
    pub fn parse(outcome: &str) -> Option<FireOutcome> {
        FireOutcome::ALL.into_iter().find(|o| o.as_str() == outcome)
    }
}

/// What one delivery attempt led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed for now; another attempt is planned.
    Retried,
    /// Failed for good (refused, or out of attempts).
    Failed,
}

impl DeliveryOutcome {
    const ALL: [DeliveryOutcome; 3] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Retried,
        DeliveryOutcome::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retried => "retried",
            DeliveryOutcome::Failed => "failed",
        }
    }
}

/// The `provider` label of a schedule's own webhook (not an integration).
pub const SCHEDULE_WEBHOOK_PROVIDER: &str = "schedule_webhook";
/// The `provider` label when the delivery's target could not be loaded (it was deleted).
pub const UNKNOWN_PROVIDER: &str = "unknown";

/// Cheap to clone: one registry and handles onto shared atomics. Each server owns one
/// (never the process-wide default registry), so several servers in one process (tests)
/// do not collide.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    /// One pre-resolved counter per status, in `JobStatus::ALL` order.
    jobs_finished: [IntCounter; 8],
    job_duration: Histogram,
    dispatch_latency: Histogram,
    /// One per outcome, in `FireOutcome::ALL` order.
    schedule_fires: [IntCounter; 3],
    schedule_misses: IntCounter,
    deliveries: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    listener_up: IntGauge,
    notifications: IntCounter,
}

/// What the database says at scrape time.
struct Snapshot {
    jobs: Vec<(String, i64)>,
    agents: Vec<(String, i64)>,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let jobs_finished_vec = IntCounterVec::new(
            Opts::new(
                "scriptmesh_jobs_finished_total",
                "Jobs whose final status this process recorded, by that status",
            ),
            &["status"],
        )?;
        let jobs_finished = JobStatus::ALL.map(|status| jobs_finished_vec.with_label_values(&[status.as_str()]));
        let job_duration = Histogram::with_opts(
            HistogramOpts::new(
                "scriptmesh_job_duration_seconds",
                "Run time of finished jobs, as their agents reported it",
            )
            .buckets(JOB_DURATION_BUCKETS.to_vec()),
        )?;
        let dispatch_latency = Histogram::with_opts(
            HistogramOpts::new(
                "scriptmesh_job_dispatch_latency_seconds",
                "Time from a job's creation (its trigger) to its agent's start report",
            )
            .buckets(DISPATCH_LATENCY_BUCKETS.to_vec()),
        )?;
        let schedule_fires_vec = IntCounterVec::new(
            Opts::new(
                "scriptmesh_schedule_fires_total",
                "Schedule slots that came due and were handled, by outcome (fired, caught_up, skipped)",
            ),
            &["outcome"],
        )?;
        let schedule_fires = FireOutcome::ALL.map(|outcome| schedule_fires_vec.with_label_values(&[outcome.as_str()]));
        let schedule_misses = IntCounter::new(
            "scriptmesh_schedule_misses_total",
            "Schedule slots that passed without a run (past the misfire grace, or superseded by a later slot)",
        )?;
        let deliveries = IntCounterVec::new(
            Opts::new(
                "scriptmesh_integration_deliveries_total",
                "Integration and schedule webhook delivery attempts, by provider and outcome (delivered, retried, failed)",
            ),
            &["provider", "outcome"],
        )?;
        let providers = Kind::ALL.map(Kind::as_str);
        for provider in providers.iter().chain(&[SCHEDULE_WEBHOOK_PROVIDER]) {
            for outcome in DeliveryOutcome::ALL {
                deliveries.with_label_values(&[*provider, outcome.as_str()]);
            }
        }
        let http_requests = IntCounterVec::new(
            Opts::new(
                "scriptmesh_http_requests_total",
                "HTTP requests answered, by method, route pattern and status",
            ),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "scriptmesh_http_request_duration_seconds",
                "Time to answer HTTP requests, by method and route pattern",
            )
            .buckets(HTTP_DURATION_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("scriptmesh_build_info", "Always 1; the version label names this build"),
            &["version"],
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let listener_up = IntGauge::new(
            "scriptmesh_replica_listener_up",
            "1 while this process listens for other replicas' changes (PostgreSQL), else 0",
        )?;
        let notifications = IntCounter::new(
            "scriptmesh_replica_notifications_total",
            "Changes other orchestrator replicas announced to this one",
        )?;

        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(jobs_finished_vec),
            Box::new(job_duration.clone()),
            Box::new(dispatch_latency.clone()),
            Box::new(schedule_fires_vec),
            Box::new(schedule_misses.clone()),
            Box::new(deliveries.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(build_info),
            Box::new(listener_up.clone()),
            Box::new(notifications.clone()),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;

        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                jobs_finished,
                job_duration,
                dispatch_latency,
                schedule_fires,
                schedule_misses,
                deliveries,
                http_requests,
                http_duration,
                listener_up,
                notifications,
            }),
        })
    }

    /// The connection listening for other replicas' changes is up (or was lost).
    pub fn listener_up(&self, up: bool) {
        self.inner.listener_up.set(i64::from(up));
    }

    /// `count` notifications arrived from other replicas.
    pub fn notifications_received(&self, count: u64) {
        self.inner.notifications.inc_by(count);
    }

    /// A job reached a final status here (a result, a loss, a cancel).
    pub fn job_finished(&self, status: JobStatus) {
        self.jobs_finished_by(status, 1);
    }

    /// Several jobs reached the same final status at once.
    pub fn jobs_finished_by(&self, status: JobStatus, count: u64) {
        if let Some(position) = JobStatus::ALL.iter().position(|s| *s == status) {
            self.inner.jobs_finished[position].inc_by(count);
        }
    }

    /// The run time an agent reported for a job.
    pub fn job_duration(&self, duration_ms: i64) {
        self.inner.job_duration.observe(seconds(duration_ms));
    }

    /// A job's start report arrived `latency_ms` after the job was created.
    pub fn dispatch_latency(&self, latency_ms: i64) {
        self.inner.dispatch_latency.observe(seconds(latency_ms));
    }

    pub fn schedule_fired(&self, outcome: FireOutcome) {
        let position = FireOutcome::ALL.iter().position(|o| *o == outcome).unwrap_or_default();
        self.inner.schedule_fires[position].inc();
    }

    pub fn schedule_missed(&self, slots: u64) {
        self.inner.schedule_misses.inc_by(slots);
    }

    /// One delivery attempt; `provider` is an integration kind, [`SCHEDULE_WEBHOOK_PROVIDER`]
    /// or [`UNKNOWN_PROVIDER`] (bounded values only: never a tenant's name or URL).
    pub fn delivery_attempted(&self, provider: &'static str, outcome: DeliveryOutcome) {
        self.inner
            .deliveries
            .with_label_values(&[provider, outcome.as_str()])
            .inc();
    }

    /// One answered HTTP request. `route` is a route pattern or `unmatched`, never a raw path.
    pub fn http_request(&self, method: &str, route: &str, status: &str, elapsed: Duration) {
        self.inner
            .http_requests
            .with_label_values(&[method, route, status])
            .inc();
        self.inner
            .http_duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition: this process's counters plus the database's gauges. When the
    /// database cannot be read, its gauges are left out (rather than shown stale) and
    /// `scriptmesh_database_up` is 0.
    pub async fn render(&self, db: &Db) -> prometheus::Result<String> {
        let snapshot = match read_snapshot(db).await {
            Ok(snapshot) => Some(snapshot),
            Err(error) => {
                tracing::warn!(%error, "metrics: the database could not be read; its gauges are left out");
                None
            }
        };
        let mut families = self.inner.registry.gather();
        families.extend(database_families(snapshot.as_ref())?);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        TextEncoder::new().encode_to_string(&families)
    }
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

async fn read_snapshot(db: &Db) -> crate::error::Result<Snapshot> {
    Ok(Snapshot {
        jobs: db::metrics::job_counts_by_status(db).await?,
        agents: db::metrics::agent_counts_by_status(db).await?,
    })
}

/// The scrape-time gauges, built fresh for each scrape from what the database said.
fn database_families(snapshot: Option<&Snapshot>) -> prometheus::Result<Vec<MetricFamily>> {
    let registry = Registry::new();
    let up = IntGauge::new(
        "scriptmesh_database_up",
        "1 when the database answered this scrape's queries, 0 when it did not",
    )?;
    registry.register(Box::new(up.clone()))?;
    let Some(snapshot) = snapshot else {
        return Ok(registry.gather());
    };
    up.set(1);
    let count_of = |rows: &[(String, i64)], status: &str| {
        rows.iter()
            .filter(|(name, _)| name == status)
            .map(|(_, count)| *count)
            .sum::<i64>()
    };
    let jobs = IntGaugeVec::new(
        Opts::new(
            "scriptmesh_jobs",
            "Jobs in the database, by current status (all tenants)",
        ),
        &["status"],
    )?;
    for status in JobStatus::ALL {
        jobs.with_label_values(&[status.as_str()])
            .set(count_of(&snapshot.jobs, status.as_str()));
    }
    let queue_depth = IntGauge::new(
        "scriptmesh_queue_depth",
        "Jobs waiting in the queue (pending) across all tenants",
    )?;
    queue_depth.set(count_of(&snapshot.jobs, JobStatus::Pending.as_str()));
    let agents = IntGaugeVec::new(
        Opts::new("scriptmesh_agents", "Registered agents, by status (all tenants)"),
        &["status"],
    )?;
    for status in ["online", "offline"] {
        agents
            .with_label_values(&[status])
            .set(count_of(&snapshot.agents, status));
    }
    registry.register(Box::new(jobs))?;
    registry.register(Box::new(queue_depth))?;
    registry.register(Box::new(agents))?;
    Ok(registry.gather())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(families: &[MetricFamily]) -> String {
        TextEncoder::new().encode_to_string(families).unwrap()
    }

    #[test]
    fn database_gauges_list_every_status_with_zeros() {
        let snapshot = Snapshot {
            jobs: vec![("success".into(), 3), ("pending".into(), 2)],
            agents: vec![("online".into(), 1)],
        };
        let out = text(&database_families(Some(&snapshot)).unwrap());
        for status in JobStatus::ALL {
            assert!(
                out.contains(&format!("scriptmesh_jobs{{status=\"{status}\"}}")),
                "{out}"
            );
        }
        assert!(out.contains("scriptmesh_jobs{status=\"success\"} 3"), "{out}");
        assert!(out.contains("scriptmesh_jobs{status=\"lost\"} 0"), "{out}");
        assert!(out.contains("scriptmesh_queue_depth 2"), "{out}");
        assert!(out.contains("scriptmesh_agents{status=\"online\"} 1"), "{out}");
        assert!(out.contains("scriptmesh_agents{status=\"offline\"} 0"), "{out}");
        assert!(out.contains("scriptmesh_database_up 1"), "{out}");
    }

    #[test]
    fn an_unreadable_database_leaves_its_gauges_out() {
        let out = text(&database_families(None).unwrap());
        assert!(out.contains("scriptmesh_database_up 0"), "{out}");
        assert!(!out.contains("scriptmesh_jobs"), "{out}");
    }

    #[test]
    fn counters_start_at_zero_and_two_registries_do_not_collide() {
        let first = Metrics::new().unwrap();
        let second = Metrics::new().unwrap();
        first.job_finished(JobStatus::Failed);
        first.jobs_finished_by(JobStatus::Cancelled, 2);
        first.schedule_fired(FireOutcome::CaughtUp);
        first.delivery_attempted("slack", DeliveryOutcome::Retried);
        let out = text(&first.inner.registry.gather());
        assert!(
            out.contains("scriptmesh_jobs_finished_total{status=\"failed\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("scriptmesh_jobs_finished_total{status=\"cancelled\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("scriptmesh_jobs_finished_total{status=\"success\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("scriptmesh_schedule_fires_total{outcome=\"caught_up\"} 1"),
            "{out}"
        );
        assert!(out.contains("scriptmesh_schedule_misses_total 0"), "{out}");
        assert!(
            out.contains("scriptmesh_integration_deliveries_total{outcome=\"retried\",provider=\"slack\"} 1"),
            "{out}"
        );
        assert!(out.contains("scriptmesh_build_info{version=\""), "{out}");
        let other = text(&second.inner.registry.gather());
        assert!(
            other.contains("scriptmesh_jobs_finished_total{status=\"failed\"} 0"),
            "{other}"
        );
    }
}
