//! Benchmark of the dispatch path: an in-process orchestrator on 127.0.0.1 and
//! protocol-level simulated agents (register, long-poll with an implicit start, batched
//! results, as the real agent does — no scripts run).
//!
//! Prints, per backend: trigger -> agent receives the job (p50/p99) with 1 and with 100
//! agents; sustained jobs per second end to end; fan-out to 1,000 agents until every agent
//! holds its job. With `--replicas N` (PostgreSQL; N orchestrators in this process on one
//! database) also: trigger through one replica -> agent polling another holds the job,
//! and the synchronous trigger's round trip through a replica other than the agent's,
//! each beside the same figure on one replica.
//!
//!     cargo run --release -p scriptmesh-bench -- [--postgres postgres://postgres@127.0.0.1:5432/postgres]
//!         [--jobs N] [--fanout-agents N] [--replicas N] [--check bench/baseline.json]
//!
//! `--check` is CI's regression check instead (see [`regression`]).

/// The orchestrator's own allocator (see orchestrator/src/main.rs), so that the in-process
/// orchestrator measures as the shipped binary runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::future::join_all;
use orchestrator::db;
use serde_json::{json, Value};
use shared_protocol::protocol::{
    BatchedResult, JobResultReport, PollResponse, RegisterAgentRequest, ResultBatch, RunOutcome,
};
use shared_protocol::ManifestEntry;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

struct Options {
    postgres: Option<String>,
    /// Leave SQLite out (with --postgres).
    skip_sqlite: bool,
    /// Which scenarios run: latency, replicas, throughput, fanout (all by default).
    only: Option<Vec<String>>,
    replicas: usize,
    latency_jobs: usize,
    throughput_jobs: usize,
    fanout_agents: usize,
    /// `--check FILE`: the regression check (see [`regression`]).
    check: Option<String>,
    /// Agents of the idle scenario (`--only idle`; see [`idle`]).
    idle_agents: usize,
}

