//! Schedules and their runs. A fire is claimed by compare-and-set on `next_fire_at` and
//! written, with its jobs and run records, in one transaction: two replicas never fire one
//! slot twice, and a crash never leaves a claimed slot without its record.

use super::models::{Job, Schedule, ScheduleRun};
use super::schema::{jobs, schedule_runs, schedules};
use super::Db;
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// Job statuses that mean a run of the schedule is still going.
const ACTIVE_JOB_STATUSES: [&str; 3] = ["pending", "dispatched", "running"];

pub async fn insert(db: &Db, schedule: &Schedule) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::insert_into(schedules::table)
            .values(schedule)
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// The tenant's schedules, oldest first.
pub async fn list(db: &Db, tenant_id: &str) -> Result<Vec<Schedule>> {
    with_conn!(db, |conn| {
        Ok(schedules::table
            .filter(schedules::tenant_id.eq(tenant_id))
            .order(schedules::id)
            .select(Schedule::as_select())
            .load(conn)
            .await?)
    })
}

/// The schedules whose timers the tenant's supervisor keeps.
pub async fn list_enabled(db: &Db, tenant_id: &str) -> Result<Vec<Schedule>> {
    with_conn!(db, |conn| {
        Ok(schedules::table
            .filter(schedules::tenant_id.eq(tenant_id))
            .filter(schedules::enabled.eq(true))
            .order(schedules::id)
            .select(Schedule::as_select())
            .load(conn)
            .await?)
    })
}

