//! Heartbeats written together: those that arrive within a short window go to the database
//! in a few statements for all of them (the lost hand-overs requeued, the time recorded,
//! the cancel orders read), and each is answered once that is written. A heartbeat after
//! a quiet spell goes at once; under load a tenant's heartbeats cost a handful of
//! statements per window instead of three each.

use super::commit::lost_answer;
use super::TenantSupervisor;
use crate::db::agents::HeartbeatWrite;
use crate::db::jobs::Held;
use crate::db::{self, Db};
use crate::error::Result;
use actix::prelude::*;
use shared_protocol::protocol::HeartbeatResponse;
use shared_protocol::ManifestEntry;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// At most one batch of a tenant's heartbeats starts per window: a heartbeat waits this
/// long at most for the others to join it (the agents send one a minute). With 10,000 idle
/// agents (`bench --only idle`, SQLite) a 100 ms window cost 6.2 % of one core and this one
/// 4.4 %: each batch is a transaction, a trip to the database's thread and back, and a few
/// statements whatever its size.
const WINDOW: Duration = Duration::from_secs(1);
/// Most heartbeats in one batch (more wait for the next).
const MAX_BEATS: usize = 1000;

/// One agent's heartbeat, checked, as it is to be written.
pub(super) struct Beat {
    pub agent: String,
    /// The jobs it holds (agents that start implicitly).
    pub held: Option<Vec<String>>,
    pub scripts: Vec<ManifestEntry>,
    pub interval_secs: i64,
    pub version: Option<String>,
    /// Manifest, interval or version differ from the cached row: written (and other
    /// replicas told) by the agent's own statement.
    pub manifest_changed: bool,
}

type Answer = oneshot::Sender<Result<HeartbeatResponse>>;

#[derive(Default)]
pub(super) struct HeartbeatBatches {
    queued: Vec<(Beat, Answer)>,
    in_flight: bool,
    /// A flush is due at the end of the current window.
    scheduled: bool,
    last_started: Option<Instant>,
}

/// When the queued heartbeats go.
#[derive(Debug, PartialEq, Eq)]
enum Flush {
    Now,
    After(Duration),
    /// A batch is in flight or a flush is scheduled: they go with the next one.
    Later,
}

impl HeartbeatBatches {
    fn plan(&self, now: Instant) -> Flush {
        if self.queued.is_empty() || self.in_flight || self.scheduled {
            return Flush::Later;
        }
        match self.last_started.map(|started| now.saturating_duration_since(started)) {
            Some(since) if since < WINDOW => Flush::After(WINDOW - since),
            _ => Flush::Now,
        }
    }

    /// The next batch, at most [`MAX_BEATS`]; it is in flight from now.
    fn take(&mut self, now: Instant) -> Vec<(Beat, Answer)> {
        self.in_flight = true;
        self.last_started = Some(now);
        let count = self.queued.len().min(MAX_BEATS);
        self.queued.drain(..count).collect()
    }
}

/// What the database said about one heartbeat.
pub(super) struct HeartbeatOutcome {
    /// The time recorded.
    pub now: i64,
    pub written: HeartbeatWrite,
    /// How many jobs handed to the agent never reached it (queued again).
    pub requeued: usize,
    /// Running jobs the agent must kill.
    pub cancel: Vec<String>,
}

/// What the database said about a batch of heartbeats.
struct Written {
    now: i64,
    writes: HashMap<String, HeartbeatWrite>,
    /// Jobs requeued per agent.
    requeued: HashMap<String, usize>,
    cancels: HashMap<String, Vec<String>>,
}

