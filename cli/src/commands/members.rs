//! `members list|invite|role|remove`: the tenant's teammates and pending invitations.

use crate::args::MembersCommand;
use crate::client::Client;
use crate::error::Result;
use crate::output::{cell, Output};
use serde_json::{json, Value};

pub fn run(client: &mut Client, output: Output, command: MembersCommand) -> Result<u8> {
    let path = ["tenant", "members"];
    match command {
        MembersCommand::List => {
            let answer = client.get(&path, &[])?;
            if output.json {
                output.json(&answer);
            } else {
                print_members(output, &answer);
            }
        }
        MembersCommand::Invite { email, role } => {
            let invited = client.post(&path, &json!({"email": email, "role": role.as_str()}))?;
            report(
                output,
                &invited,
                format!(
                    "Invited {} as {} ({}); they join with the code sent to them by email, until {}.",
                    cell(&invited["email"]),
                    cell(&invited["role"]),
                    cell(&invited["id"]),
                    cell(&invited["expires_at"]),
                ),
            );
        }
        MembersCommand::Role { id, role } => {
            let member = client.patch(&["tenant", "members", &id], &json!({"role": role.as_str()}))?;
            report(
                output,
                &member,
                format!("{} ({id}) is now {}.", cell(&member["email"]), cell(&member["role"])),
            );
        }
        MembersCommand::Remove { id } => {
            let removed = client.delete(&["tenant", "members", &id])?;
            let what = if id.starts_with("inv_") {
                "Withdrew invitation"
            } else {
                "Removed member"
            };
            report(output, &removed, format!("{what} {id}."));
        }
    }
    Ok(0)
}

/// Members first, then invitations, in one table.
fn print_members(output: Output, answer: &Value) {
    let rows = member_rows(answer);
    if rows.is_empty() {
        output.note("No members.");
    } else {
        output.table(&["ID", "EMAIL", "ROLE", "STATUS", "SINCE"], &rows);
    }
}

/// A row per member (since they joined) and per invitation (since it was sent).
fn member_rows(answer: &Value) -> Vec<Vec<String>> {
    let row = |entry: &Value, since: &str| {
        vec![
            cell(&entry["id"]),
            cell(&entry["email"]),
            cell(&entry["role"]),
            cell(&entry["status"]),
            cell(&entry[since]),
        ]
    };
    let members = answer["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| row(m, "joined_at"));
    let invitations = answer["invitations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| row(i, "invited_at"));
    members.chain(invitations).collect()
}

fn report(output: Output, answer: &Value, message: String) {
    if output.json {
        output.json(answer);
    } else {
        output.line(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_come_before_invitations_with_their_own_times() {
        let answer = json!({
            "members": [{"id": "usr_1", "email": "a@example.com", "role": "owner", "status": "active", "joined_at": "T1"}],
            "invitations": [{"id": "inv_1", "email": "b@example.com", "role": "viewer", "status": "invited", "invited_at": "T2", "expires_at": "T3"}],
        });
        assert_eq!(
            member_rows(&answer),
            [
                ["usr_1", "a@example.com", "owner", "active", "T1"],
                ["inv_1", "b@example.com", "viewer", "invited", "T2"],
            ]
        );
        assert!(member_rows(&json!({})).is_empty());
    }
}
