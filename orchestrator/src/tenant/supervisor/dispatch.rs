//! Parked long-polls and the hand-over of jobs to them. An agent keeps one poll open (on
//! whichever replica it reached); when jobs are queued for it, here or on another replica,
//! the replica holding the poll claims them from the database (`pending` -> `dispatched`)
//! and answers the poll. [`Queues`] holds the decisions; the actor methods do the I/O.

use super::TenantSupervisor;
use crate::db::jobs::{ClaimWrite, Handover};
use crate::db::models::Job;
use crate::db::{self};
use crate::error::Result;
use crate::tenant::messages::{Poll, Wake};
use actix::prelude::*;
use shared_protocol::protocol::{JobAssignment, PollResponse};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::oneshot;

/// Most jobs handed out in one poll answer.
pub const MAX_BATCH: u32 = 100;

pub(super) struct Waiter {
    capacity: u32,
    handover: Handover,
    tx: oneshot::Sender<PollResponse>,
}

impl Waiter {
    pub fn handover(&self) -> Handover {
        self.handover
    }
}

/// The dispatch state of one tenant's agents in this process.
#[derive(Default)]
pub(super) struct Queues {
    waiters: HashMap<String, VecDeque<Waiter>>,
    /// Agents with a claim in flight (one at a time per agent).
    pumping: HashSet<String>,
    /// Agents that got news while their claim was in flight: claim again after it.
    repump: HashSet<String>,
    /// Agents whose queue was seen empty by the last claim, with nothing queued since: a
    /// trigger for them can go straight to a parked poll, in one write instead of two.
    drained: HashSet<String>,
    /// Cancel orders already handed to a poll, so the once-a-second re-check does not
    /// repeat them.
    cancels_sent: HashSet<String>,
}

impl Queues {
    /// Parks a poll. An agent keeps one poll open: an older one still parked was
    /// abandoned (the agent restarted, or replaced it to ask for more capacity). It is
    /// released rather than risk handing a job to a connection nobody reads.
    pub fn park(&mut self, agent: &str, capacity: u32, handover: Handover) -> oneshot::Receiver<PollResponse> {
        let (tx, rx) = oneshot::channel();
        let queue = self.waiters.entry(agent.to_owned()).or_default();
        for stale in queue.drain(..) {
            let _ = stale.tx.send(PollResponse::default());
        }
        queue.push_back(Waiter { capacity, handover, tx });
        rx
    }

    /// How many jobs a claim should ask for (the first live poll's free capacity), and how
    /// that poll starts them.
    pub fn claim_capacity(&mut self, agent: &str) -> Option<(u32, Handover)> {
        let queue = self.waiters.get_mut(agent)?;
        queue.retain(|w| !w.tx.is_closed());
        queue
            .iter()
            .find(|w| w.capacity > 0)
            .map(|w| (w.capacity.min(MAX_BATCH), w.handover))
    }

    /// Takes the first live parked poll of the agent that has room for jobs.
    pub fn take_capacity_waiter(&mut self, agent: &str) -> Option<Waiter> {
        let queue = self.waiters.get_mut(agent)?;
        queue.retain(|w| !w.tx.is_closed());
        let position = queue.iter().position(|w| w.capacity > 0)?;
        queue.remove(position)
    }

    /// Gives a waiter back (its job could not be written).
    pub fn put_back(&mut self, agent: &str, waiter: Waiter) {
        self.waiters.entry(agent.to_owned()).or_default().push_front(waiter);
    }

    /// Starts a claim for the agent, or (one being in flight) asks for another after it.
    pub fn begin_claim(&mut self, agent: &str) -> bool {
        if self.pumping.insert(agent.to_owned()) {
            true
        } else {
            self.repump.insert(agent.to_owned());
            false
        }
    }

    /// A claim asked for `asked` jobs and got `got`: whether to claim again at once.
    pub fn end_claim(&mut self, agent: &str, asked: u32, got: usize) -> bool {
        self.pumping.remove(agent);
        let news_meanwhile = self.repump.remove(agent);
        if got < asked as usize && !news_meanwhile {
            self.drained.insert(agent.to_owned());
            false
        } else {
            self.drained.remove(agent);
            true
        }
    }

    /// A claim failed: nothing is known about the queue.
    pub fn claim_failed(&mut self, agent: &str) {
        self.pumping.remove(agent);
        self.drained.remove(agent);
    }

    /// Whether the agent's queue is known to be empty (see `drained`).
    pub fn is_drained(&self, agent: &str) -> bool {
        self.drained.contains(agent)
    }

    /// Jobs were queued for the agent (here or elsewhere): the queue is not empty.
    pub fn queued(&mut self, agent: &str) {
        self.drained.remove(agent);
    }

    /// For a new job: the poll to hand it to directly, if the agent's queue is known to be
    /// empty (nothing ahead of it) and a poll with room is parked.
    pub fn direct_waiter(&mut self, agent: &str) -> Option<Waiter> {
        if self.drained.contains(agent) && !self.pumping.contains(agent) {
            self.take_capacity_waiter(agent)
        } else {
            None
        }
    }