/// Writes a batch: jobs handed to agents that start implicitly and that they do not hold
/// (well after the hand-over: `handed_before`) go back to the queue; the time is recorded
/// for the online agents whose manifest did not change in one statement, and the others
/// (a changed manifest, an agent coming back online, one deleted) each in their own; then
/// the cancel orders of them all are read.
async fn write(db: &Db, tenant: &str, beats: &[Beat], handed_before: i64) -> Result<Written> {
    let now = db::now_ms();
    let held: Vec<Held<'_>> = beats
        .iter()
        .filter_map(|beat| {
            beat.held.as_deref().map(|jobs| Held {
                agent: &beat.agent,
                jobs,
            })
        })
        .collect();
    let mut requeued: HashMap<String, usize> = HashMap::new();
    if !held.is_empty() {
        for agent in db::jobs::requeue_unheld(db, tenant, &held, handed_before).await? {
            *requeued.entry(agent).or_default() += 1;
        }
    }
    let unchanged: Vec<&str> = beats
        .iter()
        .filter(|beat| !beat.manifest_changed)
        .map(|beat| beat.agent.as_str())
        .collect();
    let mut writes: HashMap<String, HeartbeatWrite> = HashMap::new();
    if !unchanged.is_empty() {
        for agent in db::agents::record_heartbeats(db, tenant, &unchanged, now).await? {
            writes.insert(agent, HeartbeatWrite::Recorded);
        }
    }
    for beat in beats {
        if writes.contains_key(&beat.agent) && !beat.manifest_changed {
            continue;
        }
        let scripts = serde_json::to_string(&beat.scripts)?;
        let row = db::agents::HeartbeatRow {
            now,
            scripts: &scripts,
            interval_secs: beat.interval_secs,
            version: beat.version.as_deref(),
            manifest_changed: beat.manifest_changed,
        };
        let written = db::agents::record_heartbeat(db, tenant, &beat.agent, &row).await?;
        // A second heartbeat of the agent in the batch does not undo the first's news.
        let entry = writes.entry(beat.agent.clone()).or_insert(written);
        if written == HeartbeatWrite::CameOnline {
            *entry = written;
        }
    }
    let agents: Vec<&str> = beats.iter().map(|beat| beat.agent.as_str()).collect();
    let mut cancels: HashMap<String, Vec<String>> = HashMap::new();
    for (agent, job_id) in db::jobs::cancel_requests(db, tenant, &agents).await? {
        cancels.entry(agent).or_default().push(job_id);
    }
    Ok(Written {
        now,
        writes,
        requeued,
        cancels,
    })
}

/// How the agent's heartbeat was written; its coming back online is news for its first
/// heartbeat in the batch only (an agent may send two, when it retries one).
fn take_write(writes: &mut HashMap<String, HeartbeatWrite>, agent: &str) -> HeartbeatWrite {
    match writes.get_mut(agent) {
        Some(write) => {
            let taken = *write;
            if taken == HeartbeatWrite::CameOnline {
                *write = HeartbeatWrite::Recorded;
            }
            taken
        }
        None => HeartbeatWrite::Unknown,
    }
}

