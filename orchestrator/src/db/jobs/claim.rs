//! Claiming queued jobs for an agent's poll, and how they are handed over.

use super::{DISPATCHED, RUNNING};
use crate::db::models::Job;
use crate::db::SqliteAsync;
use crate::error::Result;
use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Array, BigInt, Bool, Text, Untyped};
use diesel::sqlite::Sqlite;
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
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

/// One agent's claim in a batch: up to `limit` of its oldest pending jobs.
#[derive(Clone, Debug)]
pub struct ClaimWrite {
    pub agent: String,
    pub limit: i64,
    pub handover: Handover,
}

/// The claims of a batch, in one statement on PostgreSQL (the agents as arrays, each
/// agent's jobs locked with SKIP LOCKED so that replicas never claim one twice) and one
/// statement per agent on SQLite, inside the caller's transaction. Answers each claim's
/// jobs in id order, in the order of `claims`; an agent appears at most once.
pub(super) async fn claim_pg(
    mut conn: &AsyncPgConnection,
    tenant_id: &str,
    claims: &[ClaimWrite],
    now: i64,
) -> Result<Vec<Vec<Job>>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let batch = BatchClaim {
        tenant_id,
        agents: claims.iter().map(|c| c.agent.as_str()).collect(),
        limits: claims.iter().map(|c| c.limit).collect(),
        starts: claims.iter().map(|c| c.handover == Handover::Implicit).collect(),
        now,
    };
    let claimed: Vec<Job> = batch.load::<Job>(&mut conn).await?;
    Ok(by_claim(claims, claimed))
}

pub(super) async fn claim_sqlite(
    conn: &mut SqliteAsync,
    tenant_id: &str,
    claims: &[ClaimWrite],
    now: i64,
) -> Result<Vec<Vec<Job>>> {
    let mut all = Vec::new();
    for claim in claims {
        let target = ClaimTarget {
            tenant_id: tenant_id.to_owned(),
            agent: claim.agent.clone(),
            limit: claim.limit,
            now,
        };
        let claimed = match claim.handover {
            Handover::Confirmed => ClaimQuery::<ToDispatched>::new(target).load::<Job>(conn).await?,
            Handover::Implicit => ClaimQuery::<ToRunning>::new(target).load::<Job>(conn).await?,
        };
        all.extend(claimed);
    }
    Ok(by_claim(claims, all))
}

/// Claimed jobs sorted to their claims (by agent), each claim's in id order.
fn by_claim(claims: &[ClaimWrite], claimed: Vec<Job>) -> Vec<Vec<Job>> {
    let mut by_agent: HashMap<String, Vec<Job>> = HashMap::new();
    for job in claimed {
        by_agent.entry(job.agent_name.clone()).or_default().push(job);
    }
    claims
        .iter()
        .map(|claim| {
            let mut jobs = by_agent.remove(&claim.agent).unwrap_or_default();
            jobs.sort_by(|a, b| a.id.cmp(&b.id));
            jobs
        })
        .collect()
}

/// Every claim of a batch in one PostgreSQL statement: the agents, their limits and
/// whether each starts implicitly as arrays, each agent's oldest pending jobs picked by a
/// LATERAL subquery. The text is fixed, so each connection prepares it once.
struct BatchClaim<'a> {
    tenant_id: &'a str,
    agents: Vec<&'a str>,
    limits: Vec<i64>,
    starts: Vec<bool>,
    now: i64,
}

crate::fixed_statement!(BatchClaim);

impl QueryFragment<Pg> for BatchClaim<'_> {
    // A CTE, not `id IN (subquery)`: PostgreSQL may evaluate an IN subquery more than once
    // and so claim more rows than the LIMIT; a locking CTE runs once.
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH want AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.agents)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.limits)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.starts)?;
        out.push_sql(
            ") AS w(agent, lim, starts)), next AS (SELECT j.id, want.starts FROM want CROSS JOIN LATERAL \
             (SELECT id FROM jobs WHERE tenant_id = ",
        );
        out.push_bind_param::<Text, _>(&self.tenant_id)?;
        out.push_sql(
            " AND agent_name = want.agent AND status = 'pending' AND NOT awaiting_slot ORDER BY id \
             LIMIT want.lim FOR UPDATE SKIP LOCKED) AS j) \
             UPDATE jobs SET status = CASE WHEN next.starts THEN 'running' ELSE 'dispatched' END, dispatched_at = ",
        );
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(", started_at = CASE WHEN next.starts THEN ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(
            " ELSE jobs.started_at END, attempts = jobs.attempts + 1 \
             FROM next WHERE jobs.id = next.id AND jobs.status = 'pending' RETURNING jobs.*",
        );
        Ok(())
    }
}

struct ClaimTarget {
    tenant_id: String,
    agent: String,
    limit: i64,
    now: i64,
}

/// One agent's claim on SQLite, as a statement whose text is fixed per handover (the
/// type), so each connection prepares it once.
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
