//! Live output: while a script runs, its (already masked) output goes to the orchestrator
//! in `POST /agent/output` batches, so people can follow a job as it happens.
//!
//! Best effort and bounded: the result stays the authoritative record of a job's output.
//! Each running job gets a [`LiveTap`] that the executor's pipe readers write into; the
//! [`LiveOutput`] actor sends output that arrives after a quiet spell at once, and what
//! keeps coming about every [`FLUSH_INTERVAL`], one request at a time, for all jobs at once. Nothing is scheduled while no output is pending, and
//! a job that ends before its first chunk went out never streams at all (its result
//! carries the output). A job that did stream has the rest of its output sent before its
//! result is handed to the reporter ([`LiveOutputHandle::finish`]), bounded in time; if
//! that send fails, the result goes without it.
//!
//! Everything runs on the agent's one actix thread, so the taps and the actor share the
//! per-job buffers through an `Rc<RefCell<..>>`; no borrow is ever held across an await.

use crate::client::OrchestratorClient;
use crate::error::AgentError;
use crate::executor::process::{OutputSink, Pipe};
use actix::prelude::*;
use shared_protocol::protocol::{OutputAck, OutputBatch, OutputChunk, OutputStream};
use shared_protocol::{AgentName, JobId};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long output waits to be batched; also how long a job must run before it streams.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// After a failed send, the pause before the kept chunks are tried again.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// Unsent live output kept per job; past it the oldest chunks are dropped (a gap in the
/// offsets), so a slow or absent orchestrator costs bounded memory and never the script.
pub const MAX_UNSENT_BYTES_PER_JOB: usize = 256 * 1024;
/// Consecutive output of one pipe is merged into chunks up to this size (the orchestrator
/// accepts up to 1 MiB per chunk). A single piece can be larger only by mask expansion
/// of one 16 KiB read, still far below that limit.
const MAX_CHUNK_BYTES: usize = 64 * 1024;
/// The orchestrator's limits for one batch: 1000 chunks, a 4 MiB body. The body budget
/// leaves room for the envelope and is counted with JSON escaping.
const MAX_BATCH_CHUNKS: usize = 1000;
const MAX_BATCH_BODY_BYTES: usize = 4 * 1024 * 1024 - 16 * 1024;
/// How long a finished job's remaining live output may delay its result (a slow
/// orchestrator; a failing one releases the result at the first failed send).
pub const FINISH_FLUSH_LIMIT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------- pure parts

/// Turns a byte stream into valid UTF-8 pieces: an incomplete multi-byte character at
/// the end of a read is held back until the next read completes it; bytes that can never
/// be UTF-8 become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    /// At most 3 bytes: the start of a character.
    held: Vec<u8>,
}

impl Utf8Carry {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(bytes);
        let mut text = String::with_capacity(data.len());
        let mut rest = data.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    return text;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    // Borrowed, not copied: `valid` is UTF-8 by the error's own account.
                    text.push_str(&String::from_utf8_lossy(valid));
                    match error.error_len() {
                        Some(invalid) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[invalid..];
                        }
                        None => {
                            self.held = after.to_vec();
                            return text;
                        }
                    }
                }
            }
        }
    }

    /// The stream ended: a character still unfinished never will be.
    pub fn finish(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.held)).into_owned()
    }
}

/// One job's live output not yet sent, as chunks with their offsets, bounded.
#[derive(Debug)]
pub struct JobBuffer {
    job_id: String,
    limit: usize,
    /// Bytes of live output so far (sent, unsent or dropped): the next chunk's offset.
    next_offset: u64,
    unsent: VecDeque<OutputChunk>,
    unsent_bytes: usize,
    /// Chunks starting before this offset were sent before (the request failed, but may
    /// have been stored): they are re-sent exactly as they were, never grown, so the
    /// orchestrator can recognise a retry by its offset.
    merge_from: u64,
}

impl JobBuffer {
    pub fn new(job_id: &str, limit: usize) -> JobBuffer {
        JobBuffer {
            job_id: job_id.to_owned(),
            limit,
            next_offset: 0,
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            merge_from: 0,
        }
    }