impl TenantSupervisor {
    /// Queues a checked heartbeat; the future answers once it is written.
    pub(super) fn queue_heartbeat(
        &mut self,
        beat: Beat,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<HeartbeatResponse>> {
        let (tx, rx) = oneshot::channel();
        self.heartbeats.queued.push((beat, tx));
        self.flush_heartbeats_when_due(ctx);
        async move { rx.await.map_err(|_| lost_answer())? }
    }

    fn flush_heartbeats_when_due(&mut self, ctx: &mut Context<Self>) {
        match self.heartbeats.plan(Instant::now()) {
            Flush::Now => self.flush_heartbeats(ctx),
            Flush::After(delay) => {
                self.heartbeats.scheduled = true;
                ctx.run_later(delay, |act, ctx| {
                    act.heartbeats.scheduled = false;
                    act.flush_heartbeats_when_due(ctx);
                });
            }
            Flush::Later => {}
        }
    }

    fn flush_heartbeats(&mut self, ctx: &mut Context<Self>) {
        let (beats, answers): (Vec<Beat>, Vec<Answer>) = self.heartbeats.take(Instant::now()).into_iter().unzip();
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        let handed_before = db::now_ms() - self.dispatch_ack_timeout.as_millis() as i64;
        let work = async move {
            let written = write(&db, &tenant, &beats, handed_before).await;
            (beats, written)
        };
        ctx.spawn(work.into_actor(self).map(move |(beats, written), act, ctx| {
            act.heartbeats.in_flight = false;
            match written {
                Ok(mut written) => {
                    for (beat, answer) in beats.into_iter().zip(answers) {
                        let outcome = HeartbeatOutcome {
                            now: written.now,
                            written: take_write(&mut written.writes, &beat.agent),
                            requeued: written.requeued.remove(&beat.agent).unwrap_or(0),
                            cancel: written.cancels.get(&beat.agent).cloned().unwrap_or_default(),
                        };
                        let _ = answer.send(act.heartbeat_written(beat, outcome, ctx));
                    }
                }
                Err(error) => {
                    for answer in answers {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
            }
            act.flush_heartbeats_when_due(ctx);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(agent: &str) -> (Beat, Answer) {
        let (tx, _) = oneshot::channel();
        let beat = Beat {
            agent: agent.into(),
            held: None,
            scripts: Vec::new(),
            interval_secs: 60,
            version: None,
            manifest_changed: false,
        };
        (beat, tx)
    }

    #[test]
    fn a_heartbeat_after_a_quiet_spell_goes_at_once() {
        let mut batches = HeartbeatBatches::default();
        let now = Instant::now();
        assert_eq!(batches.plan(now), Flush::Later, "nothing queued");
        batches.queued.push(beat("a"));
        assert_eq!(batches.plan(now), Flush::Now);
        assert_eq!(batches.take(now).len(), 1);
        batches.in_flight = false;
        batches.queued.push(beat("a"));
        assert_eq!(batches.plan(now + WINDOW), Flush::Now, "a window later");
    }

    #[test]
    fn heartbeats_within_a_window_wait_for_its_end_and_go_together() {
        let mut batches = HeartbeatBatches::default();
        let start = Instant::now();
        batches.queued.push(beat("a"));
        batches.take(start);
        batches.queued.push(beat("b"));
        assert_eq!(batches.plan(start), Flush::Later, "one batch in flight at a time");
        batches.in_flight = false;
        let later = start + Duration::from_millis(30);
        assert_eq!(batches.plan(later), Flush::After(WINDOW - Duration::from_millis(30)));
        batches.scheduled = true;
        batches.queued.push(beat("c"));
        assert_eq!(batches.plan(later), Flush::Later, "already due at the window's end");
        batches.scheduled = false;
        let names: Vec<String> = batches
            .take(start + WINDOW)
            .into_iter()
            .map(|(beat, _)| beat.agent)
            .collect();
        assert_eq!(names, ["b", "c"]);
    }

    #[test]
    fn coming_back_online_is_news_once() {
        let mut writes = HashMap::from([
            ("back".to_owned(), HeartbeatWrite::CameOnline),
            ("on".to_owned(), HeartbeatWrite::Recorded),
        ]);
        assert_eq!(take_write(&mut writes, "back"), HeartbeatWrite::CameOnline);
        assert_eq!(take_write(&mut writes, "back"), HeartbeatWrite::Recorded);
        assert_eq!(take_write(&mut writes, "on"), HeartbeatWrite::Recorded);
        assert_eq!(take_write(&mut writes, "gone"), HeartbeatWrite::Unknown);
    }

    #[test]
    fn a_batch_holds_at_most_max_beats() {
        let mut batches = HeartbeatBatches::default();
        for i in 0..MAX_BEATS + 3 {
            batches.queued.push(beat(&format!("a{i}")));
        }
        assert_eq!(batches.take(Instant::now()).len(), MAX_BEATS);
        assert_eq!(batches.queued.len(), 3);
    }
}
