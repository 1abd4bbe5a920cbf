//! The poller actor: keeps exactly one long-poll open, asking for as many jobs as there
//! are free slots. It polls with `start=implicit`: the answer itself starts the jobs it
//! hands out (they are `running` from then on), so each goes straight to the executor;
//! the heartbeat's `held_jobs` lets the orchestrator requeue any answer that was lost on
//! the way. Cancellations go straight to the executor. A capacity-0 poll is replaced as soon
//! as a slot frees up, and failures back off with jitter until the orchestrator is back.
//!
//! When the orchestrator takes heartbeats on the poll, the poller carries them: a poll
//! sent when one is due holds it (`POST /agent/poll`), and no poll waits past the next
//! one's due time ([`BeatSchedule`]). The agent then keeps one connection, not two.

use crate::backoff::Backoff;
use crate::client::OrchestratorClient;
use crate::error::AgentError;
use crate::executor::{CancelJobs, Executor, FreeSlots, RunJob, SlotFreed};
use crate::heartbeat::{BeatOnItsOwn, Compose, Heartbeat};
use crate::job_id::parse_job_id;
use crate::metrics::{Metrics, PollResult};
use crate::registration::{Register, Registered, Registrar};
use actix::prelude::*;
use shared_protocol::protocol::PollResponse;
use std::time::{Duration, Instant};

/// The pause before polling the next replica after one failed.
const FAIL_OVER_DELAY: Duration = Duration::from_millis(50);

/// Stop polling for good (the agent is shutting down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopPolling;

enum State {
    /// Waiting for the registrar: at start-up, and after the orchestrator forgot us.
    Unregistered,
    /// A poll is open. `capacity` is unknown while the executor is still being asked.
    Polling {
        handle: SpawnHandle,
        capacity: Option<usize>,
    },
    /// Confirming and handing over the jobs of the last answer.
    Dispatching,
    /// Waiting out a backoff delay before the next poll.
    BackingOff,
}

/// When the heartbeats carried by polls are due, and so how long a poll may wait.
#[derive(Debug)]
pub struct BeatSchedule {
    interval: Duration,
    /// Whether polls carry heartbeats at all (the orchestrator takes them so).
    enabled: bool,
    due: Instant,
}

/// What the next poll does about the heartbeat.
#[derive(Debug, PartialEq, Eq)]
pub struct PollPlan {
    /// Carry a heartbeat.
    pub beat: bool,
    /// Ask the orchestrator to hold the poll this long at most.
    pub wait: Duration,
}

impl BeatSchedule {
    pub fn new(interval: Duration, now: Instant) -> BeatSchedule {
        BeatSchedule {
            interval,
            enabled: false,
            due: now + interval,
        }
    }

    /// (Re-)registered: the registration told the orchestrator we are alive, so the
    /// next heartbeat is an interval away.
    pub fn registered(&mut self, heartbeat_in_poll: bool, now: Instant) {
        self.enabled = heartbeat_in_poll;
        self.due = now + self.interval;
    }

    /// The poll going out at `now`: a heartbeat when one is due, and a wait that ends by
    /// the next due time (in whole seconds, as the orchestrator takes it: at most a second
    /// late).
    pub fn plan(&self, now: Instant, poll_wait: Duration) -> PollPlan {
        if !self.enabled {
            return PollPlan {
                beat: false,
                wait: poll_wait,
            };
        }
        if now >= self.due {
            return PollPlan {
                beat: true,
                wait: poll_wait.min(self.interval),
            };
        }
        let until_due = Duration::from_secs((self.due - now).as_secs_f64().ceil() as u64);
        PollPlan {
            beat: false,
            wait: poll_wait.min(until_due),
        }
    }

    /// A poll sent at `sent_at` delivered the heartbeat.
    pub fn delivered(&mut self, sent_at: Instant) {
        self.due = sent_at + self.interval;
    }

    /// Polls carry no more heartbeats (until the next registration says otherwise).
    pub fn stop_carrying(&mut self) {
        self.enabled = false;
    }
}

pub struct Poller {
    client: OrchestratorClient,
    executor: Addr<Executor>,
    heartbeat: Addr<Heartbeat>,
    registrar: Addr<Registrar>,
    metrics: Metrics,
    poll_wait: Duration,
    schedule: BeatSchedule,
    state: State,
    backoff: Backoff,
    /// Polls failed for connectivity in a row: while other ORCHESTRATOR_URLs are left
    /// to try, the next poll goes out at once.
    failures_in_a_row: usize,
}

impl Poller {
    pub fn new(
        client: OrchestratorClient,
        executor: Addr<Executor>,
        heartbeat: Addr<Heartbeat>,
        registrar: Addr<Registrar>,
        metrics: Metrics,
        poll_wait: Duration,
        heartbeat_interval: Duration,
    ) -> Poller {
        Poller {
            client,
            executor,
            heartbeat,
            registrar,
            metrics,
            poll_wait,
            schedule: BeatSchedule::new(heartbeat_interval, Instant::now()),
            state: State::Unregistered,
            backoff: Backoff::default(),
            failures_in_a_row: 0,
        }
    }

