//! `integrations list|test`.

use crate::args::IntegrationsCommand;
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, Output};
use serde_json::json;

pub fn run(client: &mut Client, output: Output, command: IntegrationsCommand) -> Result<u8> {
    match command {
        IntegrationsCommand::List => {
            let answer = client.get(&["integrations"], &[])?;
            if output.json {
                output.json(&answer);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = answer["integrations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|integration| {
                    vec![
                        cell(&integration["id"]),
                        cell(&integration["type"]),
                        cell(&integration["name"]),
                        cell(&integration["enabled"]),
                        cell(&integration["events"]),
                    ]
                })
                .collect();
            if rows.is_empty() {
                output.note("No integrations.");
            } else {
                output.table(&["ID", "TYPE", "NAME", "ENABLED", "EVENTS"], &rows);
            }
            Ok(0)
        }
        IntegrationsCommand::Test { id } => {
            // `POST /integrations/{id}/test` answers 200 whether or not the event arrived.
            let result = client.post(&["integrations", &id, "test"], &json!({}))?;
            let delivered = result["ok"].as_bool() == Some(true);
            if output.json {
                output.json(&result);
            } else if delivered {
                output.line(format!(
                    "Test event delivered to {id} (HTTP {}).",
                    cell(&result["response_code"])
                ));
            } else {
                output.line(format!(
                    "Test event to {id} not delivered: {} (HTTP {}).",
                    cell(&result["error"]),
                    cell(&result["response_code"])
                ));
            }
            Ok(if delivered { 0 } else { 1 })
        }
    }
}