fn parse_args() -> Options {
    let mut options = Options {
        postgres: None,
        skip_sqlite: false,
        only: None,
        replicas: 1,
        latency_jobs: 1000,
        throughput_jobs: 10_000,
        fanout_agents: 1000,
        check: None,
        idle_agents: 10_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--postgres" => options.postgres = Some(value()),
            "--skip-sqlite" => options.skip_sqlite = true,
            "--only" => options.only = Some(value().split(',').map(str::to_owned).collect()),
            "--replicas" => {
                options.replicas = value().parse().expect("--replicas takes a number");
                assert!(options.replicas >= 1, "--replicas takes 1 or more");
            }
            "--jobs" => options.latency_jobs = value().parse().expect("--jobs takes a number"),
            "--throughput-jobs" => options.throughput_jobs = value().parse().expect("--throughput-jobs takes a number"),
            "--fanout-agents" => options.fanout_agents = value().parse().expect("--fanout-agents takes a number"),
            "--check" => options.check = Some(value()),
            "--idle-agents" => options.idle_agents = value().parse().expect("--idle-agents takes a number"),
            "-h" | "--help" => {
                println!(
                    "bench [--postgres ADMIN_URL] [--skip-sqlite] [--only latency,replicas,throughput,fanout,idle] [--idle-agents N] [--replicas N] [--jobs N] [--throughput-jobs N] [--fanout-agents N] [--check BASELINE.json]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

fn main() {
    let options = parse_args();
    let dir = std::env::temp_dir().join(format!("scriptmesh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut targets = Vec::new();
    if !(options.skip_sqlite && options.postgres.is_some()) {
        targets.push((
            "sqlite".to_owned(),
            format!("sqlite://{}/bench.db", dir.display()),
            None,
        ));
    }
    if let Some(admin) = &options.postgres {
        let name = format!("sm_bench_{}", std::process::id());
        let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(admin);
        targets.push((
            "postgres".to_owned(),
            format!("{base}/{name}"),
            Some((admin.clone(), name)),
        ));
    }
    let baseline = options.check.as_deref().map(regression::Baseline::read);
    let mut failures = Vec::new();
    for (label, url, pg) in targets {
        if let Some((admin, name)) = &pg {
            admin_sql(admin, &format!("CREATE DATABASE {name}"));
        }
        println!("== {label} ==");
        match &baseline {
            Some(baseline) => failures.extend(regression::check(&label, &url, &options, baseline)),
            None => {
                let only = options.only.clone().unwrap_or_default();
                if only.is_empty() || only.iter().any(|s| s != "idle") {
                    run_backend(&url, &options);
                }
                // Opt-in: it holds 10,000 connections for a few minutes, against its own
                // database (SQLite serves one orchestrator process per file).
                if only.iter().any(|s| s == "idle") {
                    idle::run(&url.replace("/bench.db", "/idle.db"), options.idle_agents);
                }
            }
        }
        if let Some((admin, name)) = &pg {
            admin_sql(admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("REGRESSION: {failure}");
        }
        std::process::exit(1);
    }
}

/// The regression check CI runs: sustained throughput as a ratio to what the same
/// database does on the same machine in the same run, so a slower or busier machine moves
/// both figures and the ratio stays. The calibration is the durable commit rate: 16
/// connections of the orchestrator's own pool each inserting one row per transaction.
/// The check fails when the ratio falls below half the committed baseline's.
mod regression {
    use super::*;

    /// `bench/baseline.json`: `{"sqlite": ratio, "postgres": ratio}`.
    pub struct Baseline(HashMap<String, f64>);

    impl Baseline {
        pub fn read(path: &str) -> Baseline {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            Baseline(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}")))
        }
    }

    const CALIBRATION: Duration = Duration::from_secs(3);
    const WRITERS: usize = 16;

    /// Durable commits per second through a pool like the orchestrator's.
    pub async fn commits_per_second(database_url: &str) -> f64 {
        let db = db::Db::connect(database_url, WRITERS).await.expect("connect");
        let create = "CREATE TABLE IF NOT EXISTS bench_calibration (note TEXT)";
        let insert = "INSERT INTO bench_calibration (note) VALUES ('calibration')";
        let run = |sql: &'static str| {
            let db = db.clone();
            async move {
                let result: orchestrator::error::Result<usize> = async {
                    Ok(orchestrator::with_conn!(&db, |conn| diesel::sql_query(sql)
                        .execute(conn)
                        .await?))
                }
                .await;
                result.expect("calibration SQL")
            }
        };
        run(create).await;
        let started = Instant::now();
        let writers = (0..WRITERS).map(|_| async {
            let mut commits = 0usize;
            while started.elapsed() < CALIBRATION {
                run(insert).await;
                commits += 1;
            }
            commits
        });
        let commits: usize = join_all(writers).await.into_iter().sum();
        commits as f64 / started.elapsed().as_secs_f64()
    }

    /// Measures one backend; returns what failed.
    pub fn check(label: &str, database_url: &str, options: &Options, baseline: &Baseline) -> Option<String> {
        let commits = actix_rt::System::new().block_on(commits_per_second(database_url));
        let first = orchestrator_config(database_url, free_port());
        let key = actix_rt::System::new().block_on(create_key(&first));
        let bases = vec![start_orchestrator(first)];
        let jobs = actix_rt::System::new()
            .block_on(async move { Bench { bases, key }.throughput(100, options.throughput_jobs).await });
        let ratio = jobs / commits;
        let Some(&expected) = baseline.0.get(label) else {
            return Some(format!("{label}: no baseline ratio"));
        };
        let verdict = ratio >= expected / 2.0;
        println!(
            "regression check: {jobs:.0} jobs/s over {commits:.0} commits/s = {ratio:.3} \
             (baseline {expected:.3}; fails below {:.3}): {}",
            expected / 2.0,
            if verdict { "ok" } else { "REGRESSED" }
        );
        (!verdict).then(|| format!("{label}: throughput ratio {ratio:.3} is below half the baseline's {expected:.3}"))
    }
}

fn admin_sql(admin_url: &str, sql: &str) {
    let (admin_url, sql) = (admin_url.to_owned(), sql.to_owned());
    actix_rt::System::new().block_on(async move {
        let mut conn = AsyncPgConnection::establish(&admin_url)
            .await
            .expect("connect to PostgreSQL");
        diesel::sql_query(sql).execute(&mut conn).await.expect("admin SQL");
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn orchestrator_config(database_url: &str, port: u16) -> orchestrator::config::Config {
    let vars: HashMap<&str, String> = HashMap::from([
        ("BIND_ADDR", format!("127.0.0.1:{port}")),
        ("DATABASE_URL", database_url.to_owned()),
        ("JWT_SECRET", "bench-secret-bench-secret-bench".to_owned()),
        ("LOG_FORMAT", "text".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
        ("DATABASE_POOL_SIZE", std::env::var("BENCH_POOL").unwrap_or("16".into())),
    ]);
    orchestrator::config::Config::from_lookup(|name| vars.get(name).cloned()).expect("config")
}

/// Starts an orchestrator on its own thread; returns its base URL once it answers.
fn start_orchestrator(config: orchestrator::config::Config) -> String {
    let base = format!("http://{}", config.bind_addr);
    std::thread::spawn(move || {
        if let Err(error) = orchestrator::server::run(config) {
            eprintln!("orchestrator stopped: {error}");
        }
    });
    wait_until_up(&base);
    base
}

fn run_backend(database_url: &str, options: &Options) {
    let first = orchestrator_config(database_url, free_port());
    // The key is written (and the schema migrated) before the server starts.
    let key = actix_rt::System::new().block_on(create_key(&first));
    let replicas = if database_url.starts_with("sqlite") {
        1
    } else {
        options.replicas
    };
    let mut bases = vec![start_orchestrator(first)];
    for _ in 1..replicas {
        bases.push(start_orchestrator(orchestrator_config(database_url, free_port())));
    }

    actix_rt::System::new().block_on(async move {
        let bench = Bench { bases, key };
        let runs = |scenario: &str| {
            options
                .only
                .as_ref()
                .is_none_or(|only| only.iter().any(|s| s == scenario))
        };
        if runs("latency") {
            bench.latency(1, options.latency_jobs, 0, 0).await;
            bench.latency(100, options.latency_jobs, 0, 0).await;
        }
        if bench.bases.len() > 1 && runs("replicas") {
            bench.latency(1, options.latency_jobs, 0, 1).await;
            bench.latency(100, options.latency_jobs, 0, 1).await;
            bench.sync_round_trip(options.latency_jobs, 1, 1).await;
            bench.sync_round_trip(options.latency_jobs, 0, 1).await;
        }
        if runs("throughput") {
            bench.throughput(100, options.throughput_jobs).await;
        }
        if runs("fanout") {
            bench.fan_out(options.fanout_agents).await;
        }
    });
    if options.replicas > 1 && replicas == 1 {
        println!("(--replicas applies to PostgreSQL: SQLite serves one orchestrator process)");
    }
}

/// A verified account and an API key, made by the orchestrator's own `bootstrap`.
async fn create_key(config: &orchestrator::config::Config) -> String {
    let email = format!("bench{}@example.com", db::now_ms());
    orchestrator::bootstrap::bootstrap(config, &email)
        .await
        .expect("bootstrap")
        .api_key
}

fn wait_until_up(base: &str) {
    let url = format!("{base}/health");
    for _ in 0..200 {
        let up = actix_rt::System::new()
            .block_on(async { client().get(&url).send().await.is_ok_and(|r| r.status().is_success()) });
        if up {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("orchestrator did not come up");
}

fn client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(0).timeout(Duration::from_secs(10)))
        .timeout(Duration::from_secs(60))
        .finish()
}

struct Bench {
    /// The replicas' base URLs (one without --replicas).
    bases: Vec<String>,
    key: String,
}

/// What a simulated agent tells the bench: job id and when it was received.
type Received = (String, Instant);

impl Bench {
    async fn post(&self, client: &awc::Client, path: &str, body: &Value) -> (u16, Value) {
        self.post_to(0, client, path, body).await
    }

    /// POST through replica `replica`.
    async fn post_to(&self, replica: usize, client: &awc::Client, path: &str, body: &Value) -> (u16, Value) {
        let mut response = client
            .post(format!("{}{path}", self.bases[replica]))
            .bearer_auth(&self.key)
            .send_json(body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let body = response.json::<Value>().limit(64 << 20).await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Starts `count` simulated agents named `{prefix}-{i}`, tagged `bench`, each polling
    /// replica `replica` with `capacity` slots; every job they get is started and reported
    /// at once.
    async fn start_agents(
        &self,
        prefix: &str,
        count: usize,
        capacity: u32,
        replica: usize,
    ) -> (mpsc::UnboundedReceiver<Received>, Rc<RefCell<bool>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Rc::new(RefCell::new(false));
        let registrations = (0..count).map(|i| {
            let name = format!("{prefix}-{i}");
            let client = client();
            async move {
                let request = RegisterAgentRequest {
                    agent_name: name.clone(),
                    tags: vec!["bench".into(), prefix.to_owned()],
                    scripts: Some(vec![ManifestEntry {
                        name: "noop.sh".into(),
                        path: "noop.sh".into(),
                        description: String::new(),
                    }]),
                    heartbeat_interval: Some(600),
                    running_jobs: Some(Vec::new()),
                    ..Default::default()
                };
                let (status, _) = self
                    .post_to(
                        replica,
                        &client,
                        "/register-agent",
                        &serde_json::to_value(request).unwrap_or_default(),
                    )
                    .await;
                assert_eq!(status, 200, "register {name}");
                name
            }
        });
        for name in join_all(registrations).await {
            let (tx, stop, base, key) = (tx.clone(), stop.clone(), self.bases[replica].clone(), self.key.clone());
            actix_rt::spawn(async move { simulated_agent(base, key, name, capacity, tx, stop).await });
        }
        // Let every agent park its first poll.
        actix_rt::time::sleep(Duration::from_millis(300 + count as u64)).await;
        (rx, stop)
    }

    /// Triggers through replica `via` for agents polling replica `on`.
    async fn latency(&self, agents: usize, jobs: usize, via: usize, on: usize) {
        let prefix = format!("lat{agents}-{via}-{on}");
        let (mut received, stop) = self.start_agents(&prefix, agents, 1, on).await;
        let client = client();
        let mut samples = Vec::with_capacity(jobs);
        for i in 0..jobs {
            let agent = format!("{prefix}-{}", i % agents);
            let sent = Instant::now();
            let (status, body) = self
                .post_to(
                    via,
                    &client,
                    "/trigger-script",
                    &json!({"agent": agent, "run_script": "noop.sh", "async_exec": true}),
                )
                .await;
            assert_eq!(status, 202, "trigger: {body}");
            let job_id = body["job_id"].as_str().unwrap_or_default().to_owned();
            loop {
                let (id, at) = received.recv().await.expect("agents alive");
                if id == job_id {
                    samples.push(at.duration_since(sent));
                    break;
                }
            }
            // Give the agent time to report and park its next poll (not measured).
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        *stop.borrow_mut() = true;
        samples.sort();
        println!(
            "trigger -> agent receives job, {agents:>3} agent(s), {jobs} jobs{}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            replicas_label(self.bases.len(), via, on),
            ms(percentile(&samples, 0.50)),
            ms(percentile(&samples, 0.99)),
            ms(*samples.last().unwrap_or(&Duration::ZERO)),
        );
    }

    /// `async_exec: false` through replica `via` for an agent polling replica `on`: from
    /// the request until the answer with the result.
    async fn sync_round_trip(&self, jobs: usize, via: usize, on: usize) {
        let prefix = format!("sync-{via}-{on}");
        let (_received, stop) = self.start_agents(&prefix, 1, 1, on).await;
        let client = client();
        let mut samples = Vec::with_capacity(jobs);
        for _ in 0..jobs {
            let sent = Instant::now();
            let (status, body) = self
                .post_to(
                    via,
                    &client,
                    "/trigger-script",
                    &json!({"agent": format!("{prefix}-0"), "run_script": "noop.sh", "async_exec": false}),
                )
                .await;
            assert_eq!(status, 200, "synchronous trigger: {body}");
            assert_eq!(body["status"], "success", "synchronous trigger: {body}");
            samples.push(sent.elapsed());
        }
        *stop.borrow_mut() = true;
        samples.sort();
        println!(
            "synchronous trigger round trip, {jobs} jobs{}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            replicas_label(self.bases.len(), via, on),
            ms(percentile(&samples, 0.50)),
            ms(percentile(&samples, 0.99)),
            ms(*samples.last().unwrap_or(&Duration::ZERO)),
        );
    }

    /// Sustained jobs per second, printed with the CPU it took.
    async fn throughput(&self, agents: usize, jobs: usize) -> f64 {
        let prefix = "tput";
        let (mut received, stop) = self.start_agents(prefix, agents, 8, 0).await;
        let cpu_before = CpuTimes::now();
        let started = Instant::now();
        let triggerers = 16;
        let per = jobs / triggerers;
        let tasks = (0..triggerers).map(|t| {
            let client = client();
            async move {
                for i in 0..per {
                    let agent = format!("{prefix}-{}", (t * per + i) % agents);
                    let (status, body) = self
                        .post(
                            &client,
                            "/trigger-script",
                            &json!({"agent": agent, "run_script": "noop.sh"}),
                        )
                        .await;
                    assert_eq!(status, 202, "trigger: {body}");
                }
            }
        });
        let triggering = join_all(tasks);
        let total = per * triggerers;
        let receiving = async {
            for _ in 0..total {
                received.recv().await.expect("agents alive");
            }
        };
        futures_util::join!(triggering, receiving);
        // Results are reported right after receipt; give the last ones a moment to land.
        let elapsed = started.elapsed();
        *stop.borrow_mut() = true;
        let (process, postgres) = CpuTimes::now().since(&cpu_before);
        println!(
            "sustained: {total} jobs triggered and dispatched to {agents} agents in {:.2} s = {:.0} jobs/s \
             (CPU per job: {:.0} µs in this process (orchestrator, agents, clients), {:.0} µs in PostgreSQL)",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64(),
            process * 1e6 / total as f64,
            postgres * 1e6 / total as f64,
        );
        total as f64 / elapsed.as_secs_f64()
    }

    async fn fan_out(&self, agents: usize) {
        let prefix = "fan";
        let (mut received, stop) = self.start_agents(prefix, agents, 1, 0).await;
        let client = client();
        let started = Instant::now();
        let (status, body) = self
            .post(
                &client,
                "/fan-out",
                &json!({"run_script": "noop.sh", "tags": [prefix], "only_online": true}),
            )
            .await;
        let created = started.elapsed();
        assert_eq!(status, 202, "fan-out: {body}");
        let expected = body["jobs"].as_array().map(Vec::len).unwrap_or_default();
        assert_eq!(expected, agents, "every agent gets a job");
        let mut last = started;
        for _ in 0..expected {
            last = received.recv().await.expect("agents alive").1;
        }
        *stop.borrow_mut() = true;
        println!(
            "fan-out to {agents} agents: {:.1} ms until the API answered, {:.1} ms until every agent held its job",
            ms(created),
            ms(last.duration_since(started))
        );
    }
}

/// A protocol-level agent that behaves as the real one does with instant scripts: polls
/// with an implicit start, "runs" what it gets at once, and reports the results of one
/// answer together (as the agent's reporter batches results that finish together).
async fn simulated_agent(
    base: String,
    key: String,
    name: String,
    capacity: u32,
    tx: mpsc::UnboundedSender<Received>,
    stop: Rc<RefCell<bool>>,
) {
    let client = client();
    while !*stop.borrow() {
        let url = format!("{base}/agent/poll?agent={name}&capacity={capacity}&wait=2&start=implicit");
        let Ok(mut response) = client.get(&url).bearer_auth(&key).send().await else {
            continue;
        };
        let Ok(poll) = response.json::<PollResponse>().await else {
            continue;
        };
        let now = Instant::now();
        for job in &poll.jobs {
            let _ = tx.send((job.job_id.clone(), now));
        }
        if poll.jobs.is_empty() {
            continue;
        }
        let at = db::now_ms();
        let batch = ResultBatch {
            agent_name: name.clone(),
            results: poll
                .jobs
                .into_iter()
                .map(|job| BatchedResult {
                    job_id: job.job_id,
                    report: JobResultReport {
                        agent_name: name.clone(),
                        outcome: RunOutcome::Success,
                        exit_code: Some(0),
                        stdout: String::new(),
                        stderr: String::new(),
                        stdout_truncated: false,
                        stderr_truncated: false,
                        duration_ms: 0,
                        started_at_ms: at,
                        completed_at_ms: at,
                        reason: None,
                    },
                })
                .collect(),
        };
        let _ = client
            .post(format!("{base}/agent/results"))
            .bearer_auth(&key)
            .send_json(&batch)
            .await;
    }
}

/// ", via replica 0 for agents on replica 1", or nothing with one replica.
fn replicas_label(replicas: usize, via: usize, on: usize) -> String {
    if replicas == 1 {
        String::new()
    } else if via == on {
        format!(" (same replica, {replicas} replicas)")
    } else {
        format!(" (through replica {via}, agents on replica {on})")
    }
}

/// CPU time used so far by this process and by the PostgreSQL server's processes on this
/// machine (Linux /proc): what a run costs, whatever else the machine is doing.
struct CpuTimes {
    process_secs: f64,
    /// By pid, so that backends that end in between are not counted negative.
    postgres: HashMap<u32, f64>,
}

/// (command name, utime + stime in seconds) from /proc/PID/stat.
fn process_cpu(stat_path: &std::path::Path) -> Option<(String, f64)> {
    // Clock ticks are 100 per second on Linux (sysconf(_SC_CLK_TCK)).
    const TICK: f64 = 0.01;
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 counting from the state.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((name, ticks * TICK))
}

impl CpuTimes {
    fn now() -> CpuTimes {
        let process_secs = process_cpu(std::path::Path::new("/proc/self/stat")).map_or(0.0, |(_, secs)| secs);
        let mut postgres = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((name, secs)) = process_cpu(&entry.path().join("stat")) {
                if name == "postgres" {
                    postgres.insert(pid, secs);
                }
            }
        }
        CpuTimes { process_secs, postgres }
    }

    /// (this process, PostgreSQL) seconds since `before`.
    fn since(&self, before: &CpuTimes) -> (f64, f64) {
        let postgres = self
            .postgres
            .iter()
            .map(|(pid, secs)| secs - before.postgres.get(pid).copied().unwrap_or(0.0))
            .sum();
        (self.process_secs - before.process_secs, postgres)
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Idle fleets: `N` agents, each with its own API key, that long-poll (50 s, the agent's
/// default) and heartbeat once a minute, as real idle agents do, against an orchestrator in
/// its own process (the release binary beside this one), so that its memory and CPU are its
/// own. Prints the orchestrator's RSS per parked agent and the CPU that a minute of
/// heartbeats and re-polls costs.
mod idle {
    use super::*;
    use agent::poller::BeatSchedule;
    use futures_util::future::Either;
    use shared_protocol::protocol::HeartbeatRequest;

    const POLL_WAIT_SECS: u64 = 50;
    const HEARTBEAT_SECS: u64 = 60;

    fn rss_kib(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn cpu_secs(pid: u32) -> f64 {
        process_cpu(Path::new(&format!("/proc/{pid}/stat"))).map_or(0.0, |(_, secs)| secs)
    }

    use std::path::Path;

    pub fn run(database_url: &str, agents: usize) {
        let port = free_port();
        let config = orchestrator_config(database_url, port);
        // One key per agent, as the README advises: each request's key lookup is its own.
        let email = format!("idle{}@example.com", db::now_ms());
        let names: Vec<String> = (0..agents).map(|i| format!("idle-{i}")).collect();
        let keys = actix_rt::System::new()
            .block_on(orchestrator::bootstrap::bootstrap_fleet_keys(&config, &email, &names))
            .expect("agent keys");
        let binary = std::env::current_exe()
            .expect("current exe")
            .with_file_name("scriptmesh-orchestrator");
        let mut child = std::process::Command::new(&binary)
            .arg("serve")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("JWT_SECRET", "bench-secret-bench-secret-bench")
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "warn")
            .env("MAX_POLL_WAIT_SECS", POLL_WAIT_SECS.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (build it: cargo build --release -p orchestrator)",
                    binary.display()
                )
            });
        let base = format!("http://127.0.0.1:{port}");
        wait_until_up(&base);
        let pid = child.id();
        let before = rss_kib(pid);
        actix_rt::System::new().block_on(async move {
            let started = Instant::now();
            let polls = Rc::new(RefCell::new(0usize));
            // Registration in waves, as a fleet coming up would.
            for wave in (0..agents).collect::<Vec<_>>().chunks(500) {
                let registrations = wave.iter().map(|&i| {
                    let (base, key, polls) = (base.clone(), keys[i].clone(), polls.clone());
                    async move {
                        let client = client();
                        let name = format!("idle-{i}");
                        let request = RegisterAgentRequest {
                            agent_name: name.clone(),
                            tags: vec!["idle".into()],
                            scripts: Some(Vec::new()),
                            heartbeat_interval: Some(HEARTBEAT_SECS),
                            running_jobs: Some(Vec::new()),
                            ..Default::default()
                        };
                        let response = client
                            .post(format!("{base}/register-agent"))
                            .bearer_auth(&key)
                            .send_json(&request)
                            .await
                            .expect("register");
                        assert_eq!(response.status().as_u16(), 200, "register {name}");
                        actix_rt::spawn(idle_agent(base, key, name, i, polls));
                    }
                });
                join_all(registrations).await;
            }
            let registered = started.elapsed();
            // Every agent parks its poll.
            while *polls.borrow() < agents {
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
            actix_rt::time::sleep(Duration::from_secs(2)).await;
            let parked = rss_kib(pid);
            println!(
                "idle: {agents} agents registered in {:.1} s; orchestrator RSS {:.1} MiB before, {:.1} MiB with every poll parked = {:.1} KiB per parked agent",
                registered.as_secs_f64(),
                before as f64 / 1024.0,
                parked as f64 / 1024.0,
                (parked.saturating_sub(before)) as f64 / agents as f64
            );
            // Steady state: a minute more, so that every agent has sent its first
            // heartbeat (and opened what connections it keeps) before the measured one.
            actix_rt::time::sleep(Duration::from_secs(HEARTBEAT_SECS)).await;
            // A full minute: every agent heartbeats once and re-polls once or twice.
            let cpu_before = cpu_secs(pid);
            let window = Instant::now();
            actix_rt::time::sleep(Duration::from_secs(HEARTBEAT_SECS)).await;
            let cpu = cpu_secs(pid) - cpu_before;
            let elapsed = window.elapsed().as_secs_f64();
            println!(
                "idle: {agents} agents, heartbeats every {HEARTBEAT_SECS} s and {POLL_WAIT_SECS} s polls: orchestrator CPU {:.2} s in {:.0} s = {:.1} % of one core; RSS {:.1} MiB",
                cpu,
                elapsed,
                cpu / elapsed * 100.0,
                rss_kib(pid) as f64 / 1024.0
            );
        });
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Polls (50 s, nothing comes) and heartbeats once a minute, the first at a spread
    /// offset, as the agent does: the heartbeat rides on the poll due when it is
    /// ([`BeatSchedule`]), on the one connection the agent keeps.
    async fn idle_agent(base: String, key: String, name: String, index: usize, polls: Rc<RefCell<usize>>) {
        let client = client();
        let interval = Duration::from_secs(HEARTBEAT_SECS);
        let offset = Duration::from_millis((index as u64 * 7919) % (HEARTBEAT_SECS * 1000));
        let now = Instant::now();
        let mut schedule = BeatSchedule::new(interval, now);
        // As if it had registered an interval before its first heartbeat, due in `offset`.
        schedule.registered(true, now.checked_sub(interval - offset).unwrap_or(now));
        let heartbeat = HeartbeatRequest {
            agent_name: name.clone(),
            scripts: Vec::new(),
            running_jobs: Vec::new(),
            heartbeat_interval: HEARTBEAT_SECS,
            version: None,
            held_jobs: Some(Vec::new()),
        };
        let mut counted = false;
        loop {
            let sent_at = Instant::now();
            let plan = schedule.plan(sent_at, Duration::from_secs(POLL_WAIT_SECS));
            let url = format!(
                "{base}/agent/poll?agent={name}&capacity=1&wait={}&start=implicit",
                plan.wait.as_secs()
            );
            let timeout = plan.wait + Duration::from_secs(30);
            let sent = if plan.beat {
                Either::Left(
                    client
                        .post(&url)
                        .bearer_auth(&key)
                        .timeout(timeout)
                        .send_json(&heartbeat),
                )
            } else {
                Either::Right(client.get(&url).bearer_auth(&key).timeout(timeout).send())
            };
            if !counted {
                // Counted once its first poll is on its way (it parks at once: no jobs).
                counted = true;
                *polls.borrow_mut() += 1;
            }
            match sent.await {
                Ok(mut response) => {
                    let _ = response.body().await;
                    if plan.beat && response.status().is_success() {
                        schedule.delivered(sent_at);
                    }
                }
                Err(_) => actix_rt::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}
