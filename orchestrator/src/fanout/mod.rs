//! A fan-out's state as `GET /fan-out/{id}` shows it: progress, and the agents grouped by
//! outcome with each group's unified diff against the baseline (the largest group).
//!
//! Memory stays bounded whatever the fleet: the job list is read without outputs, then the
//! finished jobs' outputs a few at a time (about `PAGE_BYTES` per read) to be normalised and
//! hashed, keeping only per-group metadata; the diffs then read one representative output
//! per group, for at most `MAX_DIFFED_GROUPS` groups, each diff capped and time-limited.

pub mod diff;

use crate::db::{self, jobs::FanoutJobState, Db};
use crate::error::{Error, Result};
use diff::{DiffLimits, Group, Grouper, Normalisation, Outcome};
use serde::Serialize;
use shared_protocol::JobStatus;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much output one read of the database brings in, in bytes (stdout + stderr).
const PAGE_BYTES: i64 = 8 << 20;
/// ... and at most this many jobs.
const PAGE_JOBS: usize = 64;
/// Groups beyond the baseline that get diffs (largest first); the rest say `diff_omitted`.
pub const MAX_DIFFED_GROUPS: usize = 50;
/// Longest diff text per stream and group.
pub const MAX_DIFF_BYTES: usize = 256 * 1024;
/// All diff text of one answer; groups past it say `diff_omitted`.
const MAX_TOTAL_DIFF_BYTES: usize = 4 << 20;
/// Time for all diffs of one answer; groups past it say `diff_omitted`.
const DIFF_BUDGET: Duration = Duration::from_secs(5);
/// Time for one diff before the algorithm settles for a correct but longer one.
const DIFF_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_CONTEXT: usize = 3;
pub const MAX_CONTEXT: usize = 20;

/// What the caller asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// False: progress only, no outputs read (for polling).
    pub groups: bool,
    pub masks: Vec<String>,
    pub ignore_trailing_whitespace: bool,
    pub context: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            groups: true,
            masks: Vec::new(),
            ignore_trailing_whitespace: false,
            context: DEFAULT_CONTEXT,
        }
    }
}

/// `GET /fan-out/{id}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FanOutStatus {
    fanout_id: String,
    script: String,
    #[schema(value_type = Object)]
    params: serde_json::Value,
    created_at: String,
    /// True when every job is finished.
    pub done: bool,
    summary: FanOutSummary,
    /// The rollout controls it was created with; absent when it had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<RolloutState>,
    /// Every job, by agent name.
    jobs: Vec<FanOutJobStatus>,
    /// Finished jobs grouped by outcome (status, exit code, normalised stdout and stderr),
    /// the baseline first, then by size. Absent with `groups=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<OutcomeGroup>>,
    /// Jobs not finished yet, so not in any group. Absent with `groups=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    unfinished: Option<Vec<UnfinishedJob>>,
    /// The normalisation the groups and diffs were made with. Absent with `groups=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    diff_options: Option<DiffOptions>,
}

/// Jobs by state: `failed` counts failed, timeout and lost; `pending` counts dispatched.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FanOutSummary {
    total: usize,
    succeeded: usize,
    failed: usize,
    cancelled: usize,
    pending: usize,
    running: usize,
}

/// A fan-out's rollout controls and where it stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RolloutState {
    /// Most jobs queued or running at once (a percentage resolved against the targets).
    max_concurrency: Option<i32>,
    /// Failures after which the jobs not yet handed out end `cancelled`.
    max_errors: Option<i32>,
    /// Jobs still waiting for a slot (status `pending`).
    waiting: usize,
    /// Failures so far (failed, timeout, lost).
    errors: usize,
    /// `max_errors` was reached: nothing more is handed out.
    stopped: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FanOutJobStatus {
    agent: String,
    job_id: String,
    status: String,
    exit_code: Option<i32>,
    duration_ms: Option<i64>,
}

