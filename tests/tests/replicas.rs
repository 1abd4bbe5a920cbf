//! Several orchestrators on one PostgreSQL database behave as one: whichever replica a
//! request reaches, it sees and affects the same agents, jobs, keys and schedules, within
//! moments. Three replicas with real agents spread over them (on SQLite, which is one
//! process only, a second orchestrator is refused; these tests check that and stop).

use scriptmesh_tests::cluster::Cluster;
use scriptmesh_tests::fleet::{process_gone, wait_for_pid_file, FLEET_WAIT};
use scriptmesh_tests::{wait_until, Method, StatusCode, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A script that says which agent ran it and with what.
fn where_script(agent: &str) -> String {
    format!("#!/bin/sh\necho \"{agent} says $greeting\"\n")
}

/// `GET /jobs/{id}?wait=` through `via`: the job as it is once finished.
async fn wait_through(cluster: &Cluster, via: usize, job_id: &str) -> Value {
    let replica = cluster.replica(via);
    let (status, job) = replica
        .app
        .get(&format!("/jobs/{job_id}?wait=20"), replica.token())
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "GET /jobs/{job_id}?wait=20 on replica {via}: {job}"
    );
    job
}

#[actix_rt::test]
async fn triggers_through_any_replica_reach_agents_on_every_other() {
    let Some(cluster) = Cluster::start(3).await else { return };
    let mut agents = Vec::new();
    for on in 0..3 {
        let name = format!("agent-{on}");
        // Long polls: a job must reach the parked poll when it is queued, not when the
        // poll comes back empty.
        let spec = cluster
            .replica(0)
            .spec(&name)
            .script("where.sh", &where_script(&name))
            .env("POLL_WAIT_SECS", "30");
        agents.push(cluster.start_agent(&[on], spec).await);
    }

    for via in 0..3 {
        for on in (0..3).filter(|&on| on != via) {
            let agent = format!("agent-{on}");
            let greeting = format!("hello through replica {via}");
            let expected = format!("{agent} says {greeting}\n");

            // Asynchronous: queued on `via`, run by the agent polling `on`, and waited
            // for with ?wait= on the third replica.
            let started = Instant::now();
            let id = cluster
                .replica(via)
                .trigger_async(&agent, "where.sh", json!({ "greeting": greeting }))
                .await;
            let job = wait_through(&cluster, 3 - via - on, &id).await;
            assert_eq!(job["status"], "success", "{job}");
            assert_eq!(job["stdout"], expected.as_str(), "{job}");
            // Well before the agent's 30 s poll would have come back by itself.
            assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

            // Synchronous: `via` holds the request until the agent on `on` reports (to `on`).
            let started = Instant::now();
            let response = cluster
                .replica(via)
                .trigger(&json!({
                    "agent": agent, "run_script": "where.sh",
                    "params": {"greeting": greeting}, "async_exec": false,
                }))
                .await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.text);
            assert_eq!(response.body["status"], "success", "{}", response.text);
            assert_eq!(response.body["stdout"], expected.as_str());
            // Before replicas woke each other it waited out its 300 s limit.
            assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        }
    }

    // Every replica listens, and heard the others' news.
    for (index, replica) in cluster.replicas.iter().enumerate() {
        let metrics = replica.app.request(Method::GET, "/metrics").send().await.text;
        assert!(
            metrics.contains("\nscriptmesh_replica_listener_up 1\n"),
            "replica {index}:\n{metrics}"
        );
        let heard: f64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix("scriptmesh_replica_notifications_total "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_default();
        assert!(heard > 0.0, "replica {index} heard nothing from the others");
    }

    // Each agent beats only to its own replica; no other replica takes it for silent.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for replica in &cluster.replicas {
        let (_, listing) = replica.app.get("/agents", replica.token()).await;
        for on in 0..3 {
            assert_eq!(listing[format!("agent-{on}")]["status"], "online", "{listing}");
        }
    }
}

