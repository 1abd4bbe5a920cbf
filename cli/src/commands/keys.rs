//! `keys list|create|revoke`: API keys, for agents and for scripts, each with a role and,
//! for agent and operator keys, a scope.

use crate::args::{KeyCreateArgs, KeyRole, KeysCommand};
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, Output};
use serde_json::{json, Value};

pub fn run(client: &mut Client, output: Output, command: KeysCommand) -> Result<u8> {
    match command {
        KeysCommand::List => list(client, output)?,
        KeysCommand::Create(args) => create(client, output, args)?,
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

fn list(client: &mut Client, output: Output) -> Result<()> {
    let keys = client.get(&["auth", "api-keys"], &[])?;
    if output.json {
        output.json(&keys);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = keys
        .as_array()
        .into_iter()
        .flatten()
        .map(|key| {
            vec![
                cell(&key["id"]),
                cell(&key["name"]),
                cell(&key["role"]),
                scope(key),
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
        output.table(
            &[
                "ID",
                "NAME",
                "ROLE",
                "SCOPE",
                "PREFIX",
                "CREATED",
                "EXPIRES",
                "LAST USED",
            ],
            &rows,
        );
    }
    Ok(())
}

/// What a key is narrowed to: `agents: prod-*, edge-1`, `tags: web; scripts: deploy.sh`, or `-`.
pub fn scope(key: &Value) -> String {
    let parts: Vec<String> = ["agents", "tags", "scripts"]
        .into_iter()
        .filter_map(|field| {
            let items: Vec<&str> = key[field].as_array()?.iter().filter_map(Value::as_str).collect();
            (!items.is_empty()).then(|| format!("{field}: {}", items.join(", ")))
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

/// The `POST /auth/api-keys` body. Agent patterns make an agent key unless a role is given.
fn create_body(args: KeyCreateArgs) -> Value {
    let role = args.role.unwrap_or(if args.agents.is_empty() {
        KeyRole::Operator
    } else {
        KeyRole::Agent
    });
    let mut body = json!({"name": args.name, "role": role.as_str()});
    if let Some(days) = args.expires_days {
        body["expires_days"] = json!(days);
    }
    for (field, items) in [("agents", args.agents), ("tags", args.tags), ("scripts", args.scripts)] {
        if !items.is_empty() {
            body[field] = json!(items);
        }
    }
    body
}

fn create(client: &mut Client, output: Output, args: KeyCreateArgs) -> Result<()> {
    let created = client.post(&["auth", "api-keys"], &create_body(args))?;
    if output.json {
        output.json(&created);
        return Ok(());
    }
    // The key alone on stdout (`KEY=$(scriptmesh keys create web-1)`), the rest on stderr.
    let scoped = match scope(&created).as_str() {
        "-" => String::new(),
        narrowed => format!(", {narrowed}"),
    };
    output.note(format!(
        "Created API key {} ({}, role {}{scoped}). Store it securely: it is not shown again.",
        cell(&created["id"]),
        cell(&created["name"]),
        cell(&created["role"]),
    ));
    output.line(cell(&created["key"]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(role: Option<KeyRole>, agents: &[&str], tags: &[&str]) -> KeyCreateArgs {
        KeyCreateArgs {
            name: "k".into(),
            expires_days: None,
            role,
            agents: agents.iter().map(|a| (*a).to_owned()).collect(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            scripts: Vec::new(),
        }
    }

    #[test]
    fn scopes_read_as_one_cell() {
        assert_eq!(scope(&json!({"role": "admin"})), "-");
        assert_eq!(
            scope(&json!({"agents": ["prod-*", "edge-1"]})),
            "agents: prod-*, edge-1"
        );
        assert_eq!(
            scope(&json!({"tags": ["web"], "scripts": ["deploy.sh"]})),
            "tags: web; scripts: deploy.sh"
        );
        assert_eq!(scope(&json!({"tags": [], "scripts": null})), "-");
    }

    #[test]
    fn the_role_defaults_to_operator_or_agent_with_patterns() {
        assert_eq!(
            create_body(args(None, &[], &[])),
            json!({"name": "k", "role": "operator"})
        );
        assert_eq!(
            create_body(args(None, &["prod-*"], &[])),
            json!({"name": "k", "role": "agent", "agents": ["prod-*"]})
        );
        assert_eq!(
            create_body(args(Some(KeyRole::Operator), &[], &["web"])),
            json!({"name": "k", "role": "operator", "tags": ["web"]})
        );
    }
}
