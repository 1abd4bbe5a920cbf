//! `GET /metrics/json`: one tenant's agents and the jobs created in the last 24 hours, in
//! totals and per agent, built from three queries (agents, counts, percentile ranks).

use crate::db::metrics::RankedDuration;
use crate::db::{self, format_time, format_time_opt, Db};
use crate::error::Result;
use crate::views::agent_tags;
use shared_protocol::api::{
    AgentCounts, AgentMetrics, DurationPercentiles, JobMetrics, JobStatusCounts, TenantMetrics,
};
use shared_protocol::JobStatus;
use std::collections::HashMap;

/// Jobs created within this many hours are counted.
pub const WINDOW_HOURS: u32 = 24;

/// The position (1-based) of the nearest-rank `percent`-th percentile among `count` sorted
/// values: the smallest rank `k` with at least `percent`% of the values at or below it,
/// `k = ceil(percent * count / 100)`, and at least 1. `None` when there are no values.
/// (The percentile query computes the same rank in SQL; see `db::metrics`.)
pub fn nearest_rank(percent: u32, count: u64) -> Option<u64> {
    if count == 0 {
        return None;
    }
    Some((count * u64::from(percent)).div_ceil(100).max(1))
}

/// The tenant's metrics as of now.
pub async fn tenant_metrics(db: &Db, tenant_id: &str) -> Result<TenantMetrics> {
    let now = db::now_ms();
    let since = now - i64::from(WINDOW_HOURS) * 3600 * 1000;
    let agents = db::agents::list(db, tenant_id).await?;
    let counts = db::metrics::job_counts_since(db, tenant_id, since).await?;
    let ranked = db::metrics::duration_percentiles_since(db, tenant_id, since).await?;

    let mut total = StatusTally::default();
    let mut per_agent: HashMap<String, StatusTally> = HashMap::new();
    for (agent, status, count) in counts {
        let Some(status) = JobStatus::parse(&status) else {
            continue;
        };
        let count = count.max(0) as u64;
        total.add(status, count);
        per_agent.entry(agent).or_default().add(status, count);
    }
    let mut total_ranks: Vec<RankedDuration> = Vec::new();
    let mut agent_ranks: HashMap<String, Vec<RankedDuration>> = HashMap::new();
    for row in ranked {
        match row.agent_name.clone() {
            Some(agent) => agent_ranks.entry(agent).or_default().push(row),
            None => total_ranks.push(row),
        }
    }

    let online = agents.iter().filter(|a| a.status == "online").count() as u64;
    Ok(TenantMetrics {
        generated_at: format_time(now),
        window_hours: WINDOW_HOURS,
        agents: AgentCounts {
            total: agents.len() as u64,
            online,
            offline: agents.len() as u64 - online,
        },
        jobs: total.into_metrics(percentiles(&total_ranks)),
        // `db::agents::list` sorts by name.
        per_agent: agents
            .iter()
            .map(|agent| AgentMetrics {
                name: agent.name.clone(),
                status: agent.status.clone(),
                last_heartbeat: format_time_opt(agent.last_heartbeat),
                tags: agent_tags(agent),
                jobs: per_agent
                    .remove(&agent.name)
                    .unwrap_or_default()
                    .into_metrics(percentiles(agent_ranks.get(&agent.name).map_or(&[], Vec::as_slice))),
            })
            .collect(),
    })
}

/// p50 and p95 from a group's ranked rows (the rows at the wanted ranks, see `db::metrics`).
fn percentiles(rows: &[RankedDuration]) -> DurationPercentiles {
    let at = |percent: u32| {
        let count = rows.first()?.total.max(0) as u64;
        let rank = nearest_rank(percent, count)?;
        rows.iter()
            .find(|row| row.position.max(0) as u64 == rank)
            .map(|row| row.duration_ms.max(0) as u64)
    };
    DurationPercentiles {
        p50: at(50),
        p95: at(95),
    }
}

#[derive(Default)]
struct StatusTally(JobStatusCounts);

impl StatusTally {
    fn add(&mut self, status: JobStatus, count: u64) {
        let counts = &mut self.0;
        let slot = match status {
            JobStatus::Pending => &mut counts.pending,
            JobStatus::Dispatched => &mut counts.dispatched,
            JobStatus::Running => &mut counts.running,
            JobStatus::Success => &mut counts.success,
            JobStatus::Failed => &mut counts.failed,
            JobStatus::Timeout => &mut counts.timeout,
            JobStatus::Cancelled => &mut counts.cancelled,
            JobStatus::Lost => &mut counts.lost,
        };
        *slot += count;
    }

