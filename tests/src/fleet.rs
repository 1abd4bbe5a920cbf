//! Helpers for the core-loop tests: one account with an agent API key on its own
//! orchestrator, agents that are started and seen online, triggers that assert the spec's
//! answer, and checks on the processes scripts leave behind.

use crate::agent::{AgentSpec, TestAgent, HEARTBEAT_INTERVAL_SECS};
use crate::app::{Session, TestApp, TestAppBuilder};
use crate::http::{ApiResponse, Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Long enough for anything a healthy run does (agents come online within a second or
/// two, short scripts finish within a few); a failure is reported at this deadline.
pub const FLEET_WAIT: Duration = Duration::from_secs(20);
/// How often job and agent states are re-read.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// An orchestrator with one verified, logged-in user and an API key for its agents.
pub struct Fleet {
    pub app: TestApp,
    pub session: Session,
    /// A `sm_live_` key of the user's tenant, for agents.
    pub key: String,
}

impl Fleet {
    /// A fresh orchestrator and account (`ops@example.com`).
    pub async fn start() -> Fleet {
        Fleet::on(TestApp::start().await).await
    }

    /// Like `start`, with orchestrator variables: `Fleet::start_with(TestApp::builder().env(..))`.
    pub async fn start_with(builder: TestAppBuilder) -> Fleet {
        Fleet::on(builder.start().await).await
    }

    /// A new account (and its tenant) on an orchestrator.
    pub async fn on(app: TestApp) -> Fleet {
        let session = app.register_and_login("ops@example.com").await;
        let key = app.create_api_key(&session, "fleet agents").await;
        Fleet { app, session, key }
    }

    /// The same user and key on another orchestrator (a replica on the same database).
    pub fn joined_by(&self, app: TestApp) -> Fleet {
        Fleet {
            app,
            session: self.session.clone(),
            key: self.key.clone(),
        }
    }

    /// The user's JWT, for the `token` argument of the HTTP shorthands.
    pub fn token(&self) -> Option<&str> {
        Some(&self.session.access_token)
    }

    /// An `AgentSpec` with this fleet's API key.
    pub fn spec(&self, name: &str) -> AgentSpec {
        AgentSpec::new(name, &self.key)
    }

    /// Starts a real agent and waits until `GET /agents` shows it online.
    pub async fn start_agent(&self, spec: AgentSpec) -> TestAgent {
        let name = spec.name.clone();
        let agent = self.app.start_agent(spec).await;
        self.wait_for_agent_status(&name, "online").await;
        agent
    }

    /// Waits until `GET /agents` shows the agent with this status; returns its entry.
    pub async fn wait_for_agent_status(&self, name: &str, status: &str) -> Value {
        self.app
            .wait_for_agent_status(&self.session.access_token, name, status, FLEET_WAIT)
            .await
    }

    /// `POST /trigger-script` with the user's JWT.
    pub async fn trigger(&self, body: &Value) -> ApiResponse {
        self.app
            .request(Method::POST, "/trigger-script")
            .bearer(self.token())
            .json(body)
            .send()
            .await
    }

    /// Triggers asynchronously, asserts the spec's answer (202, `status: pending`, a
    /// `job_` id) and returns the job id.
    pub async fn trigger_async(&self, agent: &str, script: &str, params: Value) -> String {
        let body = json!({"agent": agent, "run_script": script, "params": params, "async_exec": true});
        self.queue(&body).await
    }

    /// Sends this trigger body, asserts the spec's asynchronous answer and returns the id.
    pub async fn queue(&self, body: &Value) -> String {
        let response = self.trigger(body).await;
        assert_eq!(
            response.status,
            StatusCode::ACCEPTED,
            "trigger {body}: {}",
            response.text
        );
        assert_eq!(response.body["status"], "pending", "trigger {body}: {}", response.text);
        let id = response.body["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no job_id in {}", response.text))
            .to_owned();
        assert!(is_job_id(&id), "job ids look like job_<hex>, got {id:?}");
        id
    }

    /// `GET /jobs/{id}`; asserts 200.
    pub async fn job(&self, job_id: &str) -> Value {
        let (status, job) = self.app.get(&format!("/jobs/{job_id}"), self.token()).await;
        assert_eq!(status, StatusCode::OK, "GET /jobs/{job_id}: {job}");
        job
    }

    /// Waits until the job has a finished status; returns it.
    pub async fn finished_job(&self, job_id: &str) -> Value {
        self.finished_job_within(job_id, FLEET_WAIT).await
    }

    pub async fn finished_job_within(&self, job_id: &str, timeout: Duration) -> Value {
        self.app.wait_for_job(&self.session.access_token, job_id, timeout).await
    }

    /// Waits until `GET /jobs/{id}` shows this status; returns the job. Panics with the
    /// last state seen (a job that finished otherwise fails at once).
    pub async fn wait_for_job_status(&self, job_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + FLEET_WAIT;
        loop {
            let job = self.job(job_id).await;
            if job["status"] == status {
                return job;
            }
            let finished = crate::FINISHED_JOB_STATUSES.contains(&job["status"].as_str().unwrap_or_default());
            if finished || Instant::now() >= deadline {
                panic!("job {job_id} did not reach {status:?}; last seen: {job}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// `POST /jobs/{id}/cancel` with the user's JWT.
    pub async fn cancel(&self, job_id: &str) -> ApiResponse {
        self.app
            .request(Method::POST, &format!("/jobs/{job_id}/cancel"))
            .bearer(self.token())
            .send()
            .await
    }

    /// Writes a job row straight into the database, as if the orchestrator had queued it
    /// (for what the API refuses to queue). The id sorts after every id issued so far.
    pub async fn insert_pending_job(&self, agent: &str, script: &str) -> String {
        let id = new_job_id();
        let inserted = self
            .app
            .exec_sql(&format!(
                "INSERT INTO jobs (id, tenant_id, agent_name, script, params, status, created_at) \
                 VALUES ('{id}', '{}', '{agent}', '{script}', '{{}}', 'pending', {})",
                self.session.tenant_id,
                crate::now_ms()
            ))
            .await;
        assert_eq!(inserted, 1, "insert job {id}");
        id
    }
}

/// An agent process whose own stdin is a pipe that stays open (the harness gives agents
/// /dev/null), so a script that inherited it would wait on it forever. Killed on drop.
pub struct AgentWithOpenStdin {
    child: std::process::Child,
    /// Held open, never written to.
    _stdin: std::process::ChildStdin,
    _dir: tempfile::TempDir,
}

impl AgentWithOpenStdin {
    /// Starts the agent binary with one script (listed in its manifest) and waits until
    /// the orchestrator shows it online.
    pub async fn start(fleet: &Fleet, name: &str, script: &str, contents: &str) -> AgentWithOpenStdin {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let scripts = dir.path().join("scripts");
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&scripts).expect("create SCRIPTS_DIR");
        std::fs::create_dir_all(&spool).expect("create SPOOL_DIR");
        let script_path = scripts.join(script);
        std::fs::write(&script_path, contents).expect("write the script");
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let manifest = scripts.join("script_manifest.json");
        let entries = json!({"scripts": [{"name": script, "path": script, "description": ""}]});
        std::fs::write(&manifest, entries.to_string()).expect("write the manifest");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("create the log");
        let mut child = std::process::Command::new(crate::binary_path("sm-test-agent"))
            .env_clear()
            .envs(
                ["PATH", "HOME"]
                    .iter()
                    .filter_map(|v| std::env::var_os(v).map(|value| (v, value))),
            )
            .env("AGENT_NAME", name)
            .env("ORCHESTRATOR_URL", &fleet.app.url)
            .env("API_KEY", &fleet.key)
            .env("SCRIPTS_DIR", &scripts)
            .env("MANIFEST_PATH", &manifest)
            .env("SPOOL_DIR", &spool)
            .env("AGENT_PORT", "0")
            .env("AGENT_BIND_HOST", "127.0.0.1")
            .env("HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL_SECS)
            .env("POLL_WAIT_SECS", "5")
            .env("KILL_GRACE_SECS", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start the agent");
        let stdin = child.stdin.take().expect("stdin is piped");
        let agent = AgentWithOpenStdin {
            child,
            _stdin: stdin,
            _dir: dir,
        };
        fleet.wait_for_agent_status(name, "online").await;
        agent
    }
}

impl Drop for AgentWithOpenStdin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `job_` followed by hex digits, as the orchestrator issues them.
pub fn is_job_id(id: &str) -> bool {
    id.strip_prefix("job_")
        .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A job id of the orchestrator's shape (`job_` + 32 hex digits, time-ordered like a
/// UUIDv7) that sorts after the ids issued before this call.
pub fn new_job_id() -> String {
    let random: u128 = rand::random();
    format!(
        "job_{:012x}7{:019x}",
        crate::now_ms() as u64 & 0xffff_ffff_ffff,
        random & ((1u128 << 76) - 1)
    )
}

/// Whether no process with this pid is alive. A zombie counts as gone: it is dead and
/// only waits for its parent to collect the exit status.
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses and may contain
        // anything, so it is read after the last ')'.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Waits until a script has written a pid into `path`, and returns it.
pub async fn wait_for_pid_file(path: &Path) -> i32 {
    let deadline = Instant::now() + FLEET_WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Ok(pid) = text.trim().parse::<i32>() {
            return pid;
        }
        if Instant::now() >= deadline {
            panic!("no pid in {} within {FLEET_WAIT:?}", path.display());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// SIGKILLs a script's process group when dropped: a script whose agent was killed keeps
/// running (as it would in production), and the test must not leave it behind.
pub struct ProcessGroupGuard(pub i32);

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        if self.0 > 1 {
            // SAFETY: killpg only sends a signal; a group that is already gone yields ESRCH.
            unsafe {
                libc::killpg(self.0, libc::SIGKILL);
            }
        }
    }
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time as the API writes them
/// (`2026-03-10T14:32:11Z`, optionally with fractional seconds); `None` otherwise.
pub fn parse_utc_time(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (main, rest) = text.split_at_checked(19)?;
    let fraction_ok = match rest.strip_suffix('Z')? {
        "" => true,
        fraction => fraction
            .strip_prefix('.')
            .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())),
    };
    let separators =
        bytes[4] == b'-' && bytes[7] == b'-' && bytes[10] == b'T' && bytes[13] == b':' && bytes[16] == b':';
    if !fraction_ok || !separators {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = main.get(range)?;
        digits
            .chars()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_times() {
        assert_eq!(parse_utc_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc_time("2026-03-10T14:32:11Z"), Some(1_773_153_131));
        assert_eq!(parse_utc_time("2000-02-29T23:59:59.250Z"), Some(951_868_799));
        for bad in [
            "",
            "2026-03-10 14:32:11Z",
            "2026-03-10T14:32:11",
            "2026-13-10T14:32:11Z",
            "yesterday",
        ] {
            assert_eq!(parse_utc_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn made_up_job_ids_look_like_real_ones_and_sort_later() {
        let first = new_job_id();
        std::thread::sleep(Duration::from_millis(2));
        let second = new_job_id();
        assert!(is_job_id(&first) && first.len() == 36, "{first}");
        assert!(second > first);
        assert!(!is_job_id("job_") && !is_job_id("job_xyz") && !is_job_id("abc"));
    }
}
