//! `jobs` (a filtered page of jobs) and `job ID` (one job with its output).

use crate::args::JobsArgs;
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, duration_ms, Output};
use serde_json::Value;

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
