//! Issue #21, least privilege: API keys that can do only their job. The scenario of the
//! issue — two agents `w1` and `w2` of one tenant, each with its own agent key, and `w1`'s
//! key in an attacker's hands — is refused at every step; rotation by revoke and restart
//! keeps working; operator keys narrowed to tags and scripts stay inside them.

use scriptmesh_tests::fleet::{parse_utc_time, Fleet};
use scriptmesh_tests::{now_ms, wait_for, AgentSpec, Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const HELLO: &str = "#!/bin/sh\necho hello\n";

async fn key_request(fleet: &Fleet, body: Value) -> (StatusCode, Value) {
    fleet.app.post_json("/auth/api-keys", &body, fleet.token()).await
}

#[actix_rt::test]
async fn an_agent_key_does_that_agents_work_and_nothing_else() {
    let fleet = Fleet::start().await;
    let w1_key = fleet.app.create_agent_key(&fleet.session, "w1", &["w1"]).await;
    let w2_key = fleet.app.create_agent_key(&fleet.session, "w2", &["w2"]).await;
    let _w1 = fleet
        .start_agent(AgentSpec::new("w1", &w1_key).script("hello.sh", HELLO))
        .await;
    let _w2 = fleet
        .start_agent(AgentSpec::new("w2", &w2_key).script("hello.sh", HELLO))
        .await;
    // The owner's jobs on both, for w1's key to try to read.
    let job = fleet.trigger_async("w2", "hello.sh", json!({})).await;
    assert_eq!(fleet.finished_job(&job).await["status"], "success");

    let as_w1 = |method: Method, path: &str| fleet.app.request(method, path).bearer(Some(&w1_key));
    // Runs nothing anywhere: not on w2, not even on itself.
    for agent in ["w2", "w1"] {
        let response = as_w1(Method::POST, "/trigger-script")
            .json(&json!({"agent": agent, "run_script": "hello.sh", "async_exec": false}))
            .send()
            .await;
        response.assert_error(StatusCode::FORBIDDEN, "permission_denied");
        assert!(response.text.contains("jobs.run"), "{}", response.text);
    }
    as_w1(Method::POST, "/fan-out")
        .json(&json!({"run_script": "hello.sh"}))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "permission_denied");
    // Reads no job and no output.
    as_w1(Method::GET, "/jobs")
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "permission_denied");
    as_w1(Method::GET, &format!("/jobs/{job}"))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "permission_denied");
    as_w1(Method::GET, &format!("/jobs/{job}/output"))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "permission_denied");
    // Copies nothing out: no schedules, no integrations.
    as_w1(Method::POST, "/schedules")
        .json(&json!({"agent": "w2", "script": "hello.sh", "cron_expression": "* * * * *"}))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "permission_denied");
    as_w1(Method::POST, "/integrations")
        .json(&json!({"type": "webhook", "name": "exfil", "config": {"url": "https://example.com/hook"}}))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "permission_denied");
    // Cannot take w2 over: registering its name is outside the key's agents...
    let takeover = as_w1(Method::POST, "/register-agent")
        .json(&json!({"agent_name": "w2", "tags": []}))
        .send()
        .await;
    takeover.assert_error(StatusCode::FORBIDDEN, "outside_key_scope");
    // ...nor speak for it.
    as_w1(Method::GET, "/agent/poll?agent=w2&wait=0")
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "outside_key_scope");
    as_w1(Method::POST, "/agent/heartbeat")
        .json(&json!({"agent_name": "w2", "running_jobs": [], "scripts": [], "heartbeat_interval": 2}))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "outside_key_scope");
    // It still sees its own agent, as the troubleshooting line expects, and only that one.
    let (status, agents) = fleet.app.get("/agents", Some(&w1_key)).await;
    assert_eq!(status, StatusCode::OK, "{agents}");
    let names: Vec<&String> = agents.as_object().expect("agents by name").keys().collect();
    assert_eq!(names, ["w1"], "{agents}");
    let (status, _) = fleet.app.get("/get-scripts?agent=w2", Some(&w1_key)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "w2 is not w1's to see");
    let (status, scripts) = fleet.app.get("/get-scripts?agent=w1", Some(&w1_key)).await;
    assert_eq!(status, StatusCode::OK, "{scripts}");
    // And w2 is still w2's: a job for it runs there.
    let job = fleet.trigger_async("w2", "hello.sh", json!({})).await;
    let finished = fleet.finished_job(&job).await;
    assert_eq!(finished["status"], "success", "{finished}");
    assert_eq!(finished["agent"], "w2", "{finished}");
}

