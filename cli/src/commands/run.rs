//! `run SCRIPT --agent NAME | --tag TAG [--wait]`: one agent is a `POST /trigger-script`;
//! several agents or any tag is a `POST /fan-out`. With `--wait` it polls until every job
//! has ended and exits with the script's exit code.
//!
//! Exit status with `--wait`: the script's exit code; for jobs that ended without one,
//! 124 for `timeout` (as timeout(1)), 125 for `lost`, 130 for `cancelled`, 1 otherwise.
//! A fan-out exits 0 only when every job succeeded, else with the first failed job's code;
//! it ends with the agents grouped by outcome and each group's diff against the baseline.

use super::params_object;
use crate::args::RunArgs;
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, Output};
use serde_json::{json, Value};
use shared_protocol::api::{FanOutRequest, TriggerRequest};
use shared_protocol::JobStatus;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// The first poll comes quickly (most scripts are short), later ones up to a second apart.
const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(1);

pub const EXIT_TIMEOUT: u8 = 124;
pub const EXIT_LOST: u8 = 125;
pub const EXIT_CANCELLED: u8 = 130;

pub fn run(client: &mut Client, output: Output, args: RunArgs) -> Result<u8> {
    if args.agents.len() == 1 && args.tags.is_empty() {
        run_on_agent(client, output, args)
    } else {
        fan_out(client, output, args)
    }
}

/// `--param`s and `--secret`s together: both are params of the script.
fn all_params(args: &RunArgs) -> serde_json::Map<String, Value> {
    let mut params = params_object(&args.params);
    params.extend(params_object(&args.secrets));
    params
}

fn secret_names(args: &RunArgs) -> Option<Vec<String>> {
    (!args.secrets.is_empty()).then(|| args.secrets.iter().map(|(name, _)| name.clone()).collect())
}

fn run_on_agent(client: &mut Client, output: Output, args: RunArgs) -> Result<u8> {
    let (params, secret_params) = (all_params(&args), secret_names(&args));
    let request = TriggerRequest {
        agent: args.agents.into_iter().next().unwrap_or_default(),
        run_script: args.script,
        params: Some(params),
        secret_params,
        async_exec: Some(true),
        timeout: args.timeout,
    };
    let queued = client.post(&["trigger-script"], &to_value(&request))?;
    let job_id = cell(&queued["job_id"]);
    if let Some(message) = queued["message"].as_str() {
        output.note(message);
    }
    if !args.wait {
        if output.json {
            output.json(&queued);
        } else {
            output.line(&job_id);
        }
        return Ok(0);
    }
    let job = poll(
        || client.get(&["jobs", &job_id], &[]),
        |job| is_finished(&job["status"]),
    )?;
    if output.json {
        output.json(&job);
    } else {
        mirror_output(output, &job);
    }
    Ok(exit_status(&job))
}

