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
    let rows: Vec<Vec<String>> = entries.iter().map(entry_row).collect();
    if rows.is_empty() {
        output.note("No audit entries match.");
    } else {
        output.table(&["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "FROM"], &rows);
    }
}

fn entry_row(entry: &Value) -> Vec<String> {
    ["at", "actor", "action", "target", "outcome", "client_addr"]
        .into_iter()
        .map(|field| cell(&entry[field]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_one_row_with_dashes_for_what_is_missing() {
        let entry = json!({
            "id": "aud_1", "at": "2026-12-08T03:00:00Z", "actor": "ops@example.com", "actor_id": "usr_1",
            "action": "job.trigger", "target": null, "client_addr": "127.0.0.1", "outcome": "denied", "detail": "",
        });
        assert_eq!(
            entry_row(&entry),
            [
                "2026-12-08T03:00:00Z",
                "ops@example.com",
                "job.trigger",
                "-",
                "denied",
                "127.0.0.1"
            ]
        );
    }
}
