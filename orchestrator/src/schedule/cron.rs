//! Cron expressions as users write them, standard five fields (minute hour day-of-month
//! month day-of-week) or an @-shorthand, and their fire times in an IANA time zone.
//!
//! Fields are read here rather than by the `cron` crate, whose reading differs from
//! standard cron in ways users would notice (its tests below pin them down): it numbers
//! days of week 1-7 from Sunday where cron uses 0-7 with 0 and 7 both Sunday, it needs a
//! seconds field, it matches day-of-month AND day-of-week where cron matches either when
//! both are restricted, and it skips a local time that does not exist, losing that day's
//! fire in a daylight-saving gap. The crate serves the tests as an oracle instead.
//!
//! Daylight-saving policy: a local time that does not exist (clocks spring forward) fires
//! once, at the first instant after the gap; a local time that happens twice (clocks fall
//! back) fires once, at its first occurrence. No day is skipped, none fires twice.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How far ahead a next fire is looked for: 28 years hold every weekday-and-date
/// combination (February 29 on a Monday, say) at least once.
const SEARCH_DAYS: i64 = 28 * 366;

/// A parsed expression: the times of day and the days it fires on.
#[derive(Clone, Debug)]
pub struct CronExpr {
    source: String,
    /// Every (hour, minute) it fires at, in order.
    times: Vec<NaiveTime>,
    /// Bit n: day of month n (1-31).
    days_of_month: u64,
    /// Bit n: month n (1-12).
    months: u64,
    /// Bit n: day of week n, 0 = Sunday.
    days_of_week: u64,
    /// Standard cron: when both day fields are restricted (neither starts with `*`), a day
    /// matches if either matches; otherwise both must.
    either_day_field: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names of min, min + 1, ...
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Field {
    /// `?` is accepted as `*` in the two day fields (as Quartz-style expressions write it).
    fn is_day_field(&self) -> bool {
        self.name == DAY_OF_MONTH.name || self.name == DAY_OF_WEEK.name
    }
}

const FIVE_FIELDS: &str = "minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\"";

impl CronExpr {
    /// Reads an expression; the error says what is wrong in words a user can act on.
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let source = text.trim();
        let expanded = match source.strip_prefix('@') {
            Some(name) => shorthand(name)?,
            None => source,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
            return Err(match fields.len() {
                0 => format!("it is empty; write five fields: {FIVE_FIELDS}"),
                6 | 7 => format!(
                    "it has {} fields, but seconds and years are not supported; write the standard five: {FIVE_FIELDS}",
                    fields.len()
                ),
                n => format!("it has {n} field(s); write five: {FIVE_FIELDS}"),
            });
        };
        let minutes = parse_field(minute, &MINUTE)?;
        let hours = parse_field(hour, &HOUR)?;
        let days_of_week = parse_field(day_of_week, &DAY_OF_WEEK)?;
        let expr = CronExpr {
            source: source.to_owned(),
            times: bits(hours)
                .flat_map(|h| bits(minutes).filter_map(move |m| NaiveTime::from_hms_opt(h, m, 0)))
                .collect(),
            days_of_month: parse_field(day_of_month, &DAY_OF_MONTH)?,
            months: parse_field(month, &MONTH)?,
            // 7 is Sunday too.
            days_of_week: (days_of_week | (days_of_week >> 7)) & 0x7f,
            either_day_field: !starts_like_star(day_of_month) && !starts_like_star(day_of_week),
        };
        let reference = NaiveDate::from_ymd_opt(2001, 1, 1).expect("a valid date");
        if !(0..SEARCH_DAYS).any(|n| expr.matches_day(reference + Duration::days(n))) {
            return Err("it never matches a real date (like day 30 of month 2)".into());
        }
        Ok(expr)
    }

