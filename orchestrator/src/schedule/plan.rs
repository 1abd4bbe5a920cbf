//! What a schedule's timer does when it wakes at `now` with `next_fire_at` due: which slots
//! were missed (the orchestrator was not running then), which one slot runs (on time, or
//! caught up within the misfire grace), and when it fires next. Pure: the clock is an
//! argument, so the rules are tested with a fake one.
//!
//! Rules: a slot reached within [`ON_TIME_MS`] fires normally. Any other due slot was
//! missed; every missed slot is recorded, and of them only the latest may run (caught up),
//! if it is no older than the misfire grace: never a storm of catch-up runs. Misses are
//! recorded one by one up to [`MAX_RECORDED_MISSES`]; the rest become one summary.

use super::cron::CronExpr;
use chrono_tz::Tz;

/// A slot handled within this many milliseconds of its time fires as usual (timer jitter,
/// a busy database); later than this it counts as missed.
pub const ON_TIME_MS: i64 = 5_000;
/// Missed slots recorded one by one per wake-up; further ones are summarised in one record.
pub const MAX_RECORDED_MISSES: usize = 1000;
/// Slots walked one by one to count misses; beyond this the count is a lower bound (a
/// minutely schedule down for 70 days). Keeps a wake-up short.
pub const MAX_COUNTED_SLOTS: u64 = 100_000;
/// The largest misfire grace accepted (a week): far fewer slots than [`MAX_COUNTED_SLOTS`]
/// even for a minutely schedule, so the newest slot can always be found near `now`.
pub const MAX_MISFIRE_GRACE_SECS: i64 = 7 * 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    /// On time.
    Fired,
    /// Missed at its time, run late within the misfire grace.
    CaughtUp,
}

impl RunKind {
    /// The outcome a schedule run records.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Fired => "fired",
            RunKind::CaughtUp => "caught_up",
        }
    }
}

/// Missed slots beyond those recorded one by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoreMissed {
    /// The first of them.
    pub first: i64,
    pub count: u64,
    /// True when there were too many to count: `count` is a lower bound.
    pub at_least: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The slot that runs now, and how.
    pub run: Option<(i64, RunKind)>,
    /// Missed slots, oldest first, at most [`MAX_RECORDED_MISSES`].
    pub missed: Vec<i64>,
    pub more_missed: Option<MoreMissed>,
    /// The first slot after `now`; None if the expression never fires again.
    pub next_fire: Option<i64>,
}

