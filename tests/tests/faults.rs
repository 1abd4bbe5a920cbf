//! The core loop when things go wrong: agents that die or restart mid-job, an orchestrator
//! that restarts with jobs queued or is down while a result is due, cancellations, results
//! that arrive twice or late, and job handovers nobody confirmed.

use scriptmesh_tests::fleet::{process_gone, wait_for_pid_file, Fleet, ProcessGroupGuard, FLEET_WAIT};
use scriptmesh_tests::{now_ms, wait_until, ApiResponse, Method, StatusCode, TestApp};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes its pid and its background child's pid, then waits for a minute.
fn long_script(dir: &Path) -> String {
    format!(
        "#!/bin/sh\nsleep 60 &\necho $! > {dir}/child.pid\necho $$ > {dir}/main.pid\nwait\n",
        dir = dir.display()
    )
}

/// Appends the job's id to `ledger`: one line per run.
fn ledger_script(ledger: &Path) -> String {
    format!("#!/bin/sh\necho \"$SCRIPTMESH_JOB_ID\" >> {}\n", ledger.display())
}

fn ledger_lines(ledger: &Path) -> Vec<String> {
    std::fs::read_to_string(ledger)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|entries| entries.count()).unwrap_or(0)
}

#[actix_rt::test]
async fn a_job_whose_agent_dies_ends_lost_and_the_agent_offline() {
    let fleet = Fleet::start().await;
    let pids = tempfile::tempdir().expect("tempdir");
    let mut agent = fleet
        .start_agent(
            fleet
                .spec("doomed")
                .script("long.sh", &long_script(pids.path()))
                .env("HEARTBEAT_INTERVAL", "1"),
        )
        .await;
    let job_id = fleet.trigger_async("doomed", "long.sh", json!({})).await;
    fleet.wait_for_job_status(&job_id, "running").await;
    let script = wait_for_pid_file(&pids.path().join("main.pid")).await;
    // The script outlives its SIGKILLed agent, as it would on a real host.
    let _orphan = ProcessGroupGuard(script);

    let killed = Instant::now();
    agent.kill();
    let job = fleet.finished_job(&job_id).await;
    let noticed = killed.elapsed();
    assert_eq!(job["status"], "lost", "{job}");
    let reason = job["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("doomed") && reason.contains("offline"), "{job}");
    assert!(
        job["stderr"].as_str().unwrap_or_default().contains(reason),
        "the reason is in stderr: {job}"
    );
    assert!(job["completed_at"].is_string(), "{job}");
    // Three missed 1 s heartbeats, checked every second.
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(8)).contains(&noticed),
        "lost after {noticed:?}"
    );
    let (_, entry) = fleet.app.get("/agents/doomed", fleet.token()).await;
    assert_eq!(entry["status"], "offline", "{entry}");
}

#[actix_rt::test]
async fn an_agent_that_restarts_mid_job_reports_it_lost_at_once() {
    let fleet = Fleet::start().await;
    let pids = tempfile::tempdir().expect("tempdir");
    let mut agent = fleet
        .start_agent(fleet.spec("phoenix").script("long.sh", &long_script(pids.path())))
        .await;
    let job_id = fleet.trigger_async("phoenix", "long.sh", json!({})).await;
    fleet.wait_for_job_status(&job_id, "running").await;
    let _orphan = ProcessGroupGuard(wait_for_pid_file(&pids.path().join("main.pid")).await);

    // Back before three heartbeats are missed: its registration says it runs nothing, so
    // the job is lost for that reason (not for a silence that has not happened).
    agent.restart().await;
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job["status"], "lost", "{job}");
    let reason = job["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("phoenix") && reason.contains("restarted"), "{job}");
    assert_eq!(
        fleet.wait_for_agent_status("phoenix", "online").await["status"],
        "online"
    );
}

