//! `fanout show ID` (progress and every agent's job) and `fanout diff ID` (agents grouped by
//! outcome, each group diffed against the baseline); `run --tag --wait` ends with the same.

use crate::args::{FanoutCommand, FanoutDiffArgs};
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, duration_ms, Output};
use serde_json::Value;

/// Agents named per group before "and N more" (`--json` has them all).
const AGENTS_SHOWN: usize = 20;

pub fn run(client: &mut Client, output: Output, command: FanoutCommand) -> Result<u8> {
    match command {
        FanoutCommand::Show { id } => {
            let state = client.get(&["fan-out", &id], &[("groups", "false".into())])?;
            if output.json {
                output.json(&state);
            } else {
                print_summary_line(output, &state);
                print_jobs(output, &state);
            }
        }
        FanoutCommand::Diff(args) => {
            let state = client.get(&["fan-out", &args.id], &diff_query(&args))?;
            if output.json {
                output.json(&state);
            } else {
                print_summary_line(output, &state);
                print_groups(output, &state);
            }
        }
    }
    Ok(0)
}

fn diff_query(args: &FanoutDiffArgs) -> Vec<(&'static str, String)> {
    let mut query: Vec<(&str, String)> = args.masks.iter().map(|mask| ("mask", mask.clone())).collect();
    if args.ignore_trailing_whitespace {
        query.push(("ignore_trailing_whitespace", "true".into()));
    }
    query.push(("context", args.context.to_string()));
    query
}

/// `Fan-out fan_... (check.sh): 3 jobs, 2 succeeded, 1 failed, done.`
fn print_summary_line(output: Output, state: &Value) {
    let summary = &state["summary"];
    let count = |field: &str| summary[field].as_u64().unwrap_or(0);
    let mut parts = vec![format!("{} jobs", count("total"))];
    for (field, label) in [
        ("succeeded", "succeeded"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
        ("running", "running"),
        ("pending", "waiting"),
    ] {
        if count(field) > 0 {
            parts.push(format!("{} {label}", count(field)));
        }
    }
    let done = if state["done"].as_bool() == Some(true) {
        "done"
    } else {
        "not done yet"
    };
    output.line(format!(
        "Fan-out {} ({}): {}, {done}.",
        cell(&state["fanout_id"]),
        cell(&state["script"]),
        parts.join(", ")
    ));
}

/// One row per agent: AGENT STATUS EXIT DURATION JOB.
pub fn print_jobs(output: Output, state: &Value) {
    let rows: Vec<Vec<String>> = state["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|job| {
            vec![
                cell(&job["agent"]),
                cell(&job["status"]),
                cell(&job["exit_code"]),
                duration_ms(&job["duration_ms"]),
                cell(&job["job_id"]),
            ]
        })
        .collect();
    output.table(&["AGENT", "STATUS", "EXIT", "DURATION", "JOB"], &rows);
}

/// The outcome groups, baseline first, each with its agents and its diffs.
pub fn print_groups(output: Output, state: &Value) {
    let groups: Vec<&Value> = state["groups"].as_array().into_iter().flatten().collect();
    match groups.len() {
        0 => output.line("No job has finished yet: nothing to compare."),
        1 => output.line(format!(
            "Every finished job had the same result ({}).",
            outcome(groups[0])
        )),
        n => output.line(format!(
            "{n} different results; each group is compared with the baseline, the largest."
        )),
    }
    for group in &groups {
        let size = group["size"].as_u64().unwrap_or(0);
        let kind = if group["baseline"].as_bool() == Some(true) {
            "Baseline"
        } else {
            "Group"
        };
        let differs: Vec<String> = group["differs_in"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|field| cell(field).replace('_', " "))
            .collect();
        let differs = if differs.is_empty() {
            String::new()
        } else {
            format!(", differs in {}", differs.join(", "))
        };
        output.line("");
        output.line(format!(
            "{kind} {}: {size} agent{}, {}{differs}",
            cell(&group["id"]),
            if size == 1 { "" } else { "s" },
            outcome(group)
        ));
        output.line(format!("  {}", agent_list(group)));
        for stream in ["stdout_diff", "stderr_diff"] {
            if let Some(diff) = group[stream].as_str() {
                output.diff(diff);
            }
        }
        if group["diff_truncated"].as_bool() == Some(true) {
            output.line("  (diff cut at 256 KiB)");
        }
        if group["diff_omitted"].as_bool() == Some(true) {
            output.line("  (no diff: beyond the first 50 groups or the answer's diff budget)");
        }
    }
    let unfinished: Vec<String> = state["unfinished"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|job| format!("{} ({})", cell(&job["agent"]), cell(&job["status"])))
        .collect();
    if !unfinished.is_empty() {
        output.line("");
        output.line(format!("Not finished, not compared: {}", unfinished.join(", ")));
    }
}

/// `success, exit 0`.
fn outcome(group: &Value) -> String {
    match group["exit_code"].as_i64() {
        Some(code) => format!("{}, exit {code}", cell(&group["status"])),
        None => cell(&group["status"]),
    }
}

/// `web-1, web-2 and 3 more`.
fn agent_list(group: &Value) -> String {
    let agents: Vec<String> = group["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|member| cell(&member["agent"]))
        .collect();
    let shown = agents.iter().take(AGENTS_SHOWN).cloned().collect::<Vec<_>>().join(", ");
    match agents.len().saturating_sub(AGENTS_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more (--json lists them all)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_agent_lists_are_shortened() {
        let agents: Vec<Value> = (0..25)
            .map(|i| json!({"agent": format!("a{i}"), "job_id": "j"}))
            .collect();
        let text = agent_list(&json!({ "agents": agents }));
        assert!(text.starts_with("a0, a1, "), "{text}");
        assert!(text.ends_with("a19 and 5 more (--json lists them all)"), "{text}");
    }

    #[test]
    fn outcomes_read_well() {
        assert_eq!(outcome(&json!({"status": "failed", "exit_code": 4})), "failed, exit 4");
        assert_eq!(outcome(&json!({"status": "timeout", "exit_code": null})), "timeout");
    }

    #[test]
    fn diff_options_become_the_query() {
        let args = FanoutDiffArgs {
            id: "fan_x".into(),
            masks: vec!["a".into(), "b".into()],
            ignore_trailing_whitespace: true,
            context: 1,
        };
        let query = diff_query(&args);
        assert_eq!(
            query,
            [
                ("mask", "a".to_owned()),
                ("mask", "b".to_owned()),
                ("ignore_trailing_whitespace", "true".to_owned()),
                ("context", "1".to_owned())
            ]
        );
    }
}
