//! Cron schedules end to end, as the spec's Scheduling section and its nightly-backup
//! example use them: real orchestrators, real agents, a real database. A fire is made due
//! by writing the schedule's `next_fire_at` a few seconds ahead (or behind, for a missed
//! fire) and restarting the orchestrator, which reloads its timers from the database.

use scriptmesh_tests::cluster::SQLITE_REFUSAL;
use scriptmesh_tests::{now_ms, wait_for, wait_until, AgentSpec, Method, Session, StatusCode, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const DAY_MS: i64 = 86_400_000;
const HELLO: &str = "#!/bin/sh\necho \"hello ${target:-nobody}\"\n";
/// Fires once a year (January 1st): in a test it fires only when made due by hand.
const YEARLY: &str = "0 0 1 1 *";

struct Fleet {
    app: TestApp,
    session: Session,
    key: String,
}

impl Fleet {
    async fn start() -> Fleet {
        let app = TestApp::start().await;
        let session = app.register_and_login("ops@example.com").await;
        let key = app.create_api_key(&session, "fleet").await;
        Fleet { app, session, key }
    }

    fn token(&self) -> Option<&str> {
        Some(&self.session.access_token)
    }

    /// A real agent, online and with its manifest reported.
    async fn agent(&self, spec: AgentSpec) -> scriptmesh_tests::TestAgent {
        let name = spec.name.clone();
        let agent = self.app.start_agent(spec).await;
        self.app
            .wait_for_agent_status(&self.session.access_token, &name, "online", WAIT)
            .await;
        agent
    }

    async fn create(&self, body: Value) -> Value {
        let (status, created) = self.app.post_json("/schedules", &body, self.token()).await;
        assert_eq!(status, StatusCode::CREATED, "{body} -> {created}");
        created
    }

    async fn schedule(&self, id: &str) -> Value {
        let (status, body) = self.app.get(&format!("/schedules/{id}"), self.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn runs(&self, id: &str) -> Vec<Value> {
        let (status, body) = self.app.get(&format!("/schedules/{id}/runs"), self.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut runs = body["runs"].as_array().cloned().unwrap_or_default();
        runs.reverse(); // oldest first reads better in assertions
        runs
    }

    async fn wait_for_runs(&self, id: &str, count: usize) -> Vec<Value> {
        let found = wait_for(WAIT, || async {
            let runs = self.runs(id).await;
            (runs.len() >= count).then_some(runs)
        })
        .await;
        found.unwrap_or_else(|| panic!("schedule {id}: fewer than {count} runs within {WAIT:?}"))
    }

    /// Ids of the jobs a schedule created, oldest first.
    async fn jobs_of(&self, id: &str) -> Vec<String> {
        self.app
            .query_text(&format!(
                "SELECT id AS value FROM jobs WHERE schedule_id = '{id}' ORDER BY id"
            ))
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Moves the schedules' next slot to `at` (ms) and restarts the orchestrator.
    async fn due_at(&mut self, ids: &[&str], at: i64) {
        for id in ids {
            let changed = self
                .app
                .exec_sql(&format!("UPDATE schedules SET next_fire_at = {at} WHERE id = '{id}'"))
                .await;
            assert_eq!(changed, 1, "schedule {id}");
        }
        self.app.restart().await;
    }
}

/// RFC 3339 (UTC, seconds) for ms since the epoch, as the API writes times.
fn utc_text(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS) / 1000);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The next 02:00 UTC after now, as the spec's "0 2 * * *" example expects.
fn next_two_am() -> String {
    let now = now_ms();
    let mut slot = now - now.rem_euclid(DAY_MS) + 2 * 3_600_000;
    if slot <= now {
        slot += DAY_MS;
    }
    utc_text(slot)
}

fn outcomes(runs: &[Value]) -> Vec<&str> {
    runs.iter()
        .map(|run| run["outcome"].as_str().unwrap_or_default())
        .collect()
}

#[actix_rt::test]
async fn the_spec_examples_create_schedules_with_their_next_fire() {
    let fleet = Fleet::start().await;
    let _agent = fleet
        .agent(
            AgentSpec::new("prod-server-1", &fleet.key)
                .script("backup.sh", HELLO)
                .script("health_check.py", "#!/bin/sh\necho ok\n"),
        )
        .await;

    // The Scheduling section's request and answer.
    let created = fleet
        .create(json!({
            "agent": "prod-server-1",
            "script": "backup.sh",
            "cron_expression": "0 2 * * *",
            "params": { "target": "s3://my-bucket" },
            "webhook_url": "https://hooks.example.com/job-done",
            "timeout": 600
        }))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("sched_"), "{created}");
    assert_eq!(created["cron_expression"], "0 2 * * *");
    assert_eq!(created["next_fire"], next_two_am(), "{created}");
    assert_eq!(created["timeout"], 600);
    assert_eq!(created["timezone"], "UTC");
    assert_eq!(created["params"], json!({"target": "s3://my-bucket"}));
    assert_eq!(created["webhook_url"], "https://hooks.example.com/…", "shown masked");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["overlap"], "skip");
    assert_eq!(created["misfire_grace"], 60);
    // Stored whole, for the delivery of job results.
    let stored = fleet
        .app
        .query_text(&format!("SELECT webhook_url AS value FROM schedules WHERE id = '{id}'"))
        .await;
    assert_eq!(stored, [Some("https://hooks.example.com/job-done".to_owned())]);

    // The nightly-backup example (Real-World Examples), as its loop sends it.
    let nightly = fleet
        .create(json!({
            "agent": "prod-server-1",
            "script": "backup.sh",
            "cron_expression": "0 2 * * *",
            "params": { "target": "s3://my-backups/prod-server-1" },
            "webhook_url": "https://hooks.slack.com/services/..."
        }))
        .await;
    assert_eq!(nightly["webhook_url"], "https://hooks.slack.com/…");
    assert_eq!(nightly["next_fire"], next_two_am());

    // The fleet-health example sends its JSON without a Content-Type (curl -d: form encoding).
    let body = json!({"agent": "prod-server-1", "script": "health_check.py", "cron_expression": "*/5 * * * *"});
    let response = fleet
        .app
        .request(Method::POST, "/schedules")
        .bearer(fleet.token())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let next = response.body["next_fire"].as_str().expect("next_fire").to_owned();
    let minute: u32 = next[14..16].parse().unwrap();
    assert!([0, 5].contains(&(minute % 10)) && next.ends_with(":00Z"), "{next}");

    let (status, listed) = fleet.app.get("/schedules", fleet.token()).await;
    assert_eq!(status, StatusCode::OK);
    let listed = listed["schedules"].as_array().expect("schedules").clone();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["id"], created["id"]);
    assert_eq!(fleet.schedule(&id).await, created);
    assert!(fleet.runs(&id).await.is_empty());
}

#[actix_rt::test]
async fn a_schedule_fires_on_time_and_its_job_runs_on_the_agent() {
    let mut fleet = Fleet::start().await;
    let _agent = fleet
        .agent(AgentSpec::new("prod-server-1", &fleet.key).script("backup.sh", HELLO))
        .await;
    let created = fleet
        .create(json!({
            "agent": "prod-server-1", "script": "backup.sh", "cron_expression": YEARLY,
            "params": {"target": "s3://my-bucket"}, "timeout": 120
        }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let yearly_next = created["next_fire"].clone();

    let slot = now_ms() + 3_000;
    fleet.due_at(&[&id], slot).await;
    let runs = fleet.wait_for_runs(&id, 1).await;
    assert_eq!(outcomes(&runs), ["fired"], "{runs:?}");
    assert_eq!(runs[0]["scheduled_for"], utc_text(slot - slot % 1000));
    let jobs = fleet.jobs_of(&id).await;
    assert_eq!(runs[0]["job_ids"], json!(jobs));
    assert_eq!(jobs.len(), 1);

    let job = fleet
        .app
        .wait_for_job(&fleet.session.access_token, &jobs[0], WAIT)
        .await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["schedule_id"], id.as_str());
    assert_eq!(job["timeout"], 120, "the schedule's timeout is the job's");
    assert_eq!(job["stdout"].as_str().unwrap().trim(), "hello s3://my-bucket");
    let fired_at = runs[0]["fired_at"].as_str().unwrap();
    assert!(fired_at >= runs[0]["scheduled_for"].as_str().unwrap(), "{fired_at}");

    let schedule = fleet.schedule(&id).await;
    assert_eq!(schedule["next_fire"], yearly_next, "next January 1st");
    assert!(schedule["last_fire"].is_string(), "{schedule}");

    // Another restart does not fire the slot again.
    fleet.app.restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fleet.runs(&id).await.len(), 1);
    assert_eq!(fleet.jobs_of(&id).await.len(), 1);
}

#[actix_rt::test]
async fn missed_fires_are_recorded_and_only_the_latest_catches_up_within_the_grace() {
    let mut fleet = Fleet::start().await;
    let _agent = fleet
        .agent(AgentSpec::new("prod-server-1", &fleet.key).script("backup.sh", HELLO))
        .await;
    // A daily slot two to three minutes ago; the orchestrator "was down" for three days before it.
    let slot = (now_ms() - 120_000) / 60_000 * 60_000;
    let daily = format!("{} {} * * *", slot / 60_000 % 60, slot / 3_600_000 % 24);
    let within = fleet
        .create(
            json!({"agent": "prod-server-1", "script": "backup.sh", "cron_expression": daily, "misfire_grace": 600}),
        )
        .await;
    let past = fleet
        .create(json!({"agent": "prod-server-1", "script": "backup.sh", "cron_expression": daily}))
        .await;
    let (within, past) = (within["id"].as_str().unwrap(), past["id"].as_str().unwrap());
    assert_eq!(fleet.schedule(within).await["next_fire"], utc_text(slot + DAY_MS));

    fleet.due_at(&[within, past], slot - 3 * DAY_MS).await;

    // Inside the grace: three misses recorded, the latest slot run once.
    let runs = fleet.wait_for_runs(within, 4).await;
    assert_eq!(outcomes(&runs), ["missed", "missed", "missed", "caught_up"], "{runs:?}");
    let expected_slots: Vec<String> = (0..4).rev().map(|days| utc_text(slot - days * DAY_MS)).collect();
    let slots: Vec<&str> = runs.iter().map(|r| r["scheduled_for"].as_str().unwrap()).collect();
    assert_eq!(slots, expected_slots);
    assert!(runs[..3]
        .iter()
        .all(|r| r["job_ids"] == json!([]) && r["fired_at"].is_null()));
    let jobs = fleet.jobs_of(within).await;
    assert_eq!(jobs.len(), 1, "one catch-up run, not a storm");
    assert_eq!(runs[3]["job_ids"], json!(jobs));
    let job = fleet
        .app
        .wait_for_job(&fleet.session.access_token, &jobs[0], WAIT)
        .await;
    assert_eq!(job["status"], "success", "{job}");

    // Past the grace (60 s): four misses, no job.
    let runs = fleet.wait_for_runs(past, 4).await;
    assert_eq!(outcomes(&runs), ["missed"; 4], "{runs:?}");
    assert!(fleet.jobs_of(past).await.is_empty());
    assert!(
        runs[3]["reason"].as_str().unwrap().contains("misfire grace"),
        "{runs:?}"
    );

    for id in [within, past] {
        assert_eq!(fleet.schedule(id).await["next_fire"], utc_text(slot + DAY_MS));
    }
    // Each miss is a schedule.missed event (the caught-up one says so).
    let events = |id: &str, caught_up: bool| {
        format!(
            "SELECT COUNT(*) AS value FROM events WHERE event_type = 'schedule.missed' \
             AND payload LIKE '%{id}%' AND payload LIKE '%\"caught_up\":{caught_up}%'"
        )
    };
    assert!(
        wait_until(WAIT, || async {
            fleet.app.query_i64(&events(past, false)).await == [Some(4)]
                && fleet.app.query_i64(&events(within, false)).await == [Some(3)]
                && fleet.app.query_i64(&events(within, true)).await == [Some(1)]
        })
        .await,
        "schedule.missed events"
    );
}

#[actix_rt::test]
async fn overlap_skip_records_a_skipped_fire_and_queue_runs_anyway() {
    let mut fleet = Fleet::start().await;
    let _agent = fleet
        .agent(AgentSpec::new("worker-1", &fleet.key).script("slow.sh", "#!/bin/sh\nsleep 60\n"))
        .await;
    let skip = fleet
        .create(json!({"agent": "worker-1", "script": "slow.sh", "cron_expression": YEARLY}))
        .await;
    let queue = fleet
        .create(json!({"agent": "worker-1", "script": "slow.sh", "cron_expression": YEARLY, "overlap": "queue"}))
        .await;
    let (skip, queue) = (skip["id"].as_str().unwrap(), queue["id"].as_str().unwrap());

    fleet.due_at(&[skip, queue], now_ms() + 2_500).await;
    fleet.wait_for_runs(skip, 1).await;
    fleet.wait_for_runs(queue, 1).await;
    let first = fleet.jobs_of(skip).await;
    assert_eq!(first.len(), 1);
    assert!(
        wait_until(WAIT, || async {
            let (_, job) = fleet.app.get(&format!("/jobs/{}", first[0]), fleet.token()).await;
            job["status"] == "running"
        })
        .await,
        "the first run is going"
    );

    fleet.due_at(&[skip, queue], now_ms() + 2_500).await;
    let runs = fleet.wait_for_runs(skip, 2).await;
    assert_eq!(outcomes(&runs), ["fired", "skipped"], "{runs:?}");
    assert_eq!(runs[1]["job_ids"], json!([]));
    let reason = runs[1]["reason"].as_str().unwrap();
    assert!(reason.contains(&first[0]) && reason.contains("still going"), "{reason}");
    assert_eq!(fleet.jobs_of(skip).await, first);

    let runs = fleet.wait_for_runs(queue, 2).await;
    assert_eq!(outcomes(&runs), ["fired", "fired"], "{runs:?}");
    assert_eq!(fleet.jobs_of(queue).await.len(), 2);
}

#[actix_rt::test]
async fn a_tag_schedule_fans_out_to_the_online_agents_with_the_tags() {
    let mut fleet = Fleet::start().await;
    let script = "#!/bin/sh\necho \"on $(hostname)\"\n";
    let _web1 = fleet
        .agent(AgentSpec::new("web-1", &fleet.key).tag("prod").script("hi.sh", script))
        .await;
    let _web2 = fleet
        .agent(
            AgentSpec::new("web-2", &fleet.key)
                .tag("prod")
                .tag("eu")
                .script("hi.sh", script),
        )
        .await;
    let mut web3 = fleet
        .agent(AgentSpec::new("web-3", &fleet.key).tag("prod").script("hi.sh", script))
        .await;
    let _db1 = fleet
        .agent(AgentSpec::new("db-1", &fleet.key).tag("db").script("hi.sh", script))
        .await;
    web3.kill();
    fleet
        .app
        .wait_for_agent_status(&fleet.session.access_token, "web-3", "offline", WAIT)
        .await;

    let created = fleet
        .create(json!({"tags": ["prod"], "script": "hi.sh", "cron_expression": YEARLY}))
        .await;
    assert_eq!(created["tags"], json!(["prod"]));
    assert!(created["agent"].is_null());
    let id = created["id"].as_str().unwrap();

    fleet.due_at(&[id], now_ms() + 2_500).await;
    let runs = fleet.wait_for_runs(id, 1).await;
    assert_eq!(outcomes(&runs), ["fired"], "{runs:?}");
    let jobs = fleet.jobs_of(id).await;
    assert_eq!(runs[0]["job_ids"].as_array().unwrap().len(), 2);
    assert!(
        runs[0]["reason"].as_str().unwrap().contains("web-3 (offline)"),
        "{runs:?}"
    );
    let mut agents = Vec::new();
    for job_id in &jobs {
        let job = fleet.app.wait_for_job(&fleet.session.access_token, job_id, WAIT).await;
        assert_eq!(job["status"], "success", "{job}");
        agents.push(job["agent"].as_str().unwrap().to_owned());
    }
    agents.sort();
    assert_eq!(agents, ["web-1", "web-2"]);
}

#[actix_rt::test]
async fn pause_resume_change_and_delete() {
    let mut fleet = Fleet::start().await;
    let _agent = fleet
        .agent(
            AgentSpec::new("prod-server-1", &fleet.key)
                .script("backup.sh", HELLO)
                .script("other.sh", HELLO),
        )
        .await;
    let created = fleet
        .create(
            json!({"agent": "prod-server-1", "script": "backup.sh", "cron_expression": YEARLY,
                       "webhook_url": "https://hooks.slack.com/services/T/B/secret", "timeout": 30}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/schedules/{id}");

    let (status, paused) = fleet
        .app
        .post_json(&format!("{path}/pause"), &json!({}), fleet.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(
        (paused["enabled"].clone(), paused["status"].clone()),
        (json!(false), json!("paused"))
    );
    assert!(paused["next_fire"].is_null());
    let (status, again) = fleet
        .app
        .post_json(&format!("{path}/pause"), &json!({}), fleet.token())
        .await;
    assert_eq!((status, again["enabled"].clone()), (StatusCode::OK, json!(false)));

    // A paused schedule does not fire, even with a slot in the past.
    fleet
        .app
        .exec_sql(&format!(
            "UPDATE schedules SET next_fire_at = {} WHERE id = '{id}'",
            now_ms() - 1000
        ))
        .await;
    fleet.app.restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(fleet.runs(&id).await.is_empty());
    assert!(fleet.jobs_of(&id).await.is_empty());

    let (status, resumed) = fleet
        .app
        .post_json(&format!("{path}/resume"), &json!({}), fleet.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["enabled"], true);
    assert_eq!(
        resumed["next_fire"], created["next_fire"],
        "the next slot from now, not the past one"
    );

    // PATCH changes what it names; null clears an optional field.
    let patch = json!({"cron_expression": "30 2 * * *", "timezone": "Europe/Berlin", "webhook_url": null,
                       "script": "other.sh", "overlap": "queue", "misfire_grace": 300});
    let response = fleet
        .app
        .request(Method::PATCH, &path)
        .bearer(fleet.token())
        .json(&patch)
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let changed = response.body;
    assert_eq!(changed["cron_expression"], "30 2 * * *");
    assert_eq!(changed["timezone"], "Europe/Berlin");
    assert!(changed["webhook_url"].is_null());
    assert_eq!(changed["timeout"], 30, "unchanged");
    assert_eq!(
        (changed["script"].clone(), changed["overlap"].clone()),
        (json!("other.sh"), json!("queue"))
    );
    let next = changed["next_fire"].as_str().unwrap();
    // 02:30 in Berlin is 00:30 or 01:30 UTC (or 01:00 on the day clocks spring forward).
    assert!(
        next.ends_with("T00:30:00Z") || next.ends_with("T01:30:00Z") || next.ends_with("T01:00:00Z"),
        "{next}"
    );
    let response = fleet
        .app
        .request(Method::PATCH, &path)
        .bearer(fleet.token())
        .json(&json!({"cron_expression": "0 0 * * * *"}))
        .send()
        .await;
    response.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let response = fleet
        .app
        .request(Method::PATCH, &path)
        .bearer(fleet.token())
        .json(&json!({"script": "missing.sh"}))
        .send()
        .await;
    response.assert_error(StatusCode::FORBIDDEN, "script_not_allowed");

    let (status, body) = fleet.app.delete(&path, fleet.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = fleet.app.get(&path, fleet.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = fleet.app.get(&format!("{path}/runs"), fleet.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = fleet.app.delete(&path, fleet.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn schedules_belong_to_their_tenant() {
    let fleet = Fleet::start().await;
    let _agent = fleet
        .agent(AgentSpec::new("prod-server-1", &fleet.key).script("backup.sh", HELLO))
        .await;
    let created = fleet
        .create(json!({"agent": "prod-server-1", "script": "backup.sh", "cron_expression": "@daily"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let other = fleet.app.register_and_login("intruder@example.com").await;
    let token = other.token();

    let path = format!("/schedules/{id}");
    for response in [
        fleet.app.request(Method::GET, &path).bearer(token).send().await,
        fleet
            .app
            .request(Method::PATCH, &path)
            .bearer(token)
            .json(&json!({"enabled": false}))
            .send()
            .await,
        fleet
            .app
            .request(Method::POST, &format!("{path}/pause"))
            .bearer(token)
            .send()
            .await,
        fleet
            .app
            .request(Method::POST, &format!("{path}/resume"))
            .bearer(token)
            .send()
            .await,
        fleet
            .app
            .request(Method::GET, &format!("{path}/runs"))
            .bearer(token)
            .send()
            .await,
        fleet.app.request(Method::DELETE, &path).bearer(token).send().await,
    ] {
        response.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let (status, listed) = fleet.app.get("/schedules", token).await;
    assert_eq!((status, listed), (StatusCode::OK, json!({"schedules": []})));
    // Nor can it name the first tenant's agent.
    let (status, body) = fleet
        .app
        .post_json(
            "/schedules",
            &json!({"agent": "prod-server-1", "script": "backup.sh", "cron_expression": "@daily"}),
            token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The owner still sees it unchanged.
    assert_eq!(fleet.schedule(id).await, created);
}

#[actix_rt::test]
async fn bad_schedules_are_refused_with_json_errors() {
    let fleet = Fleet::start().await;
    let _agent = fleet
        .agent(AgentSpec::new("prod-server-1", &fleet.key).script("backup.sh", HELLO))
        .await;
    let valid = json!({"agent": "prod-server-1", "script": "backup.sh", "cron_expression": "0 2 * * *"});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    for (body, says) in [
        (with("cron_expression", json!("61 * * * *")), "minute values are 0-59"),
        (with("cron_expression", json!("* * * *")), "five"),
        (
            with("cron_expression", json!("0 0 2 * * *")),
            "seconds and years are not supported",
        ),
        (with("cron_expression", json!("0 0 30 2 *")), "never matches"),
        (with("cron_expression", json!("0 0 * * 8")), "day-of-week"),
        (with("timezone", json!("Mars/Olympus_Mons")), "IANA"),
        (with("tags", json!(["prod"])), "not both"),
        (with("agent", Value::Null), "needs a target"),
        (with("overlap", json!("sometimes")), "overlap"),
        (with("webhook_url", json!("ftp://example.com/x")), "webhook_url"),
        // SSRF: internal addresses are refused (ALLOW_PRIVATE_WEBHOOKS is off here).
        (
            with("webhook_url", json!("http://169.254.169.254/latest/meta-data")),
            "webhook_url",
        ),
        (with("webhook_url", json!("http://127.0.0.1:9/hook")), "webhook_url"),
        (with("timeout", json!(0)), "timeout"),
        (with("params", json!({"PATH": "/tmp"})), "PATH"),
    ] {
        let response = fleet
            .app
            .request(Method::POST, "/schedules")
            .bearer(fleet.token())
            .json(&body)
            .send()
            .await;
        response.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let message = response.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message}");
    }
    let send = |body: Value| {
        fleet
            .app
            .request(Method::POST, "/schedules")
            .bearer(fleet.token())
            .json(&body)
            .send()
    };
    send(with("agent", json!("ghost")))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    send(with("script", json!("rm-rf.sh")))
        .await
        .assert_error(StatusCode::FORBIDDEN, "script_not_allowed");
    send(json!({"agent": "prod-server-1", "script": "backup.sh"}))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    send(with("timeout", json!("soon")))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    fleet
        .app
        .request(Method::POST, "/schedules")
        .bearer(fleet.token())
        .body("{not json")
        .send()
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    fleet
        .app
        .request(Method::POST, "/schedules")
        .json(&valid)
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    fleet
        .app
        .request(Method::GET, "/schedules/sched_nope/runs?limit=0")
        .bearer(fleet.token())
        .send()
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (_, listed) = fleet.app.get("/schedules", fleet.token()).await;
    assert_eq!(listed, json!({"schedules": []}), "nothing was created");
}

fn preview_path(cron_expression: &str, extra: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(cron_expression.as_bytes()).collect();
    format!("/schedules/preview?cron_expression={encoded}{extra}")
}

#[actix_rt::test]
async fn the_next_fires_are_previewed_and_checked_as_creation_checks_them() {
    let fleet = Fleet::start().await;
    let times = |body: &Value| -> Vec<String> {
        body["next_fires"]
            .as_array()
            .unwrap_or_else(|| panic!("next_fires in {body}"))
            .iter()
            .map(|t| t.as_str().expect("a time").to_owned())
            .collect()
    };
    let parse = |text: &str| chrono_ms(text);

    // Defaults: UTC, five fires, each after now and a day apart.
    let (status, body) = fleet.app.get(&preview_path("0 2 * * *", ""), fleet.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cron_expression"], "0 2 * * *");
    assert_eq!(body["timezone"], "UTC");
    let fires = times(&body);
    assert_eq!(fires.len(), 5, "{body}");
    assert!(fires.iter().all(|t| t.ends_with("T02:00:00Z")), "{fires:?}");
    assert!(parse(&fires[0]) > now_ms() && parse(&fires[0]) <= now_ms() + DAY_MS);
    assert!(
        fires.windows(2).all(|w| parse(&w[1]) - parse(&w[0]) == DAY_MS),
        "{fires:?}"
    );

    // In a time zone: 02:30 in Berlin is 00:30 or 01:30 UTC (summer or winter time).
    let (status, body) = fleet
        .app
        .get(
            &preview_path("30 2 * * *", "&timezone=Europe/Berlin&count=20"),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["timezone"], "Europe/Berlin");
    let fires = times(&body);
    assert_eq!(fires.len(), 20);
    assert!(
        fires
            .iter()
            .all(|t| t.ends_with("T00:30:00Z") || t.ends_with("T01:30:00Z")),
        "{fires:?}"
    );
    let (_, hourly) = fleet.app.get(&preview_path("@hourly", "&count=3"), fleet.token()).await;
    let fires = times(&hourly);
    assert!(
        fires.windows(2).all(|w| parse(&w[1]) - parse(&w[0]) == 3_600_000),
        "{fires:?}"
    );

    // A bad expression or time zone gets exactly the error creating a schedule gets.
    for (cron_expression, timezone) in [
        ("61 * * * *", "UTC"),
        ("* * * *", "UTC"),
        ("0 0 30 2 *", "UTC"),
        ("0 2 * * *", "Mars/Olympus_Mons"),
    ] {
        let tz: String = url::form_urlencoded::byte_serialize(timezone.as_bytes()).collect();
        let preview = fleet
            .app
            .request(Method::GET, &preview_path(cron_expression, &format!("&timezone={tz}")))
            .bearer(fleet.token())
            .send()
            .await;
        preview.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let creation = fleet
            .app
            .request(Method::POST, "/schedules")
            .bearer(fleet.token())
            .json(&json!({"agent": "a", "script": "s.sh", "cron_expression": cron_expression, "timezone": timezone}))
            .send()
            .await;
        assert_eq!(preview.body, creation.body, "{cron_expression} {timezone}");
    }
    for (path, code) in [
        (preview_path("0 2 * * *", "&count=0"), "validation_failed"),
        (preview_path("0 2 * * *", "&count=21"), "validation_failed"),
        (preview_path("0 2 * * *", "&count=many"), "invalid_request"),
        ("/schedules/preview".to_owned(), "validation_failed"),
    ] {
        fleet
            .app
            .request(Method::GET, &path)
            .bearer(fleet.token())
            .send()
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    fleet
        .app
        .request(Method::GET, &preview_path("0 2 * * *", ""))
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// Milliseconds since the epoch of an RFC 3339 time the API shows (`2026-03-10T02:00:00Z`).
fn chrono_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .timestamp_millis()
}

#[actix_rt::test]
async fn two_replicas_fire_a_slot_once() {
    let mut fleet = Fleet::start().await;
    // A manually registered agent (no process): its job simply waits in the queue.
    let (status, body) = fleet
        .app
        .post_json(
            "/register-agent",
            &json!({"agent_name": "prod-server-1"}),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let created = fleet
        .create(json!({"agent": "prod-server-1", "script": "backup.sh", "cron_expression": YEARLY}))
        .await;
    let id = created["id"].as_str().unwrap();

    fleet.due_at(&[id], now_ms() + 6_000).await;
    let Some(replica) = replica_or_refusal(&fleet.app).await else {
        return;
    };
    fleet.wait_for_runs(id, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(outcomes(&fleet.runs(id).await), ["fired"]);
    assert_eq!(fleet.jobs_of(id).await.len(), 1);
    let claimed_twice = "slot already claimed";
    assert!(
        fleet.app.log().contains(claimed_twice) || replica.log().contains(claimed_twice),
        "one replica lost the compare-and-set"
    );
}

/// A replica of `app`, or on SQLite (one process only) a check that it is refused.
async fn replica_or_refusal(app: &TestApp) -> Option<TestApp> {
    match app.try_start_replica().await {
        Ok(replica) => Some(replica),
        Err(failure) if app.backend() == "sqlite" => {
            assert!(failure.stderr.contains(SQLITE_REFUSAL), "{failure}");
            None
        }
        Err(failure) => panic!("{failure}"),
    }
}
