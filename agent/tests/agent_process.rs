//! The real `scriptmesh-agent` binary against a fake orchestrator served from the test:
//! registration, long-poll, start, result, spooling, re-registration, cancellation,
//! manifest reload, health, live output, secret masking and configuration errors, all
//! over real HTTP on 127.0.0.1.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use shared_protocol::protocol::{
    BatchedResult, JobAssignment, JobResultReport, OutputAck, OutputBatch, OutputChunk, OutputStream, ResultBatch,
    RunOutcome, SECRET_MASK,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const API_KEY: &str = "sm_live_test_SECRETVALUE";
const AGENT_BIN: &str = env!("CARGO_BIN_EXE_scriptmesh-agent");

// ---------------------------------------------------------------- fake orchestrator

#[derive(Default)]
struct FakeState {
    registrations: Vec<serde_json::Value>,
    heartbeats: Vec<serde_json::Value>,
    /// Capacity asked by each poll, in order.
    polls: Vec<usize>,
    queue: VecDeque<JobAssignment>,
    /// Handed out with the next poll answer.
    poll_cancels: Vec<String>,
    /// Handed out with the next heartbeat answer.
    heartbeat_cancels: Vec<String>,
    /// The `start` parameter of each poll (the agent starts implicitly: "implicit").
    poll_start_modes: Vec<String>,
    results: Vec<(String, JobResultReport)>,
    /// How many output requests had arrived when each result was first stored.
    output_requests_before_result: HashMap<String, usize>,
    /// Every live output chunk accepted, in arrival order.
    output: Vec<ReceivedChunk>,
    /// `POST /agent/output` requests, answered or refused.
    output_requests: usize,
    /// Status the output endpoint answers (200 unless a test makes it fail).
    output_status: u16,
    /// Jobs every output answer asks the agent to stop streaming.
    output_stop: Vec<String>,
    /// How many results arrived in `POST /agent/results` batches.
    batched_results: usize,
    /// Status the result endpoint answers (200 unless a test makes it fail).
    result_status: u16,
    result_attempts: usize,
    /// Answer the next poll with 404 ("unknown agent").
    forget_agent: bool,
    bad_auth: usize,
    /// Say on registration that heartbeats may ride on the poll (`POST /agent/poll`).
    heartbeat_in_poll: bool,
    /// Heartbeats that came on their own (`POST /agent/heartbeat`) and on polls.
    heartbeat_requests: usize,
    heartbeats_on_polls: usize,
    /// Answer heartbeats on polls 405, as a replica from before they were taken does.
    refuse_heartbeat_in_poll: bool,
    heartbeat_refusals: usize,
    /// The `wait` asked by each poll, in order.
    poll_waits: Vec<u64>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
    url: String,
}

#[derive(Clone, Debug)]
struct ReceivedChunk {
    chunk: OutputChunk,
    /// Wall clock, ms since the epoch: comparable with the script's `date +%s%3N`.
    received_ms: i64,
    /// Which output request (1-based) carried it.
    request: usize,
}

