//! One job from assignment to result: the whitelist and parameter checks that decide
//! whether it may run at all, the environment it gets, and the report it produces.

use super::mask::SecretMasker;
use super::process::{run_process, OutputSink, ProcessSpec, StopReason, Termination};
use crate::config::{Config, ScriptBaseEnv};
use crate::manifest::{resolve_script_path, LoadedManifest};
use shared_protocol::params::{validate_param_name, validate_param_value, MAX_PARAMS};
use shared_protocol::protocol::{JobAssignment, JobResultReport, RunOutcome};
use shared_protocol::AgentName;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// The executor's share of the configuration.
#[derive(Clone, Debug)]
pub struct ExecutionSettings {
    pub agent_name: AgentName,
    pub scripts_dir: PathBuf,
    pub base_env: ScriptBaseEnv,
    pub default_timeout: Duration,
    pub kill_grace: Duration,
    pub output_limit: usize,
}

impl ExecutionSettings {
    pub fn from_config(config: &Config) -> ExecutionSettings {
        ExecutionSettings {
            agent_name: config.agent_name.clone(),
            scripts_dir: config.scripts_dir.clone(),
            base_env: config.script_env.clone(),
            default_timeout: config.default_job_timeout,
            kill_grace: config.kill_grace,
            output_limit: config.output_limit_bytes,
        }
    }
}

/// Checks the job against the manifest and the parameter rules and builds the process
/// to run; `Err` carries the reason it must not run.
pub fn prepare(
    job: &JobAssignment,
    manifest: &LoadedManifest,
    settings: &ExecutionSettings,
) -> Result<ProcessSpec, String> {
    let script = manifest.find(&job.script).ok_or_else(|| {
        format!(
            "script {:?} is not in this agent's manifest; only whitelisted scripts run",
            job.script
        )
    })?;
    // Re-resolved now rather than trusting the load-time result: the file or a symlink
    // may have changed since the manifest was read.
    let program = resolve_script_path(&script.entry.path, &settings.scripts_dir)
        .map_err(|reason| format!("script {:?} cannot run: {reason}", job.script))?;

    if job.params.len() > MAX_PARAMS {
        return Err(format!(
            "the job has {} parameters; at most {MAX_PARAMS} are accepted",
            job.params.len()
        ));
    }
    for (name, value) in &job.params {
        validate_param_name(name)?;
        validate_param_value(name, value)?;
    }

    let mut env = vec![
        ("PATH".to_owned(), settings.base_env.path.clone()),
        ("HOME".to_owned(), settings.base_env.home.clone()),
    ];
    if let Some(lang) = &settings.base_env.lang {
        env.push(("LANG".to_owned(), lang.clone()));
    }
    // Values go into the environment as opaque bytes: no shell ever sees them.
    env.extend(job.params.iter().map(|(name, value)| (name.clone(), value.clone())));
    // Last, so they win; the param rules reserve the SCRIPTMESH_ prefix anyway.
    env.push(("SCRIPTMESH_JOB_ID".to_owned(), job.job_id.clone()));
    env.push(("SCRIPTMESH_AGENT_NAME".to_owned(), settings.agent_name.to_string()));
    env.push(("SCRIPTMESH_SCRIPT".to_owned(), job.script.clone()));

    let timeout = job
        .timeout_secs
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
        .unwrap_or(settings.default_timeout);

    Ok(ProcessSpec {
        program,
        working_dir: settings.scripts_dir.clone(),
        env,
        timeout,
        kill_grace: settings.kill_grace,
        output_limit: settings.output_limit,
        secrets: secret_values(job),
    })
}

/// The values to mask in this job's output: those of its secret params that are set and
/// not empty. Names that are not params of the job are ignored.
pub fn secret_values(job: &JobAssignment) -> Vec<String> {
    job.secret_params
        .iter()
        .filter_map(|name| job.params.get(name))
        .filter(|value| !value.is_empty())
        .cloned()
        .collect()
}

