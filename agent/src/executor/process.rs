//! Running one script process: clean environment, stdin closed, its own process group,
//! secrets masked out of its output, head+tail capped capture (plus a live copy to an
//! [`OutputSink`]), and a timeout or stop request that takes down the whole group.

pub use super::capture::CapturedOutput;
use super::capture::HeadTailCapture;
use super::mask::SecretMasker;

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

/// After the script's main process exits, how long its output pipes may stay open (a
/// background child still writing) before the rest of the group is killed.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// After SIGKILL to the group, how long to wait for the pipes to close. Only a process
/// that escaped the group (setsid) can hold them longer; its output is then abandoned.
const DRAIN_AFTER_KILL: Duration = Duration::from_millis(500);
/// Writing a script and running it at once can briefly fail with ETXTBSY while another
/// thread's fork still holds the write descriptor; a few short retries absorb that.
const SPAWN_BUSY_RETRIES: u32 = 5;
const SPAWN_BUSY_PAUSE: Duration = Duration::from_millis(20);

/// Everything needed to start the process; built by the executor after every check passed.
#[derive(Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub working_dir: PathBuf,
    /// The complete environment: nothing of the agent's own is inherited.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub kill_grace: Duration,
    /// Per stream.
    pub output_limit: usize,
    /// Values replaced with the secret mask wherever they appear in the output.
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for ProcessSpec {
    // Names only: values can be secrets, and a spec in a log line must not show them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("program", &self.program)
            .field("working_dir", &self.working_dir)
            .field("env", &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("output_limit", &self.output_limit)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// Which of the script's pipes output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pipe {
    Stdout,
    Stderr,
}

/// Receives the script's output (already masked) as it is read, besides the capture for
/// the result. Called from the reading loop, so it must not block; the pipes are drained
/// whatever it does.
pub trait OutputSink {
    fn output(&self, pipe: Pipe, bytes: &[u8]);
}

/// For runs nobody watches live.
pub struct NoLiveOutput;

impl OutputSink for NoLiveOutput {
    fn output(&self, _: Pipe, _: &[u8]) {}
}

/// Why the agent itself ended a run early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The orchestrator cancelled the job.
    Cancelled,
    /// The agent is shutting down.
    Shutdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// The main process exited with this code.
    Exited(i32),
    /// The main process died from a signal the agent did not send.
    Signalled(i32),
    /// The timeout ran out; the group was killed.
    TimedOut,
    /// The agent stopped it; the group was killed.
    Stopped(StopReason),
}

#[derive(Clone, Debug)]
pub struct ProcessOutcome {
    pub termination: Termination,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
    pub duration: Duration,
}

/// Runs the process to its end. `stop` resolving asks for an early stop (it may stay
/// pending forever); `live` sees the output as it comes. Errors only when the process
/// cannot be started or waited for.
pub async fn run_process(
    spec: &ProcessSpec,
    stop: impl Future<Output = StopReason>,
    live: &dyn OutputSink,
) -> io::Result<ProcessOutcome> {
    let started = Instant::now();
    let mut child = spawn(spec).await?;
    // The child was just spawned and not yet waited for, so its id is known; it leads
    // its own group (process_group(0)), so pid == pgid.
    let group = ProcessGroup::new(child.id().map(|pid| pid as i32).unwrap_or(0));
    let mut stdout = HeadTailCapture::new(spec.output_limit);
    let mut stderr = HeadTailCapture::new(spec.output_limit);

    let termination = {
        let stdout_pipe = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        let secrets = &spec.secrets;
        let readers = async {
            tokio::join!(
                drain(stdout_pipe, Pipe::Stdout, secrets, &mut stdout, live),
                drain(stderr_pipe, Pipe::Stderr, secrets, &mut stderr, live)
            )
        };
        tokio::pin!(readers);
        tokio::pin!(stop);
        let mut readers_done = false;
        let deadline = started + spec.timeout;

        let early_stop = loop {
            tokio::select! {
                status = child.wait() => break Err(status?),
                () = sleep_until(deadline) => break Ok(None),
                reason = &mut stop => break Ok(Some(reason)),
                _ = &mut readers, if !readers_done => readers_done = true,
            }
        };

        match early_stop {
            Err(status) => {
                // The main process is done; background children may still hold the
                // pipes. Give them a moment, then make sure nothing of the job survives.
                if !readers_done {
                    readers_done = timeout(DRAIN_AFTER_EXIT, &mut readers).await.is_ok();
                }
                // The leader is already reaped, so this relies on the group id staying
                // taken while any member lives; if none does, killpg finds nothing (a
                // reuse of that id within these microseconds would need a pid wrap-around).
                group.kill(libc::SIGKILL);
                group.disarm();
                if !readers_done {
                    let _abandoned = timeout(DRAIN_AFTER_KILL, &mut readers).await;
                }
                classify(status)
            }
            Ok(stop_reason) => {
                group.kill(libc::SIGTERM);
                let grace_deadline = Instant::now() + spec.kill_grace;
                let exited = loop {
                    tokio::select! {
                        status = child.wait() => break Some(status?),
                        () = sleep_until(grace_deadline) => break None,
                        _ = &mut readers, if !readers_done => readers_done = true,
                    }
                };
                // The leader may stop at once while its children still clean up; they get
                // the rest of the grace period (their closing the pipes says they are gone).
                if exited.is_some() && !readers_done {
                    readers_done = timeout_at(grace_deadline, &mut readers).await.is_ok();
                }
                group.kill(libc::SIGKILL);
                if exited.is_none() {
                    child.wait().await?;
                }
                group.disarm();
                if !readers_done {
                    let _abandoned = timeout(DRAIN_AFTER_KILL, &mut readers).await;
                }
                match stop_reason {
                    None => Termination::TimedOut,
                    Some(reason) => Termination::Stopped(reason),
                }
            }
        }
    };

    Ok(ProcessOutcome {
        termination,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
        duration: started.elapsed(),
    })
}