    fn poll_now(&mut self, ctx: &mut Context<Self>) {
        let sent_at = Instant::now();
        let plan = self.schedule.plan(sent_at, self.poll_wait);
        let executor = self.executor.clone();
        let heartbeat = self.heartbeat.clone();
        let prepare = async move {
            let capacity = executor.send(FreeSlots).await.unwrap_or(0);
            if !plan.beat {
                return (capacity, None);
            }
            let beat = match heartbeat.send(Compose).await {
                Ok(Ok(request)) => Some(request),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not put the heartbeat together; polling without it");
                    None
                }
                Err(error) => {
                    tracing::error!(%error, "the heartbeat actor is gone");
                    None
                }
            };
            (capacity, beat)
        };
        let poll = prepare
            .into_actor(self)
            .then(move |(capacity, beat), act, _| {
                if let State::Polling { capacity: known, .. } = &mut act.state {
                    *known = Some(capacity);
                }
                let client = act.client.clone();
                async move {
                    let result = client.poll(capacity, plan.wait, beat.as_ref()).await;
                    (capacity, beat.is_some(), result)
                }
                .into_actor(act)
            })
            .map(move |(capacity, carried_beat, result), act, ctx| {
                if carried_beat {
                    act.beat_settled(sent_at, &result);
                }
                act.on_answer(capacity, result, ctx)
            });
        let handle = ctx.spawn(poll);
        self.state = State::Polling { handle, capacity: None };
    }

    /// A poll carrying a heartbeat came back, or failed.
    fn beat_settled(&mut self, sent_at: Instant, result: &Result<PollResponse, AgentError>) {
        match result {
            Ok(_) => {
                self.schedule.delivered(sent_at);
                self.metrics.heartbeats_sent.inc();
            }
            Err(error) => {
                self.metrics.heartbeats_failed.inc();
                if error.http_status() == Some(405) {
                    // A replica that does not take heartbeats on the poll (an older version,
                    // mid-upgrade): poll and beat apart, as with any such orchestrator.
                    tracing::warn!("the orchestrator takes no heartbeats on the poll; sending them on their own");
                    self.schedule.stop_carrying();
                    self.heartbeat.do_send(BeatOnItsOwn);
                }
                // Otherwise still due: the next poll carries it.
            }
        }
    }

    fn on_answer(&mut self, capacity: usize, result: Result<PollResponse, AgentError>, ctx: &mut Context<Self>) {
        let response = match result {
            Ok(response) => response,
            Err(error) => return self.on_error(error, ctx),
        };
        self.backoff.reset();
        self.failures_in_a_row = 0;
        self.metrics.set_connected(true);
        self.metrics.poll_finished(if response.jobs.is_empty() {
            PollResult::Empty
        } else {
            PollResult::Jobs
        });
        if !response.cancel.is_empty() {
            self.executor.do_send(CancelJobs(response.cancel));
        }
        if response.jobs.is_empty() {
            return self.poll_now(ctx);
        }

        let mut jobs = response.jobs;
        if jobs.len() > capacity {
            let extra: Vec<String> = jobs.drain(capacity..).map(|job| job.job_id).collect();
            // Not held here, so the orchestrator puts them back in the queue (held_jobs).
            tracing::warn!(
                capacity,
                ?extra,
                "the orchestrator sent more jobs than asked for; the extra ones are not started"
            );
        }
        self.state = State::Dispatching;
        let executor = self.executor.clone();
        let dispatch = async move {
            // The poll asked for an implicit start: the answer itself started these jobs.
            for job in jobs {
                if let Err(reason) = parse_job_id(&job.job_id) {
                    tracing::error!(%reason, "job with a malformed id ignored");
                    continue;
                }
                // Awaited so the executor has taken the job before capacity is asked again.
                if let Err(error) = executor.send(RunJob(job)).await {
                    tracing::error!(%error, "the executor is gone");
                }
            }
        };
        ctx.spawn(dispatch.into_actor(self).map(|(), act, ctx| act.poll_now(ctx)));
    }

    fn on_error(&mut self, error: AgentError, ctx: &mut Context<Self>) {
        self.metrics.poll_finished(PollResult::Error);
        if error.http_status() == Some(404) {
            tracing::warn!("the orchestrator does not know this agent any more; registering again");
            self.metrics.set_connected(true);
            self.state = State::Unregistered;
            self.registrar.do_send(Register);
            return;
        }
        let delay = if error.is_auth_failure() {
            self.metrics.set_connected(true);
            tracing::error!(%error, "poll refused: API_KEY is invalid or has been revoked");
            self.backoff.slow_delay()
        } else if error.is_connectivity_problem() && self.failures_in_a_row + 1 < self.client.url_count() {
            // The client moved on to another replica: try it straight away.
            self.failures_in_a_row += 1;
            tracing::warn!(%error, "poll failed; trying the next ORCHESTRATOR_URL");
            FAIL_OVER_DELAY
        } else {
            self.failures_in_a_row += 1;
            self.metrics.set_connected(!error.is_connectivity_problem());
            let delay = self.backoff.next_delay();
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "poll failed; retrying");
            delay
        };
        self.state = State::BackingOff;
        ctx.run_later(delay, |act, ctx| {
            if matches!(act.state, State::BackingOff) {
                act.poll_now(ctx);
            }
        });
    }
}