#[actix_rt::test]
async fn a_name_bound_to_another_live_key_is_not_taken_over_and_rotation_still_works() {
    let fleet = Fleet::start().await;
    let old_key = fleet.app.create_agent_key(&fleet.session, "web old", &["web-*"]).await;
    let mut agent = fleet
        .start_agent(AgentSpec::new("web-1", &old_key).script("hello.sh", HELLO))
        .await;
    // Another agent key for the same pattern cannot re-bind the name while the old one lives.
    let other = fleet
        .app
        .create_agent_key(&fleet.session, "web other", &["web-*"])
        .await;
    let response = fleet
        .app
        .request(Method::POST, "/register-agent")
        .bearer(Some(&other))
        .json(&json!({"agent_name": "web-1", "tags": []}))
        .send()
        .await;
    response.assert_error(StatusCode::CONFLICT, "agent_bound_to_other_key");
    let job = fleet.trigger_async("web-1", "hello.sh", json!({})).await;
    let finished = fleet.finished_job(&job).await;
    assert_eq!(
        finished["status"],
        "success",
        "runs under the new key: {finished}\n{}",
        agent.log()
    );
    assert_eq!(finished["status"], "success", "still served by its own key");

    // Rotation: a new key, the old one revoked, the agent restarted with the new one.
    let created = fleet
        .app
        .create_api_key_details(
            &fleet.session,
            &json!({"name": "web new", "role": "agent", "agents": ["web-1"]}),
        )
        .await;
    let old_id = {
        let (_, keys) = fleet.app.get("/auth/api-keys", fleet.token()).await;
        keys.as_array()
            .expect("keys")
            .iter()
            .find(|k| k["name"] == "web old")
            .expect("the old key")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let (status, body) = fleet
        .app
        .delete(&format!("/auth/api-keys/{old_id}"), fleet.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    agent.set_env("API_KEY", &created.key);
    let restarted_at = now_ms();
    agent.restart().await;
    // Online again once it has registered with the new key (its heartbeat is newer).
    let registered = wait_for(Duration::from_secs(20), || async {
        let (_, view) = fleet.app.get("/agents/web-1", fleet.token()).await;
        let beat = view["last_heartbeat"].as_str().and_then(parse_utc_time)?;
        (beat >= restarted_at / 1000 && view["status"] == "online").then_some(view)
    })
    .await;
    let registered = registered.expect("web-1 did not register again with the new key");
    // And settled: a heartbeat after its registration (a job handed over while an agent
    // starts can be lost to its start-up, which is not what this test is about).
    let first = registered["last_heartbeat"].as_str().and_then(parse_utc_time);
    let settled = wait_for(Duration::from_secs(20), || async {
        let (_, view) = fleet.app.get("/agents/web-1", fleet.token()).await;
        let beat = view["last_heartbeat"].as_str().and_then(parse_utc_time)?;
        (Some(beat) > first).then_some(())
    })
    .await;
    assert!(settled.is_some(), "web-1 did not heartbeat after registering again");
    let job = fleet.trigger_async("web-1", "hello.sh", json!({})).await;
    let finished = fleet.finished_job(&job).await;
    assert_eq!(
        finished["status"],
        "success",
        "runs under the new key: {finished}\n{}",
        agent.log()
    );
    assert_eq!(finished["status"], "success", "runs under the new key");
    // An admin may re-bind a name held by a live key (the new one, here).
    let admin = fleet.app.create_api_key(&fleet.session, "admin").await;
    let response = fleet
        .app
        .request(Method::POST, "/register-agent")
        .bearer(Some(&admin))
        .json(&json!({"agent_name": "web-1", "tags": []}))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
}

#[actix_rt::test]
async fn keys_carry_their_role_and_scope_and_never_exceed_their_creator() {
    let fleet = Fleet::start().await;
    for (body, code) in [
        (json!({"name": "x", "role": "owner"}), "validation_failed"),
        (json!({"name": "x", "role": "agent"}), "validation_failed"),
        (
            json!({"name": "x", "role": "agent", "agents": ["bad name"]}),
            "validation_failed",
        ),
        (
            json!({"name": "x", "role": "viewer", "agents": ["w1"]}),
            "validation_failed",
        ),
        (
            json!({"name": "x", "role": "admin", "tags": ["web"]}),
            "validation_failed",
        ),
    ] {
        let (status, answer) = key_request(&fleet, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    let (status, created) = key_request(&fleet, json!({"name": "default"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["role"], "operator", "keys default to operator: {created}");
    let (_, created) = key_request(
        &fleet,
        json!({"name": "deployer", "role": "operator", "tags": ["web"], "scripts": ["deploy.sh"]}),
    )
    .await;
    assert_eq!(created["tags"], json!(["web"]), "{created}");
    let (_, keys) = fleet.app.get("/auth/api-keys", fleet.token()).await;
    let deployer = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "deployer")
        .expect("listed");
    assert_eq!(deployer["role"], "operator");
    assert_eq!(deployer["scripts"], json!(["deploy.sh"]));
    assert_eq!(deployer["created_by"], "ops@example.com");
    assert!(
        deployer.get("key").is_none(),
        "the key itself is never listed: {deployer}"
    );

    // An operator (a person) may not make keys at all; an admin may not make owner things.
    let operator = fleet
        .app
        .invite_and_join(&fleet.session, "op@example.com", "operator")
        .await;
    let (status, body) = fleet
        .app
        .post_json("/auth/api-keys", &json!({"name": "mine"}), operator.token())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Keys cannot make keys, whatever their role.
    let admin_key = fleet.app.create_api_key(&fleet.session, "admin key").await;
    let (status, body) = fleet
        .app
        .post_json(
            "/auth/api-keys",
            &json!({"name": "child", "role": "viewer"}),
            Some(&admin_key),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "permission_denied");
}

#[actix_rt::test]
async fn an_operator_key_narrowed_to_tags_and_scripts_stays_inside_them() {
    let fleet = Fleet::start().await;
    let _web = fleet
        .start_agent(
            fleet
                .spec("web-1")
                .tag("web")
                .script("deploy.sh", HELLO)
                .script("wipe.sh", HELLO),
        )
        .await;
    let _db = fleet
        .start_agent(fleet.spec("db-1").tag("db").script("deploy.sh", HELLO))
        .await;
    let (status, created) = key_request(
        &fleet,
        json!({"name": "deployer", "role": "operator", "tags": ["web"], "scripts": ["deploy.sh"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let trigger = |agent: &str, script: &str| {
        fleet
            .app
            .request(Method::POST, "/trigger-script")
            .bearer(Some(&key))
            .json(&json!({"agent": agent, "run_script": script, "async_exec": false}))
            .send()
    };
    let ok = trigger("web-1", "deploy.sh").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["status"], "success");
    trigger("db-1", "deploy.sh")
        .await
        .assert_error(StatusCode::FORBIDDEN, "outside_key_scope");
    trigger("web-1", "wipe.sh")
        .await
        .assert_error(StatusCode::FORBIDDEN, "outside_key_scope");
    // A fan-out to everything reaches the agents carrying the key's tags only.
    let fanned = fleet
        .app
        .request(Method::POST, "/fan-out")
        .bearer(Some(&key))
        .json(&json!({"run_script": "deploy.sh"}))
        .send()
        .await;
    assert_eq!(fanned.status, StatusCode::ACCEPTED, "{}", fanned.text);
    let agents: Vec<&str> = fanned.body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| job["agent"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(agents, ["web-1"], "{}", fanned.text);
    // Its jobs on others' agents are not its to cancel; schedules are not its to make.
    let db_job = fleet.trigger_async("db-1", "deploy.sh", json!({})).await;
    fleet
        .app
        .request(Method::POST, &format!("/jobs/{db_job}/cancel"))
        .bearer(Some(&key))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "outside_key_scope");
    fleet
        .app
        .request(Method::POST, "/schedules")
        .bearer(Some(&key))
        .json(&json!({"agent": "web-1", "script": "deploy.sh", "cron_expression": "0 2 * * *"}))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "outside_key_scope");
}
