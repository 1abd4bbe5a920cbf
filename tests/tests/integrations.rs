//! Integrations end to end: a real orchestrator and agent, real jobs, and local receivers
//! playing Slack, Discord, Teams, PagerDuty, Datadog, Splunk, a Pushgateway and webhooks.
//! Each provider's request is checked field by field as its service documents it; then
//! signatures, retries, the SSRF guard, masking, the test endpoint, tenant isolation,
//! restarts, and the documentation's nightly-backup example with a schedule's webhook_url.

use hmac::{Hmac, Mac};
use scriptmesh_tests::receiver::{ReceivedRequest, Receiver};
use scriptmesh_tests::{now_ms, wait_for, AgentSpec, Method, Session, StatusCode, TestAgent, TestApp, TestAppBuilder};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const AGENT: &str = "web-1";
const OK_SCRIPT: &str = "#!/bin/sh\necho \"Backup complete. 2.4GB archived to ${target:-s3://my-bucket}\"\n";
const FAIL_SCRIPT: &str = "#!/bin/sh\necho \"Archiving /var/app/data ...\"\necho \"tar: disk full\" >&2\nexit 3\n";
/// Fails with `mode=fail`, succeeds otherwise: one agent and script that recovers.
const FLAKY_SCRIPT: &str =
    "#!/bin/sh\nif [ \"$mode\" = fail ]; then echo \"503 from /health\" >&2; exit 2; fi\necho healthy\n";
const SLOW_SCRIPT: &str = "#!/bin/sh\nsleep 30\n";

/// An orchestrator that may reach local receivers, fast retries, one user and one agent.
struct Setup {
    app: TestApp,
    session: Session,
    key: String,
    agent: Option<TestAgent>,
}

impl Setup {
    fn builder() -> TestAppBuilder {
        TestApp::builder()
            .env("ALLOW_PRIVATE_WEBHOOKS", "true")
            .env("DELIVERY_BASE_DELAY_MS", "50")
            .env("DELIVERY_MAX_ATTEMPTS", "3")
    }

    async fn start() -> Setup {
        Setup::with(Setup::builder()).await
    }

    async fn with(builder: TestAppBuilder) -> Setup {
        let mut setup = Setup::without_agent(builder).await;
        setup.start_agent().await;
        setup
    }

    async fn without_agent(builder: TestAppBuilder) -> Setup {
        let app = builder.start().await;
        let session = app.register_and_login("ops@example.com").await;
        let key = app.create_api_key(&session, "agents").await;
        Setup {
            app,
            session,
            key,
            agent: None,
        }
    }

    async fn start_agent(&mut self) {
        let agent = self
            .app
            .start_agent(
                AgentSpec::new(AGENT, &self.key)
                    .tag("production")
                    .script("ok.sh", OK_SCRIPT)
                    .script("fail.sh", FAIL_SCRIPT)
                    .script("flaky.sh", FLAKY_SCRIPT)
                    .script("slow.sh", SLOW_SCRIPT),
            )
            .await;
        self.agent = Some(agent);
        self.wait_online().await;
    }

    async fn wait_online(&self) {
        self.app
            .wait_for_agent_status(&self.session.access_token, AGENT, "online", WAIT)
            .await;
    }

    fn token(&self) -> Option<&str> {
        self.session.token()
    }

    /// Runs a script to its end; returns the job as `GET /jobs/{id}` shows it.
    async fn run(&self, script: &str, params: Value) -> Value {
        let job_id = self.trigger(script, params, None).await;
        self.app.wait_for_job(&self.session.access_token, &job_id, WAIT).await
    }

    async fn trigger(&self, script: &str, params: Value, timeout: Option<u64>) -> String {
        let mut body = json!({"agent": AGENT, "run_script": script, "params": params, "async_exec": true});
        if let Some(timeout) = timeout {
            body["timeout"] = json!(timeout);
        }
        let (status, answer) = self.app.post_json("/trigger-script", &body, self.token()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "trigger {script}: {answer}");
        answer["job_id"].as_str().expect("a job id").to_owned()
    }

    /// `POST /integrations`, expecting 201.
    async fn create(&self, body: Value) -> Value {
        let (status, created) = self.app.post_json("/integrations", &body, self.token()).await;
        assert_eq!(status, StatusCode::CREATED, "create {body}: {created}");
        created
    }

