//! Rollout controls of `POST /fan-out`, end to end with real agents: `max_concurrency`
//! keeps the rest of the fleet waiting for a slot (the scripts' own clocks show how many
//! ran at once), `max_errors` stops the rollout and cancels what was not handed out, and
//! bad values get JSON 422 answers.

use scriptmesh_tests::fleet::Fleet;
use scriptmesh_tests::{StatusCode, TestAgent};
use serde_json::{json, Value};
use std::path::Path;

/// A script that notes its start and end (nanoseconds, by the host clock) in `ledger`,
/// sleeping `seconds` between them, and exits with `code`.
fn ledger_script(ledger: &Path, seconds: &str, code: i32) -> String {
    let ledger = ledger.display();
    format!(
        "#!/bin/sh\necho \"start $(date +%s%N)\" >> {ledger}\nsleep {seconds}\n\
         echo \"end $(date +%s%N)\" >> {ledger}\nexit {code}\n"
    )
}

async fn start_agents(fleet: &Fleet, names: &[&str], script: &str) -> Vec<TestAgent> {
    let mut agents = Vec::new();
    for name in names {
        let spec = fleet.spec(name).tag("rollout").script("step.sh", script);
        agents.push(fleet.start_agent(spec).await);
    }
    agents
}

/// The most runs in progress at any moment, from the ledger's start and end marks.
fn most_at_once(ledger: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(ledger).unwrap_or_default();
    let mut marks: Vec<(u128, i32)> = text
        .lines()
        .filter_map(|line| {
            let (kind, at) = line.split_once(' ')?;
            let delta = if kind == "start" { 1 } else { -1 };
            Some((at.trim().parse().ok()?, delta))
        })
        .collect();
    // Ends before starts at the same instant: touching runs did not overlap.
    marks.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in &marks {
        now += delta;
        most = most.max(now);
    }
    let runs = marks.iter().filter(|(_, d)| *d == 1).count();
    (most as usize, runs)
}