    /// The expression as the user wrote it (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    fn matches_day(&self, date: NaiveDate) -> bool {
        let month = self.months & (1 << date.month()) != 0;
        let day_of_month = self.days_of_month & (1 << date.day()) != 0;
        let day_of_week = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        month
            && if self.either_day_field {
                day_of_month || day_of_week
            } else {
                day_of_month && day_of_week
            }
    }

    /// The first fire strictly after `after`, in `timezone` with the daylight-saving
    /// policy of the module comment; None if there is none within 28 years.
    pub fn next_after(&self, timezone: &Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // A day early: near a daylight-saving change a slot of the previous local day may
        // still lie ahead.
        let first_day = after.with_timezone(timezone).date_naive().pred_opt()?;
        for offset in 0..SEARCH_DAYS {
            let day = first_day.checked_add_signed(Duration::days(offset))?;
            if !self.matches_day(day) {
                continue;
            }
            // A day's fire instants never decrease as the local time grows (the policy
            // maps gap times to the gap's end and repeated times to their first
            // occurrence), so the first one after `after` can be found by bisection.
            let index = self
                .times
                .partition_point(|time| resolve(timezone, day.and_time(*time)) <= after);
            if let Some(time) = self.times.get(index) {
                return Some(resolve(timezone, day.and_time(*time)));
            }
        }
        None
    }

    /// `next_after` in milliseconds since the Unix epoch.
    pub fn next_after_ms(&self, timezone: &Tz, after_ms: i64) -> Option<i64> {
        let after = DateTime::from_timestamp_millis(after_ms)?;
        self.next_after(timezone, after).map(|t| t.timestamp_millis())
    }
}

/// The instant a local time means in `timezone`, by the daylight-saving policy.
fn resolve(timezone: &Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match timezone.from_local_datetime(&local) {
        LocalResult::Single(time) => time.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: the first local minute that exists is when the clocks jumped.
            let mut probe = local;
            for _ in 0..2 * 24 * 60 {
                probe += Duration::minutes(1);
                if let Some(time) = timezone.from_local_datetime(&probe).earliest() {
                    return time.with_timezone(&Utc);
                }
            }
            local.and_utc()
        }
    }
}

fn shorthand(name: &str) -> Result<&'static str, String> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        "reboot" => return Err("@reboot is not a time; schedules fire at times of day".into()),
        _ => {
            return Err(format!(
            "@{} is not a shorthand; use @hourly, @daily, @weekly, @monthly or @yearly, or five fields: {FIVE_FIELDS}",
            name.trim()
        ))
        }
    })
}

/// Standard cron treats a day field that starts with `*` (like `*/2`) as unrestricted
/// when deciding between "either" and "both".
fn starts_like_star(field: &str) -> bool {
    field.starts_with('*') || field.starts_with('?')
}

/// The values a field allows, as bits. Items are `*`, `N`, `A-B`, each optionally
/// `/STEP`, separated by commas; `N/STEP` means `N-max/STEP`.
fn parse_field(text: &str, field: &Field) -> Result<u64, String> {
    let name = field.name;
    let mut allowed = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let step = match step {
            None => 1,
            Some(step) => match step.parse::<u32>() {
                Ok(n) if step.bytes().all(|b| b.is_ascii_digit()) && (1..=field.max.max(1)).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "the {name} field {text:?} has the step {step:?}; a step is a whole number from 1 to {}",
                        field.max.max(1)
                    ))
                }
            },
        };
        let wildcard = range == "*" || (range == "?" && field.is_day_field());
        let (first, last) = if wildcard {
            (field.min, field.max)
        } else if range.is_empty() {
            return Err(format!(
                "the {name} field {text:?} has an empty item; items are separated by single commas"
            ));
        } else if let Some((from, to)) = range.split_once('-') {
            let (from, to) = (value(from, field, text)?, value(to, field, text)?);
            if from > to {
                return Err(format!(
                    "the {name} field {text:?} has the range {range}, which runs backwards; write it as two ranges"
                ));
            }
            (from, to)
        } else {
            let single = value(range, field, text)?;
            (single, if item.contains('/') { field.max } else { single })
        };
        let mut current = first;
        while current <= last {
            allowed |= 1 << current;
            current += step;
        }
    }
    Ok(allowed)
}