    /// `POST /integrations`, expecting a refusal; returns (status, message).
    async fn refuse(&self, body: Value) -> (StatusCode, String) {
        let response = self
            .app
            .request(Method::POST, "/integrations")
            .bearer(self.token())
            .json(&body)
            .send()
            .await;
        response.assert_client_error();
        (
            response.status,
            response.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    async fn deliveries(&self, integration_id: &str) -> Vec<Value> {
        let (status, page) = self
            .app
            .get(&format!("/integrations/{integration_id}/deliveries"), self.token())
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["deliveries"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the integration has a delivery (newest first) for which `matches` holds.
    async fn wait_for_delivery(&self, integration_id: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let found = wait_for(WAIT, || async {
            self.deliveries(integration_id).await.into_iter().find(|d| matches(d))
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no matching delivery for {integration_id} within {WAIT:?}; the orchestrator said:\n{}",
                self.app.log()
            )
        })
    }
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

fn texts(values: &Value) -> Vec<String> {
    values
        .as_array()
        .map(|items| items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Checks what every JSON delivery has in common.
#[track_caller]
fn assert_json_post(request: &ReceivedRequest, path: &str) {
    assert_eq!(request.method, "POST", "{request:?}");
    assert_eq!(request.path, path);
    assert!(
        request
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "{request:?}"
    );
    assert!(request
        .header("user-agent")
        .unwrap_or_default()
        .starts_with("ScriptMesh/"));
}

/// Lets the dispatcher catch up before asserting that nothing (more) was sent.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[actix_rt::test]
async fn slack_discord_and_teams_get_failed_and_succeeded_jobs() {
    let setup = Setup::start().await;
    let (slack, discord, teams) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    // The documentation's example shape: `events` inside `config`.
    let events = json!(["job.failed", "job.succeeded"]);
    setup
        .create(json!({"type": "slack", "name": "ops-alerts", "config": {
            "webhook_url": slack.url_for("/services/T000/B000/XXXXXXXX"), "events": events}}))
        .await;
    setup
        .create(json!({"type": "discord", "name": "discord-ops", "config": {
            "webhook_url": discord.url_for("/api/webhooks/123/token-abc"), "username": "ScriptMesh", "events": events}}))
        .await;
    setup
        .create(json!({"type": "teams", "name": "teams-ops", "config": {
            "webhook_url": teams.url_for("/webhookb2/abc/IncomingWebhook/def"), "events": events}}))
        .await;

    let failed = setup.run("fail.sh", json!({})).await;
    assert_eq!(failed["status"], "failed");
    let job_id = failed["job_id"].as_str().unwrap();

    // Slack: {"text", "blocks"}.
    let request = &slack.wait_for_requests(1, WAIT).await[0];
    assert_json_post(request, "/services/T000/B000/XXXXXXXX");
    let message = request.json();
    assert_eq!(message["text"], "❌ fail.sh failed on web-1 (exit code 3)");
    let blocks = message["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], "❌ fail.sh failed on web-1 (exit code 3)");
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|f| assert_eq!(f["type"], "mrkdwn"))
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    for expected in [
        "*Agent*\nweb-1",
        "*Script*\nfail.sh",
        "*Status*\nfailed",
        "*Exit code*\n3",
        &format!("*Job*\n{job_id}"),
    ] {
        assert!(fields.contains(&expected), "{expected:?} not in {fields:?}");
    }
    assert_eq!(blocks[2]["text"]["text"], "*stderr*\n```tar: disk full```");
    assert_eq!(blocks[3]["type"], "context");
    assert!(blocks[3]["elements"][0]["text"]
        .as_str()
        .unwrap()
        .contains("job.failed"));

    // Discord: {"content", "embeds", "allowed_mentions", "username"}.
    let request = &discord.wait_for_requests(1, WAIT).await[0];
    assert_json_post(request, "/api/webhooks/123/token-abc");
    let message = request.json();
    assert_eq!(message["content"], "❌ fail.sh failed on web-1 (exit code 3)");
    assert!(message["content"].as_str().unwrap().chars().count() <= 2000);
    assert_eq!(message["username"], "ScriptMesh");
    assert_eq!(message["allowed_mentions"], json!({"parse": []}));
    let embed = &message["embeds"][0];
    assert_eq!(embed["title"], "fail.sh failed on web-1 (exit code 3)");
    assert_eq!(embed["color"], 0xE01E5A);
    assert_eq!(embed["description"], "**stderr**\n```\ntar: disk full\n```");
    assert!(embed["fields"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "Exit code", "value": "3", "inline": true})));
    assert!(embed["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(embed["footer"]["text"], "ScriptMesh · job.failed");

    // Teams: an Adaptive Card message.
    let request = &teams.wait_for_requests(1, WAIT).await[0];
    assert_json_post(request, "/webhookb2/abc/IncomingWebhook/def");
    let message = request.json();
    assert_eq!(message["type"], "message");
    let attachment = &message["attachments"][0];
    assert_eq!(attachment["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &attachment["content"];
    assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(card["body"][0]["type"], "TextBlock");
    assert_eq!(card["body"][0]["text"], "❌ fail.sh failed on web-1 (exit code 3)");
    assert_eq!(card["body"][0]["color"], "Attention");
    assert_eq!(card["body"][1]["type"], "FactSet");
    let facts = card["body"][1]["facts"].as_array().unwrap();
    assert!(facts.contains(&json!({"title": "Job", "value": job_id})));
    assert!(facts.contains(&json!({"title": "Status", "value": "failed"})));
    assert_eq!(card["body"][3]["text"], "tar: disk full");

    // The success, with its stdout.
    let succeeded = setup.run("ok.sh", json!({"target": "s3://my-bucket"})).await;
    assert_eq!(succeeded["status"], "success");
    let message = slack.wait_for_requests(2, WAIT).await[1].json();
    assert_eq!(message["text"], "✅ ok.sh succeeded on web-1");
    assert_eq!(
        message["blocks"][2]["text"]["text"],
        "*stdout*\n```Backup complete. 2.4GB archived to s3://my-bucket```"
    );
    let message = discord.wait_for_requests(2, WAIT).await[1].json();
    assert_eq!(message["content"], "✅ ok.sh succeeded on web-1");
    assert_eq!(message["embeds"][0]["color"], 0x2EB67D);
    let message = teams.wait_for_requests(2, WAIT).await[1].json();
    assert_eq!(message["attachments"][0]["content"]["body"][0]["color"], "Good");

    // Subscribed to job.failed and job.succeeded only: job.completed sent nothing.
    settle().await;
    for receiver in [&slack, &discord, &teams] {
        assert_eq!(receiver.requests().len(), 2, "{:?}", receiver.requests());
    }
}

#[actix_rt::test]
async fn pagerduty_triggers_on_failure_and_resolves_on_the_next_success() {
    let pagerduty = Receiver::start().await;
    let setup = Setup::with(Setup::builder().env("PAGERDUTY_EVENTS_URL", &pagerduty.url_for("/v2/enqueue"))).await;
    // The documentation's "Fleet health check + PagerDuty alert" integration.
    let integration = setup
        .create(json!({"type": "pagerduty", "name": "fleet-alerts", "config": {
            "routing_key": "R0UT1NGKEY0123456789abcdef012345", "events": ["job.failed"]}}))
        .await;

    // A success with no alert open resolves nothing.
    setup.run("flaky.sh", json!({"mode": "ok"})).await;
    settle().await;
    assert!(pagerduty.requests().is_empty(), "{:?}", pagerduty.requests());

    let failed = setup.run("flaky.sh", json!({"mode": "fail"})).await;
    let trigger = &pagerduty.wait_for_requests(1, WAIT).await[0];
    assert_json_post(trigger, "/v2/enqueue");
    let body = trigger.json();
    let dedup_key = format!("scriptmesh/{}/web-1/flaky.sh", setup.session.tenant_id);
    assert_eq!(body["routing_key"], "R0UT1NGKEY0123456789abcdef012345");
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["dedup_key"], dedup_key);
    assert_eq!(body["client"], "ScriptMesh");
    let payload = &body["payload"];
    assert_eq!(payload["summary"], "flaky.sh failed on web-1 (exit code 2)");
    assert_eq!(payload["source"], "web-1");
    assert_eq!(payload["severity"], "error");
    assert_eq!(payload["component"], "flaky.sh");
    assert_eq!(payload["class"], "job.failed");
    assert!(payload["timestamp"].as_str().unwrap().ends_with('Z'));
    let details = &payload["custom_details"];
    assert_eq!(details["job_id"], failed["job_id"]);
    assert_eq!(details["status"], "failed");
    assert_eq!(details["exit_code"], 2);
    assert_eq!(details["stderr"], "503 from /health");
    assert_eq!(details["params"], json!({"mode": "fail"}));

    // Still failing: PagerDuty folds the second trigger into the same alert.
    setup.run("flaky.sh", json!({"mode": "fail"})).await;
    let second = &pagerduty.wait_for_requests(2, WAIT).await[1];
    assert_eq!(second.json()["event_action"], "trigger");
    assert_eq!(second.json()["dedup_key"], dedup_key);

    // Recovered: one resolve with the same key, and no more after that.
    setup.run("flaky.sh", json!({"mode": "ok"})).await;
    let resolve = &pagerduty.wait_for_requests(3, WAIT).await[2];
    assert_json_post(resolve, "/v2/enqueue");
    assert_eq!(
        resolve.json(),
        json!({"routing_key": "R0UT1NGKEY0123456789abcdef012345", "event_action": "resolve", "dedup_key": dedup_key})
    );
    setup.run("flaky.sh", json!({"mode": "ok"})).await;
    settle().await;
    assert_eq!(pagerduty.requests().len(), 3);

    let deliveries = setup.deliveries(&id_of(&integration)).await;
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    assert!(deliveries
        .iter()
        .all(|d| d["status"] == "delivered" && d["attempts"] == 1));
    assert_eq!(deliveries[0]["event"], "job.succeeded");
    assert_eq!(deliveries[2]["event"], "job.failed");
}

#[actix_rt::test]
async fn datadog_splunk_and_a_pushgateway_get_job_results() {
    let setup = Setup::start().await;
    let (datadog, splunk, pushgateway) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    setup
        .create(json!({"type": "datadog", "name": "dd", "config": {
            "api_key": "dd0123456789abcdef0123456789abcd", "api_url": datadog.url(),
            "events": ["job.failed", "job.succeeded"]}}))
        .await;
    setup
        .create(json!({"type": "splunk", "name": "splunk", "config": {
            "hec_url": splunk.url(), "token": "11111111-2222-3333-4444-555555555555", "index": "ops",
            "events": ["job.completed"]}}))
        .await;
    setup
        .create(json!({"type": "prometheus", "name": "metrics", "config": {
            "pushgateway_url": pushgateway.url(), "job": "nightly", "events": ["job.completed"]}}))
        .await;

    let failed = setup.run("fail.sh", json!({})).await;
    let started = now_ms() / 1000;

    // Datadog: POST /api/v1/events with DD-API-KEY.
    let request = &datadog.wait_for_requests(1, WAIT).await[0];
    assert_json_post(request, "/api/v1/events");
    assert_eq!(request.header("DD-API-KEY"), Some("dd0123456789abcdef0123456789abcd"));
    let event = request.json();
    assert_eq!(event["title"], "fail.sh failed on web-1 (exit code 3)");
    assert_eq!(event["alert_type"], "error");
    assert_eq!(event["source_type_name"], "scriptmesh");
    assert_eq!(event["aggregation_key"], "scriptmesh/web-1/fail.sh");
    assert_eq!(event["host"], "web-1");
    assert_eq!(event["priority"], "normal");
    let tags = texts(&event["tags"]);
    for tag in [
        "agent:web-1".to_owned(),
        "script:fail.sh".to_owned(),
        "status:failed".to_owned(),
        format!("tenant:{}", setup.session.tenant_id),
        "event:job.failed".to_owned(),
    ] {
        assert!(tags.contains(&tag), "{tag} not in {tags:?}");
    }
    let text = event["text"].as_str().unwrap();
    assert!(
        text.contains("tar: disk full") && text.contains(failed["job_id"].as_str().unwrap()),
        "{text}"
    );
    assert!((event["date_happened"].as_i64().unwrap() - started).abs() < 60);

    // Splunk HEC: the event envelope with the job exactly as GET /jobs/{id} shows it.
    let request = &splunk.wait_for_requests(1, WAIT).await[0];
    assert_json_post(request, "/services/collector/event");
    assert_eq!(
        request.header("Authorization"),
        Some("Splunk 11111111-2222-3333-4444-555555555555")
    );
    let event = request.json();
    assert!(
        (event["time"].as_f64().unwrap() - started as f64).abs() < 60.0,
        "{event}"
    );
    assert_eq!(event["host"], "web-1");
    assert_eq!(event["source"], "scriptmesh");
    assert_eq!(event["sourcetype"], "_json");
    assert_eq!(event["index"], "ops");
    assert_eq!(event["event"]["type"], "job.completed");
    assert_eq!(event["event"]["tenant_id"], setup.session.tenant_id.as_str());
    assert!(event["event"]["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["event"]["data"], failed);

    // Pushgateway: the run's gauges in the text exposition format, in the agent+script group.
    let request = &pushgateway.wait_for_requests(1, WAIT).await[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/metrics/job/nightly/instance/web-1/script/fail.sh");
    assert!(request
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let samples = exposition_samples(&request.text());
    let labels = r#"{script="fail.sh",agent="web-1"}"#;
    assert_eq!(samples[&format!("scriptmesh_job_last_exit_code{labels}")], 3.0);
    assert_eq!(samples[&format!("scriptmesh_job_last_success{labels}")], 0.0);
    let duration = samples[&format!("scriptmesh_job_last_duration_seconds{labels}")];
    assert!((duration - failed["duration_ms"].as_f64().unwrap() / 1000.0).abs() < 0.001);
    assert!((samples[&format!("scriptmesh_job_last_failure_timestamp_seconds{labels}")] - started as f64).abs() < 60.0);
    assert!(!samples.contains_key(&format!("scriptmesh_job_last_success_timestamp_seconds{labels}")));

    let succeeded = setup.run("ok.sh", json!({})).await;
    let event = datadog.wait_for_requests(2, WAIT).await[1].json();
    assert_eq!(event["title"], "ok.sh succeeded on web-1");
    assert_eq!(event["alert_type"], "success");
    assert!(texts(&event["tags"]).contains(&"status:success".to_owned()));
    let event = splunk.wait_for_requests(2, WAIT).await[1].json();
    assert_eq!(event["event"]["data"], succeeded);
    let request = &pushgateway.wait_for_requests(2, WAIT).await[1];
    assert_eq!(request.path, "/metrics/job/nightly/instance/web-1/script/ok.sh");
    let samples = exposition_samples(&request.text());
    let labels = r#"{script="ok.sh",agent="web-1"}"#;
    assert_eq!(samples[&format!("scriptmesh_job_last_exit_code{labels}")], 0.0);
    assert_eq!(samples[&format!("scriptmesh_job_last_success{labels}")], 1.0);
    assert!(samples.contains_key(&format!("scriptmesh_job_last_success_timestamp_seconds{labels}")));
}

/// Parses the text exposition format strictly enough to catch a malformed push: every
/// sample's metric has a `# TYPE` line before it; returns series -> value.
fn exposition_samples(text: &str) -> std::collections::HashMap<String, f64> {
    assert!(text.ends_with('\n'), "the exposition must end with a newline: {text:?}");
    let mut typed = Vec::new();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["gauge", "counter", "untyped"].contains(&kind), "{line}");
            typed.push(name.to_owned());
        } else if line.starts_with("# HELP ") {
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let name = series.split('{').next().unwrap();
            assert!(typed.iter().any(|t| t == name), "{name} has no # TYPE line before it");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            samples.insert(
                series.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
            );
        }
    }
    samples
}

/// `sha256=` + hex HMAC-SHA256(secret, "<timestamp>.<body>"), computed here independently.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a receiver following the README does: checks the signature and the replay window.
fn verify(secret: &str, request: &ReceivedRequest, body: &[u8]) -> bool {
    let timestamp = request.header("X-ScriptMesh-Timestamp").unwrap_or_default();
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now_ms() / 1000 - t).abs() <= 300);
    fresh && request.header("X-ScriptMesh-Signature") == Some(expected_signature(secret, timestamp, body).as_str())
}

#[actix_rt::test]
async fn webhooks_are_signed_and_carry_every_event() {
    let mut setup = Setup::without_agent(Setup::builder()).await;
    let hook = Receiver::start().await;
    let events = json!([
        "job.succeeded",
        "job.failed",
        "job.completed",
        "job.cancelled",
        "agent.online",
        "agent.offline",
        "agent.registered"
    ]);
    // No secret given: one is generated and shown this once.
    let created = setup
        .create(json!({"type": "webhook", "name": "audit",
            "config": {"url": hook.url_for("/hooks/scriptmesh?source=test"), "events": events}}))
        .await;
    let secret = created["secret"].as_str().expect("the generated secret").to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() >= 32, "{secret}");
    assert!(created["warning"].as_str().unwrap().contains("will not be shown again"));
    assert_eq!(created["config"]["secret"], format!("{}…", &secret[..4]));
    assert_eq!(created["config"]["url"], format!("{}/…", hook.url()));
    let (_, shown) = setup
        .app
        .get(&format!("/integrations/{}", id_of(&created)), setup.token())
        .await;
    assert!(!shown.to_string().contains(&secret));

    let by_event = |event: &'static str| move |r: &ReceivedRequest| r.header("X-ScriptMesh-Event") == Some(event);
    setup.start_agent().await;
    let registered = hook
        .wait_for_matching(WAIT, "agent.registered", by_event("agent.registered"))
        .await;
    let body = registered.json();
    assert_eq!(body["type"], "agent.registered");
    assert_eq!(body["data"]["agent"], AGENT);
    assert_eq!(body["data"]["tags"], json!(["production"]));
    let online = hook
        .wait_for_matching(WAIT, "agent.online", by_event("agent.online"))
        .await;
    assert_eq!(
        online.json()["data"],
        json!({"agent": AGENT, "status": "online", "tags": ["production"]})
    );

    let failed = setup.run("fail.sh", json!({})).await;
    let request = hook.wait_for_matching(WAIT, "job.failed", by_event("job.failed")).await;
    assert_json_post(&request, "/hooks/scriptmesh?source=test");
    let body = request.json();
    assert_eq!(body["type"], "job.failed");
    assert_eq!(body["tenant_id"], setup.session.tenant_id.as_str());
    assert!(body["id"].as_str().unwrap().starts_with("evt_"));
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"], failed);
    assert!(request.header("X-ScriptMesh-Delivery").unwrap().starts_with("dlv_"));
    // The signature verifies; a tampered body, another secret or another timestamp do not.
    assert!(verify(&secret, &request, &request.body), "{request:?}");
    let mut tampered = request.body.clone();
    let position = tampered
        .iter()
        .position(|b| *b == b'3')
        .expect("the exit code in the body");
    tampered[position] = b'0';
    assert!(!verify(&secret, &request, &tampered));
    assert!(!verify("whsec_another_secret_entirely", &request, &request.body));
    let timestamp: i64 = request.header("X-ScriptMesh-Timestamp").unwrap().parse().unwrap();
    assert_ne!(
        request.header("X-ScriptMesh-Signature").unwrap(),
        expected_signature(&secret, &(timestamp - 1).to_string(), &request.body)
    );
    let completed = hook
        .wait_for_matching(WAIT, "job.completed", by_event("job.completed"))
        .await;
    assert_eq!(completed.json()["data"], failed);
    assert!(verify(&secret, &completed, &completed.body));

    // A timeout is a job.failed too.
    let job_id = setup.trigger("slow.sh", json!({}), Some(1)).await;
    let timed_out = setup.app.wait_for_job(&setup.session.access_token, &job_id, WAIT).await;
    assert_eq!(timed_out["status"], "timeout");
    let request = hook
        .wait_for_matching(WAIT, "job.failed for the timeout", |r| {
            r.header("X-ScriptMesh-Event") == Some("job.failed") && r.json()["data"]["job_id"] == job_id.as_str()
        })
        .await;
    assert_eq!(request.json()["data"]["status"], "timeout");

    // A cancelled job.
    let job_id = setup.trigger("slow.sh", json!({}), None).await;
    wait_for(WAIT, || async {
        let (_, job) = setup.app.get(&format!("/jobs/{job_id}"), setup.token()).await;
        (job["status"] == "running").then_some(())
    })
    .await
    .expect("the slow job runs");
    let (status, _) = setup
        .app
        .post_json(&format!("/jobs/{job_id}/cancel"), &json!({}), setup.token())
        .await;
    assert!(status.is_success());
    let request = hook
        .wait_for_matching(WAIT, "job.cancelled", by_event("job.cancelled"))
        .await;
    assert_eq!(request.json()["data"]["job_id"], job_id.as_str());
    assert_eq!(request.json()["data"]["status"], "cancelled");

    // The agent goes away.
    setup.agent.as_mut().unwrap().kill();
    let offline = hook
        .wait_for_matching(WAIT, "agent.offline", by_event("agent.offline"))
        .await;
    assert_eq!(
        offline.json()["data"],
        json!({"agent": AGENT, "status": "offline", "tags": ["production"]})
    );
    for request in hook.requests() {
        assert!(verify(&secret, &request, &request.body), "{request:?}");
    }

    // A secret given at creation is used, and not echoed back.
    let other = Receiver::start().await;
    let created = setup
        .create(
            json!({"type": "webhook", "name": "given-secret", "events": ["job.succeeded"],
            "config": {"url": other.url(), "secret": "my-own-signing-secret-0123"}}),
        )
        .await;
    assert!(created.get("secret").is_none());
    assert_eq!(created["config"]["secret"], "my-o…");
}

#[actix_rt::test]
async fn failing_receivers_are_retried_then_given_up_and_all_of_it_is_recorded() {
    let setup = Setup::start().await;
    let (down, refusing, flaky) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    down.respond_with(500);
    refusing.respond_with(400);
    flaky.respond_with_sequence(&[503, 200]);
    let mut ids = Vec::new();
    for (name, receiver) in [("down", &down), ("refusing", &refusing), ("flaky", &flaky)] {
        let created = setup
            .create(
                json!({"type": "webhook", "name": name, "config": {"url": receiver.url(), "events": ["job.failed"]}}),
            )
            .await;
        ids.push(id_of(&created));
    }
    setup.run("fail.sh", json!({})).await;

    // 500 every time: DELIVERY_MAX_ATTEMPTS (3) attempts, then failed.
    let delivery = setup.wait_for_delivery(&ids[0], |d| d["status"] == "failed").await;
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["max_attempts"], 3);
    assert_eq!(delivery["last_response_code"], 500);
    assert!(delivery["last_error"].as_str().unwrap().contains("500"), "{delivery}");
    assert_eq!(delivery["event"], "job.failed");
    assert_eq!(delivery["next_attempt_at"], Value::Null);
    assert_eq!(delivery["target_url"], format!("{}/…", down.url()));
    let log = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 3);
    for (number, attempt) in log.iter().enumerate() {
        assert_eq!(attempt["attempt"], number + 1);
        assert_eq!(attempt["response_code"], 500);
        assert!(attempt["duration_ms"].as_i64().unwrap() >= 0);
    }
    let requests = down.requests();
    assert_eq!(requests.len(), 3);
    // The same delivery id on every try, so a receiver can drop repeats; later tries wait longer.
    assert!(requests
        .iter()
        .all(|r| r.header("X-ScriptMesh-Delivery") == requests[0].header("X-ScriptMesh-Delivery")));
    assert_eq!(requests[0].header("X-ScriptMesh-Delivery"), delivery["id"].as_str());
    assert!(requests[1].received_at - requests[0].received_at >= Duration::from_millis(20));
    assert!(requests[2].received_at - requests[1].received_at >= Duration::from_millis(45));

    // 400: not worth another try.
    let delivery = setup.wait_for_delivery(&ids[1], |d| d["status"] == "failed").await;
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["last_response_code"], 400);
    // 503 then 200: delivered on the second attempt.
    let delivery = setup.wait_for_delivery(&ids[2], |d| d["status"] == "delivered").await;
    assert_eq!(delivery["attempts"], 2);
    assert_eq!(delivery["last_response_code"], 200);
    let codes: Vec<&Value> = delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["response_code"])
        .collect();
    assert_eq!(codes, [&json!(503), &json!(200)]);
    settle().await;
    assert_eq!(
        (down.requests().len(), refusing.requests().len(), flaky.requests().len()),
        (3, 1, 2)
    );

    // Filtering the tenant's deliveries.
    let (_, page) = setup.app.get("/deliveries?status=failed", setup.token()).await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 2, "{page}");
    let (_, page) = setup
        .app
        .get(&format!("/deliveries?integration_id={}", ids[2]), setup.token())
        .await;
    assert_eq!(page["deliveries"][0]["status"], "delivered");
    let response = setup
        .app
        .request(Method::GET, "/deliveries?status=lost")
        .bearer(setup.token())
        .send()
        .await;
    response.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[actix_rt::test]
async fn a_slow_receiver_does_not_hold_up_jobs() {
    let setup = Setup::start().await;
    let slow = Receiver::start().await;
    slow.delay_responses(Duration::from_secs(8));
    setup
        .create(json!({"type": "slack", "name": "slow", "config": {"webhook_url": slow.url(), "events": ["job.completed"]}}))
        .await;
    for _ in 0..3 {
        let job_id = setup.trigger("ok.sh", json!({}), None).await;
        let started = std::time::Instant::now();
        let job = setup.app.wait_for_job(&setup.session.access_token, &job_id, WAIT).await;
        assert_eq!(job["status"], "success");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a job took {:?}",
            started.elapsed()
        );
    }
    // The first delivery is still waiting for its answer.
    slow.wait_for_requests(1, WAIT).await;
}