pub async fn find(db: &Db, tenant_id: &str, id: &str) -> Result<Option<Schedule>> {
    with_conn!(db, |conn| {
        Ok(schedules::table
            .filter(schedules::id.eq(id))
            .filter(schedules::tenant_id.eq(tenant_id))
            .select(Schedule::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Stores a changed schedule. `next_fire_at` and `last_fire_at` are written only with
/// `reset_next_fire` (the timing changed): otherwise a fire claimed meanwhile could be
/// undone and its slot fired twice. Returns false if the schedule is gone.
pub async fn update(db: &Db, schedule: &Schedule, reset_next_fire: bool) -> Result<bool> {
    with_conn!(db, |conn| {
        let target = schedules::table
            .filter(schedules::id.eq(&schedule.id))
            .filter(schedules::tenant_id.eq(&schedule.tenant_id));
        let changed = if reset_next_fire {
            diesel::update(target).set(schedule).execute(conn).await?
        } else {
            diesel::update(target)
                .set((
                    schedules::agent_name.eq(&schedule.agent_name),
                    schedules::tags.eq(&schedule.tags),
                    schedules::script.eq(&schedule.script),
                    schedules::cron_expression.eq(&schedule.cron_expression),
                    schedules::timezone.eq(&schedule.timezone),
                    schedules::params.eq(&schedule.params),
                    schedules::webhook_url.eq(&schedule.webhook_url),
                    schedules::timeout_secs.eq(schedule.timeout_secs),
                    schedules::enabled.eq(schedule.enabled),
                    schedules::overlap.eq(&schedule.overlap),
                    schedules::misfire_grace_secs.eq(schedule.misfire_grace_secs),
                    schedules::updated_at.eq(schedule.updated_at),
                ))
                .execute(conn)
                .await?
        };
        Ok(changed == 1)
    })
}

/// Pauses (`next_fire_at` None) or resumes a schedule; returns the stored row.
pub async fn set_enabled(
    db: &Db,
    tenant_id: &str,
    id: &str,
    enabled: bool,
    next_fire_at: Option<i64>,
    now: i64,
) -> Result<Option<Schedule>> {
    with_conn!(db, |conn| {
        Ok(diesel::update(
            schedules::table
                .filter(schedules::id.eq(id))
                .filter(schedules::tenant_id.eq(tenant_id)),
        )
        .set((
            schedules::enabled.eq(enabled),
            schedules::next_fire_at.eq(next_fire_at),
            schedules::updated_at.eq(now),
        ))
        .returning(Schedule::as_returning())
        .get_result(conn)
        .await
        .optional()?)
    })
}

/// Deletes a schedule and (by cascade) its runs. Its jobs stay, still naming it.
pub async fn delete(db: &Db, tenant_id: &str, id: &str) -> Result<bool> {
    with_conn!(db, |conn| {
        let deleted = diesel::delete(
            schedules::table
                .filter(schedules::id.eq(id))
                .filter(schedules::tenant_id.eq(tenant_id)),
        )
        .execute(conn)
        .await?;
        Ok(deleted == 1)
    })
}

/// The schedule's runs, newest slot first.
pub async fn runs(db: &Db, tenant_id: &str, schedule_id: &str, limit: i64) -> Result<Vec<ScheduleRun>> {
    with_conn!(db, |conn| {
        Ok(schedule_runs::table
            .filter(schedule_runs::schedule_id.eq(schedule_id))
            .filter(schedule_runs::tenant_id.eq(tenant_id))
            .order((schedule_runs::scheduled_for.desc(), schedule_runs::id.desc()))
            .limit(limit)
            .select(ScheduleRun::as_select())
            .load(conn)
            .await?)
    })
}

/// Tenants with enabled schedules: their supervisors start with the orchestrator, so that
/// timers run (and missed fires are noticed) before any request arrives.
pub async fn tenants_with_enabled(db: &Db) -> Result<Vec<String>> {
    with_conn!(db, |conn| {
        Ok(schedules::table
            .filter(schedules::enabled.eq(true))
            .select(schedules::tenant_id)
            .distinct()
            .load::<String>(conn)
            .await?)
    })
}

/// The run that fires now, if any.
pub struct PlannedRun {
    /// Outcome `fired` or `caught_up` (becomes `skipped` if the overlap check says so);
    /// `job_ids` is filled in here.
    pub record: ScheduleRun,
    pub jobs: Vec<Job>,
    /// overlap = "skip": create nothing while a job of this schedule is pending, dispatched or running.
    pub skip_if_active: bool,
}

/// Everything one wake-up of a schedule's timer writes.
pub struct Fire {
    pub tenant_id: String,
    pub schedule_id: String,
    /// The `next_fire_at` the plan was made from: the claim succeeds only if it is unchanged.
    pub claimed_slot: i64,
    pub next_fire_at: Option<i64>,
    /// Records of missed slots (and at most one summary of those not recorded one by one).
    pub missed: Vec<ScheduleRun>,
    pub run: Option<PlannedRun>,
    pub now: i64,
}

pub enum FireOutcome {
    /// Written: the run record as stored (if a run was planned) and the jobs created.
    Claimed {
        record: Option<ScheduleRun>,
        jobs: Vec<Job>,
    },
    /// `next_fire_at` had changed: another replica fired the slot, or the schedule was
    /// changed, paused or deleted meanwhile. Nothing was written.
    NotClaimed,
}

/// Claims the slot and writes the fire (see the module comment).
pub async fn claim_fire(db: &Db, fire: &Fire) -> Result<FireOutcome> {
    with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            let claimed = diesel::update(
                schedules::table
                    .filter(schedules::id.eq(&fire.schedule_id))
                    .filter(schedules::tenant_id.eq(&fire.tenant_id))
                    .filter(schedules::enabled.eq(true))
                    .filter(schedules::next_fire_at.eq(fire.claimed_slot)),
            )
            .set(schedules::next_fire_at.eq(fire.next_fire_at))
            .execute(conn)
            .await?;
            if claimed != 1 {
                return Ok(FireOutcome::NotClaimed);
            }
            for record in &fire.missed {
                diesel::insert_into(schedule_runs::table)
                    .values(record)
                    .execute(conn)
                    .await?;
            }
            let Some(run) = &fire.run else {
                return Ok(FireOutcome::Claimed {
                    record: None,
                    jobs: Vec::new(),
                });
            };
            let mut record = run.record.clone();
            let mut created = run.jobs.clone();
            if !created.is_empty() && run.skip_if_active {
                let active: Option<(String, String)> = jobs::table
                    .filter(jobs::tenant_id.eq(&fire.tenant_id))
                    .filter(jobs::schedule_id.eq(&fire.schedule_id))
                    .filter(jobs::status.eq_any(ACTIVE_JOB_STATUSES))
                    .select((jobs::id, jobs::status))
                    .first(conn)
                    .await
                    .optional()?;
                if let Some((job_id, status)) = active {
                    record.outcome = "skipped".into();
                    record.fired_at = None;
                    record.reason = Some(format!(
                        "the previous run is still going (job {job_id} is {status}) and overlap is \"skip\""
                    ));
                    created.clear();
                }
            }
            for job in &created {
                diesel::insert_into(jobs::table).values(job).execute(conn).await?;
            }
            let ids: Vec<&str> = created.iter().map(|job| job.id.as_str()).collect();
            record.job_ids = serde_json::to_string(&ids)?;
            diesel::insert_into(schedule_runs::table)
                .values(&record)
                .execute(conn)
                .await?;
            if !created.is_empty() {
                diesel::update(schedules::table.filter(schedules::id.eq(&fire.schedule_id)))
                    .set(schedules::last_fire_at.eq(fire.now))
                    .execute(conn)
                    .await?;
            }
            Ok(FireOutcome::Claimed {
                record: Some(record),
                jobs: created,
            })
        })
        .await
    })
}

/// (tenant, schedule) of schedules created or changed at or after `since`, for the
/// re-check of other replicas' changes. (A deleted schedule needs none: its claim fails.)
pub async fn changed_since(db: &Db, since: i64) -> Result<Vec<(String, String)>> {
    with_conn!(db, |conn| {
        Ok(schedules::table
            .filter(schedules::updated_at.ge(since))
            .select((schedules::tenant_id, schedules::id))
            .load(conn)
            .await?)
    })
}
