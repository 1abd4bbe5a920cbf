//! The core loop end to end, as the spec's flows run it: real agents run real scripts
//! that the orchestrator queues, dispatches over long-polls and records.

use scriptmesh_tests::fleet::process_gone;
use scriptmesh_tests::{wait_for, wait_until, AgentSpec, Session, StatusCode, TestAgent, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

struct Fleet {
    app: TestApp,
    session: Session,
    key: String,
}

impl Fleet {
    async fn start() -> Fleet {
        Fleet::with(TestApp::start().await).await
    }

    async fn with(app: TestApp) -> Fleet {
        let session = app.register_and_login("ops@example.com").await;
        let key = app.create_api_key(&session, "fleet").await;
        Fleet { app, session, key }
    }

    fn token(&self) -> Option<&str> {
        Some(&self.session.access_token)
    }

    async fn agent(&self, spec: AgentSpec) -> TestAgent {
        let name = spec.name.clone();
        let agent = self.app.start_agent(spec).await;
        self.app
            .wait_for_agent_status(&self.session.access_token, &name, "online", WAIT)
            .await;
        agent
    }

    async fn trigger(&self, body: Value) -> (StatusCode, Value) {
        self.app.post_json("/trigger-script", &body, self.token()).await
    }

    /// Triggers asynchronously and returns the job id (asserting the spec's answer).
    async fn queue(&self, agent: &str, script: &str, params: Value) -> String {
        let (status, body) = self
            .trigger(json!({"agent": agent, "run_script": script, "params": params, "async_exec": true}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "pending");
        let id = body["job_id"].as_str().expect("job_id").to_owned();
        assert!(id.starts_with("job_"), "{id}");
        id
    }

    async fn finished(&self, job_id: &str) -> Value {
        self.app.wait_for_job(&self.session.access_token, job_id, WAIT).await
    }

    async fn job(&self, job_id: &str) -> Value {
        let (status, job) = self.app.get(&format!("/jobs/{job_id}"), self.token()).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        job
    }
}

#[actix_rt::test]
async fn first_script_runs_end_to_end() {
    let fleet = Fleet::start().await;
    let backup = "#!/bin/bash\nset -euo pipefail\nTARGET=\"${target:-s3://default}\"\necho \"Backup complete. archived to ${TARGET}\"\n";
    let _agent = fleet
        .agent(
            AgentSpec::new("prod-server-1", &fleet.key)
                .tag("production")
                .script("backup.sh", backup),
        )
        .await;

    let job_id = fleet
        .queue("prod-server-1", "backup.sh", json!({"target": "s3://my-bucket"}))
        .await;
    let job = fleet.finished(&job_id).await;
    assert_eq!(job["job_id"], job_id);
    assert_eq!(job["status"], "success");
    assert_eq!(job["exit_code"], 0);
    assert_eq!(job["stdout"], "Backup complete. archived to s3://my-bucket\n");
    assert_eq!(job["stderr"], "");
    assert!(job["duration_ms"].as_u64().is_some());
    assert!(chrono_like(&job["completed_at"]), "{job}");
    assert_eq!(job["agent"], "prod-server-1");
    assert_eq!(job["script"], "backup.sh");
    assert_eq!(job["params"], json!({"target": "s3://my-bucket"}));

    // async_exec false answers with the finished job.
    let (status, job) = fleet
        .trigger(json!({"agent": "prod-server-1", "run_script": "backup.sh", "params": {"target": "x"}, "async_exec": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "success");
    assert_eq!(job["stdout"], "Backup complete. archived to x\n");

    // The job list shows both, newest first, and filters.
    let (_, list) = fleet
        .app
        .get("/jobs?agent=prod-server-1&status=success", fleet.token())
        .await;
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1], job_id);
    let (_, page) = fleet.app.get("/jobs?limit=1", fleet.token()).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, rest) = fleet
        .app
        .get(&format!("/jobs?limit=1&cursor={cursor}"), fleet.token())
        .await;
    assert_eq!(rest["jobs"][0]["job_id"], job_id);
    assert!(rest["next_cursor"].is_null());

    // /get-scripts shows the manifest the agent reported.
    let (_, scripts) = fleet.app.get("/get-scripts?agent=prod-server-1", fleet.token()).await;
    assert_eq!(scripts["scripts"][0]["name"], "backup.sh");
}

fn chrono_like(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

#[actix_rt::test]
async fn params_are_environment_data_and_outcomes_are_recorded() {
    let fleet = Fleet::start().await;
    let canary = std::env::temp_dir().join(format!("sm-canary-{}", std::process::id()));
    let _ = std::fs::remove_file(&canary);
    let _agent = fleet
        .agent(
            AgentSpec::new("worker", &fleet.key)
                .script("echo.sh", "#!/bin/sh\nprintf '%s' \"$target\"\n")
                .script("fail.sh", "#!/bin/sh\necho 'something broke' >&2\nexit 3\n")
                .script("stdin.sh", "#!/bin/sh\ncat\necho done\n")
                .script("loud.sh", "#!/bin/sh\nhead -c 100000 /dev/zero | tr '\\0' 'x'\n")
                .env("OUTPUT_LIMIT_BYTES", "1024"),
        )
        .await;

    let hostile = format!("x; touch {}", canary.display());
    let job = fleet
        .finished(&fleet.queue("worker", "echo.sh", json!({"target": hostile})).await)
        .await;
    assert_eq!(job["status"], "success");
    assert_eq!(job["stdout"], hostile, "the value arrives verbatim");
    assert!(!canary.exists(), "the value was never run as shell text");

    let job = fleet.finished(&fleet.queue("worker", "fail.sh", json!({})).await).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["exit_code"], 3);
    assert_eq!(job["stderr"], "something broke\n");

    let job = fleet
        .finished(&fleet.queue("worker", "stdin.sh", json!({})).await)
        .await;
    assert_eq!(job["status"], "success", "stdin is closed, so cat ends: {job}");
    assert_eq!(job["stdout"], "done\n");

    let job = fleet.finished(&fleet.queue("worker", "loud.sh", json!({})).await).await;
    assert_eq!(job["status"], "success");
    let stdout = job["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("\n[scriptmesh-agent: ") && stdout.contains(" bytes cut]\n"),
        "{stdout}"
    );
    assert_eq!(
        stdout.len() - stdout.lines().nth(1).unwrap().len() - 2,
        1024,
        "head and tail, 512 bytes each"
    );
    assert_eq!(job["stdout_truncated"], true);
    assert_eq!(job["stderr_truncated"], false);
}

#[actix_rt::test]
async fn a_timeout_kills_the_whole_process_tree() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let script = format!("#!/bin/sh\nsleep 1000 &\necho $! > {}\nsleep 1000\n", pidfile.display());
    let _agent = fleet
        .agent(AgentSpec::new("slow", &fleet.key).script("hang.sh", &script))
        .await;
    let (status, body) = fleet
        .trigger(json!({"agent": "slow", "run_script": "hang.sh", "timeout": 2}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = fleet.finished(body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "timeout", "{job}");
    assert_eq!(job["timeout"], 2);
    let child: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || async { process_gone(child) }).await,
        "background child {child} survived"
    );
}

