//! The agent's Prometheus metrics. The same gauges back `/health`, so the two endpoints
//! can never disagree.

use crate::error::AgentError;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use shared_protocol::protocol::RunOutcome;

/// Cheap to clone: every field is a handle onto shared atomics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub jobs_started: IntCounter,
    jobs_finished: IntCounterVec,
    pub running_jobs: IntGauge,
    pub heartbeats_sent: IntCounter,
    pub heartbeats_failed: IntCounter,
    polls: IntCounterVec,
    pub registrations: IntCounter,
    pub spooled_results: IntGauge,
    pub manifest_scripts: IntGauge,
    /// 1 while the last exchange with the orchestrator got an answer, 0 when it did not.
    pub orchestrator_connected: IntGauge,
}

/// How one long-poll ended, for the `polls_total` label.
#[derive(Clone, Copy, Debug)]
pub enum PollResult {
    Jobs,
    Empty,
    Error,
}

impl Metrics {
    pub fn new() -> Result<Metrics, AgentError> {
        let registry = Registry::new_custom(Some("scriptmesh_agent".into()), None)?;
        let jobs_started = IntCounter::new("jobs_started_total", "Jobs handed to the executor")?;
        let jobs_finished = IntCounterVec::new(
            Opts::new("jobs_finished_total", "Jobs finished, by outcome"),
            &["outcome"],
        )?;
        let running_jobs = IntGauge::new("running_jobs", "Jobs running or queued on this agent")?;
        let heartbeats_sent = IntCounter::new("heartbeats_sent_total", "Heartbeats the orchestrator accepted")?;
        let heartbeats_failed = IntCounter::new("heartbeats_failed_total", "Heartbeats that failed")?;
        let polls = IntCounterVec::new(Opts::new("polls_total", "Long-polls completed, by result"), &["result"])?;
        let registrations = IntCounter::new("registrations_total", "Successful registrations")?;
        let spooled_results = IntGauge::new("spooled_results", "Results waiting for delivery")?;
        let manifest_scripts = IntGauge::new("manifest_scripts", "Runnable scripts in the manifest")?;
        let orchestrator_connected = IntGauge::new(
            "orchestrator_connected",
            "1 when the orchestrator answered the last request",
        )?;

        registry.register(Box::new(jobs_started.clone()))?;
        registry.register(Box::new(jobs_finished.clone()))?;
        registry.register(Box::new(running_jobs.clone()))?;
        registry.register(Box::new(heartbeats_sent.clone()))?;
        registry.register(Box::new(heartbeats_failed.clone()))?;
        registry.register(Box::new(polls.clone()))?;
        registry.register(Box::new(registrations.clone()))?;
        registry.register(Box::new(spooled_results.clone()))?;
        registry.register(Box::new(manifest_scripts.clone()))?;
        registry.register(Box::new(orchestrator_connected.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;

        Ok(Metrics {
            registry,
            jobs_started,
            jobs_finished,
            running_jobs,
            heartbeats_sent,
            heartbeats_failed,
            polls,
            registrations,
            spooled_results,
            manifest_scripts,
            orchestrator_connected,
        })
    }

    pub fn job_finished(&self, outcome: RunOutcome) {
        let label = match outcome {
            RunOutcome::Success => "success",
            RunOutcome::Failed => "failed",
            RunOutcome::Timeout => "timeout",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::Rejected => "rejected",
        };
        self.jobs_finished.with_label_values(&[label]).inc();
    }

    pub fn poll_finished(&self, result: PollResult) {
        let label = match result {
            PollResult::Jobs => "jobs",
            PollResult::Empty => "empty",
            PollResult::Error => "error",
        };
        self.polls.with_label_values(&[label]).inc();
    }

    /// Records whether the orchestrator could be talked to, from any actor's exchange.
    pub fn set_connected(&self, connected: bool) {
        self.orchestrator_connected.set(i64::from(connected));
    }

    pub fn render(&self) -> Result<String, AgentError> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }
}