#[actix_rt::test]
async fn queued_jobs_survive_an_orchestrator_restart_and_run_exactly_once() {
    let mut fleet = Fleet::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger");
    let mut agent = fleet
        .start_agent(
            fleet
                .spec("batch")
                .env("MAX_CONCURRENT_JOBS", "1")
                .script("count.sh", &ledger_script(&ledger)),
        )
        .await;
    agent.kill();
    fleet.wait_for_agent_status("batch", "offline").await;

    let mut ids = Vec::new();
    for n in 0..5 {
        let response = fleet
            .trigger(&json!({"agent": "batch", "run_script": "count.sh", "params": {"n": n}, "async_exec": true}))
            .await;
        assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
        assert_eq!(response.body["status"], "pending");
        assert_eq!(response.body["agent_status"], "offline", "{}", response.text);
        assert!(
            response.body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("offline"),
            "{}",
            response.text
        );
        ids.push(response.body["job_id"].as_str().expect("job_id").to_owned());
    }
    let job = fleet.job(&ids[0]).await;
    assert_eq!(job["status"], "pending");
    assert!(
        job["reason"].as_str().unwrap_or_default().contains("offline"),
        "pending says why: {job}"
    );

    fleet.app.restart().await;
    for id in &ids {
        assert_eq!(fleet.job(id).await["status"], "pending", "the restart kept {id} queued");
    }
    agent.restart().await;
    for id in &ids {
        let job = fleet.finished_job(id).await;
        assert_eq!(job["status"], "success", "{job}");
    }
    // One slot, so they ran one after another, in the order they were queued. A second
    // delivery of any of them would show up as an extra line.
    assert!(
        !wait_until(Duration::from_secs(2), || async {
            ledger_lines(&ledger).len() > ids.len()
        })
        .await,
        "a job ran twice: {:?}",
        ledger_lines(&ledger)
    );
    assert_eq!(ledger_lines(&ledger), ids, "each queued job ran exactly once, in order");
}

#[actix_rt::test]
async fn a_result_due_while_the_orchestrator_is_down_is_spooled_and_delivered() {
    let mut fleet = Fleet::start().await;
    let agent = fleet
        .start_agent(
            fleet
                .spec("steady")
                .script("work.sh", "#!/bin/sh\nsleep 3\necho finished\n"),
        )
        .await;
    let job_id = fleet.trigger_async("steady", "work.sh", json!({})).await;
    fleet.wait_for_job_status(&job_id, "running").await;

    fleet.app.kill();
    let down = Instant::now();
    // The script ends while the orchestrator is gone: its result waits in the spool.
    assert!(
        wait_until(Duration::from_secs(8), || async { spool_files(agent.spool_dir()) > 0 }).await,
        "no result was spooled in {}",
        agent.spool_dir().display()
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    fleet.app.restart().await;

    // Re-sent with backoff (at most ~10 s apart by then).
    let job = fleet.finished_job_within(&job_id, Duration::from_secs(40)).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["exit_code"], 0);
    assert_eq!(job["stdout"], "finished\n");
    let duration = job["duration_ms"].as_u64().unwrap_or_default();
    assert!(
        (3_000..6_000).contains(&duration),
        "the run itself took ~3 s: {duration} ms"
    );
    assert!(
        wait_until(FLEET_WAIT, || async { spool_files(agent.spool_dir()) == 0 }).await,
        "the delivered result stays in the spool"
    );
}

#[actix_rt::test]
async fn cancel_stops_a_running_job_and_withdraws_a_queued_one() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger");
    let mut agent = fleet
        .start_agent(
            fleet
                .spec("worker")
                .script("long.sh", &long_script(dir.path()))
                .script("note.sh", &ledger_script(&ledger)),
        )
        .await;

    // Running: the agent kills the script's whole process group.
    let running = fleet.trigger_async("worker", "long.sh", json!({})).await;
    fleet.wait_for_job_status(&running, "running").await;
    let main = wait_for_pid_file(&dir.path().join("main.pid")).await;
    let child = wait_for_pid_file(&dir.path().join("child.pid")).await;
    let _leftovers = ProcessGroupGuard(main);
    let response = fleet.cancel(&running).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["job_id"], running.as_str());
    let requested = Instant::now();
    let job = fleet.finished_job(&running).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(
        requested.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        requested.elapsed()
    );
    for (what, pid) in [("script", main), ("its background child", child)] {
        assert!(
            wait_until(Duration::from_secs(5), || async move { process_gone(pid) }).await,
            "{what} (pid {pid}) survived the cancel"
        );
    }

    // Finished: a cancel changes nothing.
    let done = fleet.trigger_async("worker", "note.sh", json!({})).await;
    let finished = fleet.finished_job(&done).await;
    assert_eq!(finished["status"], "success");
    let response = fleet.cancel(&done).await;
    assert!(
        response.status == StatusCode::OK || response.status == StatusCode::CONFLICT,
        "{}",
        response.text
    );
    assert_eq!(
        fleet.job(&done).await,
        finished,
        "a finished job is not touched by a cancel"
    );

    // Queued for an offline agent: cancelled on the spot, and never run later.
    agent.kill();
    fleet.wait_for_agent_status("worker", "offline").await;
    let queued = fleet.trigger_async("worker", "note.sh", json!({})).await;
    let response = fleet.cancel(&queued).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["status"], "cancelled", "{}", response.text);
    let job = fleet.job(&queued).await;
    assert_eq!(job["status"], "cancelled");
    assert!(job["completed_at"].is_string(), "{job}");
    assert!(job["reason"].as_str().unwrap_or_default().contains("cancel"), "{job}");

    agent.restart().await;
    fleet.wait_for_agent_status("worker", "online").await;
    let after = fleet.trigger_async("worker", "note.sh", json!({})).await;
    assert_eq!(fleet.finished_job(&after).await["status"], "success");
    assert_eq!(ledger_lines(&ledger), [done, after], "the cancelled job never ran");
    assert_eq!(fleet.job(&queued).await["status"], "cancelled");
}

