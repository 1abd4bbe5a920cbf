//! Issue #21, least privilege: the permission table, checked from the outside. Every
//! operation in `/openapi.json` has an entry in this file's [`EXPECTED`] table (a new
//! endpoint without one fails the test), its documented `x-permission` agrees with it, and
//! for every role of a member and every kind of API key the server answers exactly as the
//! table says: 403 `permission_denied` where the role lacks the permission, something else
//! (a 2xx, or a 4xx from validation or lookup) where it has it, 401 without a credential.

use scriptmesh_tests::{Method, Session, StatusCode, TestApp};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What each operation needs: `public`, `authenticated`, or a permission.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("get", "/health", "public"),
    ("head", "/health", "public"),
    ("post", "/auth/register", "public"),
    ("post", "/auth/verify-email", "public"),
    ("post", "/auth/resend-code", "public"),
    ("post", "/auth/login", "public"),
    ("post", "/auth/refresh", "public"),
    ("post", "/auth/logout", "public"),
    ("post", "/auth/accept-invite", "public"),
    ("post", "/auth/forgot-password", "public"),
    ("post", "/auth/reset-password", "public"),
    ("get", "/auth/me", "authenticated"),
    ("post", "/auth/change-password", "account"),
    ("get", "/auth/api-keys", "keys.manage"),
    ("post", "/auth/api-keys", "keys.manage"),
    ("delete", "/auth/api-keys/{id}", "keys.manage"),
    ("get", "/tenant/members", "members.manage"),
    ("post", "/tenant/members", "members.manage"),
    ("patch", "/tenant/members/{id}", "members.manage"),
    ("delete", "/tenant/members/{id}", "members.manage"),
    ("get", "/audit", "audit.read"),
    ("post", "/register-agent", "agent.protocol"),
    ("get", "/agents", "agents.read"),
    ("get", "/agents/{name}", "agents.read"),
    ("delete", "/agents/{name}", "agents.manage"),
    ("get", "/get-scripts", "agents.read"),
    ("post", "/agent/heartbeat", "agent.protocol"),
    ("get", "/agent/poll", "agent.protocol"),
    ("post", "/agent/poll", "agent.protocol"),
    ("post", "/agent/jobs/{id}/start", "agent.protocol"),
    ("post", "/agent/jobs/{id}/result", "agent.protocol"),
    ("post", "/agent/results", "agent.protocol"),
    ("post", "/agent/output", "agent.protocol"),
    ("post", "/trigger-script", "jobs.run"),
    ("get", "/jobs", "jobs.read"),
    ("get", "/jobs/{job_id}", "jobs.read"),
    ("post", "/jobs/{job_id}/cancel", "jobs.run"),
    ("get", "/jobs/{id}/output", "jobs.read"),
    ("post", "/fan-out", "jobs.run"),
    ("get", "/fan-out/{id}", "jobs.read"),
    ("get", "/integrations", "integrations.manage"),
    ("post", "/integrations", "integrations.manage"),
    ("get", "/integrations/{id}", "integrations.manage"),
    ("patch", "/integrations/{id}", "integrations.manage"),
    ("delete", "/integrations/{id}", "integrations.manage"),
    ("post", "/integrations/{id}/test", "integrations.manage"),
    ("get", "/integrations/{id}/deliveries", "deliveries.read"),
    ("get", "/deliveries", "deliveries.read"),
    ("get", "/deliveries/{id}", "deliveries.read"),
    ("get", "/metrics", "public"),
    ("get", "/metrics/json", "metrics.read"),
    ("get", "/schedules", "schedules.read"),
    ("post", "/schedules", "schedules.write"),
    ("get", "/schedules/{id}", "schedules.read"),
    ("patch", "/schedules/{id}", "schedules.write"),
    ("delete", "/schedules/{id}", "schedules.write"),
    ("post", "/schedules/{id}/pause", "schedules.write"),
    ("post", "/schedules/{id}/resume", "schedules.write"),
    ("get", "/schedules/preview", "schedules.read"),
    ("get", "/schedules/{id}/runs", "schedules.read"),
];

/// The permissions of each role, as the book's table says.
fn grants(role: &str, permission: &str) -> bool {
    let viewer = [
        "agents.read",
        "jobs.read",
        "schedules.read",
        "deliveries.read",
        "metrics.read",
        "account",
    ];
    let operator = ["jobs.run", "schedules.write"];
    let _admin = [
        "agents.manage",
        "integrations.manage",
        "keys.manage",
        "members.manage",
        "audit.read",
        "agent.protocol",
    ];
    match role {
        "owner" => true,
        "admin" => permission != "owners.manage",
        "operator" => viewer.contains(&permission) || operator.contains(&permission),
        "viewer" => viewer.contains(&permission),
        "agent" => ["agent.protocol", "agents.read"].contains(&permission),
        other => panic!("unknown role {other}"),
    }
}