/// Runs the job if it passes the checks and describes how it ended. Never fails: every
/// way a job can end is a report. `live` gets the (masked) output while the script runs.
pub async fn execute(
    job: &JobAssignment,
    manifest: &LoadedManifest,
    settings: &ExecutionSettings,
    stop: impl Future<Output = StopReason>,
    live: &dyn OutputSink,
) -> JobResultReport {
    let started_at_ms = now_ms();
    // The agent's own words (reasons, error messages) are masked too: none quotes a
    // param value today, but an OS error naming a path built from one could.
    let masker = SecretMasker::new(secret_values(job));
    let spec = match prepare(job, manifest, settings) {
        Ok(spec) => spec,
        Err(reason) => {
            let reason = masker.mask_text(&reason);
            tracing::warn!(job_id = %job.job_id, script = %job.script, %reason, "job rejected");
            return rejected(&settings.agent_name, &reason, started_at_ms);
        }
    };
    tracing::info!(job_id = %job.job_id, script = %job.script, timeout_secs = spec.timeout.as_secs(), "job started");

    let outcome = match run_process(&spec, stop, live).await {
        Ok(outcome) => outcome,
        Err(error) => {
            let reason = masker.mask_text(&format!("the script could not be started: {error}"));
            tracing::error!(job_id = %job.job_id, script = %job.script, %reason);
            let completed_at_ms = now_ms();
            return JobResultReport {
                agent_name: settings.agent_name.to_string(),
                outcome: RunOutcome::Failed,
                exit_code: None,
                stdout: String::new(),
                stderr: format!("scriptmesh-agent: {reason}\n"),
                stdout_truncated: false,
                stderr_truncated: false,
                duration_ms: elapsed_ms(started_at_ms, completed_at_ms),
                started_at_ms,
                completed_at_ms,
                reason: Some(reason),
            };
        }
    };

    let (run_outcome, exit_code, reason) = match outcome.termination {
        Termination::Exited(0) => (RunOutcome::Success, Some(0), None),
        Termination::Exited(code) => (RunOutcome::Failed, Some(code), None),
        Termination::Signalled(signal) => (
            RunOutcome::Failed,
            Some(128 + signal),
            Some(format!(
                "the script was killed by signal {signal} ({})",
                signal_name(signal)
            )),
        ),
        Termination::TimedOut => (
            RunOutcome::Timeout,
            None,
            Some(format!(
                "timed out after {} s: the process group got SIGTERM, then SIGKILL after {} s",
                spec.timeout.as_secs(),
                spec.kill_grace.as_secs()
            )),
        ),
        Termination::Stopped(StopReason::Cancelled) => (
            RunOutcome::Cancelled,
            None,
            Some("cancelled: the process group got SIGTERM, then SIGKILL".to_owned()),
        ),
        // Not a cancellation by anyone: the run failed because its agent went away.
        Termination::Stopped(StopReason::Shutdown) => (
            RunOutcome::Failed,
            None,
            Some("the agent shut down while the script ran; it was killed".to_owned()),
        ),
    };

    let reason = reason.map(|reason| masker.mask_text(&reason));
    let mut stderr = outcome.stderr.text();
    if let Some(reason) = &reason {
        // Also in stderr: it is where people look first when a job ended oddly.
        if !stderr.is_empty() && !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        stderr.push_str(&format!("scriptmesh-agent: {reason}\n"));
    }
    let duration_ms = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
    tracing::info!(job_id = %job.job_id, outcome = ?run_outcome, ?exit_code, duration_ms, "job finished");

    JobResultReport {
        agent_name: settings.agent_name.to_string(),
        outcome: run_outcome,
        exit_code,
        stdout: outcome.stdout.text(),
        stderr,
        stdout_truncated: outcome.stdout.truncated,
        stderr_truncated: outcome.stderr.truncated,
        duration_ms,
        started_at_ms,
        completed_at_ms: now_ms(),
        reason,
    }
}

/// The report for a job that never ran.
pub fn rejected(agent_name: &AgentName, reason: &str, started_at_ms: i64) -> JobResultReport {
    let completed_at_ms = now_ms();
    JobResultReport {
        agent_name: agent_name.to_string(),
        outcome: RunOutcome::Rejected,
        exit_code: None,
        stdout: String::new(),
        stderr: format!("scriptmesh-agent refused to run this job: {reason}\n"),
        stdout_truncated: false,
        stderr_truncated: false,
        duration_ms: elapsed_ms(started_at_ms, completed_at_ms),
        started_at_ms,
        completed_at_ms,
        reason: Some(reason.to_owned()),
    }
}

/// The report for a job cancelled before it got a slot.
pub fn cancelled_before_start(agent_name: &AgentName) -> JobResultReport {
    let now = now_ms();
    JobResultReport {
        agent_name: agent_name.to_string(),
        outcome: RunOutcome::Cancelled,
        exit_code: None,
        stdout: String::new(),
        stderr: "scriptmesh-agent: cancelled before the script started\n".to_owned(),
        stdout_truncated: false,
        stderr_truncated: false,
        duration_ms: 0,
        started_at_ms: now,
        completed_at_ms: now,
        reason: Some("cancelled before the script started".to_owned()),
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn elapsed_ms(started_at_ms: i64, completed_at_ms: i64) -> u64 {
    u64::try_from(completed_at_ms.saturating_sub(started_at_ms)).unwrap_or(0)
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_the_set_values_of_named_params() {
        let job = JobAssignment {
            job_id: "job_1".into(),
            script: "s.sh".into(),
            params: [("token", "t0k3n"), ("empty", ""), ("region", "eu")]
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            timeout_secs: None,
            secret_params: vec!["token".into(), "empty".into(), "not_a_param".into()],
        };
        assert_eq!(secret_values(&job), ["t0k3n"]);
    }
}