impl Actor for Poller {
    type Context = Context<Self>;
}

impl Handler<Registered> for Poller {
    type Result = ();

    fn handle(&mut self, registered: Registered, ctx: &mut Context<Self>) {
        self.schedule.registered(registered.heartbeat_in_poll, Instant::now());
        if matches!(self.state, State::Unregistered) {
            self.poll_now(ctx);
        }
    }
}

impl Handler<SlotFreed> for Poller {
    type Result = ();

    fn handle(&mut self, _: SlotFreed, ctx: &mut Context<Self>) {
        // An open poll that asked for nothing (or whose capacity is still being worked
        // out) would keep the new slot idle until it times out: replace it.
        if let State::Polling { handle, capacity } = &self.state {
            if matches!(capacity, None | Some(0)) {
                ctx.cancel_future(*handle);
                self.poll_now(ctx);
            }
        }
    }
}

impl Handler<StopPolling> for Poller {
    type Result = ();

    fn handle(&mut self, _: StopPolling, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(60);
    const POLL_WAIT: Duration = Duration::from_secs(50);

    fn schedule(heartbeat_in_poll: bool) -> (BeatSchedule, Instant) {
        let start = Instant::now();
        let mut schedule = BeatSchedule::new(INTERVAL, start);
        schedule.registered(heartbeat_in_poll, start);
        (schedule, start)
    }

    #[test]
    fn without_heartbeats_in_the_poll_polls_wait_the_full_time_and_carry_none() {
        let (schedule, start) = schedule(false);
        for later in [0, 30, 59, 60, 600] {
            let plan = schedule.plan(start + Duration::from_secs(later), POLL_WAIT);
            assert_eq!(
                plan,
                PollPlan {
                    beat: false,
                    wait: POLL_WAIT
                },
                "{later} s in"
            );
        }
    }

    #[test]
    fn a_poll_waits_no_longer_than_until_the_next_heartbeat_is_due() {
        let (schedule, start) = schedule(true);
        assert_eq!(schedule.plan(start, POLL_WAIT).wait, POLL_WAIT);
        assert_eq!(
            schedule.plan(start + Duration::from_secs(50), POLL_WAIT).wait,
            Duration::from_secs(10)
        );
        // Rounded up to whole seconds: never a zero wait, at most a second late.
        let plan = schedule.plan(start + Duration::from_millis(59_700), POLL_WAIT);
        assert_eq!(
            plan,
            PollPlan {
                beat: false,
                wait: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn a_due_heartbeat_rides_on_the_next_poll_until_one_delivers_it() {
        let (mut schedule, start) = schedule(true);
        let due = start + INTERVAL;
        assert_eq!(
            schedule.plan(due, POLL_WAIT),
            PollPlan {
                beat: true,
                wait: POLL_WAIT
            }
        );
        // The poll failed: the next one carries it again.
        assert!(schedule.plan(due + Duration::from_secs(3), POLL_WAIT).beat);
        schedule.delivered(due + Duration::from_secs(3));
        let plan = schedule.plan(due + Duration::from_secs(4), POLL_WAIT);
        assert!(!plan.beat);
        assert_eq!(plan.wait, POLL_WAIT);
        assert!(schedule.plan(due + Duration::from_secs(63), POLL_WAIT).beat);
    }

    #[test]
    fn a_short_interval_caps_the_wait_of_a_poll_that_carries_a_heartbeat() {
        let start = Instant::now();
        let mut schedule = BeatSchedule::new(Duration::from_secs(5), start);
        schedule.registered(true, start);
        let plan = schedule.plan(start + Duration::from_secs(5), POLL_WAIT);
        assert_eq!(
            plan,
            PollPlan {
                beat: true,
                wait: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn polls_stop_carrying_heartbeats_when_told_until_a_registration_says_otherwise() {
        let (mut schedule, start) = schedule(true);
        let due = start + INTERVAL;
        schedule.stop_carrying();
        assert_eq!(
            schedule.plan(due, POLL_WAIT),
            PollPlan {
                beat: false,
                wait: POLL_WAIT
            }
        );
        schedule.registered(true, due);
        assert!(schedule.plan(due + INTERVAL, POLL_WAIT).beat);
    }

    #[test]
    fn registering_again_restarts_the_interval() {
        let (mut schedule, start) = schedule(true);
        let later = start + Duration::from_secs(90);
        assert!(schedule.plan(later, POLL_WAIT).beat);
        schedule.registered(true, later);
        assert!(!schedule.plan(later, POLL_WAIT).beat);
        assert!(schedule.plan(later + INTERVAL, POLL_WAIT).beat);
    }
}
