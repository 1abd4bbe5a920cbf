//! The tenant's schedule timers: one per enabled schedule, armed for its `next_fire_at`.
//! When one wakes, `schedule::plan` says what is due; the slot is then claimed in the
//! database by compare-and-set and the fire (missed records, the run record, its jobs) is
//! written in the same transaction, before any agent is told. An orchestrator that starts
//! loads the enabled schedules, so slots that passed while it was down are noticed at once.

use super::jobs::not_in_manifest;
use super::targets::{self, Candidate, Selector};
use super::TenantSupervisor;
use crate::db::models::{Job, Schedule, ScheduleRun};
use crate::db::schedules::{Fire, FireOutcome, PlannedRun};
use crate::db::{self, format_time};
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::metrics;
use crate::schedule::plan::{self, Due, RunKind};
use crate::schedule::{Overlap, RowIdentity, ScheduleSpec, Target};
use crate::tenant::messages::{CreateSchedule, DeleteSchedule, SetScheduleEnabled, UpdateSchedule};
use actix::prelude::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Longest a timer sleeps before looking again, so that a change of the wall clock
/// delays a fire by at most this much.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(60);
/// A fire or load that failed (the database was unreachable) is tried again after this.
const RETRY_AFTER: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(super) struct ScheduleTimers {
    tracked: HashMap<String, Tracked>,
    /// Schedules whose fire is being written.
    firing: HashSet<String>,
}

struct Tracked {
    row: Schedule,
    spec: ScheduleSpec,
    timer: Option<SpawnHandle>,
}

