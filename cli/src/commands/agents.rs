//! `agents` (a table of every agent) and `agents show NAME`.

use crate::args::{AgentsArgs, AgentsCommand};
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, relative_time, Output};

pub fn run(client: &mut Client, output: Output, args: AgentsArgs) -> Result<u8> {
    match args.command {
        None | Some(AgentsCommand::List) => list(client, output),
        Some(AgentsCommand::Show { name }) => show(client, output, &name),
    }
}

/// `GET /agents` answers an object keyed by name (sorted by name here).
fn list(client: &mut Client, output: Output) -> Result<u8> {
    let agents = client.get(&["agents"], &[])?;
    if output.json {
        output.json(&agents);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = agents
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, agent)| {
            vec![
                name.clone(),
                cell(&agent["status"]),
                cell(&agent["tags"]),
                cell(&agent["scripts"]),
                relative_time(&agent["last_heartbeat"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        output.note("No agents yet: start one with an API key from `scriptmesh keys create NAME`.");
        return Ok(0);
    }
    output.table(&["NAME", "STATUS", "TAGS", "SCRIPTS", "LAST HEARTBEAT"], &rows);
    Ok(0)
}

fn show(client: &mut Client, output: Output, name: &str) -> Result<u8> {
    let agent = client.get(&["agents", name], &[])?;
    if output.json {
        output.json(&agent);
        return Ok(0);
    }
    output.fields(&[
        ("name", cell(&agent["name"])),
        ("status", cell(&agent["status"])),
        ("tags", cell(&agent["tags"])),
        ("scripts", cell(&agent["scripts"])),
        (
            "last heartbeat",
            format!(
                "{} ({})",
                cell(&agent["last_heartbeat"]),
                relative_time(&agent["last_heartbeat"])
            ),
        ),
        ("version", cell(&agent["version"])),
        ("hostname", cell(&agent["hostname"])),
        ("os", cell(&agent["os"])),
        ("registered", cell(&agent["registered_at"])),
    ]);
    Ok(0)
}