/// Agents whose jobs ended the same way.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OutcomeGroup {
    /// 12 hex digits, the same for the same outcome and options in every request.
    #[schema(example = "3f2a9c1e7b4d")]
    id: String,
    /// The largest group (ties: the one with the alphabetically first agent); the others
    /// are diffed against it.
    baseline: bool,
    /// How many jobs are in the group.
    size: usize,
    status: String,
    exit_code: Option<i32>,
    /// By agent name. The first one's output stands for the group in the diffs.
    agents: Vec<GroupMember>,
    /// Which of `status`, `exit_code`, `stdout`, `stderr` differ from the baseline; empty
    /// for the baseline.
    differs_in: Vec<&'static str>,
    /// Unified diff of the baseline's normalised stdout to this group's; null when they are
    /// the same (always for the baseline) or the diff was omitted.
    stdout_diff: Option<String>,
    /// The same for stderr.
    stderr_diff: Option<String>,
    /// A diff was cut at 256 KiB (at a line end).
    diff_truncated: bool,
    /// No diff was made for this group: beyond the first 50 groups, or past the answer's
    /// total of 4 MiB of diff text or 5 s of diff time. `differs_in` still says what differs.
    diff_omitted: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupMember {
    agent: String,
    job_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UnfinishedJob {
    agent: String,
    job_id: String,
    status: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DiffOptions {
    mask: Vec<String>,
    ignore_trailing_whitespace: bool,
    context: usize,
}

/// The fan-out of the tenant with its progress and, unless `options.groups` is false, its
/// outcome groups and diffs. 404 for a fan-out of another tenant; 422 for a bad mask.
pub async fn status(db: &Db, tenant_id: &str, fanout_id: &str, options: Options) -> Result<FanOutStatus> {
    let normalisation = Normalisation::new(&options.masks, options.ignore_trailing_whitespace)
        .map_err(|error| Error::Validation(error.0))?;
    let fanout = db::jobs::find_fanout(db, tenant_id, fanout_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("fan-out {fanout_id}")))?;
    let states = db::jobs::fanout_job_states(db, tenant_id, &fanout.id).await?;
    let count = |statuses: &[&str]| states.iter().filter(|j| statuses.contains(&j.status.as_str())).count();
    let summary = FanOutSummary {
        total: states.len(),
        succeeded: count(&["success"]),
        failed: count(&["failed", "timeout", "lost"]),
        cancelled: count(&["cancelled"]),
        pending: count(&["pending", "dispatched"]),
        running: count(&["running"]),
    };
    let rollout = (fanout.max_concurrency.is_some() || fanout.max_errors.is_some()).then(|| RolloutState {
        max_concurrency: fanout.max_concurrency,
        max_errors: fanout.max_errors,
        waiting: states.iter().filter(|j| j.awaiting_slot).count(),
        errors: summary.failed,
        stopped: fanout.max_errors.is_some_and(|max| summary.failed >= max as usize),
    });
    let (finished, unfinished): (Vec<&FanoutJobState>, Vec<&FanoutJobState>) =
        states.iter().partition(|job| is_finished(&job.status));
    let mut grouping = None;
    if options.groups {
        let groups = group(db, tenant_id, &finished, Grouper::new(normalisation.clone())).await?;
        let limits = DiffLimits {
            context: options.context,
            max_bytes: MAX_DIFF_BYTES,
            timeout: DIFF_TIMEOUT,
        };
        let unfinished = unfinished
            .iter()
            .map(|job| UnfinishedJob {
                agent: job.agent_name.clone(),
                job_id: job.id.clone(),
                status: job.status.clone(),
            })
            .collect();
        grouping = Some((
            diff_groups(db, tenant_id, groups, normalisation, limits).await?,
            unfinished,
        ));
    }
    let (groups, unfinished) = grouping.unzip();
    Ok(FanOutStatus {
        params: crate::secrets::masked_params(&fanout.params, fanout.secret_params.as_deref()).into(),
        created_at: db::format_time(fanout.created_at),
        fanout_id: fanout.id,
        script: fanout.script,
        done: unfinished_count(&summary) == 0,
        summary,
        rollout,
        jobs: states
            .into_iter()
            .map(|job| FanOutJobStatus {
                agent: job.agent_name,
                job_id: job.id,
                status: job.status,
                exit_code: job.exit_code,
                duration_ms: job.duration_ms,
            })
            .collect(),
        diff_options: options.groups.then_some(DiffOptions {
            mask: options.masks,
            ignore_trailing_whitespace: options.ignore_trailing_whitespace,
            context: options.context,
        }),
        groups,
        unfinished,
    })
}

fn unfinished_count(summary: &FanOutSummary) -> usize {
    summary.pending + summary.running
}

fn is_finished(status: &str) -> bool {
    JobStatus::parse(status).is_some_and(JobStatus::is_terminal)
}

/// Reads the finished jobs' outputs a page at a time and groups them; the hashing runs on
/// a blocking thread so the HTTP worker (and the long-polls it holds) is not held up.
async fn group(db: &Db, tenant_id: &str, finished: &[&FanoutJobState], mut grouper: Grouper) -> Result<Vec<Group>> {
    for page in pages(finished) {
        let ids: Vec<String> = page.iter().map(|job| job.id.clone()).collect();
        let agents: HashMap<String, String> = page
            .iter()
            .map(|job| (job.id.clone(), job.agent_name.clone()))
            .collect();
        let outputs = db::jobs::outputs(db, tenant_id, &ids).await?;
        grouper = blocking(move || {
            for output in &outputs {
                // A job whose status moved on since the list was read (a `lost` job taking a
                // late result) is grouped as it is now.
                if let (Some(agent), true) = (agents.get(&output.id), is_finished(&output.status)) {
                    grouper.add(&Outcome {
                        agent,
                        job_id: &output.id,
                        status: &output.status,
                        exit_code: output.exit_code,
                        stdout: &output.stdout,
                        stderr: &output.stderr,
                    });
                }
            }
            grouper
        })
        .await?;
    }
    Ok(grouper.finish())
}

/// Consecutive runs of jobs holding about `PAGE_BYTES` of output (at least one job each).
fn pages<'a>(jobs: &'a [&'a FanoutJobState]) -> impl Iterator<Item = &'a [&'a FanoutJobState]> {
    let mut rest = jobs;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut end = 0;
        while end < rest.len() && end < PAGE_JOBS && (end == 0 || bytes + rest[end].output_bytes <= PAGE_BYTES) {
            bytes += rest[end].output_bytes;
            end += 1;
        }
        let (page, remaining) = rest.split_at(end);
        rest = remaining;
        Some(page)
    })
}

