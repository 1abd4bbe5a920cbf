//! `schedules list|create|delete`: cron schedules.

use super::params_object;
use crate::args::{ScheduleCreateArgs, SchedulesCommand};
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, Output};
use serde_json::{json, Value};

pub fn run(client: &mut Client, output: Output, command: SchedulesCommand) -> Result<u8> {
    match command {
        SchedulesCommand::List => list(client, output),
        SchedulesCommand::Create(args) => create(client, output, args),
        SchedulesCommand::Delete { id } => {
            let deleted = client.delete(&["schedules", &id])?;
            if output.json {
                output.json(&deleted);
            } else {
                output.line(format!("Deleted schedule {id}."));
            }
            Ok(0)
        }
    }
}

fn list(client: &mut Client, output: Output) -> Result<u8> {
    let answer = client.get(&["schedules"], &[])?;
    if output.json {
        output.json(&answer);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = answer["schedules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|schedule| {
            vec![
                cell(&schedule["id"]),
                target(schedule),
                cell(&schedule["script"]),
                cell(&schedule["cron_expression"]),
                cell(&schedule["timezone"]),
                cell(&schedule["status"]),
                cell(&schedule["next_fire"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        output.note("No schedules.");
    } else {
        output.table(
            &["ID", "TARGET", "SCRIPT", "CRON", "TIMEZONE", "STATUS", "NEXT FIRE"],
            &rows,
        );
    }
    Ok(0)
}

/// `agent NAME` or `tags a,b`.
fn target(schedule: &Value) -> String {
    match schedule["agent"].as_str() {
        Some(agent) => agent.to_owned(),
        None => format!("tags {}", cell(&schedule["tags"])),
    }
}

fn create(client: &mut Client, output: Output, args: ScheduleCreateArgs) -> Result<u8> {
    let mut body = json!({
        "script": args.script,
        "cron_expression": args.cron,
        "params": params_object(&args.params),
    });
    if let Some(agent) = args.agent {
        body["agent"] = json!(agent);
    }
    if !args.tags.is_empty() {
        body["tags"] = json!(args.tags);
    }
    for (field, value) in [("timezone", args.timezone), ("webhook_url", args.webhook_url)] {
        if let Some(value) = value {
            body[field] = json!(value);
        }
    }
    if let Some(timeout) = args.timeout {
        body["timeout"] = json!(timeout);
    }
    let created = client.post(&["schedules"], &body)?;
    if output.json {
        output.json(&created);
    } else {
        output.line(format!(
            "Created schedule {}: {} on {} at \"{}\" ({}); next fire {}.",
            cell(&created["id"]),
            cell(&created["script"]),
            target(&created),
            cell(&created["cron_expression"]),
            cell(&created["timezone"]),
            cell(&created["next_fire"]),
        ));
    }
    Ok(0)
}