    /// Appends output, merged into the last chunk when it continues it.
    pub fn push(&mut self, stream: OutputStream, data: String) {
        if data.is_empty() {
            return;
        }
        let offset = self.next_offset;
        self.next_offset += data.len() as u64;
        self.unsent_bytes += data.len();
        match self.unsent.back_mut() {
            Some(last)
                if last.stream == stream
                    && last.end() == offset
                    && last.offset >= self.merge_from
                    && last.data.len() + data.len() <= MAX_CHUNK_BYTES =>
            {
                last.data.push_str(&data)
            }
            _ => self.unsent.push_back(OutputChunk {
                job_id: self.job_id.clone(),
                stream,
                offset,
                data,
            }),
        }
        self.drop_over_limit();
    }

    /// Puts chunks taken for a request that failed back in front, in their order; the
    /// bound still holds, so the oldest may go.
    pub fn put_back(&mut self, chunks: Vec<OutputChunk>) {
        if let Some(last) = chunks.last() {
            self.merge_from = self.merge_from.max(last.end());
        }
        for chunk in chunks.into_iter().rev() {
            self.unsent_bytes += chunk.data.len();
            self.unsent.push_front(chunk);
        }
        self.drop_over_limit();
    }

    pub fn front(&self) -> Option<&OutputChunk> {
        self.unsent.front()
    }

    pub fn pop_front(&mut self) -> Option<OutputChunk> {
        let chunk = self.unsent.pop_front()?;
        self.unsent_bytes -= chunk.data.len();
        Some(chunk)
    }

    pub fn clear(&mut self) {
        self.unsent.clear();
        self.unsent_bytes = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.unsent.is_empty()
    }

    pub fn unsent_bytes(&self) -> usize {
        self.unsent_bytes
    }

    fn drop_over_limit(&mut self) {
        while self.unsent_bytes > self.limit {
            if self.pop_front().is_none() {
                break;
            }
        }
    }
}

/// An upper bound of what a chunk adds to the JSON body: its data escaped, plus fields.
fn json_cost(chunk: &OutputChunk) -> usize {
    let escaped: usize = chunk
        .data
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum();
    escaped + chunk.job_id.len() + 80
}

// ---------------------------------------------------------------- shared state

struct LiveJob {
    buffer: JobBuffer,
    /// Stdout's and stderr's unfinished characters.
    carry: [Utf8Carry; 2],
    started: Instant,
    /// Some of its output was handed to the orchestrator (maybe received): the rest must
    /// follow before the result.
    streamed: bool,
    /// The orchestrator wants no more of it.
    stopped: bool,
    /// Some of its chunks are in the request in flight.
    in_flight: bool,
    /// Set once the job ended: told when nothing of it is left to send.
    finished: Option<oneshot::Sender<()>>,
}

impl LiveJob {
    fn settled(&self) -> bool {
        !self.in_flight && (self.stopped || self.buffer.is_empty())
    }
}

#[derive(Default)]
struct Shared {
    jobs: HashMap<JobId, LiveJob>,
    /// The actor has a flush scheduled or a request in flight and will see new output on
    /// its own; otherwise the first new output wakes it.
    awake: bool,
    /// The agent is stopping: results must not wait for live output any more.
    shutting_down: bool,
}

fn stream_of(pipe: Pipe) -> (OutputStream, usize) {
    match pipe {
        Pipe::Stdout => (OutputStream::Stdout, 0),
        Pipe::Stderr => (OutputStream::Stderr, 1),
    }
}

/// What a running job's pipe readers write into. Never blocks, never fails.
pub struct LiveTap {
    job_id: JobId,
    shared: Rc<RefCell<Shared>>,
    actor: Addr<LiveOutput>,
}

impl OutputSink for LiveTap {
    fn output(&self, pipe: Pipe, bytes: &[u8]) {
        let shared = &mut *self.shared.borrow_mut();
        let Some(job) = shared.jobs.get_mut(&self.job_id) else {
            return;
        };
        if job.stopped {
            return;
        }
        let (stream, index) = stream_of(pipe);
        let text = job.carry[index].push(bytes);
        job.buffer.push(stream, text);
        if !shared.awake && !job.buffer.is_empty() {
            shared.awake = true;
            self.actor.do_send(Wake);
        }
    }
}

/// The executor's way in: start and end a job's live output.
#[derive(Clone)]
pub struct LiveOutputHandle {
    shared: Rc<RefCell<Shared>>,
    actor: Addr<LiveOutput>,
}