/// The agent protocol driven by hand with the agent's API key, as the agent binary does.
struct ManualAgent<'a> {
    fleet: &'a Fleet,
    name: String,
    key: String,
}

impl<'a> ManualAgent<'a> {
    async fn register(fleet: &'a Fleet, name: &str, heartbeat_interval: u64) -> ManualAgent<'a> {
        let body = json!({
            "agent_name": name,
            "tags": [],
            "scripts": [{"name": "x.sh", "path": "x.sh", "description": ""}],
            "heartbeat_interval": heartbeat_interval,
            "running_jobs": [],
        });
        let (status, answer) = fleet.app.post_json("/register-agent", &body, Some(&fleet.key)).await;
        assert_eq!(
            (status, answer.clone()),
            (
                StatusCode::OK,
                json!({"status": "ok", "agent": name, "heartbeat_in_poll": true})
            )
        );
        ManualAgent {
            fleet,
            name: name.to_owned(),
            key: fleet.key.clone(),
        }
    }

    async fn poll(&self, wait_secs: u64) -> Value {
        let path = format!("/agent/poll?agent={}&capacity=1&wait={wait_secs}", self.name);
        let (status, body) = self.fleet.app.get(&path, Some(&self.key)).await;
        assert_eq!(status, StatusCode::OK, "poll: {body}");
        body
    }

    /// A poll with `start=implicit`: the answer starts the jobs, no `/start` follows.
    async fn poll_implicitly(&self, wait_secs: u64) -> Value {
        let path = format!(
            "/agent/poll?agent={}&capacity=1&wait={wait_secs}&start=implicit",
            self.name
        );
        let (status, body) = self.fleet.app.get(&path, Some(&self.key)).await;
        assert_eq!(status, StatusCode::OK, "poll: {body}");
        body
    }

    /// A heartbeat listing the jobs the agent holds, carried by a poll (`POST /agent/poll`).
    async fn poll_with_heartbeat(&self, held: &[&str], scripts: &[&str], wait_secs: u64) -> ApiResponse {
        let scripts: Vec<Value> = scripts
            .iter()
            .map(|name| json!({"name": name, "path": name, "description": ""}))
            .collect();
        let body = json!({
            "agent_name": self.name, "scripts": scripts,
            "running_jobs": held, "held_jobs": held, "heartbeat_interval": 60,
        });
        let path = format!(
            "/agent/poll?agent={}&capacity=1&wait={wait_secs}&start=implicit",
            self.name
        );
        self.fleet
            .app
            .request(Method::POST, &path)
            .bearer(Some(&self.key))
            .json(&body)
            .send()
            .await
    }

    /// A heartbeat listing the jobs the agent holds.
    async fn heartbeat_holding(&self, held: &[&str]) -> (StatusCode, Value) {
        let body = json!({
            "agent_name": self.name,
            "scripts": [{"name": "x.sh", "path": "x.sh", "description": ""}],
            "running_jobs": held, "held_jobs": held, "heartbeat_interval": 60,
        });
        self.fleet
            .app
            .post_json("/agent/heartbeat", &body, Some(&self.key))
            .await
    }

    async fn start(&self, job_id: &str) -> (StatusCode, Value) {
        let body = json!({"agent_name": self.name, "started_at_ms": now_ms()});
        self.fleet
            .app
            .post_json(&format!("/agent/jobs/{job_id}/start"), &body, Some(&self.key))
            .await
    }

    async fn report(&self, job_id: &str, result: &Value) -> (StatusCode, Value) {
        self.fleet
            .app
            .post_json(&format!("/agent/jobs/{job_id}/result"), result, Some(&self.key))
            .await
    }

    fn result(&self, outcome: &str, exit_code: i32, stdout: &str) -> Value {
        let now = now_ms();
        json!({
            "agent_name": self.name, "outcome": outcome, "exit_code": exit_code,
            "stdout": stdout, "stderr": "", "duration_ms": 12,
            "started_at_ms": now - 12, "completed_at_ms": now
        })
    }
}

#[actix_rt::test]
async fn a_result_sent_twice_is_stored_once() {
    let fleet = Fleet::start().await;
    let agent = ManualAgent::register(&fleet, "manual", 60).await;
    let job_id = fleet.trigger_async("manual", "x.sh", json!({"target": "t"})).await;

    let poll = agent.poll(5).await;
    assert_eq!(
        poll["jobs"],
        json!([{"job_id": job_id, "script": "x.sh", "params": {"target": "t"}, "timeout_secs": null}]),
        "{poll}"
    );
    let (status, body) = agent.start(&job_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fleet.job(&job_id).await["status"], "running");

    let (status, ack) = agent.report(&job_id, &agent.result("success", 0, "once\n")).await;
    assert_eq!(
        (status, ack),
        (StatusCode::OK, json!({"status": "ok", "duplicate": false}))
    );
    let stored = fleet.job(&job_id).await;
    assert_eq!(
        (
            stored["status"].clone(),
            stored["exit_code"].clone(),
            stored["stdout"].clone(),
            stored["duration_ms"].clone()
        ),
        (json!("success"), json!(0), json!("once\n"), json!(12)),
        "{stored}"
    );

    // The retry (here with different content, to show which one counts) changes nothing.
    let (status, ack) = agent.report(&job_id, &agent.result("failed", 1, "twice\n")).await;
    assert_eq!(
        (status, ack),
        (StatusCode::OK, json!({"status": "ok", "duplicate": true}))
    );
    assert_eq!(fleet.job(&job_id).await, stored);
    let (status, body) = agent.start(&job_id).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a finished job cannot start again: {body}"
    );