impl TenantSupervisor {
    /// Loads the enabled schedules and arms their timers (messages wait until it is done).
    pub(super) fn load_schedules(&mut self, ctx: &mut Context<Self>) {
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        ctx.wait(
            async move { db::schedules::list_enabled(&db, &tenant).await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(rows) => {
                        for row in rows {
                            act.track_schedule(row, ctx);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, tenant = %act.tenant_id, "could not load schedules; retrying");
                        ctx.run_later(RETRY_AFTER, |act, ctx| act.load_schedules(ctx));
                    }
                }),
        );
    }

    /// Keeps (and arms) the timer of a stored schedule, replacing any previous one; a
    /// paused schedule has none.
    fn track_schedule(&mut self, row: Schedule, ctx: &mut Context<Self>) {
        if self
            .schedules
            .tracked
            .get(&row.id)
            .is_some_and(|tracked| tracked.row == row)
        {
            // The same row again (a re-check, or our own change echoed): the timer stands.
            return;
        }
        self.untrack_schedule(&row.id, ctx);
        if !row.enabled {
            return;
        }
        match ScheduleSpec::from_row(&row) {
            Ok(spec) => {
                let id = row.id.clone();
                self.schedules
                    .tracked
                    .insert(id.clone(), Tracked { row, spec, timer: None });
                self.arm_schedule(&id, ctx);
            }
            Err(error) => {
                tracing::error!(%error, schedule = %row.id, "cannot read a stored schedule; it will not fire")
            }
        }
    }

    fn untrack_schedule(&mut self, id: &str, ctx: &mut Context<Self>) {
        if let Some(timer) = self.schedules.tracked.remove(id).and_then(|t| t.timer) {
            ctx.cancel_future(timer);
        }
    }

    fn arm_schedule(&mut self, id: &str, ctx: &mut Context<Self>) {
        self.arm_schedule_in(id, None, ctx);
    }

    /// Sets the schedule's timer for its next slot (or after `delay`, for a retry).
    fn arm_schedule_in(&mut self, id: &str, delay: Option<Duration>, ctx: &mut Context<Self>) {
        let Some(tracked) = self.schedules.tracked.get_mut(id) else {
            return;
        };
        if let Some(timer) = tracked.timer.take() {
            ctx.cancel_future(timer);
        }
        let Some(next) = tracked.row.next_fire_at else {
            return;
        };
        let until_next = Duration::from_millis((next - db::now_ms()).max(0) as u64);
        let wait = delay.unwrap_or(until_next).min(MAX_TIMER_SLEEP);
        let id = id.to_owned();
        tracked.timer = Some(ctx.run_later(wait, move |act, ctx| act.on_schedule_timer(&id, ctx)));
    }

    fn on_schedule_timer(&mut self, id: &str, ctx: &mut Context<Self>) {
        let now = db::now_ms();
        let Some(tracked) = self.schedules.tracked.get_mut(id) else {
            return;
        };
        tracked.timer = None;
        let Some(slot) = tracked.row.next_fire_at else {
            return;
        };
        // A fire being written re-arms the timer when it is done.
        if self.schedules.firing.contains(id) {
            return;
        }
        if now < slot {
            self.arm_schedule(id, ctx);
            return;
        }
        let (row, spec) = (tracked.row.clone(), tracked.spec.clone());
        let due = plan::plan(&spec.cron, &spec.timezone, slot, now, spec.misfire_grace_secs * 1000);
        // Those recorded one by one, and those a single record stands for.
        let missed_slots = due.missed.len() as u64 + due.more_missed.as_ref().map_or(0, |more| more.count);
        let fire = match self.prepare_fire(&row, &spec, slot, &due, now) {
            Ok(fire) => fire,
            Err(error) => {
                tracing::error!(%error, schedule = %id, "could not prepare a fire; retrying");
                self.arm_schedule_in(id, Some(RETRY_AFTER), ctx);
                return;
            }
        };
        self.schedules.firing.insert(id.to_owned());
        let db = self.db.clone();
        let id = id.to_owned();
        ctx.spawn(
            async move {
                let outcome = db::schedules::claim_fire(&db, &fire).await;
                (outcome, fire)
            }
            .into_actor(self)
            .map(move |(outcome, fire), act, ctx| {
                act.schedules.firing.remove(&id);
                match outcome {
                    Ok(FireOutcome::Claimed { record, jobs }) => {
                        act.metrics.schedule_missed(missed_slots);
                        if let Some(outcome) = record.as_ref().and_then(|r| metrics::FireOutcome::parse(&r.outcome)) {
                            act.metrics.schedule_fired(outcome);
                        }
                        act.fired(&row, &fire, record.as_ref(), &jobs, ctx);
                        if let Some(tracked) = act.schedules.tracked.get_mut(&id) {
                            // Unless the schedule was changed meanwhile (it then has its own next slot).
                            if tracked.row.next_fire_at == Some(slot) {
                                tracked.row.next_fire_at = fire.next_fire_at;
                                if !jobs.is_empty() {
                                    tracked.row.last_fire_at = Some(fire.now);
                                }
                            }
                        }
                        act.arm_schedule(&id, ctx);
                    }
                    Ok(FireOutcome::NotClaimed) => {
                        tracing::info!(schedule = %id, slot = %format_time(slot), "slot already claimed or schedule changed; reloading it");
                        act.reload_schedule(&id, ctx);
                    }
                    Err(error) => {
                        tracing::warn!(%error, schedule = %id, "could not write a fire; retrying");
                        act.arm_schedule_in(&id, Some(RETRY_AFTER), ctx);
                    }
                }
            }),
        );
    }

    /// After a claimed fire: jobs go to the agents' parked polls, misses become events.
    fn fired(
        &mut self,
        row: &Schedule,
        fire: &Fire,
        record: Option<&ScheduleRun>,
        jobs: &[Job],
        ctx: &mut Context<Self>,
    ) {
        for job in jobs {
            self.dispatch.queued(&job.agent_name);
            self.pump(&job.agent_name, ctx);
        }
        let missed_event = |run: &ScheduleRun, caught_up: bool| {
            json!({
                "schedule_id": row.id,
                "script": row.script,
                "agent": row.agent_name,
                "tags": row.tags.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
                "cron_expression": row.cron_expression,
                "scheduled_for": format_time(run.scheduled_for),
                "outcome": run.outcome,
                "caught_up": caught_up,
                "job_ids": serde_json::from_str::<serde_json::Value>(&run.job_ids).unwrap_or_default(),
                "reason": run.reason,
            })
        };
        for missed in &fire.missed {
            self.publish(EventType::ScheduleMissed, missed_event(missed, false));
        }
        let caught_up = fire
            .run
            .as_ref()
            .is_some_and(|run| run.record.outcome == RunKind::CaughtUp.as_str());
        if let Some(record) = record.filter(|_| caught_up) {
            // Missed at its time too, though it then ran (or was skipped for an overlap).
            self.publish(
                EventType::ScheduleMissed,
                missed_event(record, record.outcome == RunKind::CaughtUp.as_str()),
            );
        }
        if let Some(record) = record {
            tracing::info!(
                tenant = %self.tenant_id,
                schedule = %row.id,
                slot = %format_time(record.scheduled_for),
                outcome = %record.outcome,
                jobs = jobs.len(),
                missed = fire.missed.len(),
                "schedule fired"
            );
        } else if !fire.missed.is_empty() {
            tracing::warn!(tenant = %self.tenant_id, schedule = %row.id, missed = fire.missed.len(), "schedule missed fires");
        }
    }

    /// Everything a wake-up writes: missed records, and the run with its jobs.
    fn prepare_fire(&self, row: &Schedule, spec: &ScheduleSpec, slot: i64, due: &Due, now: i64) -> Result<Fire> {
        let record = |scheduled_for: i64, fired_at: Option<i64>, outcome: &str, reason: Option<String>| ScheduleRun {
            id: db::new_id("run"),
            tenant_id: self.tenant_id.clone(),
            schedule_id: row.id.clone(),
            scheduled_for,
            fired_at,
            outcome: outcome.to_owned(),
            job_ids: "[]".into(),
            reason,
            created_at: now,
        };
        let grace = spec.misfire_grace_secs;
        let why_missed = match due.run {
            Some((newest, _)) => format!(
                "not fired at its time (the orchestrator was not running, or could not reach its database); only the latest missed fire ({}) runs",
                format_time(newest)
            ),
            None => format!(
                "not fired at its time (the orchestrator was not running, or could not reach its database); noticed at {}, past the misfire grace of {grace} s",
                format_time(now)
            ),
        };
        let mut missed: Vec<ScheduleRun> = due
            .missed
            .iter()
            .map(|&at| record(at, None, "missed", Some(why_missed.clone())))
            .collect();
        if let Some(more) = &due.more_missed {
            missed.push(record(
                more.first,
                None,
                "missed",
                Some(format!(
                    "{}{} more missed fires from this one on are not recorded one by one; {why_missed}",
                    if more.at_least { "at least " } else { "" },
                    more.count
                )),
            ));
        }

        let run = match due.run {
            None => None,
            Some((at, kind)) => {
                let (targets, skipped) = self.schedule_targets(spec);
                let skipped_text = skipped
                    .iter()
                    .map(|(agent, why)| format!("{agent} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut jobs = Vec::with_capacity(targets.len());
                for agent in &targets {
                    let mut job = self.new_job(agent, &spec.script, &spec.params, spec.timeout_secs, None)?;
                    job.schedule_id = Some(row.id.clone());
                    job.created_at = now;
                    jobs.push(job);
                }
                let planned = if jobs.is_empty() {
                    record(
                        at,
                        None,
                        "skipped",
                        Some(format!("no job was created: no target could run it: {skipped_text}")),
                    )
                } else {
                    let mut reasons = Vec::new();
                    if kind == RunKind::CaughtUp {
                        reasons.push(format!(
                            "missed at its time and run {} s late, within the misfire grace of {grace} s",
                            (now - at) / 1000
                        ));
                    }
                    if !skipped.is_empty() {
                        reasons.push(format!("skipped agents: {skipped_text}"));
                    }
                    record(
                        at,
                        Some(now),
                        kind.as_str(),
                        (!reasons.is_empty()).then(|| reasons.join("; ")),
                    )
                };
                Some(PlannedRun {
                    record: planned,
                    jobs,
                    skip_if_active: spec.overlap == Overlap::Skip,
                })
            }
        };
        Ok(Fire {
            tenant_id: self.tenant_id.clone(),
            schedule_id: row.id.clone(),
            claimed_slot: slot,
            next_fire_at: due.next_fire,
            missed,
            run,
            now,
        })
    }

    /// The agents a fire creates jobs for, and those it leaves out with why. One agent gets
    /// its job even while offline (it is queued, as for /trigger-script); a tag fan-out
    /// goes to online agents only.
    fn schedule_targets(&self, spec: &ScheduleSpec) -> (Vec<String>, Vec<(String, String)>) {
        let selector = match &spec.target {
            Target::Agent(name) => Selector {
                agents: Some(vec![name.clone()]),
                tags: Vec::new(),
                only_online: false,
            },
            Target::Tags(tags) => Selector {
                agents: None,
                tags: tags.clone(),
                only_online: true,
            },
        };
        let mut selection = targets::select(
            |name| self.agents.get(name),
            self.agents.values(),
            &selector,
            &spec.script,
        );
        if let Target::Tags(tags) = &spec.target {
            if selection.targets.is_empty() && selection.skipped.is_empty() {
                selection
                    .skipped
                    .push((format!("tags {tags:?}"), "no agent has them all".into()));
            }
        }
        (selection.targets, selection.skipped)
    }

    /// After a lost claim: the stored row decides (another replica fired it, or it changed).
    pub(super) fn reload_schedule(&mut self, id: &str, ctx: &mut Context<Self>) {
        let (db, tenant, id) = (self.db.clone(), self.tenant_id.clone(), id.to_owned());
        let lookup = id.clone();
        ctx.spawn(
            async move { db::schedules::find(&db, &tenant, &lookup).await }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(Some(row)) => act.track_schedule(row, ctx),
                    Ok(None) => act.untrack_schedule(&id, ctx),
                    Err(error) => {
                        tracing::warn!(%error, schedule = %id, "could not reload a schedule; retrying");
                        act.arm_schedule_in(&id, Some(RETRY_AFTER), ctx);
                    }
                }),
        );
    }

    /// A schedule may name an agent only if it is registered and (once it reported a
    /// manifest) lists the script, as for /trigger-script.
    fn check_schedule_target(&self, spec: &ScheduleSpec) -> Result<()> {
        if let Target::Agent(name) = &spec.target {
            let agent = self
                .agents
                .get(name)
                .ok_or_else(|| Error::not_found(format!("agent {name}")))?;
            if !agent.allows(&spec.script) {
                return Err(not_in_manifest(agent, &spec.script));
            }
        }
        Ok(())
    }
}

