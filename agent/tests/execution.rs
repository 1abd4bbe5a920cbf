//! The execution contract, tested with real scripts and real processes: only manifest
//! scripts run, params are inert data in the environment, nothing else leaks in, and
//! timeouts, cancels and exits leave no process behind.

use agent::config::ScriptBaseEnv;
use agent::executor::process::{NoLiveOutput, OutputSink, Pipe, StopReason};
use agent::executor::run::{execute, ExecutionSettings};
use agent::manifest::{self, LoadedManifest};
use shared_protocol::protocol::{JobAssignment, JobResultReport, RunOutcome};
use shared_protocol::AgentName;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Fixture {
    dir: tempfile::TempDir,
    entries: Vec<(String, String)>,
    settings: ExecutionSettings,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = ExecutionSettings {
            agent_name: AgentName::from("test-agent"),
            scripts_dir: dir.path().to_owned(),
            base_env: ScriptBaseEnv {
                path: "/usr/local/bin:/usr/bin:/bin".into(),
                home: "/tmp".into(),
                lang: Some("C.UTF-8".into()),
            },
            default_timeout: Duration::from_secs(20),
            kill_grace: Duration::from_secs(1),
            output_limit: 1024 * 1024,
        };
        Fixture {
            dir,
            entries: Vec::new(),
            settings,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes an executable script and lists it in the manifest under its file name.
    fn script(&mut self, name: &str, body: &str) -> &mut Fixture {
        self.unlisted_script(name, body);
        self.entries.push((name.to_owned(), name.to_owned()));
        self
    }

    fn unlisted_script(&mut self, name: &str, body: &str) {
        let path = self.path(name);
        std::fs::write(&path, body).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn list(&mut self, name: &str, path: &str) {
        self.entries.push((name.to_owned(), path.to_owned()));
    }

    fn manifest(&self) -> LoadedManifest {
        let scripts: Vec<_> = self
            .entries
            .iter()
            .map(|(name, path)| serde_json::json!({"name": name, "path": path, "description": ""}))
            .collect();
        let text = serde_json::json!({ "scripts": scripts }).to_string();
        manifest::parse(&text, Path::new("script_manifest.json"), self.dir.path()).expect("manifest parses")
    }

    async fn run(&self, script: &str, params: &[(&str, &str)]) -> JobResultReport {
        self.run_job(job(script, params, None), std::future::pending()).await
    }

    async fn run_job(
        &self,
        job: JobAssignment,
        stop: impl std::future::Future<Output = StopReason>,
    ) -> JobResultReport {
        execute(&job, &self.manifest(), &self.settings, stop, &NoLiveOutput).await
    }
}

fn job(script: &str, params: &[(&str, &str)], timeout_secs: Option<u64>) -> JobAssignment {
    JobAssignment {
        job_id: "job_test1".into(),
        script: script.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        timeout_secs,
        secret_params: Vec::new(),
    }
}

fn unique(label: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    std::env::temp_dir().join(format!("{label}-{}-{nanos}", std::process::id()))
}

/// A process counts as gone once it is dead or only a zombie waiting for whoever
/// inherited it to reap it.
fn is_running(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

async fn assert_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while is_running(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "no pid written to {}", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn success_reports_stdout_stderr_and_timing() {
    let mut fixture = Fixture::new();
    fixture.script("hello.sh", "#!/bin/sh\necho hello\necho warn >&2\npwd\n");
    let report = fixture.run("hello.sh", &[]).await;
    assert_eq!(report.outcome, RunOutcome::Success);
    assert_eq!(report.exit_code, Some(0));
    let cwd = fixture.dir.path().canonicalize().expect("canonical");
    assert_eq!(report.stdout, format!("hello\n{}\n", cwd.display()));
    assert_eq!(report.stderr, "warn\n");
    assert!(!report.stdout_truncated && !report.stderr_truncated);
    assert!(report.completed_at_ms >= report.started_at_ms);
    assert_eq!(report.agent_name, "test-agent");
    assert!(report.reason.is_none());
}

#[tokio::test]
async fn params_arrive_as_env_vars_and_stay_inert() {
    let canary = unique("scriptmesh-canary");
    let mut fixture = Fixture::new();
    fixture.script(
        "show.sh",
        "#!/bin/bash\necho \"target=$target\"\necho version=$version\necho \"id=$SCRIPTMESH_JOB_ID agent=$SCRIPTMESH_AGENT_NAME script=$SCRIPTMESH_SCRIPT\"\n",
    );
    let injection = format!("x; touch {}", canary.display());
    let substitution = format!("$(touch {}) `touch {}`", canary.display(), canary.display());
    let report = fixture
        .run("show.sh", &[("target", &injection), ("version", &substitution)])
        .await;
    assert_eq!(report.outcome, RunOutcome::Success, "{report:?}");
    assert!(
        report.stdout.contains(&format!("target={injection}\n")),
        "{}",
        report.stdout
    );
    assert!(
        report.stdout.contains(&format!("version={substitution}\n")),
        "{}",
        report.stdout
    );
    assert!(report.stdout.contains("id=job_test1 agent=test-agent script=show.sh"));
    assert!(!canary.exists(), "a param value was executed");
}

#[tokio::test]
async fn environment_is_clean() {
    let mut fixture = Fixture::new();
    fixture.script("env.sh", "#!/bin/sh\nexec /usr/bin/env\n");
    let report = fixture.run("env.sh", &[("target", "t")]).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{report:?}");
    let names: Vec<&str> = report
        .stdout
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    // sh may add PWD itself; anything else must be what the agent put there.
    let allowed = [
        "PATH",
        "HOME",
        "LANG",
        "PWD",
        "SCRIPTMESH_JOB_ID",
        "SCRIPTMESH_AGENT_NAME",
        "SCRIPTMESH_SCRIPT",
        "target",
    ];
    for name in &names {
        assert!(allowed.contains(name), "unexpected variable {name} in {names:?}");
    }
    assert!(report.stdout.contains("PATH=/usr/local/bin:/usr/bin:/bin\n"));
    assert!(report.stdout.contains("HOME=/tmp\n"));
    assert!(report.stdout.contains("LANG=C.UTF-8\n"));
    // The test process's own environment (cargo sets these) must not leak through.
    assert!(!report.stdout.contains("CARGO_"), "{}", report.stdout);
}

#[tokio::test]
async fn nonzero_exit_is_failed_with_its_code() {
    let mut fixture = Fixture::new();
    fixture.script("fail.sh", "#!/bin/sh\necho broken >&2\nexit 3\n");
    let report = fixture.run("fail.sh", &[]).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    assert_eq!(report.exit_code, Some(3));
    assert_eq!(report.stderr, "broken\n");
}

#[tokio::test]
async fn death_by_signal_is_failed_with_128_plus_signal() {
    let mut fixture = Fixture::new();
    fixture.script("suicide.sh", "#!/bin/sh\nkill -KILL $$\n");
    let report = fixture.run("suicide.sh", &[]).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    assert_eq!(report.exit_code, Some(128 + 9));
    assert!(
        report.reason.as_deref().unwrap_or_default().contains("SIGKILL"),
        "{report:?}"
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_process_tree() {
    let pid_file = unique("scriptmesh-pid");
    let mut fixture = Fixture::new();
    fixture.script(
        "hang.sh",
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > {}\nsleep 1000\n",
            pid_file.display()
        ),
    );
    let started = Instant::now();
    let report = fixture
        .run_job(job("hang.sh", &[], Some(1)), std::future::pending())
        .await;
    assert_eq!(report.outcome, RunOutcome::Timeout, "{report:?}");
    assert_eq!(report.exit_code, None);
    assert!(report.reason.as_deref().unwrap_or_default().contains("timed out"));
    assert!(report.stderr.contains("timed out"), "{}", report.stderr);
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_gone(read_pid(&pid_file).await).await;
    let _ = std::fs::remove_file(pid_file);
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
    let pid_file = unique("scriptmesh-pid");
    let mut fixture = Fixture::new();
    // Ignored signals are inherited, so the background sleep ignores SIGTERM too.
    fixture.script(
        "stubborn.sh",
        &format!(
            "#!/bin/sh\ntrap '' TERM\nsleep 1000 &\necho $! > {}\nwait\n",
            pid_file.display()
        ),
    );
    let started = Instant::now();
    let report = fixture
        .run_job(job("stubborn.sh", &[], Some(1)), std::future::pending())
        .await;
    assert_eq!(report.outcome, RunOutcome::Timeout, "{report:?}");
    // 1 s timeout + 1 s grace before SIGKILL.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_gone(read_pid(&pid_file).await).await;
    let _ = std::fs::remove_file(pid_file);
}

#[tokio::test]
async fn background_child_holding_the_pipes_is_killed_after_exit() {
    let pid_file = unique("scriptmesh-pid");
    let mut fixture = Fixture::new();
    fixture.script(
        "daemonish.sh",
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > {}\necho started\n",
            pid_file.display()
        ),
    );
    let started = Instant::now();
    let report = fixture.run("daemonish.sh", &[]).await;
    assert_eq!(report.outcome, RunOutcome::Success, "{report:?}");
    assert_eq!(report.stdout, "started\n");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    assert_gone(read_pid(&pid_file).await).await;
    let _ = std::fs::remove_file(pid_file);
}

#[tokio::test]
async fn cancel_stops_the_process_group() {
    let pid_file = unique("scriptmesh-pid");
    let mut fixture = Fixture::new();
    fixture.script(
        "long.sh",
        &format!("#!/bin/sh\nsleep 1000 &\necho $! > {}\nwait\n", pid_file.display()),
    );
    let stop = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        StopReason::Cancelled
    };
    let report = fixture.run_job(job("long.sh", &[], None), stop).await;
    assert_eq!(report.outcome, RunOutcome::Cancelled, "{report:?}");
    assert_eq!(report.exit_code, None);
    assert_gone(read_pid(&pid_file).await).await;
    let _ = std::fs::remove_file(pid_file);
}

#[tokio::test]
async fn script_reading_stdin_finishes() {
    let mut fixture = Fixture::new();
    fixture.script("cat.sh", "#!/bin/sh\ncat\necho after\n");
    let report = tokio::time::timeout(Duration::from_secs(10), fixture.run("cat.sh", &[]))
        .await
        .expect("a script reading stdin must not hang");
    assert_eq!(report.outcome, RunOutcome::Success);
    assert_eq!(report.stdout, "after\n");
}

#[tokio::test]
async fn output_over_the_cap_keeps_its_head_and_tail() {
    let mut fixture = Fixture::new();
    fixture.settings.output_limit = 1000;
    // 5 MB: far more than a pipe buffer, so a reader that stopped reading would hang it.
    fixture.script(
        "chatty.sh",
        "#!/bin/sh\necho first\nhead -c 5000000 /dev/zero | tr '\\0' a\necho last\necho small >&2\n",
    );
    let report = tokio::time::timeout(Duration::from_secs(20), fixture.run("chatty.sh", &[]))
        .await
        .expect("a chatty script must not block");
    assert_eq!(report.outcome, RunOutcome::Success, "{report:?}");
    let total = "first\n".len() + 5_000_000 + "last\n".len();
    let expected = format!(
        "first\n{}\n[scriptmesh-agent: {} bytes cut]\n{}last\n",
        "a".repeat(494),
        total - 1000,
        "a".repeat(495)
    );
    assert_eq!(report.stdout, expected);
    assert!(report.stdout_truncated);
    assert_eq!(report.stderr, "small\n");
    assert!(!report.stderr_truncated);
}

#[tokio::test]
async fn unlisted_script_is_rejected_without_running() {
    let canary = unique("scriptmesh-unlisted");
    let mut fixture = Fixture::new();
    fixture.script("listed.sh", "#!/bin/sh\necho ok\n");
    fixture.unlisted_script("secret.sh", &format!("#!/bin/sh\ntouch {}\n", canary.display()));
    let report = fixture.run("secret.sh", &[]).await;
    assert_eq!(report.outcome, RunOutcome::Rejected);
    assert_eq!(report.exit_code, None);
    assert!(report
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("not in this agent's manifest"));
    assert!(
        report.stderr.contains("not in this agent's manifest"),
        "{}",
        report.stderr
    );
    assert!(!canary.exists());
    // Exact match only.
    assert_eq!(fixture.run("LISTED.sh", &[]).await.outcome, RunOutcome::Rejected);
}

#[tokio::test]
async fn parent_dir_in_manifest_path_is_refused() {
    let mut fixture = Fixture::new();
    std::fs::create_dir(fixture.path("sub")).expect("mkdir");
    fixture.unlisted_script("real.sh", "#!/bin/sh\necho ran\n");
    fixture.list("sneaky", "sub/../real.sh");
    assert!(fixture.manifest().find("sneaky").is_none());
    let report = fixture.run("sneaky", &[]).await;
    assert_eq!(report.outcome, RunOutcome::Rejected);
    assert_eq!(report.stdout, "");
}

#[tokio::test]
async fn symlink_escaping_scripts_dir_is_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    let canary = unique("scriptmesh-symlink");
    let target = outside.path().join("evil.sh");
    std::fs::write(&target, format!("#!/bin/sh\ntouch {}\n", canary.display())).expect("write");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut fixture = Fixture::new();
    std::os::unix::fs::symlink(&target, fixture.path("evil.sh")).expect("symlink");
    fixture.list("evil.sh", "evil.sh");
    let report = fixture.run("evil.sh", &[]).await;
    assert_eq!(report.outcome, RunOutcome::Rejected);
    assert!(!canary.exists());
}

#[tokio::test]
async fn script_swapped_for_an_escaping_symlink_after_loading_is_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    let canary = unique("scriptmesh-swap");
    let target = outside.path().join("evil.sh");
    std::fs::write(&target, format!("#!/bin/sh\ntouch {}\n", canary.display())).expect("write");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut fixture = Fixture::new();
    fixture.script("job.sh", "#!/bin/sh\necho fine\n");
    let loaded = fixture.manifest();
    std::fs::remove_file(fixture.path("job.sh")).expect("rm");
    std::os::unix::fs::symlink(&target, fixture.path("job.sh")).expect("symlink");
    let report = execute(
        &job("job.sh", &[], None),
        &loaded,
        &fixture.settings,
        std::future::pending(),
        &NoLiveOutput,
    )
    .await;
    assert_eq!(report.outcome, RunOutcome::Rejected, "{report:?}");
    assert!(!canary.exists());
}

#[tokio::test]
async fn bad_param_names_and_values_are_rejected() {
    let canary = unique("scriptmesh-param");
    let mut fixture = Fixture::new();
    fixture.script("p.sh", &format!("#!/bin/sh\ntouch {}\n", canary.display()));
    for (name, value) in [
        ("LD_PRELOAD", "/tmp/evil.so"),
        ("PATH", "/tmp"),
        ("a-b", "x"),
        ("SCRIPTMESH_JOB_ID", "forged"),
        ("ok", "nul\0byte"),
    ] {
        let report = fixture.run("p.sh", &[(name, value)]).await;
        assert_eq!(report.outcome, RunOutcome::Rejected, "{name}");
        assert!(report.reason.is_some());
    }
    assert!(!canary.exists());
}

#[tokio::test]
async fn a_file_that_cannot_be_executed_fails_with_a_reason() {
    let mut fixture = Fixture::new();
    fixture.script("noexec.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(fixture.path("noexec.sh"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let report = fixture.run("noexec.sh", &[]).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    assert_eq!(report.exit_code, None);
    assert!(report
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("could not be started"));
}

/// Records what a run streams live, per pipe.
#[derive(Default)]
struct Recorder {
    stdout: std::cell::RefCell<Vec<u8>>,
    stderr: std::cell::RefCell<Vec<u8>>,
}

impl OutputSink for Recorder {
    fn output(&self, pipe: Pipe, bytes: &[u8]) {
        match pipe {
            Pipe::Stdout => self.stdout.borrow_mut().extend_from_slice(bytes),
            Pipe::Stderr => self.stderr.borrow_mut().extend_from_slice(bytes),
        }
    }
}

#[tokio::test]
async fn secret_params_are_masked_in_the_result_and_the_live_output() {
    let mut fixture = Fixture::new();
    // The secret also goes out in two writes with a pause between: two pipe reads.
    fixture.script(
        "leak.sh",
        "#!/bin/sh\necho \"token=$token region=$region\"\nprintf 'split=%s' \"${token%????}\"\nsleep 0.3\nprintf '%s\\n' \"${token#???????}\"\necho \"err $token\" >&2\n",
    );
    let mut job = job("leak.sh", &[("token", "tok-SECRET1"), ("region", "eu-west-1")], None);
    job.secret_params = vec!["token".into(), "unknown".into()];
    let recorder = Recorder::default();
    let report = execute(
        &job,
        &fixture.manifest(),
        &fixture.settings,
        std::future::pending(),
        &recorder,
    )
    .await;
    assert_eq!(report.outcome, RunOutcome::Success, "{report:?}");
    assert_eq!(report.stdout, "token=******** region=eu-west-1\nsplit=********\n");
    assert_eq!(report.stderr, "err ********\n");
    assert_eq!(String::from_utf8_lossy(&recorder.stdout.borrow()), report.stdout);
    assert_eq!(String::from_utf8_lossy(&recorder.stderr.borrow()), report.stderr);
}

#[tokio::test]
async fn without_secret_params_output_is_untouched() {
    let mut fixture = Fixture::new();
    fixture.script("plain.sh", "#!/bin/sh\necho \"token=$token\"\n");
    let report = fixture.run("plain.sh", &[("token", "visible")]).await;
    assert_eq!(report.stdout, "token=visible\n");
}