    // Only the key the agent registered with speaks for it, and only about its own jobs.
    let other_key = fleet.app.create_api_key(&fleet.session, "another").await;
    let (status, body) = fleet
        .app
        .post_json(
            &format!("/agent/jobs/{job_id}/result"),
            &agent.result("failed", 1, "impostor\n"),
            Some(&other_key),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("agent_key_mismatch")),
        "{body}"
    );
    let (status, body) = fleet
        .app
        .get("/agent/poll?agent=manual&capacity=1&wait=1", fleet.token())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "people do not poll: {body}");
    let (status, body) = agent
        .report("job_00000000000000000000000000000000", &agent.result("success", 0, ""))
        .await;
    assert!(
        status.is_client_error() && body["error"]["code"].is_string(),
        "{status} {body}"
    );
    assert_eq!(fleet.job(&job_id).await, stored);
}

#[actix_rt::test]
async fn a_late_result_replaces_lost() {
    let fleet = Fleet::start().await;
    let agent = ManualAgent::register(&fleet, "flaky", 1).await;
    let job_id = fleet.trigger_async("flaky", "x.sh", json!({})).await;
    assert_eq!(agent.poll(5).await["jobs"][0]["job_id"], job_id.as_str());
    assert_eq!(agent.start(&job_id).await.0, StatusCode::OK);

    // No heartbeat for three intervals: the job is lost...
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job["status"], "lost", "{job}");
    // ...but the run did finish, and its result is worth more than the guess.
    let (status, ack) = agent.report(&job_id, &agent.result("success", 0, "made it\n")).await;
    assert_eq!(
        (status, ack),
        (StatusCode::OK, json!({"status": "ok", "duplicate": false}))
    );
    let job = fleet.job(&job_id).await;
    assert_eq!(
        (job["status"].clone(), job["stdout"].clone()),
        (json!("success"), json!("made it\n")),
        "{job}"
    );
}