impl Fake {
    fn start() -> Fake {
        let state = Arc::new(Mutex::new(FakeState {
            result_status: 200,
            output_status: 200,
            ..FakeState::default()
        }));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(8 * 1024 * 1024))
                .route("/register-agent", web::post().to(register))
                .route("/agent/heartbeat", web::post().to(heartbeat))
                .route("/agent/poll", web::get().to(poll))
                .route("/agent/poll", web::post().to(poll_with_heartbeat))
                .route("/agent/jobs/{id}/result", web::post().to(result))
                .route("/agent/results", web::post().to(results))
                .route("/agent/output", web::post().to(output))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind fake orchestrator");
        let address = server.addrs()[0];
        actix_rt::spawn(server.run());
        Fake {
            state,
            url: format!("http://{address}/"),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().expect("fake state"))
    }

    fn queue(&self, job_id: &str, script: &str, params: &[(&str, &str)]) {
        let job = JobAssignment {
            job_id: job_id.into(),
            script: script.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            timeout_secs: None,
            secret_params: Vec::new(),
        };
        self.queue_job(job);
    }

    fn queue_job(&self, job: JobAssignment) {
        self.with(|s| s.queue.push_back(job));
    }

    /// The live output chunks received for a job, in arrival order.
    fn chunks_for(&self, job_id: &str) -> Vec<ReceivedChunk> {
        self.with(|s| {
            s.output
                .iter()
                .filter(|received| received.chunk.job_id == job_id)
                .cloned()
                .collect()
        })
    }

    fn result_for(&self, job_id: &str) -> Option<JobResultReport> {
        self.with(|s| {
            s.results
                .iter()
                .find(|(id, _)| id == job_id)
                .map(|(_, report)| report.clone())
        })
    }

    async fn wait_for_result(&self, job_id: &str, within: Duration) -> JobResultReport {
        let deadline = Instant::now() + within;
        loop {
            if let Some(report) = self.result_for(job_id) {
                return report;
            }
            assert!(Instant::now() < deadline, "no result for {job_id} within {within:?}");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn authorised(request: &HttpRequest, state: &Mutex<FakeState>) -> bool {
    let ok = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {API_KEY}"));
    if !ok {
        state.lock().expect("fake state").bad_auth += 1;
    }
    ok
}

async fn register(
    request: HttpRequest,
    state: web::Data<Mutex<FakeState>>,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    if !authorised(&request, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let name = body["agent_name"].as_str().unwrap_or_default().to_owned();
    let mut state = state.lock().expect("fake state");
    state.registrations.push(body.into_inner());
    if state.heartbeat_in_poll {
        HttpResponse::Ok().json(serde_json::json!({"status": "ok", "agent": name, "heartbeat_in_poll": true}))
    } else {
        // As an orchestrator from before heartbeats rode on polls answers.
        HttpResponse::Ok().json(serde_json::json!({"status": "ok", "agent": name}))
    }
}

async fn heartbeat(
    request: HttpRequest,
    state: web::Data<Mutex<FakeState>>,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    if !authorised(&request, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut state = state.lock().expect("fake state");
    state.heartbeat_requests += 1;
    state.heartbeats.push(body.into_inner());
    let cancel = std::mem::take(&mut state.heartbeat_cancels);
    HttpResponse::Ok().json(serde_json::json!({"status": "ok", "cancel": cancel}))
}

/// `POST /agent/poll`: the heartbeat in the body, then the poll; the heartbeat's cancel
/// orders are answered at once.
async fn poll_with_heartbeat(
    request: HttpRequest,
    state: web::Data<Mutex<FakeState>>,
    query: web::Query<HashMap<String, String>>,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    if !authorised(&request, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    {
        let mut state = state.lock().expect("fake state");
        assert!(
            state.heartbeat_in_poll,
            "a heartbeat on a poll the orchestrator never offered"
        );
        if state.refuse_heartbeat_in_poll {
            state.heartbeat_refusals += 1;
            return HttpResponse::MethodNotAllowed().json(serde_json::json!({
                "error": {"code": "method_not_allowed", "message": "POST is not allowed here"}
            }));
        }
        assert_eq!(body["agent_name"], query["agent"].as_str(), "{body}");
        state.heartbeats_on_polls += 1;
        state.heartbeats.push(body.into_inner());
        let cancel = std::mem::take(&mut state.heartbeat_cancels);
        if !cancel.is_empty() {
            return HttpResponse::Ok().json(serde_json::json!({"jobs": [], "cancel": cancel}));
        }
    }
    poll(request, state, query).await
}

async fn poll(
    request: HttpRequest,
    state: web::Data<Mutex<FakeState>>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if !authorised(&request, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let capacity: usize = query.get("capacity").and_then(|c| c.parse().ok()).unwrap_or(0);
    let wait: u64 = query.get("wait").and_then(|w| w.parse().ok()).unwrap_or(1);
    {
        let mut state = state.lock().expect("fake state");
        state.polls.push(capacity);
        state.poll_waits.push(wait);
        let mode = query.get("start").cloned().unwrap_or_default();
        state.poll_start_modes.push(mode);
        if std::mem::take(&mut state.forget_agent) {
            return HttpResponse::NotFound().json(serde_json::json!({
                "error": {"code": "agent_not_found", "message": "unknown agent"}
            }));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        {
            let mut state = state.lock().expect("fake state");
            let take = capacity.min(state.queue.len());
            if take > 0 || !state.poll_cancels.is_empty() {
                let jobs: Vec<JobAssignment> = state.queue.drain(..take).collect();
                let cancel = std::mem::take(&mut state.poll_cancels);
                return HttpResponse::Ok().json(serde_json::json!({"jobs": jobs, "cancel": cancel}));
            }
        }
        if Instant::now() >= deadline {
            return HttpResponse::Ok().json(serde_json::json!({"jobs": [], "cancel": []}));
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn result(
    request: HttpRequest,
    state: web::Data<Mutex<FakeState>>,
    path: web::Path<String>,
    body: web::Json<JobResultReport>,
) -> HttpResponse {
    if !authorised(&request, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut state = state.lock().expect("fake state");
    match state.store_result(path.into_inner(), body.into_inner()) {
        Ok(duplicate) => HttpResponse::Ok().json(serde_json::json!({"status": "ok", "duplicate": duplicate})),
        Err(status) => HttpResponse::build(status).finish(),
    }
}

/// `POST /agent/results`: the same rules as one result, settled one by one.
async fn results(
    request: HttpRequest,
    state: web::Data<Mutex<FakeState>>,
    body: web::Json<ResultBatch>,
) -> HttpResponse {
    if !authorised(&request, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut state = state.lock().expect("fake state");
    let mut acks = Vec::new();
    for BatchedResult { job_id, report } in body.into_inner().results {
        match state.store_result(job_id.clone(), report) {
            Ok(duplicate) => {
                state.batched_results += 1;
                let outcome = if duplicate { "duplicate" } else { "stored" };
                acks.push(serde_json::json!({"job_id": job_id, "outcome": outcome}));
            }
            // A failing result endpoint fails the whole batch, as an unreachable one would.
            Err(status) => return HttpResponse::build(status).finish(),
        }
    }
    HttpResponse::Ok().json(serde_json::json!({ "results": acks }))
}

/// `POST /agent/output`: records the chunks with their arrival time.
async fn output(
    request: HttpRequest,
    state: web::Data<Mutex<FakeState>>,
    body: web::Json<OutputBatch>,
) -> HttpResponse {
    if !authorised(&request, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut state = state.lock().expect("fake state");
    state.output_requests += 1;
    if state.output_status != 200 {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(state.output_status).expect("status"))
            .finish();
    }
    let batch = body.into_inner();
    assert_eq!(batch.agent_name, "test-agent-1");
    assert!(batch.chunks.len() <= 1000, "at most 1000 chunks per batch");
    let received_ms = wall_clock_ms();
    let request = state.output_requests;
    let accepted = batch.chunks.len();
    for chunk in batch.chunks {
        assert!(!chunk.data.is_empty(), "empty chunk {chunk:?}");
        state.output.push(ReceivedChunk {
            chunk,
            received_ms,
            request,
        });
    }
    HttpResponse::Ok().json(OutputAck {
        accepted,
        stop: state.output_stop.clone(),
    })
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

impl FakeState {
    /// Ok(duplicate?) or the failure status a test asked for.
    fn store_result(&mut self, job_id: String, report: JobResultReport) -> Result<bool, actix_web::http::StatusCode> {
        self.result_attempts += 1;
        if self.result_status != 200 {
            return Err(actix_web::http::StatusCode::from_u16(self.result_status).expect("status"));
        }
        let duplicate = self.results.iter().any(|(id, _)| *id == job_id);
        if !duplicate {
            let requests = self.output_requests;
            self.output_requests_before_result.insert(job_id.clone(), requests);
            self.results.push((job_id, report));
        }
        Ok(duplicate)
    }
}

// ---------------------------------------------------------------- agent processes

struct Scripts {
    dir: tempfile::TempDir,
    manifest_path: PathBuf,
    spool_dir: PathBuf,
}

impl Scripts {
    fn new(scripts: &[(&str, &str)]) -> Scripts {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest_path = dir.path().join("script_manifest.json");
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir(dir.path().join("scripts")).expect("mkdir");
        let scripts_holder = Scripts {
            dir,
            manifest_path,
            spool_dir,
        };
        for (name, body) in scripts {
            scripts_holder.add(name, body);
        }
        scripts_holder.write_manifest(&scripts.iter().map(|(name, _)| *name).collect::<Vec<_>>());
        scripts_holder
    }

    fn scripts_dir(&self) -> PathBuf {
        self.dir.path().join("scripts")
    }

    fn add(&self, name: &str, body: &str) {
        let path = self.scripts_dir().join(name);
        std::fs::write(&path, body).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn write_manifest(&self, names: &[&str]) {
        let scripts: Vec<_> = names
            .iter()
            .map(|name| serde_json::json!({"name": name, "path": name, "description": "test"}))
            .collect();
        let tmp = self.manifest_path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::json!({ "scripts": scripts }).to_string()).expect("manifest");
        std::fs::rename(tmp, &self.manifest_path).expect("rename manifest");
    }

    fn spooled_files(&self) -> Vec<String> {
        match std::fs::read_dir(&self.spool_dir) {
            Ok(entries) => entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

struct AgentProcess {
    child: Child,
    health_url: String,
    log_path: PathBuf,
}

impl AgentProcess {
    fn spawn(fake: &Fake, scripts: &Scripts, extra: &[(&str, &str)]) -> AgentProcess {
        let log_path = scripts.dir.path().join(format!("agent-{}.log", rand::random::<u32>()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = agent_command(&[
            ("AGENT_NAME", "test-agent-1"),
            ("ORCHESTRATOR_URL", &fake.url),
            ("API_KEY", API_KEY),
            ("AGENT_PORT", "0"),
            ("AGENT_BIND_HOST", "127.0.0.1"),
            ("AGENT_TAGS", "test, e2e"),
            ("HEARTBEAT_INTERVAL", "1"),
            ("POLL_WAIT_SECS", "1"),
            ("KILL_GRACE_SECS", "1"),
            ("SCRIPTS_DIR", scripts.scripts_dir().to_str().expect("utf8")),
            ("MANIFEST_PATH", scripts.manifest_path.to_str().expect("utf8")),
            ("SPOOL_DIR", scripts.spool_dir.to_str().expect("utf8")),
        ]);
        for (name, value) in extra {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn agent");
        let stdout = child.stdout.take().expect("stdout");
        let mut first_line = String::new();
        BufReader::new(stdout).read_line(&mut first_line).expect("read stdout");
        let address = first_line
            .trim()
            .strip_prefix("scriptmesh-agent health on ")
            .unwrap_or_else(|| panic!("unexpected first stdout line {first_line:?}"))
            .to_owned();
        AgentProcess {
            child,
            health_url: address,
            log_path,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

fn agent_command(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(AGENT_BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

async fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn unique(label: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{label}-{}-{}", std::process::id(), rand::random::<u64>()))
}

fn is_running(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    (unsafe { libc::kill(pid, 0) } == 0)
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
            })
            .is_some_and(|state| state != "Z" && state != "X")
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------- tests

#[actix_rt::test]
async fn runs_a_job_end_to_end_without_leaking_the_api_key() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("env.sh", "#!/bin/sh\nexec /usr/bin/env\n")]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);

    wait_until("registration", Duration::from_secs(10), || {
        fake.with(|s| !s.registrations.is_empty())
    })
    .await;
    let registration = fake.with(|s| s.registrations[0].clone());
    assert_eq!(registration["agent_name"], "test-agent-1");
    assert_eq!(registration["tags"], serde_json::json!(["test", "e2e"]));
    assert_eq!(registration["scripts"][0]["name"], "env.sh");
    assert_eq!(registration["os"], std::env::consts::OS);
    assert_eq!(registration["heartbeat_interval"], 1);
    assert_eq!(registration["running_jobs"], serde_json::json!([]));
    assert!(registration["version"].is_string());

    fake.queue("job_e2e1", "env.sh", &[("target", "s3://bucket; rm -rf /tmp/nothing")]);
    let report = fake.wait_for_result("job_e2e1", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{report:?}\n{}", agent.log());
    assert_eq!(report.agent_name, "test-agent-1");
    assert!(
        report.stdout.contains("target=s3://bucket; rm -rf /tmp/nothing\n"),
        "{}",
        report.stdout
    );
    assert!(report.stdout.contains("SCRIPTMESH_JOB_ID=job_e2e1\n"));
    assert!(!report.stdout.contains("API_KEY"), "{}", report.stdout);
    assert!(!report.stdout.contains("SECRETVALUE"), "{}", report.stdout);
    assert!(!report.stdout.contains("ORCHESTRATOR_URL"), "{}", report.stdout);
    assert!(
        fake.with(|s| s.poll_start_modes.iter().all(|mode| mode == "implicit")),
        "every poll starts its jobs implicitly (no /start)"
    );
    assert_eq!(fake.with(|s| s.batched_results), 1, "the result went in a batch");
    assert_eq!(fake.with(|s| s.bad_auth), 0);

    // Heartbeats carry the manifest; the key never appears in the agent's logs.
    wait_until("a heartbeat", Duration::from_secs(5), || {
        fake.with(|s| !s.heartbeats.is_empty())
    })
    .await;
    let beat = fake.with(|s| s.heartbeats[0].clone());
    assert_eq!(beat["agent_name"], "test-agent-1");
    assert_eq!(beat["scripts"][0]["name"], "env.sh");
    assert!(!agent.log().contains("SECRETVALUE"));

    // The spool is empty once the orchestrator acknowledged the result.
    wait_until("empty spool", Duration::from_secs(5), || {
        scripts.spooled_files().is_empty()
    })
    .await;

    let client = awc::Client::default();
    let health: serde_json::Value = client
        .get(format!("{}/health", agent.health_url))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("health json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["agent"], "test-agent-1");
    assert_eq!(health["orchestrator"], "connected");
    assert_eq!(health["manifest_scripts"], 1);
    assert_eq!(health["running_jobs"], 0);
    let metrics = client
        .get(format!("{}/metrics", agent.health_url))
        .send()
        .await
        .expect("metrics")
        .body()
        .await
        .expect("metrics body");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("scriptmesh_agent_jobs_finished_total{outcome=\"success\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("scriptmesh_agent_jobs_started_total 1"), "{metrics}");
    assert!(metrics.contains("scriptmesh_agent_manifest_scripts 1"), "{metrics}");
}

#[actix_rt::test]
async fn heartbeats_list_every_job_held_until_its_result_is_accepted() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("slow.sh", "#!/bin/sh\nsleep 2\necho done\n")]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    let held_in = |beat: &serde_json::Value, job: &str| {
        beat["held_jobs"]
            .as_array()
            .is_some_and(|held| held.iter().any(|id| id == job))
    };
    // Results are refused for now: the finished job stays held, spooled.
    fake.with(|s| s.result_status = 503);
    fake.queue("job_held", "slow.sh", &[]);
    wait_until("a heartbeat holding the running job", Duration::from_secs(10), || {
        fake.with(|s| s.heartbeats.iter().any(|beat| held_in(beat, "job_held")))
    })
    .await;
    wait_until("the job to finish", Duration::from_secs(10), || {
        !scripts.spooled_files().is_empty()
    })
    .await;
    let beats_before = fake.with(|s| s.heartbeats.len());
    wait_until("a heartbeat after it finished", Duration::from_secs(5), || {
        fake.with(|s| s.heartbeats.len() > beats_before + 1)
    })
    .await;
    let latest = fake.with(|s| s.heartbeats.last().cloned()).expect("a heartbeat");
    assert!(
        held_in(&latest, "job_held"),
        "finished but unreported is still held: {latest}"
    );
    assert_eq!(latest["running_jobs"], serde_json::json!([]), "{latest}");

    // Accepted: no longer held.
    fake.with(|s| s.result_status = 200);
    let report = fake.wait_for_result("job_held", Duration::from_secs(40)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
    let beats_after = fake.with(|s| s.heartbeats.len());
    wait_until("a heartbeat without it", Duration::from_secs(5), || {
        fake.with(|s| s.heartbeats.len() > beats_after && !held_in(s.heartbeats.last().unwrap(), "job_held"))
    })
    .await;
    // This orchestrator never offered heartbeats on the poll: they came on their own.
    fake.with(|s| {
        assert_eq!(s.heartbeats_on_polls, 0);
        assert_eq!(s.heartbeat_requests, s.heartbeats.len());
    });
}

#[actix_rt::test]
async fn heartbeats_go_on_their_own_again_when_a_poll_refuses_them() {
    let fake = Fake::start();
    // Registered where heartbeats ride on polls, then polling a replica that refuses them.
    fake.with(|s| {
        s.heartbeat_in_poll = true;
        s.refuse_heartbeat_in_poll = true;
    });
    let scripts = Scripts::new(&[("ok.sh", "#!/bin/sh\necho ok\n")]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    wait_until("heartbeats on their own", Duration::from_secs(15), || {
        fake.with(|s| s.heartbeat_requests >= 2)
    })
    .await;
    assert_eq!(fake.with(|s| s.heartbeat_refusals), 1, "{}", agent.log());
    fake.queue("job_after_405", "ok.sh", &[]);
    let report = fake.wait_for_result("job_after_405", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
}

#[actix_rt::test]
async fn heartbeats_ride_on_the_poll_when_the_orchestrator_takes_them() {
    let fake = Fake::start();
    fake.with(|s| s.heartbeat_in_poll = true);
    let pid_path = unique("scriptmesh-cancel-in-poll");
    let long = "#!/bin/sh\nsleep 1000 &\necho $! > \"$pidfile\"\nwait\n";
    let scripts = Scripts::new(&[("long.sh", long)]);
    // Polls may be held 30 s, but a heartbeat is due every second.
    let agent = AgentProcess::spawn(&fake, &scripts, &[("POLL_WAIT_SECS", "30")]);
    wait_until("three heartbeats on polls", Duration::from_secs(10), || {
        fake.with(|s| s.heartbeats_on_polls >= 3)
    })
    .await;
    fake.with(|s| {
        assert!(
            s.poll_waits.iter().all(|&wait| wait <= 1),
            "a poll waited past the next heartbeat: {:?}",
            s.poll_waits
        );
        let beat = s.heartbeats.last().expect("a heartbeat");
        assert_eq!(beat["agent_name"], "test-agent-1");
        assert_eq!(beat["heartbeat_interval"], 1);
        assert_eq!(beat["scripts"][0]["name"], "long.sh", "{beat}");
    });

    // A running job is listed in the heartbeats, and a cancel order answering one kills it.
    fake.queue(
        "job_cancel_in_poll",
        "long.sh",
        &[("pidfile", pid_path.to_str().expect("utf8"))],
    );
    wait_until("the job running", Duration::from_secs(10), || {
        read_pid(&pid_path).is_some()
    })
    .await;
    let pid = read_pid(&pid_path).expect("pid");
    wait_until("a heartbeat on a poll listing the job", Duration::from_secs(5), || {
        fake.with(|s| {
            s.heartbeats
                .last()
                .is_some_and(|beat| beat["running_jobs"] == serde_json::json!(["job_cancel_in_poll"]))
        })
    })
    .await;
    fake.with(|s| s.heartbeat_cancels.push("job_cancel_in_poll".into()));
    let report = fake
        .wait_for_result("job_cancel_in_poll", Duration::from_secs(10))
        .await;
    assert_eq!(report.outcome, RunOutcome::Cancelled, "{report:?}\n{}", agent.log());
    wait_until("the script's child gone", Duration::from_secs(3), || !is_running(pid)).await;
    let _ = std::fs::remove_file(pid_path);

    fake.with(|s| {
        assert_eq!(s.heartbeat_requests, 0, "no heartbeat needs a request of its own");
        assert_eq!(s.heartbeats_on_polls, s.heartbeats.len());
    });
}

#[actix_rt::test]
async fn unlisted_script_is_reported_rejected() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("ok.sh", "#!/bin/sh\necho ok\n")]);
    scripts.add("hidden.sh", "#!/bin/sh\necho should-not-run\n");
    let _agent = AgentProcess::spawn(&fake, &scripts, &[]);
    fake.queue("job_hidden", "hidden.sh", &[]);
    let report = fake.wait_for_result("job_hidden", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Rejected);
    assert_eq!(report.exit_code, None);
    assert_eq!(report.stdout, "");
    assert!(report.reason.is_some());
}

#[actix_rt::test]
async fn results_are_spooled_while_refused_and_survive_a_restart() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("ok.sh", "#!/bin/sh\necho kept\n")]);
    fake.with(|s| s.result_status = 503);
    let mut first = AgentProcess::spawn(&fake, &scripts, &[]);
    fake.queue("job_spooled", "ok.sh", &[]);

    wait_until("result spooled", Duration::from_secs(10), || {
        scripts.spooled_files().contains(&"job_spooled.json".to_owned())
    })
    .await;
    wait_until("delivery retried", Duration::from_secs(10), || {
        fake.with(|s| s.result_attempts >= 2)
    })
    .await;
    first.kill_hard();
    assert!(fake.result_for("job_spooled").is_none());
    assert_eq!(scripts.spooled_files(), ["job_spooled.json"]);

    fake.with(|s| s.result_status = 200);
    let second = AgentProcess::spawn(&fake, &scripts, &[]);
    let report = fake.wait_for_result("job_spooled", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", second.log());
    assert_eq!(report.stdout, "kept\n");
    wait_until("spool emptied", Duration::from_secs(5), || {
        scripts.spooled_files().is_empty()
    })
    .await;
}

#[actix_rt::test]
async fn delivery_is_retried_until_the_orchestrator_accepts() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("ok.sh", "#!/bin/sh\necho hi\n")]);
    fake.with(|s| s.result_status = 502);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    fake.queue("job_retry", "ok.sh", &[]);
    wait_until("failed attempts", Duration::from_secs(10), || {
        fake.with(|s| s.result_attempts >= 2)
    })
    .await;
    fake.with(|s| s.result_status = 200);
    let report = fake.wait_for_result("job_retry", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
    wait_until("spool emptied", Duration::from_secs(5), || {
        scripts.spooled_files().is_empty()
    })
    .await;
}

#[actix_rt::test]
async fn registers_again_when_the_orchestrator_forgets_the_agent() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("ok.sh", "#!/bin/sh\necho ok\n")]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    wait_until("first registration", Duration::from_secs(10), || {
        fake.with(|s| s.registrations.len() == 1)
    })
    .await;
    fake.with(|s| s.forget_agent = true);
    wait_until("second registration", Duration::from_secs(10), || {
        fake.with(|s| s.registrations.len() >= 2)
    })
    .await;
    // And it goes back to work afterwards.
    fake.queue("job_after_404", "ok.sh", &[]);
    let report = fake.wait_for_result("job_after_404", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
}

#[actix_rt::test]
async fn cancels_from_poll_and_heartbeat_kill_running_jobs() {
    let fake = Fake::start();
    let pid_a = unique("scriptmesh-cancel-a");
    let pid_b = unique("scriptmesh-cancel-b");
    let long = "#!/bin/sh\nsleep 1000 &\necho $! > \"$pidfile\"\nwait\n";
    let scripts = Scripts::new(&[("long.sh", long)]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    fake.queue(
        "job_cancel_poll",
        "long.sh",
        &[("pidfile", pid_a.to_str().expect("utf8"))],
    );
    fake.queue(
        "job_cancel_beat",
        "long.sh",
        &[("pidfile", pid_b.to_str().expect("utf8"))],
    );
    wait_until("both jobs running", Duration::from_secs(10), || {
        read_pid(&pid_a).is_some() && read_pid(&pid_b).is_some()
    })
    .await;
    let (a, b) = (read_pid(&pid_a).expect("pid"), read_pid(&pid_b).expect("pid"));

    fake.with(|s| s.poll_cancels.push("job_cancel_poll".into()));
    fake.with(|s| s.heartbeat_cancels.push("job_cancel_beat".into()));
    for job_id in ["job_cancel_poll", "job_cancel_beat"] {
        let report = fake.wait_for_result(job_id, Duration::from_secs(10)).await;
        assert_eq!(
            report.outcome,
            RunOutcome::Cancelled,
            "{job_id}: {report:?}\n{}",
            agent.log()
        );
    }
    wait_until("background processes gone", Duration::from_secs(3), || {
        !is_running(a) && !is_running(b)
    })
    .await;
    let _ = std::fs::remove_file(pid_a);
    let _ = std::fs::remove_file(pid_b);
}

#[actix_rt::test]
async fn a_capacity_zero_poll_is_replaced_when_a_slot_frees() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[
        ("short.sh", "#!/bin/sh\nsleep 1\necho first\n"),
        ("ok.sh", "#!/bin/sh\necho second\n"),
    ]);
    // A long wait: without the abort, the second job would sit for up to 30 s.
    let agent = AgentProcess::spawn(
        &fake,
        &scripts,
        &[("MAX_CONCURRENT_JOBS", "1"), ("POLL_WAIT_SECS", "30")],
    );
    fake.queue("job_first", "short.sh", &[]);
    wait_until("a capacity-0 poll", Duration::from_secs(10), || {
        fake.with(|s| s.polls.contains(&0))
    })
    .await;
    fake.queue("job_second", "ok.sh", &[]);
    let queued_at = Instant::now();
    let first = fake.wait_for_result("job_first", Duration::from_secs(10)).await;
    assert_eq!(first.outcome, RunOutcome::Success, "{}", agent.log());
    let second = fake.wait_for_result("job_second", Duration::from_secs(10)).await;
    assert_eq!(second.outcome, RunOutcome::Success);
    assert!(
        queued_at.elapsed() < Duration::from_secs(8),
        "{:?}",
        queued_at.elapsed()
    );
}

#[actix_rt::test]
async fn a_script_added_to_the_manifest_becomes_runnable_without_restart() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("a.sh", "#!/bin/sh\necho a\n")]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    wait_until("registration", Duration::from_secs(10), || {
        fake.with(|s| !s.registrations.is_empty())
    })
    .await;
    scripts.add("b.sh", "#!/bin/sh\necho b\n");
    scripts.write_manifest(&["a.sh", "b.sh"]);
    wait_until("heartbeat with b.sh", Duration::from_secs(10), || {
        fake.with(|s| {
            s.heartbeats.iter().any(|beat| {
                beat["scripts"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|entry| entry["name"] == "b.sh"))
            })
        })
    })
    .await;
    fake.queue("job_b", "b.sh", &[]);
    let report = fake.wait_for_result("job_b", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
    assert_eq!(report.stdout, "b\n");
}

#[actix_rt::test]
async fn keeps_retrying_while_the_orchestrator_is_down() {
    // Nothing listens on this port: the agent must stay up and keep trying.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let scripts = Scripts::new(&[("ok.sh", "#!/bin/sh\necho ok\n")]);
    let fake = Fake {
        state: Arc::new(Mutex::new(FakeState::default())),
        url: format!("http://127.0.0.1:{port}"),
    };
    let mut agent = AgentProcess::spawn(&fake, &scripts, &[]);
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    assert!(
        agent.child.try_wait().expect("try_wait").is_none(),
        "agent exited: {}",
        agent.log()
    );
    let health: serde_json::Value = awc::Client::default()
        .get(format!("{}/health", agent.health_url))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["orchestrator"], "unreachable");
    assert!(agent.log().contains("registration failed"), "{}", agent.log());
}

#[actix_rt::test]
async fn sigterm_stops_the_agent_cleanly() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("ok.sh", "#!/bin/sh\necho ok\n")]);
    let mut agent = AgentProcess::spawn(&fake, &scripts, &[]);
    wait_until("registration", Duration::from_secs(10), || {
        fake.with(|s| !s.registrations.is_empty())
    })
    .await;
    // SAFETY: sends SIGTERM to the child we spawned.
    unsafe {
        libc::kill(agent.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = agent.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "agent did not stop: {}", agent.log());
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}: {}", agent.log());
}

#[test]
fn configuration_errors_exit_non_zero_and_name_the_variable() {
    let base = [
        ("AGENT_NAME", "agent-1"),
        ("ORCHESTRATOR_URL", "http://127.0.0.1:1"),
        ("API_KEY", "sm_live_x"),
        ("AGENT_PORT", "0"),
        ("AGENT_BIND_HOST", "127.0.0.1"),
    ];
    let cases: [(&str, Option<&str>); 5] = [
        ("AGENT_NAME", None),
        ("ORCHESTRATOR_URL", Some("api.example.com")),
        ("API_KEY", Some("notakey_SECRETVALUE")),
        ("HEARTBEAT_INTERVAL", Some("soon")),
        ("MAX_CONCURRENT_JOBS", Some("0")),
    ];
    for (variable, value) in cases {
        let vars: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .filter(|(name, _)| *name != variable)
            .chain(value.map(|value| (variable, value)))
            .collect();
        let output = agent_command(&vars).output().expect("run agent");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(variable), "{variable}: {stderr}");
        assert!(!stderr.contains("SECRETVALUE"), "{stderr}");
    }
}

// ---------------------------------------------------------------- live output

/// Prints `tick N <ms since the epoch>` every `pause` seconds, `count` times, then `done`
/// on stderr.
fn ticker(count: u32, pause: &str) -> String {
    format!("#!/bin/sh\nfor i in $(seq {count}); do\n  echo \"tick $i $(date +%s%3N)\"\n  sleep {pause}\ndone\necho done >&2\n")
}

/// The chunks' data joined, asserting they arrived in order and contiguous from offset 0.
fn contiguous_text(chunks: &[ReceivedChunk]) -> String {
    let mut text = String::new();
    for received in chunks {
        assert_eq!(
            received.chunk.offset,
            text.len() as u64,
            "a gap or overlap: {chunks:#?}"
        );
        text.push_str(&received.chunk.data);
    }
    text
}

#[actix_rt::test]
async fn live_output_arrives_while_the_script_runs_and_before_the_result() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("ticker.sh", &ticker(5, "0.3"))]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    fake.queue("job_live", "ticker.sh", &[]);
    let report = fake.wait_for_result("job_live", Duration::from_secs(15)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{report:?}\n{}", agent.log());
    assert_eq!(report.stdout.lines().count(), 5, "{}", report.stdout);

    let chunks = fake.chunks_for("job_live");
    // Both pipes interleaved as written: the ticks, then stderr's last word.
    assert_eq!(contiguous_text(&chunks), format!("{}done\n", report.stdout));
    assert!(chunks
        .iter()
        .all(|received| (received.chunk.stream == OutputStream::Stderr) == (received.chunk.data == "done\n")));

    // Each line reached the orchestrator soon after the script printed it.
    let mut line_end = 0u64;
    for line in report.stdout.lines() {
        line_end += line.len() as u64 + 1;
        let printed_ms: i64 = line
            .rsplit(' ')
            .next()
            .and_then(|ms| ms.parse().ok())
            .expect("a timestamp");
        let carrier = chunks
            .iter()
            .find(|received| received.chunk.end() >= line_end)
            .expect("a chunk carrying the line");
        let latency = carrier.received_ms - printed_ms;
        assert!(latency <= 500, "{line:?} arrived after {latency} ms: {chunks:#?}");
    }

    // All of it before the result: a follower sees the output whole, then the end.
    let last_request = chunks.iter().map(|received| received.request).max().expect("chunks");
    let requests_before_result = fake.with(|s| s.output_requests_before_result["job_live"]);
    assert!(last_request <= requests_before_result, "a chunk came after the result");
}

#[actix_rt::test]
async fn a_quick_job_sends_no_live_output() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("quick.sh", "#!/bin/sh\necho hi\necho there >&2\n")]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    fake.queue("job_quick", "quick.sh", &[]);
    let report = fake.wait_for_result("job_quick", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
    assert_eq!((report.stdout.as_str(), report.stderr.as_str()), ("hi\n", "there\n"));
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.with(|s| s.output_requests),
        0,
        "{:#?}",
        fake.chunks_for("job_quick")
    );
}

#[actix_rt::test]
async fn live_output_can_be_switched_off() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("ticker.sh", &ticker(3, "0.3"))]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[("LIVE_OUTPUT", "false")]);
    fake.queue("job_quiet", "ticker.sh", &[]);
    let report = fake.wait_for_result("job_quiet", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
    assert_eq!(report.stdout.lines().count(), 3);
    assert_eq!(fake.with(|s| s.output_requests), 0);
}

#[actix_rt::test]
async fn secret_params_never_leave_the_agent() {
    const SECRET: &str = "tok-SECRET1";
    let fake = Fake::start();
    // The secret whole, then split over two writes with a pause between (two pipe reads,
    // each streamed on its own), then on stderr.
    let scripts = Scripts::new(&[(
        "leak.sh",
        "#!/bin/sh\necho \"start $password in $region\"\nsleep 0.3\nprintf 'split=%s' \"${password%????}\"\nsleep 0.4\nprintf '%s\\n' \"${password#???????}\"\necho \"stderr $password\" >&2\nsleep 0.2\n",
    )]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    fake.queue_job(JobAssignment {
        job_id: "job_secret".into(),
        script: "leak.sh".into(),
        params: [("password", SECRET), ("region", "eu-west-1")]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        timeout_secs: None,
        secret_params: vec!["password".into(), "not_a_param".into()],
    });
    let report = fake.wait_for_result("job_secret", Duration::from_secs(10)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{report:?}\n{}", agent.log());
    assert_eq!(report.stdout, "start ******** in eu-west-1\nsplit=********\n");
    assert_eq!(report.stderr, "stderr ********\n");

    let chunks = fake.chunks_for("job_secret");
    assert!(chunks.len() >= 2, "the job streamed: {chunks:#?}");
    let streamed = contiguous_text(&chunks);
    assert_eq!(
        streamed,
        "start ******** in eu-west-1\nsplit=********\nstderr ********\n"
    );
    // Not even the first half of the split secret went out ahead of the rest.
    assert!(chunks.iter().all(|received| !received.chunk.data.contains("tok-SEC")));
    assert!(streamed.contains(SECRET_MASK));
    assert!(!agent.log().contains("SECRET1"), "{}", agent.log());
}

#[actix_rt::test]
async fn a_huge_output_is_captured_head_and_tail() {
    const BODY: usize = 3 * 1024 * 1024;
    let fake = Fake::start();
    let scripts = Scripts::new(&[(
        "huge.sh",
        &format!("#!/bin/sh\necho START\nhead -c {BODY} /dev/zero | tr '\\0' x\necho\necho END\n"),
    )]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    fake.queue("job_huge", "huge.sh", &[]);
    let report = fake.wait_for_result("job_huge", Duration::from_secs(20)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
    assert!(report.stdout_truncated);
    let limit = 1024 * 1024;
    let total = "START\n".len() + BODY + "\nEND\n".len();
    let marker = format!("\n[scriptmesh-agent: {} bytes cut]\n", total - limit);
    let (head, tail) = report.stdout.split_once(&marker).expect("the cut marker");
    assert_eq!((head.len(), tail.len()), (limit / 2, limit / 2));
    assert!(head.starts_with("START\nxxx") && head[6..].bytes().all(|b| b == b'x'));
    assert!(tail.ends_with("xxx\nEND\n"));

    // Whatever was streamed live is in order and bounded (the oldest may have been dropped).
    let chunks = fake.chunks_for("job_huge");
    for pair in chunks.windows(2) {
        assert!(pair[1].chunk.offset >= pair[0].chunk.end(), "chunks overlap");
    }
    assert!(chunks.iter().all(|received| received.chunk.data.len() <= 1024 * 1024));
}

#[actix_rt::test]
async fn a_failing_output_endpoint_blocks_neither_script_nor_result() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("ticker.sh", &ticker(6, "0.25"))]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);

    // Down for the whole run: the result goes anyway, at most ~3 s after the script ended.
    fake.with(|s| s.output_status = 503);
    fake.queue("job_down", "ticker.sh", &[]);
    let report = fake.wait_for_result("job_down", Duration::from_secs(15)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
    assert_eq!(report.stdout.lines().count(), 6);
    assert!(
        report.duration_ms < 6000,
        "the script was slowed down: {} ms",
        report.duration_ms
    );
    let delay = wall_clock_ms() - report.completed_at_ms;
    assert!(delay < 4500, "the result waited {delay} ms for live output");
    assert!(fake.with(|s| s.output_requests) >= 2, "sends were retried");
    assert!(fake.chunks_for("job_down").is_empty());

    // Down for a while: the output kept meanwhile is sent once it is back, nothing lost.
    let requests_so_far = fake.with(|s| s.output_requests);
    fake.queue("job_flaky", "ticker.sh", &[]);
    wait_until("two refused sends", Duration::from_secs(10), || {
        fake.with(|s| s.output_requests >= requests_so_far + 2)
    })
    .await;
    fake.with(|s| s.output_status = 200);
    let report = fake.wait_for_result("job_flaky", Duration::from_secs(15)).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{}", agent.log());
    assert!(
        report.duration_ms < 6000,
        "the script was slowed down: {} ms",
        report.duration_ms
    );
    let chunks = fake.chunks_for("job_flaky");
    assert_eq!(contiguous_text(&chunks), format!("{}done\n", report.stdout));
}

#[actix_rt::test]
async fn stop_in_the_ack_ends_streaming_for_that_job_only() {
    let fake = Fake::start();
    let scripts = Scripts::new(&[("ticker.sh", &ticker(5, "0.3"))]);
    let agent = AgentProcess::spawn(&fake, &scripts, &[]);
    fake.with(|s| s.output_stop = vec!["job_unwanted".into()]);
    fake.queue("job_unwanted", "ticker.sh", &[]);
    fake.queue("job_wanted", "ticker.sh", &[]);
    let unwanted = fake.wait_for_result("job_unwanted", Duration::from_secs(15)).await;
    let wanted = fake.wait_for_result("job_wanted", Duration::from_secs(15)).await;
    assert_eq!(unwanted.outcome, RunOutcome::Success, "{}", agent.log());
    // The result still has everything.
    assert_eq!(unwanted.stdout.lines().count(), 5);

    let stopped = fake.chunks_for("job_unwanted");
    assert!(!stopped.is_empty(), "it streamed until told to stop");
    let first_request = stopped[0].request;
    assert!(
        stopped.iter().all(|received| received.request == first_request),
        "chunks after the stop: {stopped:#?}"
    );
    assert!(contiguous_text(&stopped).len() < unwanted.stdout.len());

    let kept = fake.chunks_for("job_wanted");
    assert_eq!(contiguous_text(&kept), format!("{}done\n", wanted.stdout));
    let requests: std::collections::BTreeSet<usize> = kept.iter().map(|received| received.request).collect();
    assert!(requests.len() >= 3, "streamed all along: {kept:#?}");
}