async fn spawn(spec: &ProcessSpec) -> io::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        let mut command = tokio::process::Command::new(&spec.program);
        command
            .env_clear()
            .envs(spec.env.iter().map(|(name, value)| (name, value)))
            .current_dir(&spec.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // Last resort if this future is dropped mid-run; the group guard does the rest.
            .kill_on_drop(true);
        match command.spawn() {
            Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) && attempt < SPAWN_BUSY_RETRIES => {
                attempt += 1;
                tokio::time::sleep(SPAWN_BUSY_PAUSE).await;
            }
            result => return result,
        }
    }
}

/// Reads a pipe to its end, masking secrets, into the capped capture and the live sink,
/// so that a chatty script never blocks on a full pipe. If the read is abandoned (a
/// process escaped the group and holds the pipe), bytes the masker still holds back are
/// dropped: they might be the start of a secret.
async fn drain(
    pipe: Option<impl AsyncRead + Unpin>,
    which: Pipe,
    secrets: &[String],
    capture: &mut HeadTailCapture,
    live: &dyn OutputSink,
) {
    let Some(mut pipe) = pipe else { return };
    let mut masker = SecretMasker::new(secrets);
    let mut emit = |bytes: &[u8]| {
        if !bytes.is_empty() {
            capture.push(bytes);
            live.output(which, bytes);
        }
    };
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) => {
                emit(&masker.finish());
                return;
            }
            Ok(read) if masker.is_empty() => emit(&buffer[..read]),
            Ok(read) => emit(&masker.push(&buffer[..read])),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::warn!(%error, "reading script output failed");
                emit(&masker.finish());
                return;
            }
        }
    }
}

fn classify(status: ExitStatus) -> Termination {
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(signal)) => Termination::Signalled(signal),
        // Neither a code nor a signal cannot happen for a reaped child on Unix; report
        // it as a generic failure rather than success.
        (None, None) => Termination::Exited(-1),
    }
}

/// The script's process group. Dropping it un-disarmed (the run future was abandoned,
/// or waiting failed) SIGKILLs the group so no script outlives its job.
struct ProcessGroup {
    pgid: i32,
    armed: std::cell::Cell<bool>,
}

impl ProcessGroup {
    fn new(pgid: i32) -> ProcessGroup {
        ProcessGroup {
            pgid,
            armed: std::cell::Cell::new(true),
        }
    }

    fn kill(&self, signal: i32) {
        // Never signal group 0 (our own) or 1: a missing pid must not turn into a
        // kill of the agent itself or of init's group.
        if self.pgid <= 1 {
            return;
        }
        // SAFETY: killpg only sends a signal; ESRCH (group already gone) is expected
        // and harmless.
        unsafe {
            libc::killpg(self.pgid, signal);
        }
    }

    /// Called once the group was killed after the leader was reaped: from then on the
    /// pgid may be reused by an unrelated process, so it must not be signalled again.
    fn disarm(&self) {
        self.armed.set(false);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed.get() {
            self.kill(libc::SIGKILL);
        }
    }
}
