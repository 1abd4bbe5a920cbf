//! Group commit: the job writes that arrive while a transaction is in flight (new jobs
//! from triggers, results from agents, claims for agents' polls) wait for it and then go
//! together in the next one.
//! Nothing waits when nothing is in flight, so a lone write is as quick as before, and
//! under load one commit carries many writes. Nobody is answered before their write is
//! committed.
//!
//! On PostgreSQL [`PG_IN_FLIGHT`] transactions may be in flight at once, so that writes
//! arriving during one commit's flush need not wait for it: the claims of one agent are
//! still one at a time (`dispatch`), claims lock with SKIP LOCKED, and a result whose job
//! another transaction is finishing waits for it and then finds it stored (a duplicate).
//! SQLite has one writer at a time, so there one transaction is in flight.

use super::TenantSupervisor;
use crate::db::jobs::{ClaimWrite, CompleteOutcome, ResultWrite, Written};
use crate::db::models::Job;
use crate::db::{self};
use crate::error::{Error, Result};
use actix::prelude::*;
use std::future::Future;
use tokio::sync::oneshot;

/// Most writes in one transaction (more wait for the next).
const MAX_WRITES: usize = 500;
/// Transactions in flight at once on PostgreSQL.
const PG_IN_FLIGHT: usize = 2;

#[derive(Default)]
pub(super) struct GroupCommit {
    inserts: Vec<(Job, oneshot::Sender<Result<()>>)>,
    results: Vec<(ResultWrite, oneshot::Sender<Result<CompleteOutcome>>)>,
    claims: Vec<(ClaimWrite, oneshot::Sender<Result<Vec<Job>>>)>,
    in_flight: usize,
}

impl GroupCommit {
    fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.results.is_empty() && self.claims.is_empty()
    }

    /// Whether another transaction may start now, with at most `most` in flight.
    fn may_start(&self, most: usize) -> bool {
        self.in_flight < most && !self.is_empty()
    }

    /// The writes for the next transaction, at most [`MAX_WRITES`].
    fn take(&mut self) -> Batch {
        let inserts = self.inserts.len().min(MAX_WRITES);
        let results = self.results.len().min(MAX_WRITES - inserts);
        let claims = self.claims.len().min(MAX_WRITES - inserts - results);
        Batch {
            inserts: self.inserts.drain(..inserts).collect(),
            results: self.results.drain(..results).collect(),
            claims: self.claims.drain(..claims).collect(),
        }
    }
}

struct Batch {
    inserts: Vec<(Job, oneshot::Sender<Result<()>>)>,
    results: Vec<(ResultWrite, oneshot::Sender<Result<CompleteOutcome>>)>,
    claims: Vec<(ClaimWrite, oneshot::Sender<Result<Vec<Job>>>)>,
}

/// A dropped answer means the supervisor restarted mid-write: the caller may retry.
pub(super) fn lost_answer() -> Error {
    Error::Unavailable("the write was interrupted; try again".into())
}

/// A queued write's answer channel, and the future that waits for its commit.
fn answer_channel<T>() -> (oneshot::Sender<Result<T>>, impl Future<Output = Result<T>>) {
    let (tx, rx) = oneshot::channel();
    (tx, async move { rx.await.map_err(|_| lost_answer())? })
}

impl TenantSupervisor {
    /// Queues a new job; the receiver answers once it is committed.
    pub(super) fn insert_job(&mut self, job: Job, ctx: &mut Context<Self>) -> impl Future<Output = Result<()>> {
        let (tx, committed) = answer_channel();
        self.commits.inserts.push((job, tx));
        self.commit(ctx);
        committed
    }

    /// Queues a result; the receiver answers once it is committed.
    pub(super) fn store_result(
        &mut self,
        result: ResultWrite,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<CompleteOutcome>> {
        let (tx, committed) = answer_channel();
        self.commits.results.push((result, tx));
        self.commit(ctx);
        committed
    }

    /// Queues a claim; the receiver answers with the jobs once the claim is committed.
    pub(super) fn claim_jobs(
        &mut self,
        claim: ClaimWrite,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<Vec<Job>>> {
        let (tx, committed) = answer_channel();
        self.commits.claims.push((claim, tx));
        self.commit(ctx);
        committed
    }

    /// Starts the next transaction unless the most that may be are in flight (each starts
    /// the next when done).
    fn commit(&mut self, ctx: &mut Context<Self>) {
        let most = match self.db {
            db::Db::Postgres(_) => PG_IN_FLIGHT,
            db::Db::Sqlite(_) => 1,
        };
        if !self.commits.may_start(most) {
            return;
        }
        self.commits.in_flight += 1;
        let Batch {
            inserts,
            results,
            claims,
        } = self.commits.take();
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        let write = async move {
            let (jobs, inserted): (Vec<Job>, Vec<_>) = inserts.into_iter().unzip();
            let (writes, stored): (Vec<ResultWrite>, Vec<_>) = results.into_iter().unzip();
            let (claims, claimed): (Vec<ClaimWrite>, Vec<_>) = claims.into_iter().unzip();
            match db::jobs::write_batch(&db, &tenant, &jobs, &writes, &claims).await {
                Ok(Written {
                    outcomes,
                    claimed: jobs,
                }) => {
                    for tx in inserted {
                        let _ = tx.send(Ok(()));
                    }
                    for (tx, outcome) in stored.into_iter().zip(outcomes) {
                        let _ = tx.send(Ok(outcome));
                    }
                    for (tx, jobs) in claimed.into_iter().zip(jobs) {
                        let _ = tx.send(Ok(jobs));
                    }
                }
                Err(error) => {
                    for tx in inserted {
                        let _ = tx.send(Err(error.clone()));
                    }
                    for tx in stored {
                        let _ = tx.send(Err(error.clone()));
                    }
                    for tx in claimed {
                        let _ = tx.send(Err(error.clone()));
                    }
                }
            }
        };
        ctx.spawn(write.into_actor(self).map(|(), act, ctx| {
            act.commits.in_flight -= 1;
            act.commit(ctx);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(agent: &str) -> (ClaimWrite, oneshot::Sender<Result<Vec<Job>>>) {
        let write = ClaimWrite {
            agent: agent.into(),
            limit: 1,
            handover: crate::db::jobs::Handover::Implicit,
        };
        (write, oneshot::channel().0)
    }

    #[test]
    fn a_transaction_starts_only_with_writes_and_room_in_flight() {
        let mut commits = GroupCommit::default();
        assert!(!commits.may_start(2), "nothing to write");
        commits.claims.push(claim("a"));
        assert!(commits.may_start(2));
        commits.in_flight = 1;
        assert!(commits.may_start(2), "PostgreSQL: a second may go");
        assert!(!commits.may_start(1), "SQLite: one at a time");
        commits.in_flight = 2;
        assert!(!commits.may_start(2));
    }

    #[test]
    fn a_batch_takes_at_most_max_writes() {
        let mut commits = GroupCommit::default();
        for i in 0..MAX_WRITES + 3 {
            commits.claims.push(claim(&format!("agent-{i}")));
        }
        assert_eq!(commits.take().claims.len(), MAX_WRITES);
        assert_eq!(commits.take().claims.len(), 3, "the rest go with the next");
        assert!(commits.is_empty());
    }
}