/// Only people use these; a key is refused them whatever its role.
const PERSON_ONLY: [&str; 4] = ["keys.manage", "members.manage", "owners.manage", "account"];

struct Credential {
    label: String,
    role: &'static str,
    token: String,
    is_key: bool,
}

fn method_of(name: &str) -> Method {
    match name {
        "get" => Method::GET,
        "head" => Method::HEAD,
        "post" => Method::POST,
        "patch" => Method::PATCH,
        "delete" => Method::DELETE,
        "put" => Method::PUT,
        other => panic!("unexpected method {other}"),
    }
}

/// `/jobs/{job_id}/cancel` -> `/jobs/policy-dummy/cancel`.
fn fill(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        out.push_str("policy-dummy");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn operations(document: &Value) -> BTreeMap<(String, String), Value> {
    let mut found = BTreeMap::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if ["get", "post", "put", "patch", "delete", "head"].contains(&method.as_str()) {
                found.insert((method.clone(), path.clone()), operation.clone());
            }
        }
    }
    found
}

async fn credentials(app: &TestApp) -> Vec<Credential> {
    let owner = app.register_and_login("policy-owner@example.com").await;
    let mut all = vec![Credential {
        label: "owner login".into(),
        role: "owner",
        token: owner.access_token.clone(),
        is_key: false,
    }];
    for role in ["admin", "operator", "viewer"] {
        let member: Session = app
            .invite_and_join(&owner, &format!("policy-{role}@example.com"), role)
            .await;
        all.push(Credential {
            label: format!("{role} login"),
            role,
            token: member.access_token,
            is_key: false,
        });
    }
    for (role, extra) in [
        ("admin", json!({})),
        ("operator", json!({})),
        ("viewer", json!({})),
        ("agent", json!({"agents": ["policy-*"]})),
    ] {
        let mut request = json!({"name": format!("{role} key"), "role": role});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let key = app.create_api_key_details(&owner, &request).await.key;
        all.push(Credential {
            label: format!("{role} key"),
            role,
            token: key,
            is_key: true,
        });
    }
    all
}

#[actix_rt::test]
async fn every_operation_answers_each_role_as_the_table_says() {
    let app = TestApp::start().await;
    let (status, document) = app.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let served = operations(&document);
    let expected: BTreeMap<(String, String), &str> = EXPECTED
        .iter()
        .map(|(m, p, access)| ((m.to_string(), p.to_string()), *access))
        .collect();
    let served_keys: BTreeSet<_> = served.keys().cloned().collect();
    let expected_keys: BTreeSet<_> = expected.keys().cloned().collect();
    let missing: Vec<_> = served_keys.difference(&expected_keys).collect();
    assert!(
        missing.is_empty(),
        "operations with no entry in the permission table: {missing:?}"
    );
    let stale: Vec<_> = expected_keys.difference(&served_keys).collect();
    assert!(stale.is_empty(), "table entries the server does not serve: {stale:?}");
    for (operation, access) in &expected {
        assert_eq!(
            served[operation]["x-permission"], **access,
            "{operation:?}: the document's x-permission disagrees with the table"
        );
    }

    let credentials = credentials(&app).await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for ((method, path), access) in &expected {
        if *access == "public" {
            continue;
        }
        let url = fill(path);
        // Without a credential: 401.
        let anonymous = app.request(method_of(method), &url).json(&json!({})).send().await;
        if anonymous.status != StatusCode::UNAUTHORIZED {
            failures.push(format!("{method} {path} without a credential: {}", anonymous.status));
        }
        for credential in &credentials {
            let allowed = *access == "authenticated"
                || (grants(credential.role, access)
                    && !(credential.is_key && PERSON_ONLY.contains(access))
                    // The agent's own endpoints take API keys only.
                    && (credential.is_key || !path.starts_with("/agent/")));
            let response = app
                .request(method_of(method), &url)
                .bearer(Some(&credential.token))
                .json(&json!({}))
                .send()
                .await;
            checked += 1;
            let refused = response.status == StatusCode::FORBIDDEN;
            let ok = if allowed {
                !refused && response.status != StatusCode::UNAUTHORIZED && !response.status.is_server_error()
            } else {
                refused
                    && ["permission_denied", "api_key_required"].contains(&response.error_code().unwrap_or_default())
                    && (response.error_code() != Some("permission_denied")
                        || response.body["error"]["message"]
                            .as_str()
                            .unwrap_or_default()
                            .contains(access))
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {} (expected {}): {} {}",
                    credential.label,
                    if allowed { "allowed" } else { "403" },
                    response.status,
                    response.text
                ));
            }
        }
    }
    assert!(checked > 300, "only {checked} calls were checked");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[actix_rt::test]
async fn the_book_holds_the_permission_table_the_server_uses() {
    let book = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/src/security.md"))
        .expect("docs/src/security.md");
    let table = orchestrator::auth::permissions::markdown_table();
    assert!(
        book.contains(&table),
        "docs/src/security.md must contain the permission table exactly as the server has it:\n{table}"
    );
}
