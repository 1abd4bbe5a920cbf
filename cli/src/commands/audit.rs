//! `audit`: the tenant's audit trail, newest first, one page or (`--all`) every page.

use crate::args::AuditArgs;
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, Output};
use serde_json::{json, Value};

pub fn run(client: &mut Client, output: Output, args: AuditArgs) -> Result<u8> {
    let filters = [
        ("actor", args.actor),
        ("action", args.action),
        ("target", args.target),
        ("since", args.since),
        ("until", args.until),
        ("limit", Some(args.limit.to_string())),
    ];
    let query: Vec<(&str, String)> = filters
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
        .collect();
    let mut entries: Vec<Value> = Vec::new();
    let mut cursor = args.cursor;
    loop {
        let mut page_query = query.clone();
        if let Some(cursor) = &cursor {
            page_query.push(("cursor", cursor.clone()));
        }
        let page = client.get(&["audit"], &page_query)?;
        entries.extend(page["entries"].as_array().into_iter().flatten().cloned());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if !args.all || cursor.is_none() {
            break;
        }
    }
    if output.json {
        output.json(&json!({"entries": entries, "next_cursor": cursor}));
        return Ok(0);
    }
    print_entries(output, &entries);
    if let Some(cursor) = cursor {
        output.note(format!(
            "More: scriptmesh audit --cursor {cursor} (with the same filters), or --all"
        ));
    }
    Ok(0)
}

fn print_entries(output: Output, entries: &[Value]) {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|entry| {
            vec![
                cell(&entry["at"]),
                cell(&entry["actor"]),
                cell(&entry["action"]),
                cell(&entry["target"]),
                cell(&entry["outcome"]),
                cell(&entry["client_addr"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        output.note("No audit entries match.");
    } else {
        output.table(&["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "FROM"], &rows);
    }
}