fn schedule_not_found(id: &str) -> Error {
    Error::not_found(format!("schedule {id}"))
}

impl Handler<CreateSchedule> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<Schedule>>;

    fn handle(&mut self, msg: CreateSchedule, _: &mut Context<Self>) -> Self::Result {
        let now = db::now_ms();
        let checked = self.check_schedule_target(&msg.spec).map(|()| {
            let identity = RowIdentity {
                id: db::new_id("sched"),
                tenant_id: self.tenant_id.clone(),
                last_fire_at: None,
                created_at: now,
            };
            msg.spec.to_row(identity, msg.spec.next_fire_after(now), now)
        });
        let db = self.db.clone();
        Box::pin(
            async move {
                let row = checked?;
                db::schedules::insert(&db, &row).await?;
                Ok(row)
            }
            .into_actor(self)
            .map(|result: Result<Schedule>, act, ctx| {
                let row = result?;
                act.track_schedule(row.clone(), ctx);
                Ok(row)
            }),
        )
    }
}

impl Handler<UpdateSchedule> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<Schedule>>;

    fn handle(&mut self, msg: UpdateSchedule, _: &mut Context<Self>) -> Self::Result {
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        let id = msg.id.clone();
        Box::pin(
            async move { db::schedules::find(&db, &tenant, &id).await }
                .into_actor(self)
                .then(move |found, act, _| {
                    // Checked here, against the agent registry.
                    let changed = (|| -> Result<(Schedule, bool)> {
                        let row = found?.ok_or_else(|| schedule_not_found(&msg.id))?;
                        let current = ScheduleSpec::from_row(&row)?;
                        let spec = current.clone().apply(msg.patch)?;
                        if spec.target != current.target || spec.script != current.script {
                            act.check_schedule_target(&spec)?;
                        }
                        let now = db::now_ms();
                        let retimed = spec.timing_differs(&current);
                        let next_fire_at = if retimed {
                            spec.next_fire_after(now)
                        } else {
                            row.next_fire_at
                        };
                        Ok((spec.to_row(RowIdentity::of(&row), next_fire_at, now), retimed))
                    })();
                    let db = act.db.clone();
                    async move {
                        let (row, retimed) = changed?;
                        if !db::schedules::update(&db, &row, retimed).await? {
                            return Err(schedule_not_found(&row.id));
                        }
                        // Without a new timing, the stored next slot may have moved on meanwhile.
                        db::schedules::find(&db, &row.tenant_id, &row.id)
                            .await?
                            .ok_or_else(|| schedule_not_found(&row.id))
                    }
                    .into_actor(act)
                })
                .map(|result: Result<Schedule>, act, ctx| {
                    let row = result?;
                    act.track_schedule(row.clone(), ctx);
                    Ok(row)
                }),
        )
    }
}

