//! The poller actor: keeps exactly one long-poll open, asking for as many jobs as there
//! are free slots. It polls with `start=implicit`: the answer itself starts the jobs it
//! hands out (they are `running` from then on), so each goes straight to the executor;
//! the heartbeat's `held_jobs` lets the orchestrator requeue any answer that was lost on
//! the way. Cancellations go straight to the executor. A capacity-0 poll is replaced as soon
//! as a slot frees up, and failures back off with jitter until the orchestrator is back.

use crate::backoff::Backoff;
use crate::client::OrchestratorClient;
use crate::error::AgentError;
use crate::executor::{CancelJobs, Executor, FreeSlots, RunJob, SlotFreed};
use crate::job_id::parse_job_id;
use crate::metrics::{Metrics, PollResult};
use crate::registration::{Register, Registered, Registrar};
use actix::prelude::*;
use shared_protocol::protocol::PollResponse;
use std::time::Duration;

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

pub struct Poller {
    client: OrchestratorClient,
    executor: Addr<Executor>,
    registrar: Addr<Registrar>,
    metrics: Metrics,
    poll_wait: Duration,
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
        registrar: Addr<Registrar>,
        metrics: Metrics,
        poll_wait: Duration,
    ) -> Poller {
        Poller {
            client,
            executor,
            registrar,
            metrics,
            poll_wait,
            state: State::Unregistered,
            backoff: Backoff::default(),
            failures_in_a_row: 0,
        }
    }

    fn poll_now(&mut self, ctx: &mut Context<Self>) {
        let executor = self.executor.clone();
        let ask_capacity = async move { executor.send(FreeSlots).await.unwrap_or(0) };
        let poll = ask_capacity
            .into_actor(self)
            .then(|capacity, act, _| {
                if let State::Polling { capacity: known, .. } = &mut act.state {
                    *known = Some(capacity);
                }
                let client = act.client.clone();
                let wait = act.poll_wait;
                async move { (capacity, client.poll(capacity, wait).await) }.into_actor(act)
            })
            .map(|(capacity, result), act, ctx| act.on_answer(capacity, result, ctx));
        let handle = ctx.spawn(poll);
        self.state = State::Polling { handle, capacity: None };
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

    fn handle(&mut self, _: Registered, ctx: &mut Context<Self>) {
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
