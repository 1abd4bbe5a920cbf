//! Polling for conditions that become true eventually (an agent coming online, a job
//! finishing), and the flows built on it.

use crate::app::TestApp;
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often conditions are re-checked.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The job statuses that do not change any more.
pub const FINISHED_JOB_STATUSES: &[&str] = &["success", "failed", "timeout", "cancelled", "lost"];

/// Re-checks `condition` until it holds (true) or `timeout` passes (false); checks once
/// more at the deadline. Use as `assert!(wait_until(.., || async { .. }).await, "why")`.
#[must_use = "assert on the outcome"]
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, || {
        let check = condition();
        async move { check.await.then_some(()) }
    })
    .await
    .is_some()
}

/// Re-runs `probe` until it yields a value or `timeout` passes (`None`).
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

impl TestApp {
    /// Waits until `GET /agents` shows `agent` with this status ("online", "offline");
    /// returns that agent's entry. Panics with the last listing after `timeout`.
    pub async fn wait_for_agent_status(&self, token: &str, agent: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, agents) = self.get("/agents", Some(token)).await;
            if agents[agent]["status"] == status {
                return agents[agent].clone();
            }
            if Instant::now() >= deadline {
                panic!("agent {agent} not {status} within {timeout:?}; GET /agents: {agents}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until `GET /jobs/{id}` shows a finished status; returns the job.
    pub async fn wait_for_job(&self, token: &str, job_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, job) = self.get(&format!("/jobs/{job_id}"), Some(token)).await;
            if FINISHED_JOB_STATUSES.contains(&job["status"].as_str().unwrap_or_default()) {
                return job;
            }
            if Instant::now() >= deadline {
                panic!("job {job_id} not finished within {timeout:?}; last seen: {job}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}