impl LiveOutputHandle {
    /// Starts buffering this job's live output; the tap goes to its pipe readers.
    pub fn begin(&self, job_id: &JobId) -> LiveTap {
        self.shared.borrow_mut().jobs.insert(
            job_id.clone(),
            LiveJob {
                buffer: JobBuffer::new(job_id.as_str(), MAX_UNSENT_BYTES_PER_JOB),
                carry: Default::default(),
                started: Instant::now(),
                streamed: false,
                stopped: false,
                in_flight: false,
                finished: None,
            },
        );
        LiveTap {
            job_id: job_id.clone(),
            shared: self.shared.clone(),
            actor: self.actor.clone(),
        }
    }

    /// The job's process is done. Resolves at once for a job that never streamed (its
    /// buffers are dropped: the result has it all); otherwise once the rest of its live
    /// output was sent, a send failed, or [`FINISH_FLUSH_LIMIT`] passed.
    pub fn finish(&self, job_id: &JobId) -> impl Future<Output = ()> {
        let must_flush = {
            let mut shared = self.shared.borrow_mut();
            let shutting_down = shared.shutting_down;
            match shared.jobs.get(job_id) {
                Some(job) if job.streamed && !job.stopped && !shutting_down => true,
                _ => {
                    shared.jobs.remove(job_id);
                    false
                }
            }
        };
        let request = must_flush.then(|| self.actor.send(Finish(job_id.clone())));
        async move {
            if let Some(request) = request {
                // The actor enforces the limit itself; this only guards against a stuck actor.
                let _ = tokio::time::timeout(FINISH_FLUSH_LIMIT + FLUSH_INTERVAL, request).await;
            }
        }
    }

    /// The agent is stopping: results stop waiting for live output (they must reach
    /// the spool within the shutdown budget).
    pub fn shut_down(&self) {
        let mut shared = self.shared.borrow_mut();
        shared.shutting_down = true;
        for job in shared.jobs.values_mut() {
            if let Some(waiter) = job.finished.take() {
                let _ = waiter.send(());
            }
        }
    }
}

// ---------------------------------------------------------------- the actor

#[derive(Message)]
#[rtype(result = "()")]
struct Wake;

#[derive(Message)]
#[rtype(result = "()")]
struct Finish(JobId);

pub struct LiveOutput {
    client: OrchestratorClient,
    agent_name: AgentName,
    shared: Rc<RefCell<Shared>>,
    scheduled: Option<SpawnHandle>,
    in_flight: bool,
    /// When the last request went out: output that arrives after a quiet spell goes at
    /// once, output that keeps coming is batched about every [`FLUSH_INTERVAL`].
    last_send: Option<Instant>,
    /// Sends are failing (orchestrator down): warned once, quiet until one succeeds.
    failing: bool,
    /// A batch was refused (4xx): warned once for the agent's lifetime.
    warned_refused: bool,
}

impl LiveOutput {
    /// Starts the actor; the handle goes to the executor.
    pub fn spawn(client: OrchestratorClient, agent_name: AgentName) -> LiveOutputHandle {
        let shared = Rc::new(RefCell::new(Shared::default()));
        let actor = LiveOutput {
            client,
            agent_name,
            shared: shared.clone(),
            scheduled: None,
            in_flight: false,
            last_send: None,
            failing: false,
            warned_refused: false,
        }
        .start();
        LiveOutputHandle { shared, actor }
    }

    /// Flushes after `delay` (sooner if asked for again with a shorter one). While a
    /// request is in flight its completion decides what comes next.
    fn schedule(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        if let Some(handle) = self.scheduled {
            if !delay.is_zero() {
                return;
            }
            ctx.cancel_future(handle);
        }
        self.shared.borrow_mut().awake = true;
        self.scheduled = Some(ctx.run_later(delay, |act, ctx| {
            act.scheduled = None;
            act.flush(ctx);
        }));
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        let chunks = take_batch(&mut self.shared.borrow_mut());
        if chunks.is_empty() {
            self.idle_or_reschedule(false, ctx);
            return;
        }
        self.in_flight = true;
        self.last_send = Some(Instant::now());
        let client = self.client.clone();
        let batch = OutputBatch {
            agent_name: self.agent_name.to_string(),
            chunks,
        };
        let send = async move {
            let outcome = client.send_output(&batch).await;
            (batch.chunks, outcome)
        };
        ctx.spawn(
            send.into_actor(self)
                .map(|(chunks, outcome), act, ctx| act.sent(chunks, outcome, ctx)),
        );
    }

