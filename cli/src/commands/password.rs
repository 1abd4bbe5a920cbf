//! `password change|forgot|reset`: a new password with the current one (the stored login
//! is renewed, every other session ends), or with a code sent by email.

use super::session::{anonymous_url, read_password};
use crate::args::PasswordCommand;
use crate::client::{Auth, Client};
use crate::error::Result;
use crate::output::{cell, Output};
use crate::Environment;
use serde_json::{json, Value};

pub fn run(url: Option<&str>, environment: &Environment, output: Output, command: PasswordCommand) -> Result<u8> {
    match command {
        PasswordCommand::Change { password_stdin } => {
            let mut client = crate::connect(url, environment)?;
            let current = read_password(password_stdin, "Current password: ")?;
            let new = read_password(password_stdin, "New password: ")?;
            client.change_password(&current, &new)?;
            report(
                output,
                &json!({"status": "changed"}),
                "Password changed; every other session has ended (this login stays).".into(),
            );
        }
        PasswordCommand::Forgot { email } => {
            let mut client = Client::new(&anonymous_url(url, environment), Auth::Anonymous)?;
            let sent = client.post(&["auth", "forgot-password"], &json!({"email": email.trim()}))?;
            let message = format!(
                "{} Then: scriptmesh password reset --email {} --code CODE",
                cell(&sent["message"]),
                email.trim()
            );
            report(output, &sent, message);
        }
        PasswordCommand::Reset {
            email,
            code,
            password_stdin,
        } => {
            let mut client = Client::new(&anonymous_url(url, environment), Auth::Anonymous)?;
            let password = read_password(password_stdin, "New password: ")?;
            let body = json!({"email": email.trim(), "code": code.trim(), "password": password});
            let reset = client.post(&["auth", "reset-password"], &body)?;
            report(
                output,
                &reset,
                "Password reset; log in with it: scriptmesh login".into(),
            );
        }
    }
    Ok(0)
}

fn report(output: Output, answer: &Value, message: String) {
    if output.json {
        output.json(answer);
    } else {
        output.line(message);
    }
}
