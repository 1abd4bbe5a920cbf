//! Metrics: `GET /metrics` (Prometheus text: job and agent gauges from the database,
//! counters and histograms of this process, HTTP requests by route pattern, no tenant data
//! in any label; optionally behind METRICS_TOKEN; valid for `promtool check metrics`) and
//! `GET /metrics/json` (the caller's tenant over 24 hours, exact counts and percentiles).

use scriptmesh_tests::fleet::{new_job_id, Fleet, FLEET_WAIT};
use scriptmesh_tests::receiver::Receiver;
use scriptmesh_tests::{now_ms, wait_for, Method, StatusCode, TestApp};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

const OK_SH: &str = "#!/bin/sh\necho ok\n";
const FAIL_SH: &str = "#!/bin/sh\necho failing >&2\nexit 3\n";

/// `series -> value` for every sample line, e.g. `scriptmesh_jobs{status="success"} -> 2`.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[track_caller]
fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series}; have: {:#?}", sorted_keys(samples)))
}

fn sorted_keys(samples: &HashMap<String, f64>) -> Vec<&String> {
    let mut keys: Vec<_> = samples.keys().collect();
    keys.sort();
    keys
}

/// `GET /metrics` (with an optional Authorization header value); asserts 200 and the
/// exposition content type.
async fn scrape(app: &TestApp, authorization: Option<&str>) -> String {
    let mut request = app.request(Method::GET, "/metrics");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    response.text
}

/// Triggers synchronously (`async_exec: false`) and returns the finished job.
async fn run(fleet: &Fleet, agent: &str, script: &str) -> Value {
    let response = fleet
        .trigger(&json!({"agent": agent, "run_script": script, "async_exec": false}))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.body
}

