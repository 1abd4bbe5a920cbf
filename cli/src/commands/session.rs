//! `login`, `join`, `logout`, `whoami`: getting, ending and showing the credential in use.

use crate::args::{JoinArgs, LoginArgs};
use crate::client::{expiry, Auth, Client, TokenPair};
use crate::credentials::{CredentialStore, Credentials};
use crate::error::{Error, Result};
use crate::output::{cell, Output};
use crate::{Environment, DEFAULT_URL};
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};

/// With SCRIPTMESH_API_KEY set: checks the key and says it will be used. Otherwise logs in
/// with email and password and stores the tokens.
pub fn login(url: Option<&str>, environment: &Environment, output: Output, args: LoginArgs) -> Result<u8> {
    if let Some(key) = &environment.api_key {
        let mut client = Client::new(url.unwrap_or(DEFAULT_URL), Auth::ApiKey(key.clone()))?;
        let me = client.get(&["auth", "me"], &[])?;
        if output.json {
            output.json(&me);
        } else {
            output.line(format!(
                "SCRIPTMESH_API_KEY is valid at {} (tenant {}, key {}); commands will use it. Nothing was stored.",
                client.base_url(),
                cell(&me["tenant"]["name"]),
                cell(&me["auth"]["key_id"]),
            ));
        }
        return Ok(0);
    }
    let store = login_store(environment)?;
    let client = Client::new(&anonymous_url(url, environment), Auth::Anonymous)?;
    let email = match args.email {
        Some(email) => email,
        None => prompt_line("Email: ")?,
    };
    let email = email.trim().to_lowercase();
    if email.is_empty() {
        return Err(Error::Input("an email is needed: pass --email".into()));
    }
    let password = read_password(args.password_stdin, "Password: ")?;
    let pair = client.login(&email, &password, args.tenant.as_deref())?;
    let credentials = keep_login(&store, &client, email, pair)?;
    if output.json {
        output.json(&login_json(&store, &credentials));
    } else {
        output.line(format!(
            "Logged in to {} as {} (tokens stored in {}).",
            credentials.url,
            credentials.email,
            store.path().display()
        ));
    }
    Ok(0)
}

/// Accepts an invitation with its emailed code and stores the login into that tenant.
pub fn join(url: Option<&str>, environment: &Environment, output: Output, args: JoinArgs) -> Result<u8> {
    let store = login_store(environment)?;
    let client = Client::new(&anonymous_url(url, environment), Auth::Anonymous)?;
    let email = args.email.trim().to_lowercase();
    let password = read_password(args.password_stdin, "Password (yours, or a new one): ")?;
    let (joined, pair) = client.accept_invite(&email, args.code.trim(), &password)?;
    let credentials = keep_login(&store, &client, email, pair)?;
    if output.json {
        let mut answer = login_json(&store, &credentials);
        answer["status"] = json!("joined");
        answer["tenant"] = joined["tenant"].clone();
        answer["role"] = joined["role"].clone();
        output.json(&answer);
    } else {
        output.line(format!(
            "Joined {} ({}) as {}; logged in as {} (tokens stored in {}).",
            cell(&joined["tenant"]["name"]),
            cell(&joined["tenant"]["id"]),
            cell(&joined["role"]),
            credentials.email,
            store.path().display()
        ));
    }
    Ok(0)
}

fn login_store(environment: &Environment) -> Result<CredentialStore> {
    environment.credential_store().ok_or_else(|| {
        Error::Input("nowhere to store the login: set SCRIPTMESH_CONFIG_DIR, XDG_CONFIG_HOME or HOME".into())
    })
}

/// Stores a new login's tokens (replacing any earlier login).
fn keep_login(store: &CredentialStore, client: &Client, email: String, pair: TokenPair) -> Result<Credentials> {
    let credentials = Credentials {
        url: client.base_url(),
        email,
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        expires_at: expiry(pair.expires_in),
    };
    store.save(&credentials)?;
    Ok(credentials)
}

fn login_json(store: &CredentialStore, credentials: &Credentials) -> serde_json::Value {
    json!({
        "status": "logged_in",
        "url": credentials.url,
        "email": credentials.email,
        "expires_at": credentials.expires_at.to_rfc3339(),
        "credentials_file": store.path(),
    })
}

