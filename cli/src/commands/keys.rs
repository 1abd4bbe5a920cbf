//! `keys list|create|revoke`: API keys, for agents and for scripts.

use crate::args::KeysCommand;
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, Output};
use serde_json::json;

pub fn run(client: &mut Client, output: Output, command: KeysCommand) -> Result<u8> {
    match command {
        KeysCommand::List => {
            let keys = client.get(&["auth", "api-keys"], &[])?;
            if output.json {
                output.json(&keys);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = keys
                .as_array()
                .into_iter()
                .flatten()
                .map(|key| {
                    vec![
                        cell(&key["id"]),
                        cell(&key["name"]),
                        cell(&key["key_prefix"]),
                        cell(&key["created_at"]),
                        cell(&key["expires_at"]),
                        cell(&key["last_used_at"]),
                    ]
                })
                .collect();
            if rows.is_empty() {
                output.note("No API keys: create one with `scriptmesh keys create NAME`.");
            } else {
                output.table(&["ID", "NAME", "PREFIX", "CREATED", "EXPIRES", "LAST USED"], &rows);
            }
        }
        KeysCommand::Create { name, expires_days } => {
            let mut body = json!({"name": name});
            if let Some(days) = expires_days {
                body["expires_days"] = json!(days);
            }
            let created = client.post(&["auth", "api-keys"], &body)?;
            if output.json {
                output.json(&created);
                return Ok(0);
            }
            // The key alone on stdout (`KEY=$(scriptmesh keys create web-1)`), the rest on stderr.
            output.note(format!(
                "Created API key {} ({}). Store it securely: it is not shown again.",
                cell(&created["id"]),
                cell(&created["name"])
            ));
            output.line(cell(&created["key"]));
        }
        KeysCommand::Revoke { id } => {
            let revoked = client.delete(&["auth", "api-keys", &id])?;
            if output.json {
                output.json(&revoked);
            } else {
                output.line(format!("Revoked API key {id}."));
            }
        }
    }
    Ok(0)
}
