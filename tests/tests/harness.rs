//! The harness itself: it starts the binaries Cargo built, an orchestrator restarts on the
//! same address and database, and a real agent started through it reaches the orchestrator.

use scriptmesh_tests::{binary_path, AgentSpec, Method, StatusCode, TestApp};
use serde_json::json;
use std::time::Duration;

#[test]
fn the_harness_starts_the_binaries_cargo_built() {
    assert_eq!(
        binary_path("sm-test-orchestrator"),
        std::path::Path::new(env!("CARGO_BIN_EXE_sm-test-orchestrator"))
    );
    assert_eq!(
        binary_path("sm-test-agent"),
        std::path::Path::new(env!("CARGO_BIN_EXE_sm-test-agent"))
    );
}

#[actix_rt::test]
async fn accounts_sessions_and_keys_survive_a_restart() {
    let mut app = TestApp::start().await;
    let session = app.register_and_login("restart@example.com").await;
    let key = app.create_api_key(&session, "survivor").await;
    let url = app.url.clone();

    app.restart().await;
    assert_eq!(app.url, url, "a restart keeps the address");
    for token in [session.access_token.as_str(), key.as_str()] {
        let (status, me) = app.get("/auth/me", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["user"]["email"], "restart@example.com");
    }
    let (status, body) = app
        .post_json("/auth/refresh", &json!({"refresh_token": session.refresh_token}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A graceful stop ends the process; requests then fail to connect.
    let status = app.stop().await.expect("it stops on SIGTERM");
    assert!(status.success() || status.code().is_none(), "{status}");
    assert!(app.request(Method::GET, "/health").try_send().await.is_err());
    app.restart().await;
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[actix_rt::test]
async fn an_agent_started_by_the_harness_comes_online() {
    let app = TestApp::start().await;
    let session = app.register_and_login("fleet@example.com").await;
    let key = app.create_api_key(&session, "web-1 key").await;
    let agent = app
        .start_agent(
            AgentSpec::new("web-1", &key)
                .tag("production")
                .script("hello.sh", "#!/bin/sh\necho hello\n"),
        )
        .await;

    let health = app.request(Method::GET, "/health").send().await;
    assert_eq!(health.status, StatusCode::OK);
    let entry = app
        .wait_for_agent_status(&session.access_token, "web-1", "online", Duration::from_secs(15))
        .await;
    assert_eq!(entry["tags"], json!(["production"]), "{entry}");
    assert!(agent.scripts_dir().join("hello.sh").is_file());
}

#[actix_rt::test]
async fn start_up_failures_are_reported_with_the_process_output() {
    let failure = match TestApp::builder().env("LOG_FORMAT", "xml").try_start().await {
        Ok(_) => panic!("the orchestrator started with LOG_FORMAT=xml"),
        Err(failure) => failure,
    };
    assert!(failure.status.is_some_and(|status| !status.success()), "{failure}");
    assert!(
        failure.stderr.contains("LOG_FORMAT"),
        "the message names the variable: {failure}"
    );

    let app = TestApp::start().await;
    let failure = match app
        .try_start_agent(AgentSpec::new("bad-key", "not-an-sm-live-key"))
        .await
    {
        Ok(_) => panic!("the agent started with a malformed API_KEY"),
        Err(failure) => failure,
    };
    assert!(failure.status.is_some_and(|status| !status.success()), "{failure}");
    assert!(
        failure.stderr.contains("API_KEY"),
        "the message names the variable: {failure}"
    );
    assert!(
        !failure.stderr.contains("not-an-sm-live-key"),
        "the key is not echoed: {failure}"
    );
}