async fn fan_out(fleet: &Fleet, body: Value) -> Value {
    let (status, created) = fleet.app.post_json("/fan-out", &body, fleet.token()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    created
}

async fn wait_for_all(fleet: &Fleet, created: &Value) -> Vec<Value> {
    let mut jobs = Vec::new();
    for job in created["jobs"].as_array().expect("jobs") {
        jobs.push(fleet.finished_job(job["job_id"].as_str().expect("job_id")).await);
    }
    jobs
}

async fn fan_out_state(fleet: &Fleet, created: &Value) -> Value {
    let id = created["fanout_id"].as_str().expect("fanout_id");
    let (status, state) = fleet
        .app
        .get(&format!("/fan-out/{id}?groups=false"), fleet.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    state
}

#[actix_rt::test]
async fn max_concurrency_keeps_the_rest_waiting_for_a_slot() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let _agents = start_agents(
        &fleet,
        &["roll-a", "roll-b", "roll-c", "roll-d", "roll-e"],
        &ledger_script(&ledger, "0.6", 0),
    )
    .await;

    let created = fan_out(
        &fleet,
        json!({"run_script": "step.sh", "tags": ["rollout"], "max_concurrency": 2}),
    )
    .await;
    assert_eq!(created["max_concurrency"], 2, "{created}");
    assert_eq!(created["jobs"].as_array().map(Vec::len), Some(5), "{created}");

    // While the first two run, the other three wait, pending, and say why.
    let state = fan_out_state(&fleet, &created).await;
    assert_eq!(state["rollout"]["max_concurrency"], 2, "{state}");
    assert_eq!(state["rollout"]["waiting"], 3, "{state}");
    assert_eq!(state["rollout"]["stopped"], false, "{state}");
    let last = created["jobs"][4]["job_id"].as_str().unwrap();
    let waiting = fleet.job(last).await;
    assert_eq!(waiting["status"], "pending", "{waiting}");
    assert!(
        waiting["reason"].as_str().unwrap_or_default().contains("rollout slot"),
        "{waiting}"
    );

    let jobs = wait_for_all(&fleet, &created).await;
    for job in &jobs {
        assert_eq!(job["status"], "success", "{job}");
        assert_eq!(
            job["reason"],
            Value::Null,
            "a released job keeps no waiting reason: {job}"
        );
    }
    let (most, runs) = most_at_once(&ledger);
    assert_eq!(runs, 5, "every agent ran once");
    assert_eq!(most, 2, "two at a time, never more (and the slots were used)");
    let state = fan_out_state(&fleet, &created).await;
    assert_eq!(state["rollout"]["waiting"], 0, "{state}");
    assert_eq!(state["summary"]["succeeded"], 5, "{state}");
    assert_eq!(state["done"], true, "{state}");
}

#[actix_rt::test]
async fn max_errors_stops_the_rollout_and_cancels_the_rest() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let _agents = start_agents(
        &fleet,
        &["bad-a", "bad-b", "bad-c", "bad-d"],
        &ledger_script(&ledger, "0.2", 3),
    )
    .await;

    // A quarter of four is one at a time; the second failure stops it, so the first two
    // run (one after the other) and the last two never do.
    let created = fan_out(
        &fleet,
        json!({"run_script": "step.sh", "tags": ["rollout"], "max_concurrency": "25%", "max_errors": 2}),
    )
    .await;
    assert_eq!(created["max_concurrency"], 1, "{created}");
    assert_eq!(created["max_errors"], 2, "{created}");

    let jobs = wait_for_all(&fleet, &created).await;
    let statuses: Vec<&str> = jobs.iter().map(|j| j["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "failed", "cancelled", "cancelled"], "{jobs:?}");
    for job in &jobs[2..] {
        let reason = job["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("rollout stopped") && reason.contains("max_errors is 2"),
            "{job}"
        );
        assert_eq!(job["started_at"], Value::Null, "a cancelled job never started: {job}");
    }
    assert_eq!(most_at_once(&ledger), (1, 2), "only the first two ran, one at a time");
    let state = fan_out_state(&fleet, &created).await;
    assert_eq!(state["rollout"]["stopped"], true, "{state}");
    assert_eq!(state["rollout"]["errors"], 2, "{state}");
    assert_eq!(state["summary"]["cancelled"], 2, "{state}");
    assert_eq!(state["done"], true, "{state}");
}

#[actix_rt::test]
async fn max_errors_without_a_concurrency_limit_lets_started_jobs_finish() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let _agents = start_agents(&fleet, &["all-a", "all-b"], &ledger_script(&ledger, "0.2", 1)).await;
    let created = fan_out(
        &fleet,
        json!({"run_script": "step.sh", "tags": ["rollout"], "max_errors": 1}),
    )
    .await;
    assert_eq!(created.get("max_concurrency"), None, "{created}");
    // Both were handed out at once: the first failure cancels nothing already running.
    let jobs = wait_for_all(&fleet, &created).await;
    for job in &jobs {
        assert_eq!(job["status"], "failed", "{job}");
    }
    let state = fan_out_state(&fleet, &created).await;
    assert_eq!(state["rollout"]["stopped"], true, "{state}");
    assert_eq!(state["rollout"]["max_concurrency"], Value::Null, "{state}");
}

#[actix_rt::test]
async fn bad_rollout_controls_are_refused_with_422() {
    let fleet = Fleet::start().await;
    let _agents = start_agents(&fleet, &["only"], "#!/bin/sh\necho ok\n").await;
    for (field, value) in [
        ("max_concurrency", json!(0)),
        ("max_concurrency", json!(-3)),
        ("max_concurrency", json!("0%")),
        ("max_concurrency", json!("150%")),
        ("max_concurrency", json!("ten")),
        ("max_concurrency", json!("12.5%")),
        ("max_concurrency", json!(100_001)),
        ("max_errors", json!(0)),
        ("max_errors", json!(-1)),
    ] {
        let body = json!({"run_script": "step.sh", "tags": ["rollout"], field: value});
        let (status, answer) = fleet.app.post_json("/fan-out", &body, fleet.token()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed", "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap_or_default().contains(field),
            "{body}: {answer}"
        );
    }
    // Values of the wrong JSON type are client errors too, never a 500.
    for body in [
        json!({"run_script": "step.sh", "tags": ["rollout"], "max_concurrency": true}),
        json!({"run_script": "step.sh", "tags": ["rollout"], "max_concurrency": [2]}),
        json!({"run_script": "step.sh", "tags": ["rollout"], "max_errors": "2"}),
    ] {
        let (status, answer) = fleet.app.post_json("/fan-out", &body, fleet.token()).await;
        assert!(status.is_client_error(), "{body}: {status} {answer}");
        assert!(answer["error"]["code"].is_string(), "{body}: {answer}");
    }
    let (_, jobs) = fleet.app.get("/jobs?agent=only", fleet.token()).await;
    assert_eq!(jobs["jobs"], json!([]), "nothing was queued");
}