    fn sent(&mut self, chunks: Vec<OutputChunk>, outcome: Result<OutputAck, AgentError>, ctx: &mut Context<Self>) {
        self.in_flight = false;
        let mut failed = false;
        {
            let shared = &mut *self.shared.borrow_mut();
            for job in shared.jobs.values_mut() {
                job.in_flight = false;
            }
            match outcome {
                Ok(ack) => {
                    if self.failing {
                        tracing::info!("live output delivered again");
                        self.failing = false;
                    }
                    for job_id in ack.stop {
                        if let Some(job) = shared.jobs.get_mut(&JobId::from(job_id)) {
                            job.stopped = true;
                            job.buffer.clear();
                        }
                    }
                }
                // Down, overloaded, or not knowing this agent yet (it re-registers on its
                // own): keep the chunks for the next try, within the bound.
                Err(error) if error.is_connectivity_problem() || error.http_status() == Some(404) => {
                    failed = true;
                    if !self.failing {
                        tracing::warn!(%error, "live output not delivered; keeping it for the next try");
                        self.failing = true;
                    } else {
                        tracing::debug!(%error, "live output not delivered");
                    }
                    put_back(&mut shared.jobs, chunks);
                }
                Err(error) => {
                    if !self.warned_refused {
                        tracing::warn!(%error, "the orchestrator refused live output; that batch is dropped");
                        self.warned_refused = true;
                    } else {
                        tracing::debug!(%error, "live output refused; batch dropped");
                    }
                }
            }
            // After a failed send the finished jobs' results go without waiting for more
            // tries: live output is best effort, the result is what must get through.
            settle_finished(&mut shared.jobs, failed);
        }
        self.idle_or_reschedule(failed, ctx);
    }

    /// Schedules the next flush while output is pending, else goes idle (no timer).
    fn idle_or_reschedule(&mut self, failed: bool, ctx: &mut Context<Self>) {
        let (pending, finishing) = {
            let shared = self.shared.borrow();
            let pending = shared.jobs.values().any(|job| !job.stopped && !job.buffer.is_empty());
            let finishing = shared.jobs.values().any(|job| job.finished.is_some());
            (pending, finishing)
        };
        if !pending {
            self.shared.borrow_mut().awake = false;
            return;
        }
        let delay = if failed {
            RETRY_INTERVAL
        } else if finishing {
            Duration::ZERO
        } else {
            FLUSH_INTERVAL
        };
        self.schedule(delay, ctx);
    }

    /// The limit for a finished job ran out: its result goes without the rest.
    fn give_up(&mut self, job_id: &JobId) {
        let mut shared = self.shared.borrow_mut();
        if shared.jobs.get(job_id).is_some_and(|job| job.finished.is_some()) {
            if let Some(mut job) = shared.jobs.remove(job_id) {
                tracing::debug!(%job_id, unsent_bytes = job.buffer.unsent_bytes(), "live output of a finished job not delivered in time; the result carries it");
                if let Some(waiter) = job.finished.take() {
                    let _ = waiter.send(());
                }
            }
        }
    }
}

/// Takes what goes into the next request: finishing jobs first (their results wait),
/// then the others that ran long enough to stream, within the orchestrator's limits.
fn take_batch(shared: &mut Shared) -> Vec<OutputChunk> {
    let mut order: Vec<(&JobId, &mut LiveJob)> = shared
        .jobs
        .iter_mut()
        .filter(|(_, job)| !job.stopped && !job.buffer.is_empty())
        .filter(|(_, job)| job.streamed || job.finished.is_some() || job.started.elapsed() >= FLUSH_INTERVAL)
        .collect();
    order.sort_by_key(|(_, job)| job.finished.is_none());
    let mut chunks = Vec::new();
    let mut body = 0;
    'jobs: for (_, job) in order {
        while let Some(chunk) = job.buffer.front() {
            let cost = json_cost(chunk);
            if chunks.len() == MAX_BATCH_CHUNKS || (!chunks.is_empty() && body + cost > MAX_BATCH_BODY_BYTES) {
                break 'jobs;
            }
            body += cost;
            job.streamed = true;
            job.in_flight = true;
            chunks.extend(job.buffer.pop_front());
        }
    }
    chunks
}