#[actix_rt::test]
async fn the_exposition_counts_known_work_without_tenant_data() {
    let fleet = Fleet::start().await;
    let _agent = fleet
        .start_agent(fleet.spec("web-1").script("ok.sh", OK_SH).script("fail.sh", FAIL_SH))
        .await;

    let first = run(&fleet, "web-1", "ok.sh").await;
    assert_eq!(first["status"], "success", "{first}");
    run(&fleet, "web-1", "ok.sh").await;
    let failed = run(&fleet, "web-1", "fail.sh").await;
    assert_eq!(
        (failed["status"].as_str(), failed["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );
    // Refused: a script outside the manifest (403), an agent that does not exist (404).
    let refused = fleet.trigger(&json!({"agent": "web-1", "run_script": "nope.sh"})).await;
    refused.assert_error(StatusCode::FORBIDDEN, "script_not_allowed");
    let unknown = fleet.trigger(&json!({"agent": "nobody", "run_script": "ok.sh"})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    // Read by route pattern, never by raw path.
    let job_id = first["job_id"].as_str().expect("job_id").to_owned();
    fleet.job(&job_id).await;
    // A job this process never handled: the gauges come from the database.
    let queued = fleet.insert_pending_job("ghost-agent", "ok.sh").await;

    let text = scrape(&fleet.app, None).await;
    let s = samples(&text);
    for (status, count) in [
        ("pending", 1.0),
        ("dispatched", 0.0),
        ("running", 0.0),
        ("success", 2.0),
        ("failed", 1.0),
        ("timeout", 0.0),
        ("cancelled", 0.0),
        ("lost", 0.0),
    ] {
        assert_eq!(
            value(&s, &format!("scriptmesh_jobs{{status=\"{status}\"}}")),
            count,
            "{status}"
        );
    }
    assert_eq!(value(&s, "scriptmesh_queue_depth"), 1.0);
    assert_eq!(value(&s, "scriptmesh_agents{status=\"online\"}"), 1.0);
    assert_eq!(value(&s, "scriptmesh_agents{status=\"offline\"}"), 0.0);
    assert_eq!(value(&s, "scriptmesh_database_up"), 1.0);
    assert_eq!(value(&s, "scriptmesh_jobs_finished_total{status=\"success\"}"), 2.0);
    assert_eq!(value(&s, "scriptmesh_jobs_finished_total{status=\"failed\"}"), 1.0);
    assert_eq!(value(&s, "scriptmesh_jobs_finished_total{status=\"lost\"}"), 0.0);
    assert_eq!(value(&s, "scriptmesh_job_duration_seconds_count"), 3.0);
    assert_eq!(value(&s, "scriptmesh_job_duration_seconds_bucket{le=\"+Inf\"}"), 3.0);
    assert_eq!(value(&s, "scriptmesh_job_dispatch_latency_seconds_count"), 3.0);
    let post = |status: &str| {
        format!("scriptmesh_http_requests_total{{method=\"POST\",route=\"/trigger-script\",status=\"{status}\"}}")
    };
    assert_eq!(value(&s, &post("200")), 3.0);
    assert_eq!(value(&s, &post("403")), 1.0);
    assert_eq!(value(&s, &post("404")), 1.0);
    assert_eq!(
        value(
            &s,
            "scriptmesh_http_requests_total{method=\"GET\",route=\"/jobs/{job_id}\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "scriptmesh_http_request_duration_seconds_count{method=\"POST\",route=\"/trigger-script\"}"
        ),
        5.0
    );
    assert_eq!(value(&s, "scriptmesh_schedule_fires_total{outcome=\"fired\"}"), 0.0);
    assert_eq!(value(&s, "scriptmesh_schedule_misses_total"), 0.0);
    assert_eq!(
        value(
            &s,
            "scriptmesh_integration_deliveries_total{outcome=\"delivered\",provider=\"slack\"}"
        ),
        0.0
    );
    assert_eq!(
        value(
            &s,
            &format!("scriptmesh_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    assert!(value(&s, "process_resident_memory_bytes") > 0.0, "process metrics");
    assert!(s.contains_key("process_cpu_seconds_total"), "process metrics");
    assert!(text.contains("# HELP scriptmesh_jobs "), "HELP text");

    let secrets = [
        fleet.session.tenant_id.as_str(),
        fleet.session.user_id.as_str(),
        fleet.session.email.as_str(),
        fleet.key.as_str(),
        "web-1",
        "ghost-agent",
        "nobody",
        job_id.as_str(),
        queued.as_str(),
    ];
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} appears in /metrics:\n{text}");
    }

    // The counters move with the next scrape; the scrape itself is counted too.
    let again = samples(&scrape(&fleet.app, None).await);
    assert_eq!(
        value(
            &again,
            "scriptmesh_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}"
        ),
        1.0
    );
}

#[actix_rt::test]
async fn deliveries_are_counted_by_provider_and_outcome() {
    let fleet = Fleet::start_with(
        TestApp::builder()
            .env("ALLOW_PRIVATE_WEBHOOKS", "true")
            .env("DELIVERY_BASE_DELAY_MS", "50")
            .env("DELIVERY_MAX_ATTEMPTS", "3"),
    )
    .await;
    let _agent = fleet.start_agent(fleet.spec("web-1").script("fail.sh", FAIL_SH)).await;
    let receiver = Receiver::start().await;
    let (status, created) = fleet
        .app
        .post_json(
            "/integrations",
            &json!({"type": "webhook", "name": "ops-hook", "config": {"url": receiver.url(), "events": ["job.failed"]}}),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let integration = created["id"].as_str().expect("id").to_owned();

    // job.failed: refused once (503, retried), then taken (delivered).
    receiver.respond_with_sequence(&[503, 200]);
    run(&fleet, "web-1", "fail.sh").await;
    receiver.wait_for_requests(2, FLEET_WAIT).await;
    // A test delivery the receiver refuses for good (410): failed.
    receiver.respond_with(410);
    let (status, test) = fleet
        .app
        .post_json(&format!("/integrations/{integration}/test"), &json!({}), fleet.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{test}");

    let series = |outcome: &str| {
        format!("scriptmesh_integration_deliveries_total{{outcome=\"{outcome}\",provider=\"webhook\"}}")
    };
    let expected = [("retried", 1.0), ("delivered", 1.0), ("failed", 1.0)];
    let counted = wait_for(FLEET_WAIT, || async {
        let text = scrape(&fleet.app, None).await;
        let s = samples(&text);
        let all = expected
            .iter()
            .all(|(outcome, count)| s.get(&series(outcome)) == Some(count));
        all.then_some(text)
    })
    .await;
    let last = match counted {
        Some(text) => text,
        None => panic!(
            "deliveries not counted as expected:\n{}",
            scrape(&fleet.app, None).await
        ),
    };
    for secret in [receiver.url(), "ops-hook", integration.as_str()] {
        assert!(!last.contains(secret), "{secret:?} appears in /metrics");
    }
}

#[actix_rt::test]
async fn promtool_accepts_the_exposition() {
    let Some(promtool) = promtool() else {
        return;
    };
    let fleet = Fleet::start().await;
    let _agent = fleet.start_agent(fleet.spec("web-1").script("ok.sh", OK_SH)).await;
    run(&fleet, "web-1", "ok.sh").await;
    fleet.app.get("/no/such/page", None).await;
    let text = scrape(&fleet.app, None).await;

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool's answer");
    assert!(
        output.status.success(),
        "promtool check metrics: {}\n{}{}\n--- exposition ---\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// promtool's path; `None` (with a notice) where it is not installed, unless in CI, where
/// it must be.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        return Some("promtool");
    }
    if std::env::var_os("CI").is_some() {
        panic!("promtool is not installed (apt-get install prometheus); CI must run this check");
    }
    eprintln!("NOTICE: promtool is not installed; skipping `promtool check metrics` (apt-get install prometheus)");
    None
}

#[actix_rt::test]
async fn metrics_token_guards_the_scrape() {
    let token = "scrape-9f2c1e7a";
    let app = TestApp::builder().env("METRICS_TOKEN", token).start().await;
    let session = app.register_and_login("ops@example.com").await;

    for authorization in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer scrape-9f2c1e7"),
        Some("Bearer scrape-9f2c1e7a0"),
        Some("scrape-9f2c1e7a"),
        Some("Basic c2NyYXBlLTlmMmMxZTdh"),
    ] {
        let mut request = app.request(Method::GET, "/metrics");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await;
        response.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // A user's token is not the metrics token either.
    let response = app
        .request(Method::GET, "/metrics")
        .bearer(session.token())
        .send()
        .await;
    response.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    let text = scrape(&app, Some(&format!("Bearer {token}"))).await;
    assert!(text.contains("scriptmesh_jobs{status=\"pending\"} 0"), "{text}");
    // The refused scrapes were counted, by route.
    assert!(
        text.contains("scriptmesh_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"} 7"),
        "{text}"
    );
    // /metrics/json keeps the usual authentication.
    let (status, body) = app.get("/metrics/json", session.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A job row written straight into the database, for exact durations and statuses.
async fn insert_job(app: &TestApp, tenant: &str, agent: &str, status: &str, duration_ms: Option<i64>, age_ms: i64) {
    let duration = duration_ms.map_or("NULL".to_owned(), |d| d.to_string());
    let inserted = app
        .exec_sql(&format!(
            "INSERT INTO jobs (id, tenant_id, agent_name, script, params, status, duration_ms, created_at) \
             VALUES ('{}', '{tenant}', '{agent}', 'ok.sh', '{{}}', '{status}', {duration}, {})",
            new_job_id(),
            now_ms() - age_ms
        ))
        .await;
    assert_eq!(inserted, 1);
}

fn zero_jobs() -> Value {
    json!({
        "total": 0,
        "by_status": {"pending":0,"dispatched":0,"running":0,"success":0,"failed":0,"timeout":0,"cancelled":0,"lost":0},
        "success_rate": null,
        "duration_ms": {"p50": null, "p95": null},
    })
}

#[actix_rt::test]
async fn json_metrics_cover_the_tenant_window_exactly() {
    let fleet = Fleet::start().await;
    let app = &fleet.app;
    let tenant = fleet.session.tenant_id.clone();
    let _agent = fleet
        .start_agent(
            fleet
                .spec("web-1")
                .tag("prod")
                .script("ok.sh", OK_SH)
                .script("fail.sh", FAIL_SH),
        )
        .await;
    // Registered by a person: offline until an agent process heartbeats under that name.
    let (status, body) = app
        .post_json(
            "/register-agent",
            &json!({"agent_name": "db-1", "tags": ["db"]}),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    app.request(Method::GET, "/metrics/json")
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // No jobs yet: zeros and nulls.
    let (status, empty) = app.get("/metrics/json", fleet.token()).await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["window_hours"], 24);
    assert_eq!(empty["agents"], json!({"total": 2, "online": 1, "offline": 1}));
    assert_eq!(empty["jobs"], zero_jobs());
    assert_eq!(empty["per_agent"][0]["jobs"], zero_jobs());
    assert_eq!(empty["per_agent"][1]["jobs"], zero_jobs());

    // Real runs on web-1, then durations set to known values.
    let a = run(&fleet, "web-1", "ok.sh").await;
    let b = run(&fleet, "web-1", "ok.sh").await;
    let c = run(&fleet, "web-1", "fail.sh").await;
    assert_eq!(c["status"], "failed", "{c}");
    for (job, duration) in [(&a, 100), (&b, 300), (&c, 200)] {
        let id = job["job_id"].as_str().expect("job_id");
        let changed = app
            .exec_sql(&format!("UPDATE jobs SET duration_ms = {duration} WHERE id = '{id}'"))
            .await;
        assert_eq!(changed, 1);
    }
    const HOUR: i64 = 3600 * 1000;
    insert_job(app, &tenant, "web-1", "timeout", Some(1000), HOUR).await;
    insert_job(app, &tenant, "web-1", "cancelled", None, HOUR).await;
    // An agent that no longer exists: in the totals, not in per_agent.
    insert_job(app, &tenant, "old-agent", "success", Some(50), 2 * HOUR).await;
    insert_job(app, &tenant, "old-agent", "success", Some(70), 2 * HOUR).await;
    insert_job(app, &tenant, "old-agent", "lost", None, 2 * HOUR).await;
    insert_job(app, &tenant, "db-1", "pending", None, 0).await;
    // Outside the 24-hour window: not counted.
    insert_job(app, &tenant, "web-1", "success", Some(99_999), 25 * HOUR).await;
    insert_job(app, &tenant, "web-1", "failed", Some(99_999), 30 * HOUR).await;

    // Another tenant's work, which must not show.
    let other = app.register_and_login("other@example.com").await;
    insert_job(app, &other.tenant_id, "web-1", "failed", Some(5), 0).await;
    insert_job(app, &other.tenant_id, "their-agent", "success", Some(5), 0).await;

    let (status, metrics) = app.get("/metrics/json", fleet.token()).await;
    assert_eq!(status, StatusCode::OK, "{metrics}");
    let generated = metrics["generated_at"].as_str().expect("generated_at");
    assert!(generated.ends_with('Z') && generated.len() == 20, "{generated}");
    assert_eq!(metrics["agents"], json!({"total": 2, "online": 1, "offline": 1}));
    // Durations of the window: 50, 70, 100, 200, 300, 1000. Nearest rank: p50 is the
    // 3rd (100), p95 the 6th (1000). Success rate: 4 / (4 + 1 + 1 + 1).
    assert_eq!(
        metrics["jobs"],
        json!({
            "total": 9,
            "by_status": {"pending":1,"dispatched":0,"running":0,"success":4,"failed":1,"timeout":1,"cancelled":1,"lost":1},
            "success_rate": 0.5714,
            "duration_ms": {"p50": 100, "p95": 1000},
        })
    );
    let per_agent = metrics["per_agent"].as_array().expect("per_agent");
    let names: Vec<&str> = per_agent.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["db-1", "web-1"]);
    let db1 = &per_agent[0];
    assert_eq!(
        (&db1["status"], &db1["last_heartbeat"], &db1["tags"]),
        (&json!("offline"), &Value::Null, &json!(["db"]))
    );
    let mut pending_only = zero_jobs();
    pending_only["total"] = json!(1);
    pending_only["by_status"]["pending"] = json!(1);
    assert_eq!(db1["jobs"], pending_only);
    let web1 = &per_agent[1];
    assert_eq!((&web1["status"], &web1["tags"]), (&json!("online"), &json!(["prod"])));
    assert!(
        web1["last_heartbeat"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{web1}"
    );
    // Durations 100, 200, 300, 1000: p50 is the 2nd, p95 the 4th. Rate: 2 / (2 + 1 + 1).
    assert_eq!(
        web1["jobs"],
        json!({
            "total": 5,
            "by_status": {"pending":0,"dispatched":0,"running":0,"success":2,"failed":1,"timeout":1,"cancelled":1,"lost":0},
            "success_rate": 0.5,
            "duration_ms": {"p50": 200, "p95": 1000},
        })
    );

    // The other tenant sees only its own: no agents, its two jobs.
    let (status, theirs) = app.get("/metrics/json", other.token()).await;
    assert_eq!(status, StatusCode::OK, "{theirs}");
    assert_eq!(theirs["agents"], json!({"total": 0, "online": 0, "offline": 0}));
    assert_eq!(theirs["per_agent"], json!([]));
    assert_eq!(theirs["jobs"]["total"], 2);
    assert_eq!(theirs["jobs"]["success_rate"], 0.5);
    assert_eq!(theirs["jobs"]["duration_ms"], json!({"p50": 5, "p95": 5}));

    // A third tenant with nothing at all.
    let third = app.register_and_login("third@example.com").await;
    let (_, nothing) = app.get("/metrics/json", third.token()).await;
    assert_eq!(nothing["jobs"], zero_jobs());
    assert_eq!(nothing["per_agent"], json!([]));
}
