//! Claiming queued jobs for an agent's poll, and how they are handed over.

use super::{DISPATCHED, RUNNING};
use crate::db::models::Job;
use crate::db::Db;
use crate::error::Result;
use crate::with_conn;
use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Text, Untyped};
use diesel::sqlite::Sqlite;
use diesel::QueryResult;
use diesel_async::RunQueryDsl;
use std::marker::PhantomData;

/// How a claimed job is handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// `dispatched`: the agent confirms with `/start` before it runs the job.
    Confirmed,
    /// `running` at once: the poll answer is the start (`start=implicit`).
    Implicit,
}

impl Handover {
    /// A new job handed over as it is written (a trigger straight to a parked poll).
    pub fn apply(self, job: &mut Job, now: i64) {
        job.dispatched_at = Some(now);
        job.attempts = 1;
        match self {
            Handover::Confirmed => job.status = DISPATCHED.into(),
            Handover::Implicit => {
                job.status = RUNNING.into();
                job.started_at = Some(now);
            }
        }
    }
}

/// Hands up to `limit` of the agent's oldest pending jobs to it (`pending` -> `dispatched`,
/// or `running` for an implicit start), in one statement. On PostgreSQL the rows are
/// locked with SKIP LOCKED so that replicas never claim one twice.
pub async fn claim(
    db: &Db,
    tenant_id: &str,
    agent: &str,
    limit: i64,
    now: i64,
    handover: Handover,
) -> Result<Vec<Job>> {
    let target = ClaimTarget {
        tenant_id: tenant_id.to_owned(),
        agent: agent.to_owned(),
        limit,
        now,
    };
    let mut claimed: Vec<Job> = with_conn!(db, |conn| match handover {
        Handover::Confirmed => ClaimQuery::<ToDispatched>::new(target).load::<Job>(conn).await?,
        Handover::Implicit => ClaimQuery::<ToRunning>::new(target).load::<Job>(conn).await?,
    });
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(claimed)
}

struct ClaimTarget {
    tenant_id: String,
    agent: String,
    limit: i64,
    now: i64,
}

/// The claim as a statement whose text is fixed per backend and handover (the type), so
/// each connection prepares it once and PostgreSQL keeps its plan: the queue's busiest
/// statement is not parsed and planned again for every claim.
struct ClaimQuery<H> {
    target: ClaimTarget,
    handover: PhantomData<H>,
}

impl<H> ClaimQuery<H> {
    fn new(target: ClaimTarget) -> ClaimQuery<H> {
        ClaimQuery {
            target,
            handover: PhantomData,
        }
    }
}

/// A claimed job becomes `dispatched` (confirmed later with `/start`).
struct ToDispatched;
/// A claimed job becomes `running` (started by the poll answer).
struct ToRunning;

trait HandoverSql: Send + 'static {
    /// What the claim sets besides `dispatched_at` and `attempts`.
    const SET: &'static str;
    /// Whether `started_at` is set too (to the same time).
    const STARTS: bool;
}

impl HandoverSql for ToDispatched {
    const SET: &'static str = "status = 'dispatched'";
    const STARTS: bool = false;
}

impl HandoverSql for ToRunning {
    const SET: &'static str = "status = 'running'";
    const STARTS: bool = true;
}

impl<H: HandoverSql> QueryId for ClaimQuery<H> {
    type QueryId = ClaimQuery<H>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<H: HandoverSql> Query for ClaimQuery<H> {
    type SqlType = Untyped;
}

impl<H: HandoverSql> ClaimQuery<H> {
    /// `SET ..., dispatched_at = ?[, started_at = ?], attempts = attempts + 1`.
    fn push_set<'b, DB: Backend>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>
    where
        i64: ToSql<BigInt, DB>,
    {
        out.push_sql(" SET ");
        out.push_sql(H::SET);
        out.push_sql(", dispatched_at = ");
        out.push_bind_param::<BigInt, _>(&self.target.now)?;
        if H::STARTS {
            out.push_sql(", started_at = ");
            out.push_bind_param::<BigInt, _>(&self.target.now)?;
        }
        out.push_sql(", attempts = jobs.attempts + 1");
        Ok(())
    }
}

impl<H: HandoverSql> QueryFragment<Pg> for ClaimQuery<H> {
    // A CTE, not `id IN (subquery)`: PostgreSQL may evaluate an IN subquery more than once
    // and so claim more rows than the LIMIT; a locking CTE runs once.
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH next AS (SELECT id FROM jobs WHERE tenant_id = ");
        out.push_bind_param::<Text, _>(&self.target.tenant_id)?;
        out.push_sql(" AND agent_name = ");
        out.push_bind_param::<Text, _>(&self.target.agent)?;
        out.push_sql(" AND status = 'pending' AND NOT awaiting_slot ORDER BY id LIMIT ");
        out.push_bind_param::<BigInt, _>(&self.target.limit)?;
        out.push_sql(" FOR UPDATE SKIP LOCKED) UPDATE jobs");
        self.push_set(&mut out)?;
        out.push_sql(" FROM next WHERE jobs.id = next.id AND jobs.status = 'pending' RETURNING jobs.*");
        Ok(())
    }
}

impl<H: HandoverSql> QueryFragment<Sqlite> for ClaimQuery<H> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("UPDATE jobs");
        self.push_set(&mut out)?;
        out.push_sql(" WHERE status = 'pending' AND id IN (SELECT id FROM jobs WHERE tenant_id = ");
        out.push_bind_param::<Text, _>(&self.target.tenant_id)?;
        out.push_sql(" AND agent_name = ");
        out.push_bind_param::<Text, _>(&self.target.agent)?;
        out.push_sql(" AND status = 'pending' AND NOT awaiting_slot ORDER BY id LIMIT ");
        out.push_bind_param::<BigInt, _>(&self.target.limit)?;
        out.push_sql(") RETURNING *");
        Ok(())
    }
}
