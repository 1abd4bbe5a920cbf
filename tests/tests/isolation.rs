//! Tenant isolation across the core loop: another account on the same orchestrator can
//! neither see nor touch a tenant's agents, jobs and fan-outs, and its API key cannot
//! speak for the tenant's agents.

use scriptmesh_tests::fleet::Fleet;
use scriptmesh_tests::{now_ms, wait_until, ApiResponse, Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

#[actix_rt::test]
async fn another_tenant_can_neither_see_nor_touch_an_agent_or_its_jobs() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger");
    let _agent = fleet
        .start_agent(
            fleet
                .spec("a-only")
                .tag("production")
                .script(
                    "s.sh",
                    &format!("#!/bin/sh\necho \"$SCRIPTMESH_JOB_ID\" >> {}\n", ledger.display()),
                )
                .script("long.sh", "#!/bin/sh\nsleep 30\n"),
        )
        .await;
    let done = fleet.trigger_async("a-only", "s.sh", json!({})).await;
    let done_job = fleet.finished_job(&done).await;
    assert_eq!(done_job["status"], "success");
    let running = fleet.trigger_async("a-only", "long.sh", json!({})).await;
    fleet.wait_for_job_status(&running, "running").await;
    let (status, fanned) = fleet
        .app
        .post_json(
            "/fan-out",
            &json!({"run_script": "s.sh", "agents": ["a-only"]}),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{fanned}");
    let fanout_id = fanned["fanout_id"].as_str().expect("fanout_id").to_owned();
    fleet
        .finished_job(fanned["jobs"][0]["job_id"].as_str().expect("job_id"))
        .await;

    // Tenant B: another account, with its own session and API key.
    let intruder = fleet.app.register_and_login("intruder@example.org").await;
    assert_ne!(intruder.tenant_id, fleet.session.tenant_id);
    let intruder_key = fleet.app.create_api_key(&intruder, "b agents").await;
    let as_b = |method: Method, path: &str| fleet.app.request(method, path).bearer(intruder.token());
    let not_found = |response: ApiResponse, what: &str| {
        assert_eq!(
            (response.status, response.error_code()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{what}: {}",
            response.text
        );
    };

    let (status, agents) = fleet.app.get("/agents", intruder.token()).await;
    assert_eq!((status, agents.clone()), (StatusCode::OK, json!({})), "{agents}");
    not_found(as_b(Method::GET, "/agents/a-only").send().await, "GET /agents/a-only");
    not_found(
        as_b(Method::GET, "/get-scripts?agent=a-only").send().await,
        "GET /get-scripts",
    );
    let (_, jobs) = fleet.app.get("/jobs", intruder.token()).await;
    assert_eq!(jobs, json!({"jobs": [], "next_cursor": null}));
    let (_, jobs) = fleet.app.get("/jobs?agent=a-only", intruder.token()).await;
    assert_eq!(jobs["jobs"], json!([]));
    for id in [&done, &running] {
        not_found(as_b(Method::GET, &format!("/jobs/{id}")).send().await, "GET /jobs/{id}");
        not_found(as_b(Method::POST, &format!("/jobs/{id}/cancel")).send().await, "cancel");
    }
    not_found(
        as_b(Method::GET, &format!("/fan-out/{fanout_id}")).send().await,
        "GET /fan-out/{id}",
    );
    let trigger = json!({"agent": "a-only", "run_script": "s.sh", "async_exec": true});
    for token in [intruder.access_token.as_str(), intruder_key.as_str()] {
        let response = fleet
            .app
            .request(Method::POST, "/trigger-script")
            .bearer(Some(token))
            .json(&trigger)
            .send()
            .await;
        not_found(response, "trigger on another tenant's agent");
    }
    for selector in [json!({"tags": ["production"]}), json!({"agents": ["a-only"]})] {
        let mut body = json!({"run_script": "s.sh"});
        body.as_object_mut()
            .unwrap()
            .extend(selector.as_object().unwrap().clone());
        let (status, answer) = fleet.app.post_json("/fan-out", &body, intruder.token()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "fan-out {body} matched: {answer}"
        );
    }
    not_found(
        as_b(Method::DELETE, "/agents/a-only").send().await,
        "DELETE /agents/a-only",
    );

    // B's key cannot speak for A's agent on the agent protocol.
    let as_agent = |method: Method, path: &str| fleet.app.request(method, path).bearer(Some(&intruder_key));
    not_found(
        as_agent(Method::GET, "/agent/poll?agent=a-only&capacity=1&wait=1")
            .send()
            .await,
        "poll as A's agent",
    );
    let heartbeat = json!({"agent_name": "a-only", "scripts": [], "running_jobs": [], "heartbeat_interval": 60});
    not_found(
        as_agent(Method::POST, "/agent/heartbeat").json(&heartbeat).send().await,
        "heartbeat as A's agent",
    );
    not_found(
        as_agent(Method::POST, "/agent/poll?agent=a-only&capacity=1&wait=1")
            .json(&heartbeat)
            .send()
            .await,
        "heartbeat on a poll as A's agent",
    );
    let start = json!({"agent_name": "a-only", "started_at_ms": now_ms()});
    let start_response = as_agent(Method::POST, &format!("/agent/jobs/{running}/start"))
        .json(&start)
        .send()
        .await;
    not_found(start_response, "start A's job");
    let result = json!({
        "agent_name": "a-only", "outcome": "failed", "exit_code": 1, "stdout": "hijacked",
        "stderr": "", "duration_ms": 1, "started_at_ms": now_ms(), "completed_at_ms": now_ms()
    });
    let result_response = as_agent(Method::POST, &format!("/agent/jobs/{running}/result"))
        .json(&result)
        .send()
        .await;
    not_found(result_response, "report A's job");

    // B may have an agent of the same name: it is B's own, and A's agent never sees its jobs.
    let register =
        json!({"agent_name": "a-only", "tags": ["production"], "scripts": [{"name": "s.sh", "path": "s.sh"}]});
    let (status, body) = fleet
        .app
        .post_json("/register-agent", &register, Some(&intruder_key))
        .await;
    assert_eq!(
        (status, body.clone()),
        (
            StatusCode::OK,
            json!({"status": "ok", "agent": "a-only", "heartbeat_in_poll": true})
        )
    );
    let response = fleet
        .app
        .request(Method::POST, "/trigger-script")
        .bearer(intruder.token())
        .json(&trigger)
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
    let b_job = response.body["job_id"].as_str().expect("job_id").to_owned();
    // A's agent keeps polling (every poll reads A's queue); B's job must stay B's.
    let b_job_moved = wait_until(Duration::from_secs(2), || async {
        let (_, job) = fleet.app.get(&format!("/jobs/{b_job}"), intruder.token()).await;
        job["status"] != "pending"
    })
    .await;
    assert!(!b_job_moved, "B's job left the queue of B's unconnected agent");
    not_found(
        fleet
            .app
            .request(Method::GET, &format!("/jobs/{b_job}"))
            .bearer(fleet.token())
            .send()
            .await,
        "A reading B's job",
    );

    // A sees exactly what it had, untouched.
    let (_, agents) = fleet.app.get("/agents", fleet.token()).await;
    let names: Vec<&String> = agents.as_object().expect("object").keys().collect();
    assert_eq!(names, ["a-only"], "{agents}");
    assert_eq!(agents["a-only"]["status"], "online");
    assert_eq!(agents["a-only"]["scripts"], json!(["s.sh", "long.sh"]), "{agents}");
    assert_eq!(fleet.job(&done).await, done_job);
    assert_eq!(
        fleet.job(&running).await["status"],
        "running",
        "B's cancel and report did nothing"
    );
    let (_, jobs) = fleet.app.get("/jobs", fleet.token()).await;
    let ids: Vec<&str> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job: &Value| job["job_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), 3, "A's three jobs and nothing else: {jobs}");
    assert!(!ids.contains(&b_job.as_str()));
    assert_eq!(
        std::fs::read_to_string(&ledger).unwrap_or_default().lines().count(),
        2,
        "A's agent ran only A's two s.sh jobs"
    );

    let response = fleet.cancel(&running).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(fleet.finished_job(&running).await["status"], "cancelled");
}