    /// Hands `response` to `first` or else to the agent's next parked poll with room;
    /// gives it back when nobody takes it.
    pub fn answer(&mut self, agent: &str, first: Option<Waiter>, mut response: PollResponse) -> Option<PollResponse> {
        let mut next = first;
        while let Some(waiter) = next.take().or_else(|| self.take_capacity_waiter(agent)) {
            match waiter.tx.send(response) {
                Ok(()) => return None,
                // That poll was abandoned a moment ago: try the next one.
                Err(returned) => response = returned,
            }
        }
        self.drained.remove(agent);
        Some(response)
    }

    /// Sends a cancel order to the agent's parked poll; false when none is parked (the
    /// next heartbeat answer carries it).
    pub fn send_cancel(&mut self, agent: &str, job_id: &str) -> bool {
        let Some(queue) = self.waiters.get_mut(agent) else {
            return false;
        };
        while let Some(waiter) = queue.pop_front() {
            let response = PollResponse {
                jobs: Vec::new(),
                cancel: vec![job_id.to_owned()],
            };
            if waiter.tx.send(response).is_ok() {
                self.cancels_sent.insert(job_id.to_owned());
                return true;
            }
        }
        false
    }

    /// The re-check found these cancel orders outstanding: those not yet sent, to send.
    /// Orders no longer outstanding are forgotten.
    pub fn unsent_cancels(&mut self, outstanding: &[(String, String)]) -> Vec<(String, String)> {
        let current: HashSet<&str> = outstanding.iter().map(|(_, job)| job.as_str()).collect();
        self.cancels_sent.retain(|job| current.contains(job.as_str()));
        outstanding
            .iter()
            .filter(|(_, job)| !self.cancels_sent.contains(job))
            .cloned()
            .collect()
    }

    /// The agent is gone or offline: its parked polls are answered empty and dropped.
    pub fn release(&mut self, agent: &str) {
        self.drained.remove(agent);
        for waiter in self.waiters.remove(agent).unwrap_or_default() {
            let _ = waiter.tx.send(PollResponse::default());
        }
    }

    /// The agent went silent: its parked polls are most likely dead connections; never
    /// hand them jobs.
    pub fn forget(&mut self, agent: &str) {
        self.drained.remove(agent);
        self.waiters.remove(agent);
    }
}

fn assignments(jobs: &[Job]) -> PollResponse {
    PollResponse {
        jobs: jobs
            .iter()
            .map(|job| JobAssignment {
                job_id: job.id.clone(),
                script: job.script.clone(),
                params: serde_json::from_str::<BTreeMap<String, String>>(&job.params).unwrap_or_default(),
                timeout_secs: job.timeout_secs.map(|t| t as u64),
                secret_params: crate::secrets::decode(job.secret_params.as_deref()),
            })
            .collect(),
        cancel: Vec::new(),
    }
}

impl TenantSupervisor {
    /// Hands queued jobs to the agent's parked poll, if one is parked here. The claim goes
    /// with the next group commit (see `commit`). One claim per agent is in flight at a
    /// time; news that lands meanwhile asks for another round, so no job is missed.
    pub(super) fn pump(&mut self, agent: &str, ctx: &mut Context<Self>) {
        let Some((capacity, handover)) = self.dispatch.claim_capacity(agent) else {
            return;
        };
        if !self.dispatch.begin_claim(agent) {
            return;
        }
        let claim = ClaimWrite {
            agent: agent.to_owned(),
            limit: capacity as i64,
            handover,
        };
        let claim = self.claim_jobs(claim, ctx);
        let agent = agent.to_owned();
        ctx.spawn(claim.into_actor(self).map(move |result, act, ctx| match result {
            Ok(jobs) => {
                if handover == Handover::Implicit {
                    act.started_implicitly(&jobs);
                }
                let again = act.dispatch.end_claim(&agent, capacity, jobs.len());
                if !jobs.is_empty() {
                    act.deliver(&agent, jobs, None, ctx);
                }
                if again {
                    act.pump(&agent, ctx);
                }
            }
            Err(error) => {
                act.dispatch.claim_failed(&agent);
                tracing::warn!(%error, agent = %agent, "claiming jobs failed; retrying shortly");
                ctx.run_later(Duration::from_millis(500), move |act, ctx| act.pump(&agent, ctx));
            }
        }));
    }

    /// Hands dispatched jobs to `waiter` or else to the agent's parked polls; jobs nobody
    /// takes go back to the queue.
    pub(super) fn deliver(&mut self, agent: &str, jobs: Vec<Job>, waiter: Option<Waiter>, ctx: &mut Context<Self>) {
        let Some(unanswered) = self.dispatch.answer(agent, waiter, assignments(&jobs)) else {
            return;
        };
        // Back to the queue, including those started implicitly: no agent has them.
        let ids: Vec<String> = unanswered.jobs.into_iter().map(|j| j.job_id).collect();
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        ctx.spawn(
            async move {
                if let Err(error) = db::jobs::requeue(&db, &tenant, &ids).await {
                    tracing::error!(%error, "could not requeue undelivered jobs; the sweep will");
                }
            }
            .into_actor(self),
        );
    }