/// Returns the chunks of a failed request to their jobs' buffers (jobs since finished
/// without waiting, or stopped, do not want them).
fn put_back(jobs: &mut HashMap<JobId, LiveJob>, chunks: Vec<OutputChunk>) {
    let mut by_job: HashMap<String, Vec<OutputChunk>> = HashMap::new();
    for chunk in chunks {
        by_job.entry(chunk.job_id.clone()).or_default().push(chunk);
    }
    for (job_id, chunks) in by_job {
        if let Some(job) = jobs.get_mut(&JobId::from(job_id)) {
            if !job.stopped {
                job.buffer.put_back(chunks);
            }
        }
    }
}

/// Finished jobs with nothing left to send (or all finished jobs, with `give_up`) are
/// done: their results may go.
fn settle_finished(jobs: &mut HashMap<JobId, LiveJob>, give_up: bool) {
    let done: Vec<JobId> = jobs
        .iter()
        .filter(|(_, job)| job.finished.is_some() && (give_up || job.settled()))
        .map(|(job_id, _)| job_id.clone())
        .collect();
    for job_id in done {
        if let Some(waiter) = jobs.remove(&job_id).and_then(|mut job| job.finished.take()) {
            let _ = waiter.send(());
        }
    }
}

impl Actor for LiveOutput {
    type Context = Context<Self>;
}

impl Handler<Wake> for LiveOutput {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        // The first output after a quiet spell (a line a second) goes at once; a job's
        // very first output still waits until it ran FLUSH_INTERVAL (see `take_batch`).
        let quiet_for = self.last_send.map_or(Duration::ZERO, |at| at.elapsed());
        self.schedule(FLUSH_INTERVAL.saturating_sub(quiet_for), ctx);
    }
}