#[actix_rt::test]
async fn a_job_handed_out_but_never_started_is_queued_again() {
    let fleet = Fleet::start_with(TestApp::builder().env("DISPATCH_ACK_TIMEOUT_SECS", "1")).await;
    let agent = ManualAgent::register(&fleet, "forgetful", 60).await;
    let job_id = fleet.trigger_async("forgetful", "x.sh", json!({})).await;
    // The poll answer is "lost on the way": the agent never confirms the start.
    assert_eq!(agent.poll(5).await["jobs"][0]["job_id"], job_id.as_str());
    assert_eq!(fleet.job(&job_id).await["status"], "dispatched");

    let requeued = wait_until(FLEET_WAIT, || async { fleet.job(&job_id).await["status"] == "pending" }).await;
    assert!(requeued, "still {}", fleet.job(&job_id).await);
    assert_eq!(
        agent.poll(5).await["jobs"][0]["job_id"],
        job_id.as_str(),
        "handed out again"
    );
    assert_eq!(agent.start(&job_id).await.0, StatusCode::OK);
    let (status, _) = agent.report(&job_id, &agent.result("success", 0, "second try\n")).await;
    assert_eq!(status, StatusCode::OK);
    let job = fleet.job(&job_id).await;
    assert_eq!(
        (job["status"].clone(), job["stdout"].clone()),
        (json!("success"), json!("second try\n")),
        "{job}"
    );
}

#[actix_rt::test]
async fn a_heartbeat_on_the_poll_is_recorded_and_its_cancel_orders_answered_at_once() {
    let fleet = Fleet::start().await;
    let agent = ManualAgent::register(&fleet, "rider", 60).await;
    let job = fleet.trigger_async("rider", "x.sh", json!({})).await;
    // Heartbeat (with a script added to the manifest) and poll in one request.
    let response = agent.poll_with_heartbeat(&[], &["x.sh", "y.sh"], 5).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["jobs"][0]["job_id"], job.as_str(), "{}", response.text);
    assert_eq!(fleet.job(&job).await["status"], "running");
    let scripts = fleet
        .app
        .query_text("SELECT scripts AS value FROM agents WHERE name = 'rider'")
        .await;
    assert!(
        scripts[0].as_deref().is_some_and(|s| s.contains("y.sh")),
        "the heartbeat's manifest was not recorded: {scripts:?}"
    );

    // Cancelled while the agent has no poll parked: the next poll, carrying a heartbeat
    // that lists the job, answers the order (once) instead of waiting.
    let cancelled = fleet.cancel(&job).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    let asked = Instant::now();
    let response = agent.poll_with_heartbeat(&[&job], &["x.sh"], 20).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["cancel"], json!([job]), "{}", response.text);
    assert_eq!(response.body["jobs"], json!([]), "{}", response.text);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "waited {:?}",
        asked.elapsed()
    );

    // Refused: a heartbeat for another agent than the poll's, an unknown agent, a person's
    // token, a malformed body.
    let path = "/agent/poll?agent=rider&capacity=1&wait=1";
    let other = json!({"agent_name": "someone", "scripts": [], "heartbeat_interval": 60});
    let send = |path: &str, body: &Value, token: Option<&str>| {
        fleet.app.request(Method::POST, path).bearer(token).json(body).send()
    };
    send(path, &other, Some(&agent.key))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let ghost = json!({"agent_name": "ghost", "scripts": [], "heartbeat_interval": 60});
    let response = send("/agent/poll?agent=ghost&wait=1", &ghost, Some(&agent.key)).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.text);
    let mine = json!({"agent_name": "rider", "scripts": [], "heartbeat_interval": 60});
    let response = send(path, &mine, fleet.token()).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.text);
    let response = fleet
        .app
        .request(Method::POST, path)
        .bearer(Some(&agent.key))
        .body("{\"agent_name\": ")
        .send()
        .await;
    response.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    let no_interval = json!({"agent_name": "rider", "scripts": [], "heartbeat_interval": 0});
    let response = send(path, &no_interval, Some(&agent.key)).await;
    response.assert_client_error();

    // A refused heartbeat loses no job: one handed to its poll meanwhile comes back with
    // it, and otherwise the next poll gets it.
    let queued = fleet.trigger_async("rider", "x.sh", json!({})).await;
    let implicit = "/agent/poll?agent=rider&capacity=1&wait=5&start=implicit";
    let response = send(implicit, &no_interval, Some(&agent.key)).await;
    let handed = if response.status == StatusCode::OK {
        response.body
    } else {
        response.assert_client_error();
        agent.poll_implicitly(5).await
    };
    assert_eq!(handed["jobs"][0]["job_id"], queued.as_str(), "{handed}");

    // The agent's row deleted behind the orchestrator's back: on SQLite the poll still parks
    // (and is handed the job) while the heartbeat's write, a moment later, finds no agent;
    // the job comes back all the same. On PostgreSQL the deletion's news reaches the
    // supervisor first and both are refused: the job stays queued.
    let late = fleet.trigger_async("rider", "x.sh", json!({})).await;
    fleet.app.exec_sql("DELETE FROM agents WHERE name = 'rider'").await;
    let beat = json!({"agent_name": "rider", "scripts": [], "heartbeat_interval": 60});
    let response = send(implicit, &beat, Some(&agent.key)).await;
    if response.status == StatusCode::OK {
        assert_eq!(response.body["jobs"][0]["job_id"], late.as_str(), "{}", response.text);
    } else {
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.text);
        fleet.wait_for_job_status(&late, "pending").await;
    }
}