/// Each group as the API shows it, the non-baseline ones with their diffs (within the
/// limits above). Only the baseline's and one group's normalised outputs are held at once.
async fn diff_groups(
    db: &Db,
    tenant_id: &str,
    groups: Vec<Group>,
    normalisation: Normalisation,
    limits: DiffLimits,
) -> Result<Vec<OutcomeGroup>> {
    let Some(baseline) = groups.first().cloned() else {
        return Ok(Vec::new());
    };
    let started = Instant::now();
    let mut diff_bytes = 0;
    let mut baseline_text: Option<Arc<(String, String)>> = None;
    let mut shown = Vec::with_capacity(groups.len());
    for (index, group) in groups.into_iter().enumerate() {
        let mut view = OutcomeGroup {
            id: group.id.clone(),
            baseline: index == 0,
            size: group.members.len(),
            status: group.key.status.clone(),
            exit_code: group.key.exit_code,
            differs_in: group.key.differences(&baseline.key),
            stdout_diff: None,
            stderr_diff: None,
            diff_truncated: false,
            diff_omitted: false,
            agents: Vec::new(),
        };
        let outputs_differ = view
            .differs_in
            .iter()
            .any(|field| matches!(*field, "stdout" | "stderr"));
        if index > 0 && outputs_differ {
            let within_limits =
                index <= MAX_DIFFED_GROUPS && diff_bytes < MAX_TOTAL_DIFF_BYTES && started.elapsed() < DIFF_BUDGET;
            if within_limits {
                let base = match &baseline_text {
                    Some(text) => text.clone(),
                    None => {
                        let text = Arc::new(normalised_output(db, tenant_id, &baseline, &normalisation).await?);
                        baseline_text = Some(text.clone());
                        text
                    }
                };
                let own = normalised_output(db, tenant_id, &group, &normalisation).await?;
                let labels = (
                    format!("baseline {} ({})", baseline.id, baseline.agents_label()),
                    format!("group {} ({})", group.id, group.agents_label()),
                );
                let timeout = limits.timeout.min(DIFF_BUDGET.saturating_sub(started.elapsed()));
                let limits = DiffLimits { timeout, ..limits };
                let (stdout, stderr) = blocking(move || {
                    let diff_stream = |old: &str, new: &str, stream: &str| {
                        diff::unified_diff(
                            old,
                            new,
                            &format!("{} {stream}", labels.0),
                            &format!("{} {stream}", labels.1),
                            limits,
                        )
                    };
                    (
                        diff_stream(&base.0, &own.0, "stdout"),
                        diff_stream(&base.1, &own.1, "stderr"),
                    )
                })
                .await?;
                for diff in [&stdout, &stderr].into_iter().flatten() {
                    diff_bytes += diff.text.len();
                    view.diff_truncated |= diff.truncated;
                }
                view.stdout_diff = stdout.map(|diff| diff.text);
                view.stderr_diff = stderr.map(|diff| diff.text);
            } else {
                view.diff_omitted = true;
            }
        }
        view.agents = group
            .members
            .into_iter()
            .map(|member| GroupMember {
                agent: member.agent,
                job_id: member.job_id,
            })
            .collect();
        shown.push(view);
    }
    Ok(shown)
}