    /// Jobs were queued for these agents elsewhere (another replica, a sweep): claim them
    /// for the polls parked here.
    pub(super) fn queued_elsewhere(&mut self, agents: &[String], ctx: &mut Context<Self>) {
        for agent in agents {
            self.dispatch.queued(agent);
            self.pump(agent, ctx);
        }
    }
}

impl Handler<Poll> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<oneshot::Receiver<PollResponse>>>;

    fn handle(&mut self, msg: Poll, ctx: &mut Context<Self>) -> Self::Result {
        let agent = msg.agent.clone();
        self.with_agent(&agent, ctx, move |act, ctx| {
            act.authorized_agent(&msg.agent, &msg.api_key_id)?;
            let rx = act.dispatch.park(&msg.agent, msg.capacity, msg.handover);
            // A queue known to be empty needs no claim: whatever is queued for the agent
            // from now on (here, or heard of from another replica) goes to this poll.
            if !act.dispatch.is_drained(&msg.agent) {
                act.pump(&msg.agent, ctx);
            }
            Ok(rx)
        })
    }
}

impl Handler<Wake> for TenantSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Wake, ctx: &mut Context<Self>) {
        self.queued_elsewhere(&msg.agents, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_response(id: &str) -> PollResponse {
        PollResponse {
            jobs: vec![JobAssignment {
                job_id: id.into(),
                script: "s".into(),
                params: BTreeMap::new(),
                timeout_secs: None,
                secret_params: Vec::new(),
            }],
            cancel: Vec::new(),
        }
    }

    #[test]
    fn a_new_poll_releases_the_one_it_replaces() {
        let mut queues = Queues::default();
        let mut first = queues.park("a", 1, Handover::Confirmed);
        let _second = queues.park("a", 1, Handover::Confirmed);
        assert_eq!(
            first.try_recv().unwrap().jobs.len(),
            0,
            "the older poll is answered empty"
        );
        assert_eq!(queues.claim_capacity("a"), Some((1, Handover::Confirmed)));
    }

    #[test]
    fn direct_hand_over_only_when_the_queue_is_known_empty() {
        let mut queues = Queues::default();
        let _rx = queues.park("a", 2, Handover::Confirmed);
        assert!(queues.direct_waiter("a").is_none(), "nothing known about the queue yet");
        assert!(queues.begin_claim("a"));
        assert!(!queues.end_claim("a", 2, 0), "an empty claim: the queue is drained");
        assert!(queues.direct_waiter("a").is_some());
        // Once queued elsewhere, the queue may hold older jobs: claim instead.
        let _rx = queues.park("a", 2, Handover::Confirmed);
        queues.queued("a");
        assert!(queues.direct_waiter("a").is_none());
    }

    #[test]
    fn news_during_a_claim_asks_for_another() {
        let mut queues = Queues::default();
        let _rx = queues.park("a", 5, Handover::Confirmed);
        assert_eq!(queues.claim_capacity("a"), Some((5, Handover::Confirmed)));
        assert!(queues.begin_claim("a"));
        assert!(!queues.begin_claim("a"), "one claim in flight per agent");
        assert!(queues.end_claim("a", 5, 1), "news arrived meanwhile: claim again");
        assert!(queues.begin_claim("a"));
        assert!(queues.end_claim("a", 5, 5), "a full claim may have left more");
    }

    #[test]
    fn an_answer_skips_abandoned_polls_and_comes_back_when_nobody_takes_it() {
        let mut queues = Queues::default();
        let rx = queues.park("a", 1, Handover::Confirmed);
        drop(rx);
        assert!(queues.answer("a", None, job_response("job_1")).is_some());
        let mut rx = queues.park("a", 1, Handover::Confirmed);
        assert!(queues.answer("a", None, job_response("job_2")).is_none());
        assert_eq!(rx.try_recv().unwrap().jobs[0].job_id, "job_2");
    }

    #[test]
    fn cancel_orders_are_sent_once_and_forgotten_when_done() {
        let mut queues = Queues::default();
        assert!(!queues.send_cancel("a", "job_1"), "no poll parked");
        let mut rx = queues.park("a", 1, Handover::Confirmed);
        assert!(queues.send_cancel("a", "job_1"));
        assert_eq!(rx.try_recv().unwrap().cancel, ["job_1"]);
        let outstanding = vec![
            ("a".to_owned(), "job_1".to_owned()),
            ("a".to_owned(), "job_2".to_owned()),
        ];
        assert_eq!(
            queues.unsent_cancels(&outstanding),
            [("a".to_owned(), "job_2".to_owned())]
        );
        assert!(queues.unsent_cancels(&[]).is_empty());
        assert_eq!(
            queues.unsent_cancels(&outstanding).len(),
            2,
            "forgotten once no longer outstanding"
        );
    }
}
