//! Issue #21, the audit trail: who did what, to what, from where and when, readable by
//! admins through `GET /audit` with filters and pages; refused attempts are recorded as
//! `denied`; another tenant's entries are never visible.

use scriptmesh_tests::fleet::Fleet;
use scriptmesh_tests::{wait_for, Method, StatusCode, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

/// The entries matching `query`, once at least `count` are there (the log is written in
/// batches, a fraction of a second after the fact).
async fn entries(app: &TestApp, token: Option<&str>, query: &str, count: usize) -> Vec<Value> {
    let found = wait_for(Duration::from_secs(10), || async {
        let (status, page) = app.get(&format!("/audit?{query}"), token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        (entries.len() >= count).then_some(entries)
    })
    .await;
    found.unwrap_or_else(|| panic!("fewer than {count} audit entries for {query}"))
}

#[actix_rt::test]
async fn allowed_and_denied_calls_are_recorded_and_only_admins_read_them() {
    let fleet = Fleet::start().await;
    let _agent = fleet
        .start_agent(fleet.spec("web-1").script("hello.sh", "#!/bin/sh\necho hi\n"))
        .await;
    let job = fleet.trigger_async("web-1", "hello.sh", json!({})).await;
    let viewer = fleet
        .app
        .invite_and_join(&fleet.session, "viewer@example.com", "viewer")
        .await;
    // The viewer tries to trigger: refused, and recorded.
    let refused = fleet
        .app
        .request(Method::POST, "/trigger-script")
        .bearer(viewer.token())
        .json(&json!({"agent": "web-1", "run_script": "hello.sh"}))
        .send()
        .await;
    refused.assert_error(StatusCode::FORBIDDEN, "permission_denied");

    let triggered = entries(&fleet.app, fleet.token(), "action=job.trigger", 1).await;
    let entry = &triggered[0];
    assert_eq!(entry["actor"], "ops@example.com", "{entry}");
    assert_eq!(entry["target"], job.as_str(), "{entry}");
    assert_eq!(entry["outcome"], "ok");
    assert_eq!(entry["client_addr"], "127.0.0.1");
    assert!(entry["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{entry}");

    let denied = entries(&fleet.app, fleet.token(), "outcome=denied&actor=viewer@example.com", 1).await;
    let entry = denied
        .iter()
        .find(|e| e["action"] == "request.denied")
        .unwrap_or_else(|| panic!("no denied entry: {denied:?}"));
    assert_eq!(entry["target"], "POST /trigger-script", "{entry}");
    assert_eq!(entry["outcome"], "denied");
    assert!(
        entry["detail"].as_str().unwrap_or_default().contains("jobs.run"),
        "{entry}"
    );

    // The rest of the trail: the key created by Fleet, the invitation, the join, the agent.
    for action in [
        "key.create",
        "member.invite",
        "member.join",
        "agent.register",
        "user.login",
    ] {
        entries(&fleet.app, fleet.token(), &format!("action={action}"), 1).await;
    }
    // An agent key's actions show the key.
    let (_, agent_entries) = fleet.app.get("/audit?action=agent.register", fleet.token()).await;
    let actor = agent_entries["entries"][0]["actor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        actor.starts_with("key_") && actor.ends_with("(fleet agents)"),
        "{actor}"
    );

    // Paging: one at a time, newest first, through the cursor.
    let (_, first) = fleet.app.get("/audit?limit=1", fleet.token()).await;
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, second) = fleet
        .app
        .get(&format!("/audit?limit=1&cursor={cursor}"), fleet.token())
        .await;
    assert!(
        second["entries"][0]["id"].as_str() < first["entries"][0]["id"].as_str(),
        "{first} then {second}"
    );
    for bad in ["limit=0", "limit=501", "cursor=garbage", "since=yesterday"] {
        let (status, body) = fleet.app.get(&format!("/audit?{bad}"), fleet.token()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    // Only admins and owners read the log.
    let (status, _) = fleet.app.get("/audit", viewer.token()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = fleet.app.get("/audit", Some(&fleet.key)).await;
    assert_eq!(status, StatusCode::OK, "an admin key reads it too");
}

#[actix_rt::test]
async fn another_tenants_entries_are_never_visible() {
    let fleet = Fleet::start().await;
    let other = fleet.app.register_and_login("other@example.com").await;
    let other_key = fleet.app.create_api_key(&other, "other key").await;
    // Both tenants have entries (logins, keys).
    entries(&fleet.app, fleet.token(), "action=key.create", 1).await;
    let theirs = entries(&fleet.app, other.token(), "action=key.create", 1).await;
    for entry in &theirs {
        assert_ne!(entry["actor"], "ops@example.com", "{entry}");
    }
    for token in [other.token(), Some(other_key.as_str())] {
        let (_, page) = fleet.app.get("/audit?limit=500", token).await;
        for entry in page["entries"].as_array().unwrap() {
            let text = entry.to_string();
            assert!(!text.contains("ops@example.com"), "the other tenant sees {text}");
        }
        let (_, filtered) = fleet.app.get("/audit?actor=ops@example.com", token).await;
        assert_eq!(filtered["entries"], json!([]), "{filtered}");
    }
}