/// The group representative's stdout and stderr, normalised.
async fn normalised_output(
    db: &Db,
    tenant_id: &str,
    group: &Group,
    normalisation: &Normalisation,
) -> Result<(String, String)> {
    let job_id = group.representative().job_id.clone();
    let output = db::jobs::outputs(db, tenant_id, std::slice::from_ref(&job_id))
        .await?
        .pop()
        .ok_or_else(|| Error::not_found(format!("job {job_id}")))?;
    let normalisation = normalisation.clone();
    blocking(move || (normalisation.apply(&output.stdout), normalisation.apply(&output.stderr))).await
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Error::Internal(format!("fan-out comparison thread: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, output_bytes: i64) -> FanoutJobState {
        FanoutJobState {
            id: id.into(),
            agent_name: id.into(),
            status: "success".into(),
            exit_code: Some(0),
            duration_ms: None,
            output_bytes,
            awaiting_slot: false,
        }
    }

    #[test]
    fn pages_hold_about_page_bytes_and_at_least_one_job() {
        let jobs: Vec<FanoutJobState> = (0..20).map(|i| state(&i.to_string(), 1 << 20)).collect();
        let refs: Vec<&FanoutJobState> = jobs.iter().collect();
        let sizes: Vec<usize> = pages(&refs).map(<[_]>::len).collect();
        assert_eq!(sizes, [8, 8, 4]);
        let huge = [state("big", PAGE_BYTES * 3), state("small", 10)];
        let refs: Vec<&FanoutJobState> = huge.iter().collect();
        assert_eq!(pages(&refs).map(<[_]>::len).collect::<Vec<_>>(), [1, 1]);
        let tiny: Vec<FanoutJobState> = (0..100).map(|i| state(&i.to_string(), 0)).collect();
        let refs: Vec<&FanoutJobState> = tiny.iter().collect();
        assert_eq!(pages(&refs).map(<[_]>::len).collect::<Vec<_>>(), [64, 36]);
    }
}