#[actix_rt::test]
async fn private_and_metadata_addresses_are_refused() {
    // ALLOW_PRIVATE_WEBHOOKS is not set here.
    let setup = Setup::with(TestApp::builder().env("DELIVERY_BASE_DELAY_MS", "50")).await;
    let receiver = Receiver::start().await;
    let port = receiver.port();
    for (kind, field, url, why) in [
        ("webhook", "url", format!("http://127.0.0.1:{port}/hook"), "loopback"),
        (
            "webhook",
            "url",
            "http://169.254.169.254/latest/meta-data/iam/".to_owned(),
            "link-local",
        ),
        ("webhook", "url", format!("http://localhost:{port}/"), "loopback"),
        (
            "slack",
            "webhook_url",
            format!("http://[::ffff:127.0.0.1]:{port}/x"),
            "loopback",
        ),
        ("slack", "webhook_url", format!("http://[::1]:{port}/x"), "loopback"),
        (
            "discord",
            "webhook_url",
            "http://10.1.2.3/api/webhooks/1/x".to_owned(),
            "private",
        ),
        ("teams", "webhook_url", "http://192.168.1.10/x".to_owned(), "private"),
        ("webhook", "url", format!("http://0.0.0.0:{port}/"), "unspecified"),
        ("webhook", "url", "http://100.64.0.1/".to_owned(), "carrier-grade NAT"),
        ("webhook", "url", format!("http://0x7f000001:{port}/"), "loopback"),
    ] {
        let (status, message) = setup
            .refuse(json!({"type": kind, "name": "internal", "config": {field: url, "events": ["job.failed"]}}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert!(
            message.contains(why) && message.contains("ALLOW_PRIVATE_WEBHOOKS"),
            "{url}: {message}"
        );
        assert!(message.contains(&format!("config.{field}")), "{message}");
    }
    let (status, message) = setup
        .refuse(json!({"type": "splunk", "name": "internal", "config": {
            "hec_url": "http://169.254.169.254:8088", "token": "t", "events": ["job.failed"]}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("config.hec_url"), "{message}");
    assert!(receiver.requests().is_empty());
    let (_, list) = setup.app.get("/integrations", setup.token()).await;
    assert_eq!(list["integrations"], json!([]));
}

#[actix_rt::test]
async fn the_guard_is_applied_again_at_delivery_time() {
    let mut setup = Setup::start().await;
    let receiver = Receiver::start().await;
    let created = setup
        .create(
            json!({"type": "webhook", "name": "internal", "config": {"url": receiver.url(), "events": ["job.failed"]}}),
        )
        .await;
    // The operator withdraws the permission: what was allowed is refused from now on.
    setup.app.restart_with_env("ALLOW_PRIVATE_WEBHOOKS", "").await;
    setup.wait_online().await;
    setup.run("fail.sh", json!({})).await;
    let delivery = setup
        .wait_for_delivery(&id_of(&created), |d| d["status"] == "failed")
        .await;
    assert_eq!(delivery["attempts"], 1, "refused for good: {delivery}");
    assert_eq!(delivery["last_response_code"], Value::Null);
    let error = delivery["last_error"].as_str().unwrap();
    assert!(error.starts_with("refused: 127.0.0.1 is a loopback address"), "{error}");
    assert!(receiver.requests().is_empty(), "no request may be sent");
}

#[actix_rt::test]
async fn integrations_are_validated_masked_changed_and_deleted() {
    let setup = Setup::start().await;
    let pagerduty = Receiver::start().await;
    let routing_key = "R0UT1NGKEY0123456789abcdef012345";
    let slack_url = "http://127.0.0.1:9/services/T000/B000/XXXXXXXXXXXXXXXX";
    let slack = setup
        .create(json!({"type": "slack", "name": "ops-alerts",
            "config": {"webhook_url": slack_url, "events": ["job.failed", "agent.offline"]}}))
        .await;
    assert_eq!(slack["type"], "slack");
    assert_eq!(slack["name"], "ops-alerts");
    assert_eq!(slack["enabled"], true);
    assert_eq!(slack["events"], json!(["job.failed", "agent.offline"]));
    assert_eq!(
        slack["config"],
        json!({"webhook_url": "http://127.0.0.1:9/…", "events": ["job.failed", "agent.offline"]})
    );
    let pd = setup
        .create(json!({"type": "pagerduty", "name": "fleet-alerts", "events": ["job.failed"],
            "config": {"routing_key": routing_key, "events_url": format!("http://pd:secret@127.0.0.1:{}/v2/enqueue?x=1", pagerduty.port())}}))
        .await;
    assert_eq!(pd["config"]["routing_key"], "R0UT…");
    assert_eq!(
        pd["config"]["events_url"],
        format!("http://127.0.0.1:{}/v2/enqueue", pagerduty.port())
    );
    let others = [
        (
            json!({"type": "datadog", "name": "dd", "config": {"api_key": "ddapikey0123456789", "site": "datadoghq.eu", "events": ["job.failed"]}}),
            "api_key",
            "ddap…",
        ),
        (
            json!({"type": "splunk", "name": "sp", "config": {"hec_url": "http://127.0.0.1:9", "token": "hec-token-0123456789", "events": ["job.failed"]}}),
            "token",
            "hec-…",
        ),
        (
            json!({"type": "webhook", "name": "wh", "config": {"url": "http://127.0.0.1:9/h?token=abc", "secret": "whsec_0123456789abcdefXYZ", "events": ["job.failed"]}}),
            "secret",
            "whse…",
        ),
    ];
    for (body, field, masked) in others {
        let created = setup.create(body.clone()).await;
        assert_eq!(created["config"][field], masked, "{created}");
        let secret = body["config"][field].as_str().unwrap();
        let (_, listed) = setup.app.get("/integrations", setup.token()).await;
        assert!(!listed.to_string().contains(secret), "{listed}");
    }
    let (_, listed) = setup.app.get("/integrations", setup.token()).await;
    let listed_text = listed.to_string();
    assert_eq!(listed["integrations"].as_array().unwrap().len(), 5);
    for secret in [routing_key, "XXXXXXXXXXXXXXXX", "pd:secret", "token=abc"] {
        assert!(!listed_text.contains(secret), "{secret} shown in {listed_text}");
    }

    // Refusals.
    for (body, status, needle) in [
        (
            json!({"type": "irc", "name": "x", "config": {"events": ["job.failed"]}}),
            422,
            "type must be one of",
        ),
        (
            json!({"type": "pagerduty", "name": "x", "config": {"events": ["job.failed"]}}),
            422,
            "routing_key",
        ),
        (
            json!({"type": "splunk", "name": "x", "config": {"hec_url": "http://127.0.0.1:9", "events": ["job.failed"]}}),
            422,
            "token",
        ),
        (
            json!({"type": "slack", "name": "x", "config": {"webhook_url": slack_url, "events": ["job.exploded"]}}),
            422,
            "unknown event",
        ),
        (
            json!({"type": "slack", "name": "x", "config": {"webhook_url": slack_url}}),
            422,
            "events",
        ),
        (
            json!({"type": "slack", "name": "x", "config": {"webhook_url": "not a url", "events": ["job.failed"]}}),
            422,
            "webhook_url",
        ),
        (
            json!({"type": "slack", "name": "x", "config": {"webhook_url": slack_url, "channel": "#ops", "events": ["job.failed"]}}),
            422,
            "unknown field",
        ),
        (
            json!({"type": "pagerduty", "name": "x", "config": {"routing_key": "k", "events": ["agent.registered"]}}),
            422,
            "does not take",
        ),
        (
            json!({"type": "slack", "name": "ops-alerts", "config": {"webhook_url": slack_url, "events": ["job.failed"]}}),
            409,
            "already exists",
        ),
        (
            json!({"type": "slack", "name": "  ", "config": {"webhook_url": slack_url, "events": ["job.failed"]}}),
            422,
            "name",
        ),
    ] {
        let (got, message) = setup.refuse(body.clone()).await;
        assert_eq!(got.as_u16(), status, "{body}: {message}");
        assert!(message.contains(needle), "{body}: {message}");
    }

    // PATCH: a masked value sent back keeps the secret; other fields change.
    let path = format!("/integrations/{}", id_of(&pd));
    let response = setup
        .app
        .request(Method::PATCH, &path)
        .bearer(setup.token())
        .json(
            &json!({"name": "pager", "config": {"routing_key": "R0UT…", "events_url": pagerduty.url_for("/v2/enqueue"),
            "events": ["job.failed", "agent.offline"]}}),
        )
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["name"], "pager");
    assert_eq!(response.body["events"], json!(["job.failed", "agent.offline"]));
    assert_eq!(response.body["config"]["routing_key"], "R0UT…");
    let (status, tested) = setup
        .app
        .post_json(&format!("{path}/test"), &json!({}), setup.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tested["ok"], true, "{tested}");
    let test_event = pagerduty.wait_for_requests(1, WAIT).await[0].json();
    assert_eq!(test_event["routing_key"], routing_key, "the secret survived the PATCH");
    assert_eq!(test_event["event_action"], "trigger");
    assert_eq!(test_event["payload"]["severity"], "info");
    assert!(
        pagerduty.requests()[0].header("authorization").is_none(),
        "{:?}",
        pagerduty.requests()[0]
    );

    // Disabled: no deliveries.
    let response = setup
        .app
        .request(Method::PATCH, &path)
        .bearer(setup.token())
        .json(&json!({"enabled": false}))
        .send()
        .await;
    assert_eq!(response.body["enabled"], false);
    setup.run("fail.sh", json!({})).await;
    settle().await;
    assert_eq!(pagerduty.requests().len(), 1);
    let response = setup
        .app
        .request(Method::PATCH, &path)
        .bearer(setup.token())
        .json(&json!({"config": {"routing_key": "two words"}}))
        .send()
        .await;
    response.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    // DELETE.
    let (status, _) = setup.app.delete(&path, setup.token()).await;
    assert_eq!(status, StatusCode::OK);
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::GET, "/deliveries"),
        (Method::POST, "/test"),
    ] {
        let response = setup
            .app
            .request(method.clone(), &format!("{path}{suffix}"))
            .bearer(setup.token())
            .send()
            .await;
        response.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[actix_rt::test]
async fn the_test_endpoint_sends_through_the_delivery_path() {
    let setup = Setup::start().await;
    let slack = Receiver::start().await;
    let created = setup
        .create(json!({"type": "slack", "name": "ops-alerts", "config": {"webhook_url": slack.url_for("/services/T/B/x"), "events": ["job.failed"]}}))
        .await;
    let path = format!("/integrations/{}/test", id_of(&created));
    let (status, answer) = setup.app.post_json(&path, &json!({}), setup.token()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["status"], "delivered");
    assert_eq!(answer["response_code"], 200);
    assert_eq!(answer["delivery"]["event"], "test");
    assert_eq!(answer["delivery"]["attempts"], 1);
    let request = &slack.requests()[0];
    assert_json_post(request, "/services/T/B/x");
    assert_eq!(
        request.json()["text"],
        "ℹ️ Test event from ScriptMesh: the integration ops-alerts works."
    );

    slack.respond_with(500);
    let (status, answer) = setup.app.post_json(&path, &json!({}), setup.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["status"], "failed");
    assert_eq!(answer["response_code"], 500);
    assert!(answer["error"].as_str().unwrap().contains("500"));
    // A test is tried once.
    settle().await;
    assert_eq!(slack.requests().len(), 2);
    let deliveries = setup.deliveries(&id_of(&created)).await;
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|d| d["event"] == "test" && d["attempts"] == 1));
}

#[actix_rt::test]
async fn integrations_belong_to_their_tenant() {
    let setup = Setup::start().await;
    let receiver = Receiver::start().await;
    let created = setup
        .create(json!({"type": "webhook", "name": "mine", "config": {"url": receiver.url(), "events": ["job.failed", "job.succeeded"]}}))
        .await;
    let path = format!("/integrations/{}", id_of(&created));
    setup.run("ok.sh", json!({})).await;
    receiver.wait_for_requests(1, WAIT).await;

    let other = setup.app.register_and_login("intruder@example.com").await;
    let (_, list) = setup.app.get("/integrations", other.token()).await;
    assert_eq!(list["integrations"], json!([]));
    for (method, suffix, body) in [
        (Method::GET, "", None),
        (Method::PATCH, "", Some(json!({"name": "taken"}))),
        (Method::DELETE, "", None),
        (Method::POST, "/test", None),
        (Method::GET, "/deliveries", None),
    ] {
        let mut request = setup
            .app
            .request(method.clone(), &format!("{path}{suffix}"))
            .bearer(other.token());
        if let Some(body) = &body {
            request = request.json(body);
        }
        request.send().await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let (_, page) = setup.app.get("/deliveries", other.token()).await;
    assert_eq!(page["deliveries"], json!([]));
    let delivery_id = setup.deliveries(&id_of(&created)).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = setup
        .app
        .request(Method::GET, &format!("/deliveries/{delivery_id}"))
        .bearer(other.token())
        .send()
        .await;
    response.assert_error(StatusCode::NOT_FOUND, "not_found");
    let (status, _) = setup
        .app
        .get(&format!("/deliveries/{delivery_id}"), setup.token())
        .await;
    assert_eq!(status, StatusCode::OK);

    // The other tenant's jobs do not reach this tenant's integration, and names are per tenant.
    let other_key = setup.app.create_api_key(&other, "agents").await;
    let _agent = setup
        .app
        .start_agent(AgentSpec::new("intruder-1", &other_key).script("ok.sh", OK_SCRIPT))
        .await;
    setup
        .app
        .wait_for_agent_status(&other.access_token, "intruder-1", "online", WAIT)
        .await;
    let (status, answer) = setup
        .app
        .post_json(
            "/trigger-script",
            &json!({"agent": "intruder-1", "run_script": "ok.sh"}),
            other.token(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    setup
        .app
        .wait_for_job(&other.access_token, answer["job_id"].as_str().unwrap(), WAIT)
        .await;
    settle().await;
    assert_eq!(receiver.requests().len(), 1);
    let theirs = Receiver::start().await;
    let (status, _) = setup
        .app
        .post_json(
            "/integrations",
            &json!({"type": "webhook", "name": "mine",
            "config": {"url": theirs.url(), "events": ["job.succeeded"]}}),
            other.token(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[actix_rt::test]
async fn pending_deliveries_survive_a_restart() {
    let mut setup = Setup::with(
        Setup::builder()
            .env("DELIVERY_BASE_DELAY_MS", "10000")
            .env("DELIVERY_MAX_ATTEMPTS", "5"),
    )
    .await;
    let receiver = Receiver::start().await;
    receiver.respond_with(503);
    let created = setup
        .create(
            json!({"type": "webhook", "name": "later", "config": {"url": receiver.url(), "events": ["job.failed"]}}),
        )
        .await;
    setup.run("fail.sh", json!({})).await;
    let first = receiver.wait_for_requests(1, WAIT).await[0].clone();
    let delivery = setup.wait_for_delivery(&id_of(&created), |d| d["attempts"] == 1).await;
    assert_eq!(delivery["status"], "pending");
    assert!(delivery["next_attempt_at"].is_string());

    // Down before the retry is due; the receiver recovers meanwhile.
    setup.app.kill();
    receiver.respond_with(200);
    setup.app.restart().await;
    let delivery = setup
        .wait_for_delivery(&id_of(&created), |d| d["status"] == "delivered")
        .await;
    assert_eq!(delivery["attempts"], 2);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].header("X-ScriptMesh-Delivery"),
        first.header("X-ScriptMesh-Delivery")
    );
    assert_eq!(requests[1].body, first.body);
}

/// The documentation's "Nightly backup across all servers": a schedule with a webhook_url
/// (which receives the full job result when the script completes), and a Slack
/// integration that fires when any job completes or fails.
#[actix_rt::test]
async fn nightly_backup_example_posts_the_job_result_to_the_schedules_webhook() {
    let mut setup = Setup::start().await;
    let (job_done, slack) = (Receiver::start().await, Receiver::start().await);
    let slack_integration = setup
        .create(json!({"type": "slack", "name": "backups", "config": {
            "webhook_url": slack.url_for("/services/T000/B000/XXXX"), "events": ["job.failed", "job.completed"]}}))
        .await;
    let (status, schedule) = setup
        .app
        .post_json(
            "/schedules",
            &json!({
                "agent": AGENT,
                "script": "ok.sh",
                "cron_expression": "0 2 * * *",
                "params": {"target": format!("s3://my-backups/{AGENT}")},
                "webhook_url": job_done.url_for("/job-done"),
            }),
            setup.token(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let schedule_id = id_of(&schedule);

    // 2 AM is far away: bring the fire to now and restart, as after a night.
    setup
        .app
        .exec_sql(&format!(
            "UPDATE schedules SET next_fire_at = {} WHERE id = '{schedule_id}'",
            now_ms() + 2000
        ))
        .await;
    setup.app.restart().await;
    setup.wait_online().await;

    let request = &job_done.wait_for_requests(1, Duration::from_secs(30)).await[0];
    assert_json_post(request, "/job-done");
    assert_eq!(request.header("X-ScriptMesh-Event"), Some("job.completed"));
    assert!(request.header("X-ScriptMesh-Delivery").unwrap().starts_with("dlv_"));
    assert!(request.header("X-ScriptMesh-Signature").is_none());
    let body = request.json();
    let job_id = body["job_id"].as_str().expect("the job's id").to_owned();
    let (_, job) = setup.app.get(&format!("/jobs/{job_id}"), setup.token()).await;
    // The full job result, exactly as GET /jobs/{id} shows it.
    assert_eq!(body, job);
    assert_eq!(body["status"], "success");
    assert_eq!(body["exit_code"], 0);
    assert_eq!(
        body["stdout"],
        "Backup complete. 2.4GB archived to s3://my-backups/web-1\n"
    );
    assert_eq!(body["schedule_id"], schedule_id.as_str());
    assert!(body["duration_ms"].is_u64() && body["completed_at"].is_string());

    // Slack heard of it too (job.completed).
    let message = slack.wait_for_requests(1, WAIT).await[0].json();
    assert_eq!(message["text"], "✅ ok.sh succeeded on web-1");
    let fields = message["blocks"][1]["fields"].to_string();
    assert!(fields.contains(&schedule_id), "{fields}");
    setup
        .wait_for_delivery(&id_of(&slack_integration), |d| d["status"] == "delivered")
        .await;

    // The schedule's delivery is recorded like any other.
    let (_, page) = setup
        .app
        .get(&format!("/deliveries?schedule_id={schedule_id}"), setup.token())
        .await;
    let delivery = &page["deliveries"][0];
    assert_eq!(delivery["status"], "delivered", "{page}");
    assert_eq!(delivery["event"], "job.completed");
    assert_eq!(delivery["schedule_id"], schedule_id.as_str());
    assert_eq!(delivery["integration_id"], Value::Null);
    assert_eq!(delivery["target_url"], format!("{}/…", job_done.url()));
}