fn value(token: &str, field: &Field, text: &str) -> Result<u32, String> {
    let name = field.name;
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        return match token.parse::<u32>() {
            Ok(n) if (field.min..=field.max).contains(&n) => Ok(n),
            _ => Err(format!(
                "{token} is out of range in the {name} field {text:?}: {name} values are {}-{}{}",
                field.min,
                field.max,
                if field.name == DAY_OF_WEEK.name {
                    " (0 and 7 are Sunday)"
                } else {
                    ""
                }
            )),
        };
    }
    if let Some(index) = field.names.iter().position(|known| known.eq_ignore_ascii_case(token)) {
        return Ok(field.min + index as u32);
    }
    Err(if field.names.is_empty() {
        format!("{token:?} in the {name} field {text:?} is not a number")
    } else {
        format!(
            "{token:?} in the {name} field {text:?} is neither a number nor a name like {}",
            field.names[..3]
                .iter()
                .map(|n| n.to_uppercase())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The set bits of `set`, lowest first.
fn bits(set: u64) -> impl Iterator<Item = u32> + Clone {
    (0..64).filter(move |n| set & (1u64 << n) != 0)
}

/// An IANA time zone by name ("Europe/Berlin", "UTC"), matched without regard to case.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    if let Ok(timezone) = name.parse::<Tz>() {
        return Ok(timezone);
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|timezone| timezone.name().eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| format!("{name:?} is not an IANA time zone name like \"Europe/Berlin\" or \"UTC\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .with_timezone(&Utc)
    }

    fn fires(expr: &str, timezone: &str, after: &str, count: usize) -> Vec<String> {
        let cron = CronExpr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let timezone = parse_timezone(timezone).unwrap();
        let mut at = utc(after);
        let mut out = Vec::new();
        for _ in 0..count {
            at = cron.next_after(&timezone, at).expect("a next fire");
            out.push(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        out
    }

    #[test]
    fn the_spec_example_fires_at_two_in_the_morning() {
        assert_eq!(
            fires("0 2 * * *", "UTC", "2026-03-10T14:32:11Z", 2),
            ["2026-03-11T02:00:00Z", "2026-03-12T02:00:00Z"]
        );
        assert_eq!(
            fires("*/5 * * * *", "UTC", "2026-03-10T14:32:11Z", 3),
            ["2026-03-10T14:35:00Z", "2026-03-10T14:40:00Z", "2026-03-10T14:45:00Z"]
        );
    }

    #[test]
    fn lists_ranges_steps_and_names() {
        // 2026-03-10 is a Tuesday.
        assert_eq!(
            fires("0,30 9-10 * * *", "UTC", "2026-03-10T09:00:00Z", 4),
            [
                "2026-03-10T09:30:00Z",
                "2026-03-10T10:00:00Z",
                "2026-03-10T10:30:00Z",
                "2026-03-11T09:00:00Z"
            ]
        );
        assert_eq!(
            fires("15 8 * * MON-FRI", "UTC", "2026-03-13T12:00:00Z", 2),
            ["2026-03-16T08:15:00Z", "2026-03-17T08:15:00Z"]
        );
        assert_eq!(
            fires("0 0 1 jan,Jul *", "UTC", "2026-03-10T00:00:00Z", 2),
            ["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"]
        );
        assert_eq!(
            fires("10-50/20 * * * *", "UTC", "2026-03-10T09:00:00Z", 4),
            [
                "2026-03-10T09:10:00Z",
                "2026-03-10T09:30:00Z",
                "2026-03-10T09:50:00Z",
                "2026-03-10T10:10:00Z"
            ]
        );
        // N/STEP runs from N to the end of the range.
        assert_eq!(
            fires("0 20/2 * * *", "UTC", "2026-03-10T00:00:00Z", 3),
            ["2026-03-10T20:00:00Z", "2026-03-10T22:00:00Z", "2026-03-11T20:00:00Z"]
        );
        assert_eq!(
            fires("0 0 * 2 *", "UTC", "2026-02-27T12:00:00Z", 2),
            ["2026-02-28T00:00:00Z", "2027-02-01T00:00:00Z"]
        );
    }

    #[test]
    fn day_of_week_is_numbered_from_sunday_zero_and_seven_is_sunday_too() {
        // 2026-03-15 is a Sunday.
        for sunday in ["0 12 * * 0", "0 12 * * 7", "0 12 * * SUN", "0 12 * * sun"] {
            assert_eq!(
                fires(sunday, "UTC", "2026-03-10T00:00:00Z", 1),
                ["2026-03-15T12:00:00Z"],
                "{sunday}"
            );
        }
        assert_eq!(
            fires("0 12 * * 1", "UTC", "2026-03-10T00:00:00Z", 1),
            ["2026-03-16T12:00:00Z"]
        );
        // Friday to Sunday, written with 7.
        assert_eq!(
            fires("0 12 * * 5-7", "UTC", "2026-03-10T00:00:00Z", 4),
            [
                "2026-03-13T12:00:00Z",
                "2026-03-14T12:00:00Z",
                "2026-03-15T12:00:00Z",
                "2026-03-20T12:00:00Z"
            ]
        );
        // Every other day from Sunday: Sunday, Tuesday, Thursday, Saturday.
        assert_eq!(
            fires("0 12 * * */2", "UTC", "2026-03-14T13:00:00Z", 4),
            [
                "2026-03-15T12:00:00Z",
                "2026-03-17T12:00:00Z",
                "2026-03-19T12:00:00Z",
                "2026-03-21T12:00:00Z"
            ]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // Standard cron: the 13th of each month, and every Friday.
        assert_eq!(
            fires("0 0 13 * FRI", "UTC", "2026-03-01T00:00:00Z", 4),
            [
                "2026-03-06T00:00:00Z",
                "2026-03-13T00:00:00Z",
                "2026-03-20T00:00:00Z",
                "2026-03-27T00:00:00Z"
            ]
        );
        assert_eq!(
            fires("0 0 1 * 1", "UTC", "2026-03-01T12:00:00Z", 3),
            ["2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z", "2026-03-16T00:00:00Z"]
        );
        // A day field starting with * restricts together with the other one.
        assert_eq!(
            fires("0 0 */2 * MON", "UTC", "2026-03-01T00:00:00Z", 2),
            ["2026-03-09T00:00:00Z", "2026-03-23T00:00:00Z"]
        );
    }

    #[test]
    fn shorthands() {
        let after = "2026-03-10T14:32:11Z";
        assert_eq!(fires("@hourly", "UTC", after, 1), ["2026-03-10T15:00:00Z"]);
        assert_eq!(fires("@daily", "UTC", after, 1), ["2026-03-11T00:00:00Z"]);
        assert_eq!(fires("@midnight", "UTC", after, 1), ["2026-03-11T00:00:00Z"]);
        assert_eq!(fires("@weekly", "UTC", after, 1), ["2026-03-15T00:00:00Z"]);
        assert_eq!(fires("@monthly", "UTC", after, 1), ["2026-04-01T00:00:00Z"]);
        assert_eq!(fires("@yearly", "UTC", after, 1), ["2027-01-01T00:00:00Z"]);
        assert_eq!(fires("@ANNUALLY", "UTC", after, 1), ["2027-01-01T00:00:00Z"]);
        assert_eq!(CronExpr::parse(" @daily ").unwrap().source(), "@daily");
    }

    #[test]
    fn leap_days_and_time_zones() {
        assert_eq!(
            fires("0 0 29 2 *", "UTC", "2026-03-10T00:00:00Z", 2),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
        );
        // 02:00 in Berlin is 01:00 UTC in winter and 00:00 UTC in summer.
        assert_eq!(
            fires("0 2 * * *", "Europe/Berlin", "2026-03-10T12:00:00Z", 1),
            ["2026-03-11T01:00:00Z"]
        );
        assert_eq!(
            fires("0 2 * * *", "europe/berlin", "2026-07-10T12:00:00Z", 1),
            ["2026-07-11T00:00:00Z"]
        );
        assert_eq!(
            fires("30 9 * * *", "Asia/Kolkata", "2026-03-10T12:00:00Z", 1),
            ["2026-03-11T04:00:00Z"]
        );
    }

    #[test]
    fn spring_forward_fires_once_when_the_clocks_jump() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 does not exist.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 3),
            ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"]
        );
        // Every 15 minutes: the four slots in the gap become one fire at 03:00 CEST.
        assert_eq!(
            fires("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:40:00Z", 4),
            [
                "2026-03-29T00:45:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:15:00Z",
                "2026-03-29T01:30:00Z"
            ]
        );
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        assert_eq!(
            fires("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
        );
    }

    #[test]
    fn fall_back_fires_once_at_the_first_occurrence() {
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens twice.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        // Hourly: 02:00 fires in summer time only, then 03:00 winter time.
        assert_eq!(
            fires("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", 3),
            ["2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"]
        );
        // Asked from inside the second pass of the repeated hour: nothing fires twice.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T01:30:00Z"]
        );
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:30 happens twice.
        assert_eq!(
            fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
    }

    #[test]
    fn invalid_expressions_say_what_is_wrong() {
        for (expr, says) in [
            ("", "empty"),
            ("* * * *", "4 field(s)"),
            ("0 0 2 * * *", "seconds and years are not supported"),
            ("0 0 2 * * * 2026", "seconds and years are not supported"),
            (
                "61 * * * *",
                "61 is out of range in the minute field \"61\": minute values are 0-59",
            ),
            ("0 24 * * *", "hour values are 0-23"),
            ("0 0 0 * *", "day-of-month values are 1-31"),
            ("0 0 * 13 *", "month values are 1-12"),
            ("0 0 * * 8", "day-of-week values are 0-7 (0 and 7 are Sunday)"),
            ("0 0 * FOO *", "neither a number nor a name like JAN, FEB, MAR"),
            ("0 0 * * MONDAY", "neither a number nor a name like SUN, MON, TUE"),
            ("x * * * *", "is not a number"),
            ("*/0 * * * *", "a step is a whole number from 1 to 59"),
            ("1,,2 * * * *", "empty item"),
            ("5-1 * * * *", "runs backwards"),
            ("0 0 30 2 *", "never matches a real date"),
            ("@reboot", "not a time"),
            ("@fortnightly", "not a shorthand"),
            ("? * * * *", "is not a number"),
        ] {
            let error = CronExpr::parse(expr).expect_err(expr);
            assert!(error.contains(says), "{expr:?}: {error}");
        }
        assert!(CronExpr::parse("0 0 ? * MON").is_ok());
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(parse_timezone("UTC").unwrap(), Tz::UTC);
        assert_eq!(parse_timezone("america/new_york").unwrap(), Tz::America__New_York);
        assert!(parse_timezone("Mars/Olympus_Mons").unwrap_err().contains("IANA"));
        assert!(parse_timezone("").is_err());
    }

    /// Why fields are not read by the `cron` crate: its day-of-week numbering (1 = Sunday)
    /// and its AND of the two day fields differ from standard cron.
    #[test]
    fn the_cron_crate_reads_days_differently() {
        let crate_next = |expr: &str| {
            cron::Schedule::from_str(expr)
                .unwrap()
                .after(&utc("2026-03-10T00:00:00Z"))
                .next()
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        // Its 1 is Sunday (2026-03-15); standard cron's 1 is Monday (2026-03-16).
        assert_eq!(crate_next("0 0 12 * * 1"), "2026-03-15T12:00:00Z");
        assert!(cron::Schedule::from_str("0 0 12 * * 0").is_err());
        // It fires on Friday the 13th only: after 2026-03-13 next in November, where
        // standard cron fires on every 13th and every Friday.
        assert_eq!(crate_next("0 0 0 13 * FRI"), "2026-03-13T00:00:00Z");
        assert_eq!(
            cron::Schedule::from_str("0 0 0 13 * FRI")
                .unwrap()
                .after(&utc("2026-03-14T00:00:00Z"))
                .next()
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "2026-11-13T00:00:00Z"
        );
    }

    /// Where the two readings agree (no day-of-week), fire times match the crate's.
    #[test]
    fn agrees_with_the_cron_crate_without_day_of_week() {
        let after = utc("2026-03-10T14:32:11Z");
        for expr in [
            "* * * * *",
            "*/7 * * * *",
            "0 */3 * * *",
            "5,10,15 1-4 * * *",
            "0 12 1,15 * *",
            "30 6 * JAN-MAR,OCT *",
            "0 0 31 * *",
            "59 23 28-31 2 *",
        ] {
            let oracle: Vec<DateTime<Utc>> = cron::Schedule::from_str(&format!("0 {expr}"))
                .unwrap()
                .after(&after)
                .take(20)
                .collect();
            let ours = CronExpr::parse(expr).unwrap();
            let mut at = after;
            for expected in oracle {
                at = ours.next_after(&Tz::UTC, at).unwrap();
                assert_eq!(at, expected, "{expr}");
            }
        }
    }
}