/// The script's stdout to stdout and stderr to stderr, as they came; a note on stderr for a
/// job that ended without an exit code of its own.
fn mirror_output(output: Output, job: &Value) {
    output.raw_stdout(job["stdout"].as_str().unwrap_or_default());
    output.raw_stderr(job["stderr"].as_str().unwrap_or_default());
    for (stream, flag) in [("stdout", "stdout_truncated"), ("stderr", "stderr_truncated")] {
        if job[flag].as_bool() == Some(true) {
            output.note(format!("scriptmesh: the agent truncated the script's {stream}"));
        }
    }
    let status = job["status"].as_str().unwrap_or_default();
    if !matches!(status, "success" | "failed") {
        let reason = job["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
        output.note(format!(
            "scriptmesh: job {} ended {status}{reason}",
            cell(&job["job_id"])
        ));
    }
}

fn fan_out(client: &mut Client, output: Output, args: RunArgs) -> Result<u8> {
    let (params, secret_params) = (all_params(&args), secret_names(&args));
    let request = FanOutRequest {
        params: Some(params),
        secret_params,
        run_script: args.script,
        agents: (!args.agents.is_empty()).then_some(args.agents),
        tags: (!args.tags.is_empty()).then_some(args.tags),
        only_online: Some(!args.include_offline),
        timeout: args.timeout,
        max_concurrency: args.max_concurrency,
        max_errors: args.max_errors,
    };
    let started = client.post(&["fan-out"], &to_value(&request))?;
    let fanout_id = cell(&started["fanout_id"]);
    for skipped in started["skipped"].as_array().into_iter().flatten() {
        output.note(format!(
            "skipped {}: {}",
            cell(&skipped["agent"]),
            cell(&skipped["reason"])
        ));
    }
    if !args.wait {
        if output.json {
            output.json(&started);
        } else {
            let rows: Vec<Vec<String>> = started["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|job| vec![cell(&job["agent"]), cell(&job["job_id"])])
                .collect();
            output.line(format!("Fan-out {fanout_id}: {} jobs queued.", rows.len()));
            output.table(&["AGENT", "JOB"], &rows);
        }
        return Ok(0);
    }
    // Progress polls skip the outcome groups (no outputs read); the final state has them.
    let mut progress = Progress::new(output);
    poll(
        || client.get(&["fan-out", &fanout_id], &[("groups", "false".into())]),
        |state| {
            progress.show(&state["summary"]);
            state["done"].as_bool() == Some(true)
        },
    )?;
    progress.finish();
    let result = client.get(&["fan-out", &fanout_id], &[])?;
    if output.json {
        output.json(&result);
    } else {
        super::fanout::print_jobs(output, &result);
        output.line("");
        super::fanout::print_groups(output, &result);
        output.note(format!(
            "Each job's output: scriptmesh job JOB; compare with masks: scriptmesh fanout diff {fanout_id} --mask REGEX"
        ));
    }
    let jobs: Vec<&Value> = result["jobs"].as_array().into_iter().flatten().collect();
    Ok(jobs
        .iter()
        .map(|job| exit_status(job))
        .find(|&code| code != 0)
        .unwrap_or(0))
}

/// Fetches until `done` says so, waiting a little longer each time (up to a second).
fn poll(mut fetch: impl FnMut() -> Result<Value>, mut done: impl FnMut(&Value) -> bool) -> Result<Value> {
    let mut delay = FIRST_POLL;
    loop {
        let state = fetch()?;
        if done(&state) {
            return Ok(state);
        }
        std::thread::sleep(delay);
        delay = (delay * 3 / 2).min(MAX_POLL);
    }
}

fn is_finished(status: &Value) -> bool {
    status
        .as_str()
        .and_then(JobStatus::parse)
        .is_some_and(JobStatus::is_terminal)
}

/// The process exit status a finished job stands for (see the module's doc).
pub fn exit_status(job: &Value) -> u8 {
    let code = job["exit_code"].as_i64();
    match job["status"].as_str() {
        Some("success") => 0,
        Some("timeout") => EXIT_TIMEOUT,
        Some("lost") => EXIT_LOST,
        Some("cancelled") => EXIT_CANCELLED,
        _ => code.and_then(|c| u8::try_from(c).ok()).filter(|&c| c != 0).unwrap_or(1),
    }
}

/// `3/5 done (2 success, 1 failed)` on stderr: rewritten in place on a terminal, a new
/// line per change otherwise (logs, CI).
struct Progress {
    output: Output,
    terminal: bool,
    last: Option<String>,
}

impl Progress {
    fn new(output: Output) -> Progress {
        Progress {
            output,
            terminal: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, summary: &Value) {
        let count = |field: &str| summary[field].as_u64().unwrap_or(0);
        let total = count("total");
        let done = total.saturating_sub(count("pending") + count("running"));
        let line = format!(
            "{done}/{total} done ({} success, {} failed)",
            count("succeeded"),
            count("failed") + count("cancelled")
        );
        if self.last.as_deref() == Some(line.as_str()) {
            return;
        }
        if self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r{line}\x1b[K");
            let _ = stderr.flush();
        } else {
            self.output.note(&line);
        }
        self.last = Some(line);
    }

    fn finish(&self) {
        if self.terminal && self.last.is_some() {
            self.output.note("");
        }
    }
}

fn to_value(request: &impl serde::Serialize) -> Value {
    // The request types are plain structs of strings, numbers and maps: always serialisable.
    serde_json::to_value(request).unwrap_or_else(|_| json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_mirrors_the_job() {
        let status = |status: &str, code: Value| exit_status(&json!({"status": status, "exit_code": code}));
        assert_eq!(status("success", json!(0)), 0);
        assert_eq!(status("failed", json!(3)), 3);
        assert_eq!(status("failed", json!(null)), 1);
        assert_eq!(status("failed", json!(-1)), 1);
        assert_eq!(status("failed", json!(300)), 1);
        assert_eq!(status("timeout", json!(null)), EXIT_TIMEOUT);
        assert_eq!(status("lost", json!(null)), EXIT_LOST);
        assert_eq!(status("cancelled", json!(null)), EXIT_CANCELLED);
    }
}