#[actix_rt::test]
async fn an_implicit_start_whose_answer_never_arrived_is_queued_again_and_runs_once() {
    let fleet = Fleet::start_with(TestApp::builder().env("DISPATCH_ACK_TIMEOUT_SECS", "1")).await;
    let agent = ManualAgent::register(&fleet, "forgetful", 60).await;
    let lost = fleet.trigger_async("forgetful", "x.sh", json!({})).await;
    let kept = fleet.trigger_async("forgetful", "x.sh", json!({})).await;
    // The first answer started the job; the agent never got it.
    assert_eq!(agent.poll_implicitly(5).await["jobs"][0]["job_id"], lost.as_str());
    assert_eq!(fleet.job(&lost).await["status"], "running");
    // A heartbeat right away holds nothing, but the answer may still be on its way: kept.
    let (status, body) = agent.heartbeat_holding(&[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fleet.job(&lost).await["status"], "running");
    // Later, the second job (which it holds) stays; the first goes back to the queue.
    assert_eq!(agent.poll_implicitly(5).await["jobs"][0]["job_id"], kept.as_str());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = agent.heartbeat_holding(&[&kept]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fleet.job(&lost).await["status"], "pending");
    assert_eq!(fleet.job(&kept).await["status"], "running");

    // Handed out again, it runs and is reported once, in a batch with the other.
    assert_eq!(agent.poll_implicitly(5).await["jobs"][0]["job_id"], lost.as_str());
    let batch = json!({"agent_name": "forgetful", "results": [
        {"job_id": lost, "report": agent.result("success", 0, "second try\n")},
        {"job_id": kept, "report": agent.result("failed", 3, "kept\n")},
        {"job_id": kept, "report": agent.result("failed", 3, "kept\n")},
        {"job_id": "job_00000000000000000000000000000000", "report": agent.result("success", 0, "")},
    ]});
    let (status, ack) = fleet.app.post_json("/agent/results", &batch, Some(&agent.key)).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let outcomes: Vec<&str> = ack["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["stored", "stored", "duplicate", "refused"], "{ack}");
    let job = fleet.job(&lost).await;
    assert_eq!(
        (job["status"].clone(), job["stdout"].clone()),
        (json!("success"), json!("second try\n"))
    );
    assert_eq!(fleet.job(&kept).await["exit_code"], 3);

    // Bad batches: another agent's name, too many, malformed.
    let other = json!({"agent_name": "nobody", "results": []});
    let (status, _) = fleet.app.post_json("/agent/results", &other, Some(&agent.key)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = fleet.app.post_json("/agent/results", &other, fleet.token()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a person's token is not an agent key");
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"job_id": kept, "report": agent.result("success", 0, "")}))
        .collect();
    let (status, body) = fleet
        .app
        .post_json(
            "/agent/results",
            &json!({"agent_name": "forgetful", "results": many}),
            Some(&agent.key),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = fleet
        .app
        .post_json(
            "/agent/results",
            &json!({"agent_name": "forgetful", "results": "x"}),
            Some(&agent.key),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