/// Plans a wake-up: `slot` is the stored `next_fire_at`, times are ms since the epoch.
pub fn plan(cron: &CronExpr, timezone: &Tz, slot: i64, now: i64, misfire_grace_ms: i64) -> Due {
    if slot > now {
        return Due {
            run: None,
            missed: Vec::new(),
            more_missed: None,
            next_fire: Some(slot),
        };
    }
    // Walk the due slots, oldest first: the first ones kept, all counted.
    let mut kept = vec![slot];
    let mut counted: u64 = 1;
    let mut newest = slot;
    let mut complete = true;
    while let Some(next) = cron.next_after_ms(timezone, newest).filter(|next| *next <= now) {
        if counted >= MAX_COUNTED_SLOTS {
            complete = false;
            break;
        }
        counted += 1;
        newest = next;
        if kept.len() <= MAX_RECORDED_MISSES {
            kept.push(next);
        }
    }
    let next_fire = cron.next_after_ms(timezone, now);
    let runs = |newest: i64| {
        let late = now - newest;
        if late <= ON_TIME_MS {
            Some((newest, RunKind::Fired))
        } else if late <= misfire_grace_ms {
            Some((newest, RunKind::CaughtUp))
        } else {
            None
        }
    };

    if !complete {
        // Too many to walk: the newest slot, the only one that may still run, is looked
        // for just before `now`; every walked slot was missed, and more after them.
        let window = misfire_grace_ms.max(ON_TIME_MS);
        let mut cursor = now - window;
        let mut newest_near_now = None;
        while let Some(next) = cron.next_after_ms(timezone, cursor).filter(|next| *next <= now) {
            newest_near_now = Some(next);
            cursor = next;
        }
        let run = newest_near_now.and_then(runs);
        kept.truncate(MAX_RECORDED_MISSES + 1);
        let first_unrecorded = kept.pop();
        return Due {
            run,
            missed: kept,
            more_missed: first_unrecorded.map(|first| MoreMissed {
                first,
                count: counted - MAX_RECORDED_MISSES as u64,
                at_least: true,
            }),
            next_fire,
        };
    }

    let run = runs(newest);
    let missed_count = counted - u64::from(run.is_some());
    // Drop the slot that runs from the kept ones (it is the newest, kept only if few).
    if run.is_some() && kept.last() == Some(&newest) && counted as usize == kept.len() {
        kept.pop();
    }
    kept.truncate(missed_count.min(MAX_RECORDED_MISSES as u64 + 1) as usize);
    let more_missed = if missed_count > MAX_RECORDED_MISSES as u64 {
        let first = kept.pop().unwrap_or(newest);
        Some(MoreMissed {
            first,
            count: missed_count - MAX_RECORDED_MISSES as u64,
            at_least: false,
        })
    } else {
        None
    };
    Due {
        run,
        missed: kept,
        more_missed,
        next_fire,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
    }

    fn cron(expr: &str) -> CronExpr {
        CronExpr::parse(expr).unwrap()
    }

    const GRACE: i64 = 60_000;

    #[test]
    fn nothing_is_due_before_the_slot() {
        let slot = ms("2026-03-11T02:00:00Z");
        let due = plan(&cron("0 2 * * *"), &Tz::UTC, slot, slot - 1, GRACE);
        assert_eq!(
            due,
            Due {
                run: None,
                missed: vec![],
                more_missed: None,
                next_fire: Some(slot)
            }
        );
    }

    #[test]
    fn a_slot_reached_on_time_fires() {
        let slot = ms("2026-03-11T02:00:00Z");
        for now in [slot, slot + 40, slot + ON_TIME_MS] {
            let due = plan(&cron("0 2 * * *"), &Tz::UTC, slot, now, GRACE);
            assert_eq!(due.run, Some((slot, RunKind::Fired)));
            assert!(due.missed.is_empty() && due.more_missed.is_none());
            assert_eq!(due.next_fire, Some(ms("2026-03-12T02:00:00Z")));
        }
    }

    #[test]
    fn a_missed_slot_within_the_grace_is_caught_up() {
        let slot = ms("2026-03-11T02:00:00Z");
        let due = plan(&cron("0 2 * * *"), &Tz::UTC, slot, slot + 45_000, GRACE);
        assert_eq!(due.run, Some((slot, RunKind::CaughtUp)));
        assert!(due.missed.is_empty());
        // The grace is inclusive.
        let due = plan(&cron("0 2 * * *"), &Tz::UTC, slot, slot + GRACE, GRACE);
        assert_eq!(due.run, Some((slot, RunKind::CaughtUp)));
    }

    #[test]
    fn a_missed_slot_past_the_grace_is_only_recorded() {
        let slot = ms("2026-03-11T02:00:00Z");
        let due = plan(&cron("0 2 * * *"), &Tz::UTC, slot, slot + GRACE + 1, GRACE);
        assert_eq!(due.run, None);
        assert_eq!(due.missed, vec![slot]);
        assert_eq!(due.next_fire, Some(ms("2026-03-12T02:00:00Z")));
        // A zero grace still fires a slot reached on time.
        let due = plan(&cron("0 2 * * *"), &Tz::UTC, slot, slot + 1_000, 0);
        assert_eq!(due.run, Some((slot, RunKind::Fired)));
    }

    #[test]
    fn after_downtime_every_miss_is_recorded_and_only_the_latest_runs() {
        // Down from before 02:00 on the 11th until 02:00:30 on the 14th.
        let first = ms("2026-03-11T02:00:00Z");
        let now = ms("2026-03-14T02:00:30Z");
        let due = plan(&cron("0 2 * * *"), &Tz::UTC, first, now, GRACE);
        assert_eq!(
            due.missed,
            vec![first, first + DAY, first + 2 * DAY],
            "each missed day is recorded"
        );
        assert_eq!(due.run, Some((first + 3 * DAY, RunKind::CaughtUp)));
        assert_eq!(due.next_fire, Some(first + 4 * DAY));

        // Past the grace: four misses, nothing runs.
        let due = plan(&cron("0 2 * * *"), &Tz::UTC, first, now + HOUR, GRACE);
        assert_eq!(due.missed.len(), 4);
        assert_eq!(due.run, None);

        // Back exactly at a slot: it fires; the ones before were missed.
        let due = plan(&cron("0 2 * * *"), &Tz::UTC, first, first + 3 * DAY + 10, GRACE);
        assert_eq!(due.missed.len(), 3);
        assert_eq!(due.run, Some((first + 3 * DAY, RunKind::Fired)));
    }

    #[test]
    fn a_stored_slot_off_the_expression_still_counts() {
        // next_fire_at was written by hand (or by an older expression).
        let slot = ms("2026-03-11T02:00:17Z");
        let due = plan(&cron("*/10 * * * *"), &Tz::UTC, slot, slot + 25 * MINUTE, GRACE);
        assert_eq!(
            due.missed,
            vec![slot, ms("2026-03-11T02:10:00Z"), ms("2026-03-11T02:20:00Z")]
        );
        assert_eq!(due.run, None, "02:20 is 5 minutes old, past the grace");
        assert_eq!(due.next_fire, Some(ms("2026-03-11T02:30:00Z")));
    }

    #[test]
    fn misses_past_the_cap_become_one_summary() {
        // A minutely schedule down for a day and a half: 2160 slots.
        let first = ms("2026-03-11T00:00:00Z");
        let now = first + 36 * HOUR - MINUTE + 20_000;
        let due = plan(&cron("* * * * *"), &Tz::UTC, first, now, GRACE);
        assert_eq!(due.run, Some((now - 20_000, RunKind::CaughtUp)));
        assert_eq!(due.missed.len(), MAX_RECORDED_MISSES);
        assert_eq!(due.missed[0], first);
        assert_eq!(due.missed[999], first + 999 * MINUTE);
        assert_eq!(
            due.more_missed,
            Some(MoreMissed {
                first: first + 1000 * MINUTE,
                count: 2160 - 1 - 1000,
                at_least: false
            })
        );

        // Exactly at the cap, with nothing to run (no grace): no summary.
        let now = first + 999 * MINUTE + 30_000;
        let due = plan(&cron("* * * * *"), &Tz::UTC, first, now, 0);
        assert_eq!(due.run, None);
        assert_eq!(due.missed.len(), 1000);
        assert_eq!(due.more_missed, None);
        // One more: a summary of one.
        let due = plan(&cron("* * * * *"), &Tz::UTC, first, now + MINUTE, 0);
        assert_eq!(due.missed.len(), 1000);
        assert_eq!(
            due.more_missed,
            Some(MoreMissed {
                first: first + 1000 * MINUTE,
                count: 1,
                at_least: false
            })
        );
    }

    #[test]
    fn too_many_misses_to_count_are_a_lower_bound_and_the_newest_still_catches_up() {
        // A minutely schedule down for a year.
        let first = ms("2025-03-11T00:00:00Z");
        let now = ms("2026-03-11T00:00:10Z");
        let due = plan(&cron("* * * * *"), &Tz::UTC, first, now, GRACE);
        assert_eq!(due.run, Some((ms("2026-03-11T00:00:00Z"), RunKind::CaughtUp)));
        assert_eq!(due.missed.len(), MAX_RECORDED_MISSES);
        let more = due.more_missed.unwrap();
        assert!(more.at_least);
        assert_eq!(more.first, first + 1000 * MINUTE);
        assert_eq!(more.count, MAX_COUNTED_SLOTS - 1000);
        assert_eq!(due.next_fire, Some(ms("2026-03-11T00:01:00Z")));
    }

    #[test]
    fn planning_follows_the_time_zone() {
        // 02:30 in Berlin does not exist on 2026-03-29: that day's slot is 03:00 CEST.
        let slot = ms("2026-03-29T01:00:00Z");
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let due = plan(&cron("30 2 * * *"), &berlin, slot, slot + 1_000, GRACE);
        assert_eq!(due.run, Some((slot, RunKind::Fired)));
        assert_eq!(due.next_fire, Some(ms("2026-03-30T00:30:00Z")));
    }
}