#[actix_rt::test]
async fn fan_out_and_cancel_work_across_replicas() {
    let Some(cluster) = Cluster::start(3).await else { return };
    let pid_dir = tempfile::tempdir().expect("a directory for pid files");
    let pid_file = pid_dir.path().join("sleeper.pid");
    let sleeper = format!("#!/bin/sh\necho $$ > {}\nexec sleep 60\n", pid_file.display());
    let mut agents = Vec::new();
    for on in 0..3 {
        let name = format!("agent-{on}");
        let spec = cluster
            .replica(0)
            .spec(&name)
            .tag("fleet")
            .script("where.sh", &where_script(&name))
            .script("sleeper.sh", &sleeper);
        agents.push(cluster.start_agent(&[on], spec).await);
    }

    // A fan-out through replica 1 reaches the agents polling every replica.
    let (status, created) = cluster
        .replica(1)
        .app
        .post_json(
            "/fan-out",
            &json!({"tags": ["fleet"], "run_script": "where.sh", "params": {"greeting": "all"}}),
            cluster.replica(1).token(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(created["jobs"].as_array().map(Vec::len), Some(3), "{created}");
    let fanout = created["fanout_id"].as_str().expect("a fan-out id");
    // Held on replica 2 until the jobs (reported to replicas 0, 1 and 2) are all done.
    let (status, progress) = cluster
        .replica(2)
        .app
        .get(&format!("/fan-out/{fanout}?wait=20"), cluster.replica(2).token())
        .await;
    assert_eq!(status, StatusCode::OK, "{progress}");
    assert_eq!(progress["done"], true, "{progress}");
    assert_eq!(progress["summary"]["succeeded"], 3, "{progress}");
    assert_eq!(
        progress["groups"].as_array().map(Vec::len),
        Some(3),
        "each agent says its own name: {progress}"
    );
    for job in created["jobs"].as_array().unwrap() {
        let finished = wait_through(&cluster, 0, job["job_id"].as_str().unwrap()).await;
        assert_eq!(finished["status"], "success", "{finished}");
        assert_eq!(
            finished["stdout"],
            format!("{} says all\n", job["agent"].as_str().unwrap())
        );
    }

    // Cancelled through replica 2 while running on the agent that polls replica 1.
    let id = cluster
        .replica(0)
        .trigger_async("agent-1", "sleeper.sh", json!({}))
        .await;
    cluster.replica(2).wait_for_job_status(&id, "running").await;
    let pid = wait_for_pid_file(&pid_file).await;
    let response = cluster.replica(2).cancel(&id).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let job = wait_through(&cluster, 0, &id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(
        wait_until(Duration::from_secs(5), || async { process_gone(pid) }).await,
        "the script (pid {pid}) still runs after the cancel"
    );
}

#[actix_rt::test]
async fn a_revoked_key_stops_working_on_every_replica_at_once() {
    let Some(cluster) = Cluster::start(3).await else { return };
    let first = cluster.replica(0);
    let created = first
        .app
        .create_api_key_details(&first.session, &json!({"name": "ci pipeline"}))
        .await;
    // Used on every replica first, so each has it cached.
    for replica in &cluster.replicas {
        let (status, body) = replica.app.get("/agents", Some(&created.key)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = cluster
        .replica(1)
        .app
        .delete(&format!("/auth/api-keys/{}", created.id), first.token())
        .await;
    assert!(status.is_success(), "revoke: {status} {body}");
    for (index, replica) in cluster.replicas.iter().enumerate() {
        // Well under the cache's time-to-live: the revocation reached the replica itself.
        let refused = wait_until(Duration::from_millis(1500), || async {
            replica.app.get("/agents", Some(&created.key)).await.0 == StatusCode::UNAUTHORIZED
        })
        .await;
        assert!(refused, "replica {index} still accepts the revoked key");
    }
}

/// `GET /schedules/{id}/runs` through replica 0 (which lives through that test).
async fn schedule_runs(cluster: &Cluster, id: &str) -> Value {
    let replica = cluster.replica(0);
    replica
        .app
        .get(&format!("/schedules/{id}/runs"), replica.token())
        .await
        .1
}

#[actix_rt::test]
async fn schedules_changed_on_one_replica_are_honoured_by_all() {
    let Some(mut cluster) = Cluster::start(3).await else {
        return;
    };
    let agent = cluster
        .start_agent(
            &[0, 2],
            cluster
                .replica(0)
                .spec("cron-1")
                .script("tick.sh", "#!/bin/sh\necho tick\n"),
        )
        .await;
    let create = |cron: &str| json!({"agent": "cron-1", "script": "tick.sh", "cron_expression": cron});
    let (status, schedule) = cluster
        .replica(1)
        .app
        .post_json("/schedules", &create("0 3 1 1 *"), cluster.replica(1).token())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let id = schedule["id"].as_str().unwrap().to_owned();

    // Due in two seconds; the replica that created it is gone before then: the others
    // know the schedule and one of them fires the slot, once.
    let slot = scriptmesh_tests::now_ms() + 2_000;
    cluster
        .replica(0)
        .app
        .exec_sql(&format!("UPDATE schedules SET next_fire_at = {slot} WHERE id = '{id}'"))
        .await;
    cluster.replica_mut(1).app.kill();
    let fired = wait_until(FLEET_WAIT, || async {
        schedule_runs(&cluster, &id).await["runs"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    })
    .await;
    assert!(
        fired,
        "no replica fired the slot: {}",
        schedule_runs(&cluster, &id).await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listing = schedule_runs(&cluster, &id).await;
    let recorded = listing["runs"].as_array().unwrap();
    assert_eq!(recorded.len(), 1, "one slot, one run: {listing}");
    assert_eq!(recorded[0]["outcome"], "fired", "{listing}");
    let job_id = recorded[0]["job_ids"][0].as_str().expect("the fire's job").to_owned();
    assert_eq!(wait_through(&cluster, 2, &job_id).await["stdout"], "tick\n");

    // Paused through replica 2 with a slot due on every replica's timer: nobody fires it.
    let (status, body) = cluster
        .replica(2)
        .app
        .post_json(
            &format!("/schedules/{id}/pause"),
            &json!({}),
            cluster.replica(2).token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Changed through replica 0: the new timing is what every replica shows and keeps.
    let patched = cluster
        .replica(0)
        .app
        .request(Method::PATCH, &format!("/schedules/{id}"))
        .bearer(cluster.replica(0).token())
        .json(&json!({"cron_expression": "*/5 * * * *"}))
        .send()
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let (_, seen) = cluster
        .replica(2)
        .app
        .get(&format!("/schedules/{id}"), cluster.replica(2).token())
        .await;
    assert_eq!(seen["cron_expression"], "*/5 * * * *", "{seen}");
    assert_eq!(seen["enabled"], false, "{seen}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        schedule_runs(&cluster, &id).await["runs"].as_array().map(Vec::len),
        Some(1)
    );

    // Deleted through replica 2: gone everywhere.
    let (status, _) = cluster
        .replica(2)
        .app
        .delete(&format!("/schedules/{id}"), cluster.replica(2).token())
        .await;
    assert!(status.is_success());
    let (status, _) = cluster
        .replica(0)
        .app
        .get(&format!("/schedules/{id}"), cluster.replica(0).token())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(agent);
}

#[actix_rt::test]
async fn killing_a_replica_mid_run_loses_no_job_and_runs_none_twice() {
    let builder = TestApp::builder().env("DISPATCH_ACK_TIMEOUT_SECS", "3");
    let Some(mut cluster) = Cluster::start_with(3, builder).await else {
        return;
    };
    let runs_dir = tempfile::tempdir().expect("a directory for the run log");
    let runs_log = runs_dir.path().join("runs.log");
    let work = format!(
        "#!/bin/sh\necho \"$mark\" >> {}\nsleep \"${{secs:-0}}\"\necho \"done $mark\"\n",
        runs_log.display()
    );
    // Polls replica 0 while it lives, then replica 1.
    let spec = cluster
        .replica(0)
        .spec("survivor")
        .script("work.sh", &work)
        .env("MAX_CONCURRENT_JOBS", "2");
    let agent = cluster.start_agent(&[0, 1], spec).await;

    let via = cluster.replica(2);
    let long = via
        .trigger_async("survivor", "work.sh", json!({"mark": "long", "secs": "3"}))
        .await;
    let mut ids = vec![(long.clone(), "long".to_owned())];
    for n in 0..6 {
        let mark = format!("quick-{n}");
        let id = via
            .trigger_async("survivor", "work.sh", json!({"mark": mark, "secs": "1"}))
            .await;
        ids.push((id, mark));
    }
    via.wait_for_job_status(&long, "running").await;
    cluster.replica_mut(0).app.kill();

    // Queued through the dead replica's peers after the crash, too.
    let after = cluster
        .replica(2)
        .trigger_async("survivor", "work.sh", json!({"mark": "after"}))
        .await;
    ids.push((after, "after".to_owned()));
    for (id, mark) in &ids {
        let job = cluster
            .replica(2)
            .finished_job_within(id, Duration::from_secs(60))
            .await;
        assert_eq!(job["status"], "success", "{mark}: {job}");
        assert_eq!(job["stdout"], format!("done {mark}\n"), "{job}");
    }
    let log = std::fs::read_to_string(&runs_log).expect("the run log");
    let mut ran: Vec<&str> = log.lines().collect();
    ran.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(|(_, mark)| mark.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(ran, expected, "every job ran exactly once");
    assert!(
        agent.log().contains("switching to the next ORCHESTRATOR_URL"),
        "the agent moved to another replica"
    );
}

#[actix_rt::test]
async fn sqlite_refuses_a_second_orchestrator_on_the_same_file() {
    let app = TestApp::start().await;
    if app.backend() != "sqlite" {
        return;
    }
    let failure = app
        .try_start_replica()
        .await
        .err()
        .expect("a second process is refused");
    assert!(
        failure.stderr.contains(scriptmesh_tests::cluster::SQLITE_REFUSAL),
        "{failure}"
    );
    assert!(
        failure.stderr.contains("PostgreSQL"),
        "it says what to do instead: {failure}"
    );
    // The first one is unharmed.
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Every job leaves dead row versions behind, and a queue whose dead rows are not cleared
/// slows down (db::maintenance). The replicas vacuum the job table themselves once enough
/// rows are dead, without waiting for autovacuum (which may be off, as on CI's PostgreSQL)
/// and without getting in each other's way; they also give it statistics, without which
/// the planner misjudges the results UPDATE. `vacuum_count` and `analyze_count` count
/// manual runs only.
#[actix_rt::test]
async fn the_replicas_vacuum_and_analyze_the_job_table_once_enough_rows_changed() {
    let Some(cluster) = Cluster::start(2).await else { return };
    let app = &cluster.replica(0).app;
    let count = |column: &'static str| async move {
        app.query_i64(&format!(
            "SELECT {column} AS value FROM pg_stat_user_tables WHERE relname = 'jobs'"
        ))
        .await[0]
            .unwrap_or(0)
    };
    let vacuums = || count("vacuum_count");
    let before = vacuums().await;
    let analyzed_before = count("analyze_count").await;
    app.exec_sql("INSERT INTO tenants (id, name, created_at) VALUES ('ten_upkeep', 'upkeep', 0)")
        .await;
    let inserted = app
        .exec_sql(
            "INSERT INTO jobs (id, tenant_id, agent_name, script, params, status, stdout, stderr, created_at) \
             SELECT 'job_upkeep_' || g, 'ten_upkeep', 'gone', 'noop.sh', '{}', 'success', '', '', g \
             FROM generate_series(1, 3000) AS g",
        )
        .await;
    assert_eq!(inserted, 3000);
    assert_eq!(
        app.exec_sql("DELETE FROM jobs WHERE tenant_id = 'ten_upkeep'").await,
        3000
    );

    assert!(
        wait_until(Duration::from_secs(30), || async { vacuums().await > before }).await,
        "3,000 dead job rows were not vacuumed within 30 s"
    );
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count("analyze_count").await > analyzed_before
        })
        .await,
        "6,000 changed job rows were not analyzed within 30 s"
    );
    let dead = app
        .query_i64("SELECT n_dead_tup AS value FROM pg_stat_user_tables WHERE relname = 'jobs'")
        .await[0]
        .unwrap_or(0);
    assert!(dead < 1000, "{dead} dead rows left after the vacuum");
    for replica in &cluster.replicas {
        assert!(!replica.app.log().contains("upkeep failed"), "{}", replica.app.log());
    }
}
