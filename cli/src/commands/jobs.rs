//! `jobs` (a filtered page of jobs), `job ID` (one job with its output) and
//! `job ID --follow` (its output live, from `GET /jobs/{id}/output?follow=true`).

use super::run::exit_status;
use crate::args::JobsArgs;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::events::Parser;
use crate::output::{cell, duration_ms, Output};
use serde_json::{json, Value};
use std::io::BufRead;
use std::time::{Duration, Instant};

/// How long `--follow` keeps trying to reconnect to an orchestrator that went away (a
/// restart, a network blip) before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(60);
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

pub fn list(client: &mut Client, output: Output, args: JobsArgs) -> Result<u8> {
    let filters = [
        ("agent", args.agent),
        ("status", args.status),
        ("script", args.script),
        ("since", args.since),
        ("until", args.until),
        ("cursor", args.cursor),
        ("limit", Some(args.limit.to_string())),
    ];
    let query: Vec<(&str, String)> = filters
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
        .collect();
    let page = client.get(&["jobs"], &query)?;
    if output.json {
        output.json(&page);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = page["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|job| {
            vec![
                cell(&job["job_id"]),
                cell(&job["agent"]),
                cell(&job["script"]),
                cell(&job["status"]),
                cell(&job["exit_code"]),
                duration_ms(&job["duration_ms"]),
                cell(&job["created_at"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        output.note("No jobs match.");
    } else {
        output.table(
            &["JOB", "AGENT", "SCRIPT", "STATUS", "EXIT", "DURATION", "CREATED"],
            &rows,
        );
    }
    if let Some(cursor) = page["next_cursor"].as_str() {
        output.note(format!(
            "More: scriptmesh jobs --cursor {cursor} (with the same filters)"
        ));
    }
    Ok(0)
}

pub fn show(client: &mut Client, output: Output, id: &str) -> Result<u8> {
    let job = client.get(&["jobs", id], &[])?;
    if output.json {
        output.json(&job);
    } else {
        print_job(output, &job);
    }
    Ok(0)
}

/// Every field of a job, then its stdout and stderr.
pub fn print_job(output: Output, job: &Value) {
    let mut fields = vec![
        ("job", cell(&job["job_id"])),
        ("status", cell(&job["status"])),
        ("exit code", cell(&job["exit_code"])),
        ("agent", cell(&job["agent"])),
        ("script", cell(&job["script"])),
        ("params", cell(&job["params"])),
        ("created", cell(&job["created_at"])),
        ("started", cell(&job["started_at"])),
        ("completed", cell(&job["completed_at"])),
        ("duration", duration_ms(&job["duration_ms"])),
        ("timeout", cell(&job["timeout"])),
    ];
    for (label, field) in [
        ("reason", "reason"),
        ("fan-out", "fanout_id"),
        ("schedule", "schedule_id"),
    ] {
        if !job[field].is_null() {
            fields.push((label, cell(&job[field])));
        }
    }
    output.fields(&fields);
    for (name, truncated) in [("stdout", "stdout_truncated"), ("stderr", "stderr_truncated")] {
        let text = job[name].as_str().unwrap_or_default();
        let note = if job[truncated].as_bool() == Some(true) {
            " (truncated by the agent)"
        } else {
            ""
        };
        output.line(format!("--- {name}{note} ---"));
        if !text.is_empty() {
            output.raw_stdout(text);
            if !text.ends_with('\n') {
                output.line("");
            }
        }
    }
}

/// Prints the job's output as it is written until the job ends, reconnecting (where it left
/// off) when the connection drops; returns the job's exit status.
pub fn follow(client: &mut Client, output: Output, id: &str) -> Result<u8> {
    let path = ["jobs", id, "output"];
    let query = [("follow", "true".to_owned())];
    let mut last_id: Option<String> = None;
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let reader = match client.events(&path, &query, last_id.as_deref()) {
            Ok(reader) => reader,
            Err(error @ Error::Unreachable { .. }) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > RECONNECT_FOR {
                    return Err(error);
                }
                std::thread::sleep(RECONNECT_PAUSE);
                continue;
            }
            Err(other) => return Err(other),
        };
        unreachable_since = None;
        let mut parser = Parser::default();
        for line in reader.lines() {
            // A read error is a dropped connection: reconnect below.
            let Ok(line) = line else { break };
            let Some(event) = parser.line(&line) else { continue };
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if event.id.is_some() {
                last_id = event.id.clone();
            }
            if output.json {
                output.line(json!({"event": event.name, "data": data}).to_string());
            }
            match event.name.as_str() {
                "output" if !output.json => {
                    let text = data["data"].as_str().unwrap_or_default();
                    match data["stream"].as_str() {
                        Some("stderr") => output.raw_stderr(text),
                        _ => output.raw_stdout(text),
                    }
                }
                "gap" if !output.json => output.note(format!(
                    "[{} bytes of output not kept]",
                    data["to"]
                        .as_u64()
                        .unwrap_or(0)
                        .saturating_sub(data["from"].as_u64().unwrap_or(0))
                )),
                "end" => {
                    if !output.json {
                        let mut summary = format!("job {id} {}", cell(&data["status"]));
                        if let Some(code) = data["exit_code"].as_i64() {
                            summary.push_str(&format!(" (exit code {code})"));
                        }
                        if let Some(reason) = data["reason"].as_str() {
                            summary.push_str(&format!(": {reason}"));
                        }
                        output.note(summary);
                    }
                    return Ok(exit_status(&data));
                }
                "error" => break,
                _ => {}
            }
        }
        std::thread::sleep(RECONNECT_PAUSE);
    }
}
