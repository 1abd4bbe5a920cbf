//! Cron schedules: expressions and their fire times in a time zone (`cron`), what a timer
//! does when it wakes (`plan`), and the checked shape of a schedule (`spec`). The timers
//! themselves belong to the tenant's supervisor (`tenant::supervisor::schedules`).

pub mod cron;
pub mod plan;
pub mod spec;

pub use spec::{NewSchedule, Overlap, RowIdentity, SchedulePatch, ScheduleSpec, Target};