impl Handler<Finish> for LiveOutput {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, Finish(job_id): Finish, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        let waiting = {
            let shared = &mut *self.shared.borrow_mut();
            let shutting_down = shared.shutting_down;
            match shared.jobs.get_mut(&job_id) {
                Some(job) if !shutting_down => {
                    // Nothing more will come: an unfinished character never will.
                    for (index, stream) in [OutputStream::Stdout, OutputStream::Stderr].into_iter().enumerate() {
                        let rest = job.carry[index].finish();
                        if !job.stopped {
                            job.buffer.push(stream, rest);
                        }
                    }
                    if job.settled() {
                        shared.jobs.remove(&job_id);
                        None
                    } else {
                        let (sender, receiver) = oneshot::channel();
                        job.finished = Some(sender);
                        Some(receiver)
                    }
                }
                _ => {
                    shared.jobs.remove(&job_id);
                    None
                }
            }
        };
        let Some(receiver) = waiting else {
            return Box::pin(std::future::ready(()));
        };
        self.schedule(Duration::ZERO, ctx);
        ctx.run_later(FINISH_FLUSH_LIMIT, move |act, _| act.give_up(&job_id));
        Box::pin(async move {
            let _ = receiver.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_carry_holds_back_an_unfinished_character() {
        let mut carry = Utf8Carry::default();
        let euro = "€".as_bytes();
        assert_eq!(carry.push(b"price: "), "price: ");
        assert_eq!(carry.push(&euro[..1]), "");
        assert_eq!(carry.push(&euro[1..2]), "");
        assert_eq!(carry.push(&[euro[2], b'5']), "€5");
        let smile = "😀".as_bytes();
        assert_eq!(carry.push(&[b'a', smile[0], smile[1]]), "a");
        assert_eq!(carry.push(&smile[2..]), "😀");
        assert_eq!(carry.finish(), "");
    }

    #[test]
    fn utf8_carry_replaces_what_can_never_be_utf8() {
        let mut carry = Utf8Carry::default();
        assert_eq!(carry.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        // At the end of the stream an unfinished character is shown as replaced.
        assert_eq!(carry.push(&[b'c', 0xe2, 0x82]), "c");
        assert_eq!(carry.finish(), "\u{fffd}");
        assert_eq!(carry.finish(), "");
    }

    fn chunk_summary(buffer: &mut JobBuffer) -> Vec<(OutputStream, u64, String)> {
        std::iter::from_fn(|| buffer.pop_front())
            .map(|chunk| (chunk.stream, chunk.offset, chunk.data))
            .collect()
    }

    #[test]
    fn job_buffer_assigns_contiguous_offsets_across_streams() {
        let mut buffer = JobBuffer::new("job_1", 1024);
        buffer.push(OutputStream::Stdout, "ab".into());
        buffer.push(OutputStream::Stdout, "cd".into());
        buffer.push(OutputStream::Stderr, "E".into());
        buffer.push(OutputStream::Stdout, String::new());
        buffer.push(OutputStream::Stdout, "é".into());
        assert_eq!(buffer.unsent_bytes(), 7);
        assert_eq!(buffer.front().map(|chunk| chunk.job_id.as_str()), Some("job_1"));
        assert_eq!(
            chunk_summary(&mut buffer),
            [
                (OutputStream::Stdout, 0, "abcd".to_owned()),
                (OutputStream::Stderr, 4, "E".to_owned()),
                (OutputStream::Stdout, 5, "é".to_owned()),
            ]
        );
        assert!(buffer.is_empty());
        assert_eq!(buffer.unsent_bytes(), 0);
        buffer.push(OutputStream::Stdout, "x".into());
        assert_eq!(chunk_summary(&mut buffer), [(OutputStream::Stdout, 7, "x".to_owned())]);
    }

    #[test]
    fn job_buffer_drops_the_oldest_chunks_over_its_bound_leaving_a_gap() {
        let mut buffer = JobBuffer::new("job_1", 10);
        buffer.push(OutputStream::Stdout, "0123".into());
        buffer.push(OutputStream::Stderr, "4567".into());
        buffer.push(OutputStream::Stdout, "89ab".into());
        assert_eq!(buffer.unsent_bytes(), 8);
        assert_eq!(
            chunk_summary(&mut buffer),
            [
                (OutputStream::Stderr, 4, "4567".to_owned()),
                (OutputStream::Stdout, 8, "89ab".to_owned()),
            ]
        );
    }

    #[test]
    fn job_buffer_merges_only_up_to_the_chunk_size() {
        let mut buffer = JobBuffer::new("job_1", 4 * MAX_CHUNK_BYTES);
        let piece = "x".repeat(MAX_CHUNK_BYTES / 2 + 1);
        for _ in 0..3 {
            buffer.push(OutputStream::Stdout, piece.clone());
        }
        let chunks = chunk_summary(&mut buffer);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|(_, _, data)| data.len() <= MAX_CHUNK_BYTES));
        assert_eq!(chunks[2].1, 2 * piece.len() as u64);
    }

    #[test]
    fn chunks_put_back_keep_their_order_and_the_bound() {
        let mut buffer = JobBuffer::new("job_1", 10);
        buffer.push(OutputStream::Stdout, "0123".into());
        buffer.push(OutputStream::Stderr, "4567".into());
        let taken: Vec<OutputChunk> = std::iter::from_fn(|| buffer.pop_front()).collect();
        // Written while the request was in flight.
        buffer.push(OutputStream::Stdout, "89ab".into());
        buffer.put_back(taken);
        assert_eq!(
            chunk_summary(&mut buffer),
            [
                (OutputStream::Stderr, 4, "4567".to_owned()),
                (OutputStream::Stdout, 8, "89ab".to_owned()),
            ]
        );
    }

    #[test]
    fn a_chunk_put_back_is_resent_unchanged() {
        let mut buffer = JobBuffer::new("job_1", 1024);
        buffer.push(OutputStream::Stdout, "abc".into());
        let taken: Vec<OutputChunk> = std::iter::from_fn(|| buffer.pop_front()).collect();
        buffer.put_back(taken);
        // The failed request may have been stored: its chunk must not grow on retry.
        buffer.push(OutputStream::Stdout, "def".into());
        buffer.push(OutputStream::Stdout, "ghi".into());
        assert_eq!(
            chunk_summary(&mut buffer),
            [
                (OutputStream::Stdout, 0, "abc".to_owned()),
                (OutputStream::Stdout, 3, "defghi".to_owned()),
            ]
        );
    }

    #[test]
    fn json_cost_bounds_the_serialized_size() {
        for data in ["plain", "quote\" back\\ nl\n", "\u{1}\u{2}ctl\u{1f}", "é€😀"] {
            let chunk = OutputChunk {
                job_id: "job_0123456789".into(),
                stream: OutputStream::Stderr,
                offset: u64::MAX,
                data: data.into(),
            };
            let serialized = serde_json::to_string(&chunk).expect("serializes").len() + 1;
            assert!(
                json_cost(&chunk) >= serialized,
                "{data:?}: {} < {serialized}",
                json_cost(&chunk)
            );
        }
    }
}