impl Handler<SetScheduleEnabled> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<Schedule>>;

    fn handle(&mut self, msg: SetScheduleEnabled, _: &mut Context<Self>) -> Self::Result {
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        Box::pin(
            async move {
                let row = db::schedules::find(&db, &tenant, &msg.id)
                    .await?
                    .ok_or_else(|| schedule_not_found(&msg.id))?;
                if row.enabled == msg.enabled {
                    return Ok(row);
                }
                let now = db::now_ms();
                let next_fire_at = if msg.enabled {
                    // From now on: slots that passed while paused are not missed fires.
                    let mut spec = ScheduleSpec::from_row(&row)?;
                    spec.enabled = true;
                    spec.next_fire_after(now)
                } else {
                    None
                };
                db::schedules::set_enabled(&db, &tenant, &msg.id, msg.enabled, next_fire_at, now)
                    .await?
                    .ok_or_else(|| schedule_not_found(&msg.id))
            }
            .into_actor(self)
            .map(|result: Result<Schedule>, act, ctx| {
                let row = result?;
                act.track_schedule(row.clone(), ctx);
                Ok(row)
            }),
        )
    }
}

impl Handler<DeleteSchedule> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: DeleteSchedule, _: &mut Context<Self>) -> Self::Result {
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        let id = msg.id.clone();
        Box::pin(
            async move {
                if !db::schedules::delete(&db, &tenant, &id).await? {
                    return Err(schedule_not_found(&id));
                }
                Ok(())
            }
            .into_actor(self)
            .map(move |result: Result<()>, act, ctx| {
                result?;
                act.untrack_schedule(&msg.id, ctx);
                Ok(())
            }),
        )
    }
}