    fn into_metrics(self, duration_ms: DurationPercentiles) -> JobMetrics {
        let by_status = self.0;
        JobMetrics {
            total: by_status.pending
                + by_status.dispatched
                + by_status.running
                + by_status.success
                + by_status.failed
                + by_status.timeout
                + by_status.cancelled
                + by_status.lost,
            success_rate: success_rate(&by_status),
            by_status,
            duration_ms,
        }
    }
}

/// success / (success + failed + timeout + lost), rounded to 4 decimals. Cancelled and
/// unfinished jobs say nothing about success; with none of the four, there is no rate.
fn success_rate(counts: &JobStatusCounts) -> Option<f64> {
    let judged = counts.success + counts.failed + counts.timeout + counts.lost;
    (judged > 0).then(|| (counts.success as f64 / judged as f64 * 10_000.0).round() / 10_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, on a sorted list.
    fn reference(sorted: &[i64], percent: u32) -> Option<i64> {
        let rank = nearest_rank(percent, sorted.len() as u64)?;
        Some(sorted[rank as usize - 1])
    }

    #[test]
    fn nearest_rank_follows_the_definition() {
        assert_eq!(nearest_rank(50, 0), None);
        assert_eq!(nearest_rank(50, 1), Some(1));
        assert_eq!(nearest_rank(95, 1), Some(1));
        assert_eq!(nearest_rank(50, 2), Some(1));
        assert_eq!(nearest_rank(50, 3), Some(2));
        assert_eq!(nearest_rank(50, 4), Some(2));
        assert_eq!(nearest_rank(95, 10), Some(10));
        assert_eq!(nearest_rank(95, 20), Some(19));
        assert_eq!(nearest_rank(95, 21), Some(20));
        assert_eq!(nearest_rank(95, 100), Some(95));
        assert_eq!(nearest_rank(100, 7), Some(7));
        // Wikipedia's example: 15, 20, 35, 40, 50.
        let values = [15, 20, 35, 40, 50];
        assert_eq!(reference(&values, 30), Some(20));
        assert_eq!(reference(&values, 40), Some(20));
        assert_eq!(reference(&values, 50), Some(35));
        assert_eq!(reference(&values, 100), Some(50));
        // The SQL's integer form (written out on purpose) gives the same ranks.
        #[allow(clippy::manual_div_ceil)]
        let sql_rank = |percent: u64, count: u64| (count * percent + 99) / 100;
        for count in 1..500u64 {
            for percent in [50u32, 95] {
                assert_eq!(
                    nearest_rank(percent, count),
                    Some(sql_rank(u64::from(percent), count)),
                    "{percent} of {count}"
                );
            }
        }
    }

    fn row(position: i64, total: i64, duration_ms: i64) -> RankedDuration {
        RankedDuration {
            agent_name: None,
            duration_ms,
            position,
            total,
        }
    }

    #[test]
    fn percentiles_pick_the_rows_at_their_ranks() {
        assert_eq!(percentiles(&[]), DurationPercentiles { p50: None, p95: None });
        // One value is every percentile.
        assert_eq!(
            percentiles(&[row(1, 1, 70)]),
            DurationPercentiles {
                p50: Some(70),
                p95: Some(70)
            }
        );
        // Ten values 100..=1000: rank 5 and rank 10.
        assert_eq!(
            percentiles(&[row(5, 10, 500), row(10, 10, 1000)]),
            DurationPercentiles {
                p50: Some(500),
                p95: Some(1000)
            }
        );
    }

    #[test]
    fn success_rate_ignores_cancelled_and_unfinished_jobs() {
        let mut counts = JobStatusCounts::default();
        assert_eq!(success_rate(&counts), None);
        counts.cancelled = 3;
        counts.pending = 2;
        assert_eq!(success_rate(&counts), None);
        counts.success = 8;
        counts.failed = 1;
        counts.timeout = 1;
        assert_eq!(success_rate(&counts), Some(0.8));
        counts.success = 2;
        counts.lost = 1;
        counts.failed = 0;
        counts.timeout = 0;
        assert_eq!(success_rate(&counts), Some(0.6667));
    }
}