/// Where a request without a credential goes: `--url`, else the orchestrator of the last
/// login (a login again without --url goes there), else the default.
pub fn anonymous_url(url: Option<&str>, environment: &Environment) -> String {
    let previous_url = environment
        .credential_store()
        .and_then(|store| store.load().ok().flatten())
        .map(|credentials| credentials.url);
    url.map(str::to_owned)
        .or(previous_url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// Ends the session on the server (best effort) and deletes the stored tokens.
pub fn logout(url: Option<&str>, environment: &Environment, output: Output) -> Result<u8> {
    let store = environment.credential_store().ok_or(Error::NotLoggedIn)?;
    let Some(credentials) = store.load()? else {
        report(output, "not_logged_in", "Not logged in; nothing to do.");
        return Ok(0);
    };
    let server = url.unwrap_or(&credentials.url);
    let ended = Client::new(server, Auth::Anonymous).and_then(|client| client.logout(&credentials.refresh_token));
    if let Err(error) = ended {
        output.note(format!(
            "warning: could not end the session on the server ({error}); the tokens are deleted here anyway"
        ));
    }
    store.delete()?;
    report(output, "logged_out", &format!("Logged out of {}.", credentials.url));
    Ok(0)
}

/// `GET /auth/me`.
pub fn whoami(client: &mut Client, output: Output) -> Result<u8> {
    let me = client.get(&["auth", "me"], &[])?;
    if output.json {
        output.json(&me);
        return Ok(0);
    }
    let credential = match me["auth"]["type"].as_str() {
        Some("api_key") => format!("API key {}", cell(&me["auth"]["key_id"])),
        _ => "login".to_owned(),
    };
    // `role` is the credential's role in this tenant (an older server only had the user's).
    let role = if me["role"].is_null() {
        &me["user"]["role"]
    } else {
        &me["role"]
    };
    let mut fields = vec![
        ("orchestrator", client.base_url()),
        ("user", cell(&me["user"]["email"])),
        ("role", cell(role)),
        (
            "tenant",
            format!("{} ({})", cell(&me["tenant"]["name"]), cell(&me["tenant"]["id"])),
        ),
        ("credential", credential),
    ];
    if let Some(permissions) = me["permissions"].as_array() {
        let names: Vec<&str> = permissions.iter().filter_map(serde_json::Value::as_str).collect();
        fields.push(("permissions", names.join(", ")));
    }
    let memberships = me["memberships"].as_array().map(Vec::as_slice).unwrap_or_default();
    if memberships.len() > 1 {
        let tenants: Vec<String> = memberships
            .iter()
            .map(|m| {
                format!(
                    "{} ({}, {})",
                    cell(&m["tenant_name"]),
                    cell(&m["tenant_id"]),
                    cell(&m["role"])
                )
            })
            .collect();
        fields.push(("memberships", tenants.join("; ")));
    }
    output.fields(&fields);
    if memberships.len() > 1 {
        output.note("Work in another tenant with `scriptmesh login --tenant ID`.");
    }
    Ok(0)
}

fn report(output: Output, status: &str, message: &str) {
    if output.json {
        output.json(&json!({"status": status}));
    } else {
        output.line(message);
    }
}

/// Asks on the terminal; without one, says which flag to use instead.
pub(super) fn prompt_line(prompt: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Input("no terminal to ask for the email on: pass --email".into()));
    }
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| Error::Input(format!("could not read the answer: {error}")))?;
    Ok(line.trim().to_owned())
}

/// The next line of stdin with `--password-stdin`, else a prompt without echo.
pub(super) fn read_password(from_stdin: bool, prompt: &str) -> Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|error| Error::Input(format!("could not read the password from stdin: {error}")))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)
            .map_err(|error| Error::Input(format!("could not read the password: {error}")))?
    } else {
        return Err(Error::Input(
            "no terminal to ask for the password on: pipe it in with --password-stdin".into(),
        ));
    };
    if password.is_empty() {
        return Err(Error::Input("the password is empty".into()));
    }
    Ok(password)
}
