//! `healthcheck` subcommands, which the container images use as their HEALTHCHECK: exit 0
//! while the process on this host answers `/health`, 1 once it is gone. They read only the
//! bind variables, so they run with an otherwise empty environment (no DATABASE_URL, no API_KEY).

use scriptmesh_tests::{binary_path, AgentSpec, TestApp};
use std::process::{Command, Output};

fn healthcheck(binary: &str, env: &[(&str, String)]) -> Output {
    Command::new(binary_path(binary))
        .arg("healthcheck")
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .expect("the binary runs")
}

fn describe(output: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[actix_rt::test]
async fn the_orchestrator_healthcheck_follows_the_server() {
    let mut app = TestApp::start().await;
    // The image's BIND_ADDR is a wildcard; the probe reaches it over loopback.
    let env = [("BIND_ADDR", format!("0.0.0.0:{}", app.port))];

    let up = healthcheck("sm-test-orchestrator", &env);
    assert_eq!(up.status.code(), Some(0), "{}", describe(&up));
    assert!(
        String::from_utf8_lossy(&up.stdout).contains("/health"),
        "{}",
        describe(&up)
    );

    app.kill();
    let down = healthcheck("sm-test-orchestrator", &env);
    assert_eq!(down.status.code(), Some(1), "{}", describe(&down));
    assert!(!down.stderr.is_empty(), "{}", describe(&down));
}

#[actix_rt::test]
async fn the_agent_healthcheck_follows_the_agent() {
    let app = TestApp::start().await;
    let session = app.register_and_login("probe@example.com").await;
    let key = app.create_api_key(&session, "probe-1").await;
    let mut agent = app.start_agent(AgentSpec::new("probe-1", &key)).await;
    let port = agent
        .health_url
        .rsplit(':')
        .next()
        .expect("http://127.0.0.1:PORT")
        .to_owned();
    // AGENT_BIND_HOST unset means 0.0.0.0, probed over loopback; no API_KEY needed.
    let env = [("AGENT_PORT", port)];

    let up = healthcheck("sm-test-agent", &env);
    assert_eq!(up.status.code(), Some(0), "{}", describe(&up));

    agent.kill();
    let down = healthcheck("sm-test-agent", &env);
    assert_eq!(down.status.code(), Some(1), "{}", describe(&down));

    let misconfigured = healthcheck("sm-test-agent", &[("AGENT_PORT", "0".to_owned())]);
    assert_eq!(misconfigured.status.code(), Some(2), "{}", describe(&misconfigured));
}
