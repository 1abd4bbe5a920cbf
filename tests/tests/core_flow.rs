//! The core loop as the spec's flows run it: real agents run real shell scripts that the
//! orchestrator queues, dispatches over long-polls and records; the manifest whitelist is
//! enforced by both sides; fan-out reaches every agent a tag selects; bad input to the job
//! endpoints gets JSON 4xx answers.

use scriptmesh_tests::fleet::{
    is_job_id, parse_utc_time, process_gone, wait_for_pid_file, AgentWithOpenStdin, Fleet, ProcessGroupGuard,
    FLEET_WAIT,
};
use scriptmesh_tests::{now_ms, wait_until, Method, StatusCode, SCRIPTS_DIR_PLACEHOLDER};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The spec's backup.sh, minus the tar and aws calls this machine has no use for.
const BACKUP_SH: &str = r#"#!/bin/bash
set -euo pipefail
TARGET="${target:-s3://my-backups/$(hostname)}"
echo "Archiving /var/app/data to ${TARGET} ..."
sleep 0.3
echo "Backup complete. 2.4GB archived to ${TARGET}"
"#;

/// The order a job's status may move in on the way to success.
const SUCCESS_PATH: [&str; 4] = ["pending", "dispatched", "running", "success"];

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {list}"))
        .iter()
        .map(|entry| match entry {
            Value::String(name) => name.clone(),
            other => other["name"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

#[actix_rt::test]
async fn the_first_script_flow_runs_end_to_end() {
    let fleet = Fleet::start().await;
    let _agent = fleet
        .start_agent(
            fleet
                .spec("prod-server-1")
                .tag("production")
                .tag("backend")
                .script("backup.sh", BACKUP_SH),
        )
        .await;
    let (_, scripts) = fleet.app.get("/get-scripts?agent=prod-server-1", fleet.token()).await;
    assert_eq!(scripts["agent"], "prod-server-1", "{scripts}");
    assert_eq!(names(&scripts["scripts"]), ["backup.sh"], "{scripts}");

    // Trigger async execution: an immediate answer with a job id.
    let before_s = now_ms() / 1000;
    let response = fleet
        .trigger(&json!({
            "agent": "prod-server-1",
            "run_script": "backup.sh",
            "params": {"target": "s3://my-bucket"},
            "async_exec": true
        }))
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
    assert_eq!(response.body["status"], "pending", "{}", response.text);
    assert!(
        response.body.get("agent_status").is_none(),
        "the agent is online: {}",
        response.text
    );
    let job_id = response.body["job_id"].as_str().expect("job_id").to_owned();
    assert!(is_job_id(&job_id), "{job_id}");

    // Poll the job result, as the spec does, watching the status only ever move forward.
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + FLEET_WAIT;
    let job = loop {
        let job = fleet.job(&job_id).await;
        let status = job["status"].as_str().unwrap_or_default().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "success" || Instant::now() >= deadline {
            break job;
        }
        assert!(
            SUCCESS_PATH.contains(&status.as_str()),
            "job {job_id} ended otherwise: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let order: Vec<usize> = seen
        .iter()
        .map(|s| SUCCESS_PATH.iter().position(|p| p == s).unwrap_or(usize::MAX))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "statuses went backwards: {seen:?}"
    );

    assert_eq!(job["job_id"], job_id.as_str());
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["exit_code"], 0);
    assert_eq!(
        job["stdout"],
        "Archiving /var/app/data to s3://my-bucket ...\nBackup complete. 2.4GB archived to s3://my-bucket\n"
    );
    assert_eq!(job["stderr"], "");
    assert_eq!(
        (job["stdout_truncated"].clone(), job["stderr_truncated"].clone()),
        (json!(false), json!(false))
    );
    let duration = job["duration_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("duration_ms: {job}"));
    assert!(
        (300..10_000).contains(&duration),
        "the script sleeps 0.3 s; duration_ms {duration}"
    );
    assert_eq!(job["agent"], "prod-server-1");
    assert_eq!(job["script"], "backup.sh");
    assert_eq!(job["params"], json!({"target": "s3://my-bucket"}));
    assert_eq!(job["reason"], Value::Null);
    let time = |field: &str| {
        job[field]
            .as_str()
            .and_then(parse_utc_time)
            .unwrap_or_else(|| panic!("{field} is not an RFC 3339 UTC time: {job}"))
    };
    let (created, started, completed) = (time("created_at"), time("started_at"), time("completed_at"));
    let after_s = now_ms() / 1000;
    assert!(
        before_s <= created && created <= started && started <= completed && completed <= after_s,
        "times out of order: {before_s} <= {created} <= {started} <= {completed} <= {after_s}"
    );

    // async_exec false: the answer is the finished job itself.
    let response = fleet
        .trigger(&json!({
            "agent": "prod-server-1",
            "run_script": "backup.sh",
            "params": {"target": "s3://other-bucket"},
            "async_exec": false
        }))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let sync = response.body;
    assert_eq!(sync["status"], "success", "{sync}");
    assert_eq!(sync["exit_code"], 0);
    assert_eq!(
        sync["stdout"],
        "Archiving /var/app/data to s3://other-bucket ...\nBackup complete. 2.4GB archived to s3://other-bucket\n"
    );
    assert!(
        sync["completed_at"].as_str().and_then(parse_utc_time).is_some(),
        "{sync}"
    );
    let sync_id = sync["job_id"].as_str().expect("job_id").to_owned();
    assert_eq!(fleet.job(&sync_id).await, sync, "GET /jobs/{{id}} shows the same job");

    // Both are in the job list, newest first.
    let (status, list) = fleet.app.get("/jobs?agent=prod-server-1", fleet.token()).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed: Vec<&str> = list["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["job_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(listed, [sync_id.as_str(), job_id.as_str()]);
    assert_eq!(list["next_cursor"], Value::Null);

    // ?wait=: the request is held until the job is finished, so a script need not poll.
    let queued = fleet
        .trigger_async("prod-server-1", "backup.sh", json!({"target": "s3://waited"}))
        .await;
    let (status, waited) = fleet.app.get(&format!("/jobs/{queued}?wait=20"), fleet.token()).await;
    assert_eq!(status, StatusCode::OK, "{waited}");
    assert_eq!(waited["status"], "success", "{waited}");
    let (status, again) = fleet.app.get(&format!("/jobs/{queued}?wait=0"), fleet.token()).await;
    assert_eq!(
        (status, again),
        (StatusCode::OK, waited),
        "a finished job answers at once"
    );
}

#[actix_rt::test]
async fn params_arrive_as_environment_variables_and_stay_data() {
    let fleet = Fleet::start().await;
    let canaries = tempfile::tempdir().expect("tempdir");
    let canary = |n: u32| canaries.path().join(format!("canary-{n}")).display().to_string();
    let script = r#"#!/bin/sh
printf 'target=%s\n' "$target"
printf 'sub=%s\n' "$sub"
printf 'tick=%s\n' "$tick"
printf 'quote=%s\n' "$quote"
printf 'count=%s dry_run=%s\n' "$count" "$dry_run"
printf 'job=%s agent=%s script=%s\n' "$SCRIPTMESH_JOB_ID" "$SCRIPTMESH_AGENT_NAME" "$SCRIPTMESH_SCRIPT"
printf 'api_key=%s\n' "${API_KEY:-}"
"#;
    let _agent = fleet.start_agent(fleet.spec("web-1").script("echo.sh", script)).await;

    let params = json!({
        "target": format!("x; touch {}", canary(1)),
        "sub": format!("$(touch {})", canary(2)),
        "tick": format!("`touch {}`", canary(3)),
        "quote": format!("'\"; touch {} #", canary(4)),
        "count": 3,
        "dry_run": true,
    });
    let job_id = fleet.trigger_async("web-1", "echo.sh", params.clone()).await;
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job["status"], "success", "{job}");
    let expected = format!(
        "target=x; touch {c1}\nsub=$(touch {c2})\ntick=`touch {c3}`\nquote='\"; touch {c4} #\n\
         count=3 dry_run=true\njob={job_id} agent=web-1 script=echo.sh\napi_key=\n",
        c1 = canary(1),
        c2 = canary(2),
        c3 = canary(3),
        c4 = canary(4),
    );
    assert_eq!(job["stdout"], expected, "every value arrives verbatim");
    assert_eq!(job["stderr"], "");
    let created: Vec<_> = std::fs::read_dir(canaries.path()).expect("read dir").collect();
    assert!(
        created.is_empty(),
        "a parameter value was run as shell text: {created:?}"
    );
    // Numbers and booleans are shown as they become: text.
    assert_eq!(job["params"]["count"], "3", "{job}");
    assert_eq!(job["params"]["dry_run"], "true", "{job}");
}

#[actix_rt::test]
async fn a_non_zero_exit_is_failed_with_its_code_and_stderr() {
    let fleet = Fleet::start().await;
    let script = "#!/bin/sh\necho 'partial output'\necho 'disk full' >&2\nexit 3\n";
    let _agent = fleet.start_agent(fleet.spec("web-1").script("fail.sh", script)).await;
    let job = fleet
        .finished_job(&fleet.trigger_async("web-1", "fail.sh", json!({})).await)
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["exit_code"], 3);
    assert_eq!(job["stdout"], "partial output\n");
    assert_eq!(job["stderr"], "disk full\n");
    assert!(job["completed_at"].as_str().and_then(parse_utc_time).is_some(), "{job}");
}

#[actix_rt::test]
async fn a_timeout_kills_the_script_and_its_children() {
    let fleet = Fleet::start().await;
    let pids = tempfile::tempdir().expect("tempdir");
    let (main_pid, child_pid) = (pids.path().join("main.pid"), pids.path().join("child.pid"));
    let script = format!(
        "#!/bin/sh\necho $$ > {main}\nsleep 1000 &\necho $! > {child}\nsleep 1000\n",
        main = main_pid.display(),
        child = child_pid.display()
    );
    let _agent = fleet.start_agent(fleet.spec("web-1").script("hang.sh", &script)).await;
    let job_id = fleet
        .queue(&json!({"agent": "web-1", "run_script": "hang.sh", "async_exec": true, "timeout": 2}))
        .await;
    let (main, child) = (wait_for_pid_file(&main_pid).await, wait_for_pid_file(&child_pid).await);
    // Should the agent fail to, the test must not leave `sleep 1000` behind.
    let _group = ProcessGroupGuard(main);
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job["status"], "timeout", "{job}");
    assert_eq!(job["timeout"], 2);
    assert_eq!(job["exit_code"], Value::Null, "{job}");
    let duration = job["duration_ms"].as_u64().unwrap_or_default();
    assert!(
        (2_000..8_000).contains(&duration),
        "timeout 2 s (+1 s grace), took {duration} ms"
    );
    assert!(
        job["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out after 2 s"),
        "{job}"
    );
    for (what, pid) in [("script", main), ("background child", child)] {
        assert!(
            wait_until(Duration::from_secs(5), || async move { process_gone(pid) }).await,
            "the {what} (pid {pid}) survived the timeout"
        );
    }
}

#[actix_rt::test]
async fn a_script_reading_stdin_still_finishes() {
    let fleet = Fleet::start().await;
    let script = "#!/bin/sh\ncat\nif read -r line; then echo \"read: $line\"; else echo 'stdin closed'; fi\n";
    // The agent's own stdin stays open: only a script given a closed stdin gets past `cat`.
    let _agent = AgentWithOpenStdin::start(&fleet, "web-1", "stdin.sh", script).await;
    let job = fleet
        .finished_job(&fleet.trigger_async("web-1", "stdin.sh", json!({})).await)
        .await;
    assert_eq!(
        job["status"], "success",
        "stdin must be closed, or cat waits forever: {job}"
    );
    assert_eq!(job["stdout"], "stdin closed\n");
}

#[actix_rt::test]
async fn output_over_the_cap_keeps_head_and_tail_and_is_flagged() {
    let fleet = Fleet::start().await;
    let _agent = fleet
        .start_agent(
            fleet
                .spec("web-1")
                .env("OUTPUT_LIMIT_BYTES", "1024")
                .script("loud.sh", "#!/bin/sh\nhead -c 102400 /dev/zero | tr '\\0' 'x'\necho 'done' >&2\n")
                .script("both.sh", "#!/bin/sh\nhead -c 102400 /dev/zero | tr '\\0' 'o'\nhead -c 5000 /dev/zero | tr '\\0' 'e' >&2\nexit 1\n")
                .script("exact.sh", "#!/bin/sh\nhead -c 1024 /dev/zero | tr '\\0' 'y'\n"),
        )
        .await;
    let loud = fleet.trigger_async("web-1", "loud.sh", json!({})).await;
    let both = fleet.trigger_async("web-1", "both.sh", json!({})).await;
    let exact = fleet.trigger_async("web-1", "exact.sh", json!({})).await;

    let job = fleet.finished_job(&loud).await;
    assert_eq!(job["status"], "success", "{job}");
    // The first and the last 512 bytes are kept, with a line saying how much was cut.
    let cut = |c: &str, total: usize| {
        format!(
            "{}\n[scriptmesh-agent: {} bytes cut]\n{}",
            c.repeat(512),
            total - 1024,
            c.repeat(512)
        )
    };
    assert_eq!(job["stdout"], cut("x", 102400), "head and tail are kept");
    assert_eq!(job["stdout_truncated"], true);
    assert_eq!(job["stderr"], "done\n");
    assert_eq!(job["stderr_truncated"], false);

    let job = fleet.finished_job(&both).await;
    assert_eq!(
        (job["status"].clone(), job["exit_code"].clone()),
        (json!("failed"), json!(1)),
        "{job}"
    );
    assert_eq!(job["stdout"], cut("o", 102400));
    assert_eq!(job["stderr"], cut("e", 5000));
    assert_eq!(
        (job["stdout_truncated"].clone(), job["stderr_truncated"].clone()),
        (json!(true), json!(true))
    );

    let job = fleet.finished_job(&exact).await;
    assert_eq!(job["stdout"], "y".repeat(1024), "{job}");
    assert_eq!(job["stdout_truncated"], false, "exactly the cap is not truncated");
}

#[actix_rt::test]
async fn an_unlisted_script_is_refused_by_the_orchestrator_and_by_the_agent() {
    let fleet = Fleet::start().await;
    let markers = tempfile::tempdir().expect("tempdir");
    let marker = markers.path().join("evil-ran");
    let manifest = json!({"scripts": [{"name": "ok.sh", "path": "ok.sh", "description": "fine"}]});
    let _agent = fleet
        .start_agent(
            fleet
                .spec("guarded")
                .script("ok.sh", "#!/bin/sh\necho ok\n")
                .script("evil.sh", &format!("#!/bin/sh\ntouch {}\n", marker.display()))
                .manifest(manifest),
        )
        .await;
    let (_, scripts) = fleet.app.get("/get-scripts?agent=guarded", fleet.token()).await;
    assert_eq!(names(&scripts["scripts"]), ["ok.sh"], "{scripts}");

    // The orchestrator answers 403, naming the agent and what its manifest lists.
    let response = fleet
        .trigger(&json!({"agent": "guarded", "run_script": "evil.sh", "async_exec": true}))
        .await;
    response.assert_error(StatusCode::FORBIDDEN, "script_not_allowed");
    let message = response.body["error"]["message"].as_str().unwrap_or_default();
    for needle in ["guarded", "evil.sh", "ok.sh"] {
        assert!(
            message.contains(needle),
            "the message should name {needle:?}: {message}"
        );
    }
    let (_, jobs) = fleet.app.get("/jobs?agent=guarded", fleet.token()).await;
    assert_eq!(jobs["jobs"], json!([]), "a refused trigger queues nothing");

    // A job for it that reaches the agent anyway (here written straight into the
    // database) is refused by the agent itself: the whitelist is enforced where it runs.
    let forged = fleet.insert_pending_job("guarded", "evil.sh").await;
    let legit = fleet.trigger_async("guarded", "ok.sh", json!({})).await;
    assert_eq!(fleet.finished_job(&legit).await["stdout"], "ok\n");
    let job = fleet.finished_job(&forged).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["exit_code"], Value::Null, "{job}");
    let reason = job["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("refused by the agent") && reason.contains("evil.sh") && reason.contains("manifest"),
        "{job}"
    );
    assert!(job["stderr"].as_str().unwrap_or_default().contains("refused"), "{job}");
    assert!(!marker.exists(), "the unlisted script ran");
}

#[actix_rt::test]
async fn manifest_paths_outside_scripts_dir_are_refused() {
    let fleet = Fleet::start().await;
    // A script outside SCRIPTS_DIR, in the same temporary root as the agent's folder.
    let outside = tempfile::tempdir().expect("tempdir");
    let marker = outside.path().join("escaped");
    let evil = outside.path().join("evil.sh");
    std::fs::write(&evil, format!("#!/bin/sh\ntouch {}\n", marker.display())).expect("write evil.sh");
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let outside_name = outside.path().file_name().unwrap().to_str().unwrap();
    let manifest = json!({"scripts": [
        {"name": "ok.sh", "path": "ok.sh", "description": "fine"},
        {"name": "escape.sh", "path": format!("../../{outside_name}/evil.sh"), "description": "climbs out"},
        {"name": "dotdot.sh", "path": "sub/../ok.sh", "description": "'..' even when it lands inside"},
        {"name": "absolute.sh", "path": evil.display().to_string(), "description": "absolute, outside"},
        {"name": "inside.sh", "path": format!("{SCRIPTS_DIR_PLACEHOLDER}/ok.sh"), "description": "absolute, inside"},
    ]});
    let _agent = fleet
        .start_agent(
            fleet
                .spec("guarded")
                .script("ok.sh", "#!/bin/sh\necho ok\n")
                .script("sub/keep.sh", "#!/bin/sh\n")
                .manifest(manifest),
        )
        .await;

    let (_, scripts) = fleet.app.get("/get-scripts?agent=guarded", fleet.token()).await;
    assert_eq!(names(&scripts["scripts"]), ["ok.sh", "inside.sh"], "{scripts}");
    let (_, agent) = fleet.app.get("/agents/guarded", fleet.token()).await;
    assert_eq!(names(&agent["scripts"]), ["ok.sh", "inside.sh"], "{agent}");
    for script in ["escape.sh", "dotdot.sh", "absolute.sh"] {
        fleet
            .trigger(&json!({"agent": "guarded", "run_script": script}))
            .await
            .assert_error(StatusCode::FORBIDDEN, "script_not_allowed");
    }
    let job = fleet
        .finished_job(&fleet.trigger_async("guarded", "inside.sh", json!({})).await)
        .await;
    assert_eq!(
        (job["status"].clone(), job["stdout"].clone()),
        (json!("success"), json!("ok\n")),
        "{job}"
    );

    // Even delivered, a job naming the escaping entry is refused by the agent.
    let forged = fleet.insert_pending_job("guarded", "escape.sh").await;
    let legit = fleet.trigger_async("guarded", "ok.sh", json!({})).await;
    fleet.finished_job(&legit).await;
    let job = fleet.finished_job(&forged).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("refused by the agent"),
        "{job}"
    );
    assert!(!marker.exists(), "a script outside SCRIPTS_DIR ran");
}