#[actix_rt::test]
async fn only_manifest_scripts_run() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let evil = format!("#!/bin/sh\ntouch {}\n", marker.display());
    let manifest = json!({"scripts": [
        {"name": "ok.sh", "path": "ok.sh", "description": "fine"},
        {"name": "escape.sh", "path": "../escape.sh", "description": "outside SCRIPTS_DIR"},
    ]});
    let _agent = fleet
        .agent(
            AgentSpec::new("guarded", &fleet.key)
                .script("ok.sh", "#!/bin/sh\necho ok\n")
                .script("evil.sh", &evil)
                .manifest(manifest),
        )
        .await;

    // The orchestrator refuses what the manifest does not list, naming what it does.
    let (status, body) = fleet
        .trigger(json!({"agent": "guarded", "run_script": "evil.sh"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "script_not_allowed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("guarded") && message.contains("ok.sh"), "{message}");

    // A `..` path never makes it into the reported manifest.
    let (_, scripts) = fleet.app.get("/get-scripts?agent=guarded", fleet.token()).await;
    let names: Vec<&str> = scripts["scripts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ok.sh"]);
    let (status, _) = fleet
        .trigger(json!({"agent": "guarded", "run_script": "escape.sh"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Even if a job for an unlisted script reaches the agent, the agent refuses it.
    let forged = "job_ffffffffffffffffffffffffffffffff";
    let now = scriptmesh_tests::now_ms();
    fleet
        .app
        .exec_sql(&format!(
            "INSERT INTO jobs (id, tenant_id, agent_name, script, params, status, created_at) \
             VALUES ('{forged}', '{}', 'guarded', 'evil.sh', '{{}}', 'pending', {now})",
            fleet.session.tenant_id
        ))
        .await;
    // Wake the agent's queue with a legitimate job; the forged one is older in line order.
    let legit = fleet.queue("guarded", "ok.sh", json!({})).await;
    assert_eq!(fleet.finished(&legit).await["status"], "success");
    let job = fleet.finished(forged).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["reason"].as_str().unwrap().contains("refused by the agent"),
        "{job}"
    );
    assert!(!marker.exists(), "the unlisted script must not run");
}

#[actix_rt::test]
async fn fan_out_reaches_every_agent_with_the_tag() {
    let fleet = Fleet::start().await;
    let mut agents = Vec::new();
    for i in 0..5 {
        let spec = AgentSpec::new(&format!("prod-{i}"), &fleet.key)
            .tag("production")
            .tag("backend")
            .script(
                "deploy.sh",
                "#!/bin/sh\necho \"deployed $version on $SCRIPTMESH_AGENT_NAME\"\n",
            );
        agents.push(fleet.agent(spec).await);
    }
    agents.push(
        fleet
            .agent(
                AgentSpec::new("staging-1", &fleet.key)
                    .tag("staging")
                    .script("deploy.sh", "#!/bin/sh\n"),
            )
            .await,
    );

    // The spec's jq filter: online agents tagged production.
    let (_, all) = fleet.app.get("/agents", fleet.token()).await;
    let mut production: Vec<&String> = all
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, a)| a["status"] == "online" && a["tags"].as_array().unwrap().iter().any(|t| t == "production"))
        .map(|(name, _)| name)
        .collect();
    production.sort();
    assert_eq!(production, ["prod-0", "prod-1", "prod-2", "prod-3", "prod-4"]);

    let (status, body) = fleet
        .app
        .post_json(
            "/fan-out",
            &json!({"run_script": "deploy.sh", "params": {"version": "v2.4.1"}, "tags": ["production"]}),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let jobs = body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    let fanout = body["fanout_id"].as_str().unwrap().to_owned();
    for job in jobs {
        let done = fleet.finished(job["job_id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "success");
        assert_eq!(
            done["stdout"],
            format!("deployed v2.4.1 on {}\n", job["agent"].as_str().unwrap())
        );
        assert_eq!(done["fanout_id"], fanout.as_str());
    }
    let (_, summary) = fleet.app.get(&format!("/fan-out/{fanout}"), fleet.token()).await;
    assert_eq!(summary["summary"]["succeeded"], 5);
    assert_eq!(summary["summary"]["failed"], 0);
    assert_eq!(summary["done"], true);
}

#[actix_rt::test]
async fn a_killed_agent_loses_its_running_job_but_not_its_queue() {
    let fleet = Fleet::start().await;
    let mut agent = fleet
        .agent(AgentSpec::new("doomed", &fleet.key).script("long.sh", "#!/bin/sh\nsleep 30\n"))
        .await;
    let job_id = fleet.queue("doomed", "long.sh", json!({})).await;
    assert!(wait_until(WAIT, || async { fleet.job(&job_id).await["status"] == "running" }).await);
    agent.kill();
    let job = fleet.finished(&job_id).await;
    assert_eq!(job["status"], "lost", "{job}");
    assert!(job["reason"].as_str().unwrap().contains("offline"), "{job}");
    fleet
        .app
        .wait_for_agent_status(&fleet.session.access_token, "doomed", "offline", WAIT)
        .await;

    // Queued while it is away: pending with a reason, then run once it is back.
    let (status, body) = fleet.trigger(json!({"agent": "doomed", "run_script": "long.sh"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["agent_status"], "offline");
    let queued = body["job_id"].as_str().unwrap().to_owned();
    let job = fleet.job(&queued).await;
    assert_eq!(job["status"], "pending");
    assert!(job["reason"].as_str().unwrap().contains("offline"), "{job}");
}

#[actix_rt::test]
async fn queued_jobs_survive_an_orchestrator_restart_and_run_exactly_once() {
    let mut fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let script = format!("#!/bin/sh\necho \"$SCRIPTMESH_JOB_ID\" >> {}\n", ledger.display());
    let mut agent = fleet
        .agent(AgentSpec::new("batch", &fleet.key).script("count.sh", &script))
        .await;
    agent.kill();
    fleet
        .app
        .wait_for_agent_status(&fleet.session.access_token, "batch", "offline", WAIT)
        .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(fleet.queue("batch", "count.sh", json!({})).await);
    }
    fleet.app.restart().await;
    agent.restart().await;
    for id in &ids {
        assert_eq!(fleet.finished(id).await["status"], "success");
    }
    // Give any duplicate delivery a chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ran: Vec<String> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    ran.sort();
    ids.sort();
    assert_eq!(ran, ids, "each queued job ran exactly once");
}

#[actix_rt::test]
async fn cancel_stops_running_and_queued_jobs() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("#!/bin/sh\necho $$ > {}\nsleep 60\n", pidfile.display());
    let mut agent = fleet
        .agent(
            AgentSpec::new("cancellable", &fleet.key)
                .script("long.sh", &script)
                .env("MAX_CONCURRENT_JOBS", "1"),
        )
        .await;
    let running = fleet.queue("cancellable", "long.sh", json!({})).await;
    assert!(wait_until(WAIT, || async { fleet.job(&running).await["status"] == "running" }).await);
    let (status, _) = fleet
        .app
        .post_json(&format!("/jobs/{running}/cancel"), &json!({}), fleet.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    let job = fleet.finished(&running).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(wait_until(Duration::from_secs(5), || async { process_gone(pid) }).await);

    agent.kill();
    fleet
        .app
        .wait_for_agent_status(&fleet.session.access_token, "cancellable", "offline", WAIT)
        .await;
    let queued = fleet.queue("cancellable", "long.sh", json!({})).await;
    let (status, job) = fleet
        .app
        .post_json(&format!("/jobs/{queued}/cancel"), &json!({}), fleet.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["status"], "cancelled");
}

#[actix_rt::test]
async fn the_agent_protocol_is_bound_to_the_agents_key_and_results_are_idempotent() {
    let fleet = Fleet::start().await;
    let other_key = fleet.app.create_api_key(&fleet.session, "other").await;
    let register = json!({"agent_name": "manual", "tags": [], "scripts": [{"name": "x.sh", "path": "x.sh"}]});
    let (status, body) = fleet
        .app
        .post_json("/register-agent", &register, Some(&fleet.key))
        .await;
    assert_eq!(
        (status, body.clone()),
        (
            StatusCode::OK,
            json!({"status": "ok", "agent": "manual", "heartbeat_in_poll": true})
        )
    );

    let job_id = fleet.queue("manual", "x.sh", json!({})).await;
    // Another key of the same tenant is not this agent's key.
    let (status, _) = fleet
        .app
        .get("/agent/poll?agent=manual&capacity=1&wait=1", Some(&other_key))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // People (JWT) do not poll.
    let (status, _) = fleet
        .app
        .get("/agent/poll?agent=manual&capacity=1&wait=1", fleet.token())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, poll) = fleet
        .app
        .get("/agent/poll?agent=manual&capacity=1&wait=5", Some(&fleet.key))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(poll["jobs"][0]["job_id"], job_id);
    let now = scriptmesh_tests::now_ms();
    let (status, _) = fleet
        .app
        .post_json(
            &format!("/agent/jobs/{job_id}/start"),
            &json!({"agent_name": "manual", "started_at_ms": now}),
            Some(&fleet.key),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let result = json!({
        "agent_name": "manual", "outcome": "success", "exit_code": 0, "stdout": "once\n", "stderr": "",
        "duration_ms": 12, "started_at_ms": now, "completed_at_ms": now + 12
    });
    let path = format!("/agent/jobs/{job_id}/result");
    let (status, ack) = fleet.app.post_json(&path, &result, Some(&fleet.key)).await;
    assert_eq!((status, ack["duplicate"].clone()), (StatusCode::OK, json!(false)));
    let mut again = result.clone();
    again["stdout"] = json!("twice\n");
    let (status, ack) = fleet.app.post_json(&path, &again, Some(&fleet.key)).await;
    assert_eq!((status, ack["duplicate"].clone()), (StatusCode::OK, json!(true)));
    let job = fleet.job(&job_id).await;
    assert_eq!(
        (job["status"].clone(), job["stdout"].clone()),
        (json!("success"), json!("once\n"))
    );

    // A result for a job this agent does not hold is refused.
    let (status, _) = fleet
        .app
        .post_json("/agent/jobs/job_nonexistent/result", &result, Some(&fleet.key))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[actix_rt::test]
async fn tenants_never_see_each_other() {
    let fleet = Fleet::start().await;
    let _agent = fleet
        .agent(
            AgentSpec::new("a-only", &fleet.key)
                .tag("production")
                .script("s.sh", "#!/bin/sh\necho a\n"),
        )
        .await;
    let job_id = fleet.queue("a-only", "s.sh", json!({})).await;
    fleet.finished(&job_id).await;

    let other = fleet.app.register_and_login("intruder@example.com").await;
    let other_key = fleet.app.create_api_key(&other, "b").await;
    let b = Some(other.access_token.as_str());
    let (_, agents) = fleet.app.get("/agents", b).await;
    assert_eq!(agents, json!({}));
    assert_eq!(fleet.app.get("/agents/a-only", b).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        fleet.app.get("/get-scripts?agent=a-only", b).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fleet.app.get(&format!("/jobs/{job_id}"), b).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, jobs) = fleet.app.get("/jobs", b).await;
    assert_eq!(jobs["jobs"], json!([]));
    let (status, _) = fleet
        .app
        .post_json("/trigger-script", &json!({"agent": "a-only", "run_script": "s.sh"}), b)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = fleet
        .app
        .post_json(&format!("/jobs/{job_id}/cancel"), &json!({}), b)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = fleet
        .app
        .post_json("/fan-out", &json!({"run_script": "s.sh", "tags": ["production"]}), b)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fleet.app.delete("/agents/a-only", b).await.0, StatusCode::NOT_FOUND);
    let (status, _) = fleet.app.get("/agent/poll?agent=a-only&wait=1", Some(&other_key)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let heartbeat = json!({"agent_name": "a-only", "scripts": [], "heartbeat_interval": 60});
    assert_eq!(
        fleet
            .app
            .post_json("/agent/heartbeat", &heartbeat, Some(&other_key))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Tenant A still sees its agent untouched.
    let (_, agents) = fleet.app.get("/agents", fleet.token()).await;
    assert_eq!(agents["a-only"]["status"], "online");
}

#[actix_rt::test]
async fn bad_input_gets_json_errors() {
    let fleet = Fleet::start().await;
    let register = json!({"agent_name": "target", "scripts": [{"name": "s.sh", "path": "s.sh"}]});
    assert_eq!(
        fleet
            .app
            .post_json("/register-agent", &register, Some(&fleet.key))
            .await
            .0,
        StatusCode::OK
    );
    let cases = [
        (json!({"agent": "target"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"agent": 5, "run_script": "s.sh"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"agent": "target", "run_script": "s.sh", "params": {"a-b": "x"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"agent": "target", "run_script": "s.sh", "params": {"PATH": "/tmp"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"agent": "target", "run_script": "s.sh", "params": {"x": {"nested": 1}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"agent": "target", "run_script": "s.sh", "params": ["x"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"agent": "target", "run_script": "s.sh", "timeout": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"agent": "target", "run_script": "s.sh", "timeout": -4}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"agent": "nobody", "run_script": "s.sh"}), StatusCode::NOT_FOUND),
        (
            json!({"agent": "x".repeat(100_000), "run_script": "s.sh"}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = fleet.trigger(body.clone()).await;
        assert_eq!(status, expected, "{body} -> {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    for path in [
        "/jobs/not-a-job",
        "/jobs?status=bogus",
        "/jobs?limit=100000000000000000000",
        "/jobs?limit=-1",
        "/jobs?since=yesterday",
        "/fan-out/nope",
        "/get-scripts",
        "/agents/%2e%2e",
    ] {
        let (status, answer) = fleet.app.get(path, fleet.token()).await;
        assert!(status.is_client_error(), "{path} -> {status} {answer}");
        assert!(answer["error"]["code"].is_string(), "{path} -> {answer}");
    }
    for body in [
        json!({"agent_name": "bad name!", "tags": []}),
        json!({"agent_name": "ok", "tags": ["a,b"]}),
        json!({"agent_name": "ok", "url": "ftp://x"}),
        json!({"agent_name": "ok", "heartbeat_interval": 0}),
        json!({"agent_name": ["x"]}),
    ] {
        let (status, answer) = fleet.app.post_json("/register-agent", &body, fleet.token()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {answer}");
    }
    let (status, _) = fleet
        .app
        .post_json("/fan-out", &json!({"run_script": "s.sh", "agents": []}), fleet.token())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let _ = wait_for(Duration::from_millis(1), || async { Some(()) }).await;
}
