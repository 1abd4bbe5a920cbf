//! Real agent processes for end-to-end tests: `app.start_agent(AgentSpec::new(..))` writes
//! the scripts and a manifest into a temporary SCRIPTS_DIR and starts the agent against
//! the test's orchestrator.

use crate::app::{binary_path, TestApp};
use crate::process::{ChildProcess, Launch, StartFailure};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

const READY_PREFIX: &str = "scriptmesh-agent health on ";
/// In a custom manifest, replaced by the absolute SCRIPTS_DIR.
pub const SCRIPTS_DIR_PLACEHOLDER: &str = "{SCRIPTS_DIR}";
/// How long `stop` waits for a graceful exit before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// The test agents' HEARTBEAT_INTERVAL: an agent is offline after three silent intervals,
/// and 2 s keeps that (6 s) clear of the stalls a loaded CI machine gives a process. A
/// test that times offline detection sets its own ("1") with `AgentSpec::env`.
pub const HEARTBEAT_INTERVAL_SECS: &str = "2";

/// What agent to start. Build with `AgentSpec::new(name, api_key)` and the methods below.
#[derive(Clone, Debug, Default)]
pub struct AgentSpec {
    pub name: String,
    pub api_key: String,
    pub tags: Vec<String>,
    /// (file name, contents): written into SCRIPTS_DIR with mode 755.
    pub scripts: Vec<(String, String)>,
    /// `None`: a manifest listing every script under its file name. `Some`: written as
    /// given, with `{SCRIPTS_DIR}` in it replaced by the directory's path.
    pub manifest: Option<Value>,
    /// Extra or overriding variables (e.g. ("MAX_CONCURRENT_JOBS", "1")); an empty value
    /// removes a default.
    pub env: Vec<(String, String)>,
}

impl AgentSpec {
    pub fn new(name: &str, api_key: &str) -> AgentSpec {
        AgentSpec {
            name: name.to_owned(),
            api_key: api_key.to_owned(),
            ..AgentSpec::default()
        }
    }

    pub fn tag(mut self, tag: &str) -> AgentSpec {
        self.tags.push(tag.to_owned());
        self
    }

    pub fn script(mut self, file_name: &str, contents: &str) -> AgentSpec {
        self.scripts.push((file_name.to_owned(), contents.to_owned()));
        self
    }

    pub fn manifest(mut self, manifest: Value) -> AgentSpec {
        self.manifest = Some(manifest);
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> AgentSpec {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A running agent. Killed when dropped; its directories (scripts, spool, log) live as
/// long as the handle, across restarts.
pub struct TestAgent {
    pub name: String,
    /// `http://127.0.0.1:PORT` of its /health and /metrics (a new port after a restart).
    pub health_url: String,
    process: Option<ChildProcess>,
    env: Vec<(String, String)>,
    program: PathBuf,
    scripts_dir: PathBuf,
    spool_dir: PathBuf,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts a real agent against this orchestrator; panics if it does not come up.
    pub async fn start_agent(&self, spec: AgentSpec) -> TestAgent {
        self.try_start_agent(spec)
            .await
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Like `start_agent`, but hands back a start-up failure (a bad configuration, say).
    pub async fn try_start_agent(&self, spec: AgentSpec) -> Result<TestAgent, StartFailure> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("scriptmesh-agent-{}-", spec.name))
            .tempdir()
            .expect("a temporary directory");
        let scripts_dir = dir.path().join("scripts");
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir_all(&scripts_dir).expect("create SCRIPTS_DIR");
        std::fs::create_dir_all(&spool_dir).expect("create SPOOL_DIR");

        let mut env: Vec<(String, String)> = [
            ("AGENT_NAME", spec.name.as_str()),
            ("ORCHESTRATOR_URL", &self.url),
            ("API_KEY", &spec.api_key),
            ("AGENT_TAGS", &spec.tags.join(",")),
            ("SCRIPTS_DIR", path_text(&scripts_dir)),
            ("MANIFEST_PATH", path_text(&scripts_dir.join("script_manifest.json"))),
            ("AGENT_PORT", "0"),
            ("AGENT_BIND_HOST", "127.0.0.1"),
            ("HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL_SECS),
            ("SPOOL_DIR", path_text(&spool_dir)),
            ("POLL_WAIT_SECS", "5"),
            ("KILL_GRACE_SECS", "1"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (name, value) in &spec.env {
            env.retain(|(key, _)| key != name);
            if !value.is_empty() {
                env.push((name.clone(), value.clone()));
            }
        }

        let mut agent = TestAgent {
            name: spec.name.clone(),
            health_url: String::new(),
            process: None,
            env,
            program: binary_path("sm-test-agent"),
            log_path: dir.path().join("agent.log"),
            scripts_dir,
            spool_dir,
            dir,
        };
        for (file_name, contents) in &spec.scripts {
            agent.write_script(file_name, contents);
        }
        let manifest = spec.manifest.clone().unwrap_or_else(|| {
            let scripts: Vec<Value> = spec
                .scripts
                .iter()
                .map(|(file_name, _)| json!({"name": file_name, "path": file_name, "description": ""}))
                .collect();
            json!({ "scripts": scripts })
        });
        agent.write_manifest(&manifest);
        agent.launch().await?;
        Ok(agent)
    }
}

impl TestAgent {
    async fn launch(&mut self) -> Result<(), StartFailure> {
        let (process, health_url) = ChildProcess::start(Launch {
            label: &format!("agent {}", self.name),
            program: &self.program,
            env: &self.env,
            log_path: &self.log_path,
            ready_prefix: READY_PREFIX,
        })
        .await?;
        self.health_url = health_url.trim_end_matches('/').to_owned();
        self.process = Some(process);
        Ok(())
    }

    /// SIGKILL: the agent vanishes as in a crash (running scripts are not reported).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// SIGTERM, then waits (SIGKILL after 15 s). `None` if it had to be killed.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        match self.process.take() {
            Some(mut process) => process.stop(STOP_GRACE).await,
            None => None,
        }
    }

    /// Kills it and starts it again with the same directories (spool included).
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(failure) = self.launch().await {
            panic!("{failure}");
        }
    }

    /// Changes a variable for the next `restart` (an empty value removes it).
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(key, _)| key != name);
        if !value.is_empty() {
            self.env.push((name.to_owned(), value.to_owned()));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|process| process.try_wait().is_none())
    }

    /// The exit status if the process has exited on its own.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.process.as_mut().and_then(ChildProcess::try_wait)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::id)
    }

    pub fn scripts_dir(&self) -> &Path {
        &self.scripts_dir
    }

    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// The agent's temporary directory (scripts/, spool/, agent.log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the agent printed so far (every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Writes (or replaces) a script in SCRIPTS_DIR with mode 755.
    pub fn write_script(&self, file_name: &str, contents: &str) {
        let path = self.scripts_dir.join(file_name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the script's folder");
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }

    /// Replaces script_manifest.json (the agent reloads it on its next heartbeat);
    /// `{SCRIPTS_DIR}` in it becomes the directory's path.
    pub fn write_manifest(&self, manifest: &Value) {
        let text = serde_json::to_string_pretty(manifest)
            .expect("serialize the manifest")
            .replace(SCRIPTS_DIR_PLACEHOLDER, path_text(&self.scripts_dir));
        let path = self.scripts_dir.join("script_manifest.json");
        // Written beside and renamed, so the agent never reads half a file.
        let partial = self.dir.path().join("script_manifest.json.partial");
        std::fs::write(&partial, text).expect("write the manifest");
        std::fs::rename(&partial, &path).expect("move the manifest into place");
    }
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
