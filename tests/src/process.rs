//! A process the tests start (the orchestrator or an agent): a clean environment, stdout
//! and stderr drained by two threads into a log file so the child never blocks on a full
//! pipe, readiness taken from one line it prints, and a kill when the handle is dropped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a process may take to print its ready line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How many stderr lines are kept in memory for panic messages.
const STDERR_TAIL_LINES: usize = 60;
/// How many log lines are printed when a test fails.
const LOG_TAIL_LINES: usize = 200;

/// Variables the children inherit from the test process; everything else (DATABASE_URL,
/// API_KEY, ... from the developer's shell) is cleared.
const INHERITED_VARIABLES: &[&str] = &["PATH", "HOME", "TMPDIR", "LANG", "USER"];

/// What to start and how to know it is ready.
pub(crate) struct Launch<'a> {
    /// For log lines and messages, e.g. "orchestrator" or "agent web-1".
    pub label: &'a str,
    pub program: &'a Path,
    pub env: &'a [(String, String)],
    /// Appended to, so restarts keep one log per process role.
    pub log_path: &'a Path,
    /// The stdout line that says "ready"; what follows it is handed back (an address).
    pub ready_prefix: &'a str,
}

/// The process exited (or never printed its ready line) during start-up.
#[derive(Debug)]
pub struct StartFailure {
    pub label: String,
    /// `None` when it was still running at the time-out (it has been killed since).
    pub status: Option<ExitStatus>,
    /// The last lines it wrote to stderr.
    pub stderr: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} exited during start-up ({status})", self.label)?,
            None => write!(
                f,
                "{} did not print its ready line within {STARTUP_TIMEOUT:?}",
                self.label
            )?,
        }
        write!(f, "\n--- stderr ---\n{}", self.stderr)
    }
}

/// A running child process. Killed (SIGKILL) on drop; if the test is failing, the tail of
/// its log is printed first so `cargo test` shows it.
pub(crate) struct ChildProcess {
    label: String,
    child: Child,
    log_path: PathBuf,
    readers: Vec<JoinHandle<()>>,
}

impl ChildProcess {
    /// Starts the program and waits until it prints its ready line. Returns the process
    /// and the rest of that line.
    pub async fn start(launch: Launch<'_>) -> Result<(ChildProcess, String), StartFailure> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", launch.log_path.display()));
        let _ = writeln!(log, "===== starting {} =====", launch.label);

        let mut command = Command::new(launch.program);
        command
            .env_clear()
            .envs(
                INHERITED_VARIABLES
                    .iter()
                    .filter_map(|name| std::env::var_os(name).map(|value| (name.to_string(), value))),
            )
            .env("RUST_BACKTRACE", "1")
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_the_test_thread(&mut command);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({}): {e}", launch.label, launch.program.display()));

        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let readers = vec![
            drain_stdout(stdout, clone_log(&log), launch.ready_prefix.to_owned(), ready_tx),
            drain_stderr(stderr, clone_log(&log), stderr_tail.clone()),
        ];
        let mut process = ChildProcess {
            label: launch.label.to_owned(),
            child,
            log_path: launch.log_path.to_owned(),
            readers,
        };

        match tokio::time::timeout(STARTUP_TIMEOUT, ready_rx).await {
            Ok(Ok(rest)) => Ok((process, rest)),
            outcome => {
                // Stdout closed (the process is exiting) or the time-out passed.
                let status = if outcome.is_ok() {
                    process.wait_for_exit(Duration::from_secs(5)).await
                } else {
                    None
                };
                process.kill();
                process.wait_for_readers(Duration::from_secs(2));
                let stderr = Vec::from(stderr_tail.lock().expect("stderr tail lock").clone()).join("\n");
                Err(StartFailure {
                    label: process.label.clone(),
                    status,
                    stderr,
                })
            }
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful stop), then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        // SAFETY: kill(2) with a pid we own (a child not yet reaped, so the pid cannot have
        // been reused) and a valid signal number; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        match self.wait_for_exit(grace).await {
            Some(status) => Some(status),
            None => {
                self.kill();
                None
            }
        }
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    async fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The readers end when the pipes close; a grandchild that kept them open must not
    /// hang the test, so this only waits so long.
    fn wait_for_readers(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.readers.iter().all(JoinHandle::is_finished) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            self.wait_for_readers(Duration::from_secs(2));
            eprintln!(
                "\n===== last {LOG_TAIL_LINES} log lines of {} ({}) =====\n{}\n===== end of {} log =====",
                self.label,
                self.log_path.display(),
                tail(&self.log_path, LOG_TAIL_LINES),
                self.label
            );
        }
    }
}

/// The last `lines` lines of a file.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// On Linux, asks the kernel to SIGKILL the child when the thread that started it ends, so
/// an interrupted test run (Ctrl-C, a crashed test binary) leaves no servers behind.
/// Every test runs on its own thread, which lives exactly as long as the test.
#[cfg(target_os = "linux")]
fn die_with_the_test_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_the_test_thread(_command: &mut Command) {}

fn clone_log(log: &File) -> File {
    log.try_clone().expect("the log file handle can be cloned")
}

/// Each line goes to the log with one write (O_APPEND keeps the two streams' lines whole).
fn log_line(log: &mut File, stream: &str, line: &str) {
    let _ = log.write_all(format!("[{stream}] {line}\n").as_bytes());
}

fn for_each_line(stream: impl Read, mut on_line: impl FnMut(&str)) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => on_line(String::from_utf8_lossy(&buffer).trim_end_matches(['\r', '\n'])),
        }
    }
}

fn drain_stdout(
    stdout: impl Read + Send + 'static,
    mut log: File,
    ready_prefix: String,
    ready: tokio::sync::oneshot::Sender<String>,
) -> JoinHandle<()> {
    let mut ready = Some(ready);
    std::thread::spawn(move || {
        for_each_line(stdout, |line| {
            log_line(&mut log, "stdout", line);
            if let Some(rest) = line.strip_prefix(&ready_prefix) {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(rest.trim().to_owned());
                }
            }
        });
    })
}

fn drain_stderr(
    stderr: impl Read + Send + 'static,
    mut log: File,
    tail: Arc<Mutex<VecDeque<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for_each_line(stderr, |line| {
            log_line(&mut log, "stderr", line);
            let mut tail = tail.lock().expect("stderr tail lock");
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        });
    })
}