#[actix_rt::test]
async fn fan_out_runs_on_every_online_agent_with_the_tag() {
    let fleet = Fleet::start().await;
    let deploy = "#!/bin/sh\necho \"deployed $version on $SCRIPTMESH_AGENT_NAME\"\n";
    let mut agents = Vec::new();
    for name in [
        "prod-us-east",
        "prod-eu-west",
        "prod-ap-south",
        "prod-sa-east",
        "prod-af-south",
    ] {
        let spec = fleet
            .spec(name)
            .tag("production")
            .tag("backend")
            .script("deploy.sh", deploy);
        agents.push(fleet.app.start_agent(spec).await);
    }
    agents.push(
        fleet
            .app
            .start_agent(fleet.spec("staging-1").tag("staging").script("deploy.sh", deploy))
            .await,
    );
    agents.push(
        fleet
            .app
            .start_agent(fleet.spec("untagged-1").script("deploy.sh", deploy))
            .await,
    );
    for agent in &agents {
        fleet.wait_for_agent_status(&agent.name, "online").await;
    }
    let mut production: Vec<String> = agents[..5].iter().map(|a| a.name.clone()).collect();
    production.sort();

    // The spec's jq filter: to_entries[] | select(.value.status=="online")
    //   | select(.value.tags[] | contains("production")) | .key
    let (_, all) = fleet.app.get("/agents", fleet.token()).await;
    let mut selected: Vec<String> = all
        .as_object()
        .unwrap_or_else(|| panic!("GET /agents is an object keyed by name: {all}"))
        .iter()
        .filter(|(_, agent)| agent["status"] == "online")
        .filter(|(_, agent)| {
            agent["tags"].as_array().is_some_and(|tags| {
                tags.iter()
                    .any(|t| t.as_str().unwrap_or_default().contains("production"))
            })
        })
        .map(|(name, _)| name.clone())
        .collect();
    selected.sort();
    assert_eq!(selected, production, "{all}");

    let (status, body) = fleet
        .app
        .post_json(
            "/fan-out",
            &json!({"run_script": "deploy.sh", "params": {"version": "v2.4.1"}, "tags": ["production"]}),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let fanout_id = body["fanout_id"].as_str().expect("fanout_id").to_owned();
    let jobs = body["jobs"].as_array().expect("jobs").clone();
    let mut targeted: Vec<String> = jobs
        .iter()
        .map(|j| j["agent"].as_str().unwrap_or_default().to_owned())
        .collect();
    targeted.sort();
    assert_eq!(targeted, production, "one job per production agent: {body}");
    assert_eq!(body["skipped"], json!([]), "{body}");

    for entry in &jobs {
        let job = fleet.finished_job(entry["job_id"].as_str().expect("job_id")).await;
        let agent = entry["agent"].as_str().unwrap_or_default();
        assert_eq!(job["status"], "success", "{job}");
        assert_eq!(job["agent"], agent);
        assert_eq!(
            job["stdout"],
            format!("deployed v2.4.1 on {agent}\n"),
            "each job ran on its own agent"
        );
        assert_eq!(job["fanout_id"], fanout_id.as_str());
    }
    let (status, summary) = fleet.app.get(&format!("/fan-out/{fanout_id}"), fleet.token()).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(
        summary["summary"],
        json!({"total": 5, "succeeded": 5, "failed": 0, "pending": 0, "running": 0, "cancelled": 0})
    );
    assert_eq!(summary["done"], true);
    assert_eq!(summary["jobs"].as_array().map(Vec::len), Some(5), "{summary}");
    for name in ["staging-1", "untagged-1"] {
        let (_, jobs) = fleet.app.get(&format!("/jobs?agent={name}"), fleet.token()).await;
        assert_eq!(jobs["jobs"], json!([]), "{name} is not tagged production");
    }
}

#[actix_rt::test]
async fn bad_input_to_the_job_endpoints_gets_json_4xx() {
    let fleet = Fleet::start().await;
    let register = json!({"agent_name": "target", "tags": [], "scripts": [{"name": "s.sh", "path": "s.sh"}]});
    let (status, body) = fleet
        .app
        .post_json("/register-agent", &register, Some(&fleet.key))
        .await;
    assert_eq!(
        (status, body.clone()),
        (
            StatusCode::OK,
            json!({"status": "ok", "agent": "target", "heartbeat_in_poll": true})
        )
    );

    let raw = |path: &str, body: &[u8]| {
        fleet
            .app
            .request(Method::POST, path)
            .bearer(fleet.token())
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
    };
    raw("/trigger-script", b"{\"agent\": \"target\", \"run_script\": ")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    raw("/trigger-script", b"")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    raw("/fan-out", b"{not json}")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    raw("/trigger-script", &vec![b' '; 2 << 20])
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let unprocessable = [
        json!([]),
        json!({"agent": "target"}),
        json!({"agent": 5, "run_script": "s.sh"}),
        json!({"agent": "target", "run_script": "s.sh", "async_exec": "yes"}),
        json!({"agent": "target", "run_script": "s.sh", "timeout": "10"}),
        json!({"agent": "target", "run_script": "s.sh", "timeout": 0}),
        json!({"agent": "target", "run_script": "s.sh", "timeout": -4}),
        json!({"agent": "target", "run_script": "s.sh", "timeout": 1e20}),
        json!({"agent": "target", "run_script": "s.sh", "params": {"a-b": "x"}}),
        json!({"agent": "target", "run_script": "s.sh", "params": {"PATH": "/tmp"}}),
        json!({"agent": "target", "run_script": "s.sh", "params": {"LD_PRELOAD": "/tmp/x.so"}}),
        json!({"agent": "target", "run_script": "s.sh", "params": {"": "x"}}),
        json!({"agent": "target", "run_script": "s.sh", "params": {"x": {"nested": 1}}}),
        json!({"agent": "target", "run_script": "s.sh", "params": {"x": [1]}}),
        json!({"agent": "target", "run_script": "s.sh", "params": {"x": null}}),
        json!({"agent": "target", "run_script": "s.sh", "params": {"x": "a\u{0}b"}}),
        json!({"agent": "target", "run_script": "s.sh", "params": ["x"]}),
        json!({"agent": "target", "run_script": "s.sh", "params": "x=1"}),
    ];
    for body in &unprocessable {
        let response = fleet.trigger(body).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {}",
            response.text
        );
        response.assert_client_error();
    }
    for agent in ["nobody", "a\u{0}b", &"x".repeat(100_000)] {
        fleet
            .trigger(&json!({"agent": agent, "run_script": "s.sh"}))
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    fleet
        .trigger(&json!({"agent": "target", "run_script": "../../bin/sh"}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "script_not_allowed");
    // An agent registered by hand has no manifest to check against yet; a name that no
    // manifest can hold is still refused.
    let (status, body) = fleet
        .app
        .post_json(
            "/register-agent",
            &json!({"agent_name": "handmade", "tags": []}),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for script in ["", "   ", "a\nb", "a\u{0}b", &"x".repeat(300)] {
        for (path, body) in [
            ("/trigger-script", json!({"agent": "handmade", "run_script": script})),
            (
                "/fan-out",
                json!({"agents": ["handmade"], "run_script": script, "only_online": false}),
            ),
        ] {
            let response = fleet
                .app
                .request(Method::POST, path)
                .bearer(fleet.token())
                .json(&body)
                .send()
                .await;
            assert_eq!(
                response.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {body} -> {}",
                response.text
            );
            response.assert_client_error();
        }
    }
    let (_, jobs) = fleet.app.get("/jobs", fleet.token()).await;
    assert_eq!(jobs["jobs"], json!([]), "nothing bad was queued");

    let get = |path: String| fleet.app.request(Method::GET, &path).bearer(fleet.token()).send();
    let long_id = format!("job_{}", "f".repeat(5000));
    for path in [
        "/jobs/not-a-job".to_owned(),
        "/jobs/job_00000000000000000000000000000000".to_owned(),
        "/jobs/%27%20OR%201%3D1%20--".to_owned(),
        "/jobs/%E2%82%AC".to_owned(),
        format!("/jobs/{long_id}"),
        "/fan-out/nope".to_owned(),
        "/agents/nobody".to_owned(),
        "/get-scripts?agent=nobody".to_owned(),
        "/jobs/job_00000000000000000000000000000000?wait=1".to_owned(),
    ] {
        get(path).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    for path in [
        "/jobs/job_00000000000000000000000000000000?wait=301",
        "/jobs/job_00000000000000000000000000000000?wait=-1",
        "/jobs/job_00000000000000000000000000000000?wait=1.5",
        "/jobs/job_00000000000000000000000000000000?wait=soon",
    ] {
        get(path.to_owned())
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    // A NUL byte cannot be stored or even compared in PostgreSQL text: whatever the
    // answer (not found, or invalid), it must be a JSON 4xx, not a database error.
    for path in [
        "/jobs/job_%00",
        "/fan-out/fan_%00",
        "/agents/a%00b",
        "/get-scripts?agent=%00",
        "/jobs?agent=%00",
        "/jobs?script=%00",
        "/jobs?cursor=%00",
    ] {
        let response = get(path.to_owned()).await;
        if response.status == StatusCode::OK {
            assert_eq!(response.body["jobs"], json!([]), "{path} -> {}", response.text);
        } else {
            assert!(
                response.status.is_client_error(),
                "{path} -> {} {}",
                response.status,
                response.text
            );
            response.assert_client_error();
        }
    }
    for path in [
        "/jobs?limit=100000000000000000000",
        "/jobs?limit=1000000",
        "/jobs?limit=-1",
        "/jobs?limit=0",
        "/jobs?limit=ten",
        "/jobs?since=yesterday",
        "/jobs?until=2026-13-01T00:00:00Z",
        "/jobs?status=bogus",
        "/get-scripts",
    ] {
        let response = get(path.to_owned()).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} -> {}",
            response.text
        );
        response.assert_client_error();
    }
    for path in ["/jobs/nope/cancel", "/jobs/job_00000000000000000000000000000000/cancel"] {
        fleet
            .app
            .request(Method::POST, path)
            .bearer(fleet.token())
            .send()
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    fleet
        .app
        .request(Method::POST, "/jobs/job_%00/cancel")
        .bearer(fleet.token())
        .send()
        .await
        .assert_client_error();

    for body in [
        json!({}),
        json!({"run_script": "s.sh", "agents": []}),
        json!({"run_script": "s.sh", "agents": "target"}),
        json!({"run_script": "s.sh", "tags": ["a,b"]}),
        json!({"run_script": "s.sh", "params": {"a-b": 1}}),
        json!({"run_script": "s.sh", "agents": ["nobody"]}),
        json!({"run_script": "s.sh", "agents": ["target"], "timeout": 0}),
    ] {
        let (status, answer) = fleet.app.post_json("/fan-out", &body, fleet.token()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let (_, jobs) = fleet.app.get("/jobs", fleet.token()).await;
    assert_eq!(jobs["jobs"], json!([]), "nothing bad was queued");
}
