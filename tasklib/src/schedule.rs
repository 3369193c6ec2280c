//! Recurring tasks: a [`Schedule`] submits one task on every tick of a cron expression, read
//! in UTC or in a named time zone. Schedules are registered in code
//! ([`TaskLib::schedule`](crate::TaskLib::schedule)) and run by every worker pool of the
//! process; the database makes sure that each tick submits exactly one task, however many
//! processes run the schedule. `docs/concepts.md` ("Recurring tasks (cron)") has the rules.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde_json::Value;
use uuid::Uuid;

use crate::submit::{NewTask, OwnedDefaults, SubmitOptions};
use crate::task::Task;
use crate::{Error, Result};

/// How late a tick may be claimed and still count as on time: one minute. On-time ticks
/// each submit their task, even when a pool claims several at once because it woke late (a
/// busy machine, a restart of a few seconds). A tick older than this when claimed (every
/// process running the schedule was down, say) is *missed*, and [`MissedTicks`] says what
/// becomes of it.
pub const MISSED_TICK_GRACE: Duration = Duration::from_secs(60);

/// What a schedule does with ticks that passed while no process ran it (see
/// [`MISSED_TICK_GRACE`]). Either way, ticks are never made up one by one: a schedule that
/// was down for a day does not submit a day's worth of tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MissedTicks {
    /// Missed ticks submit nothing: the schedule goes on at its next tick. The default, right
    /// for work that only matters at its time (a report of the last hour, a cache refresh).
    #[default]
    Skip,
    /// The latest missed tick submits one task as soon as a process runs the schedule again
    /// (the earlier ones submit nothing): right for work that must happen at least once per
    /// period (a nightly export).
    RunOnce,
}

impl MissedTicks {
    /// The name stored in `tasklib_schedules.missed`: `skip` or `run_once`.
    pub fn as_str(self) -> &'static str {
        match self {
            MissedTicks::Skip => "skip",
            MissedTicks::RunOnce => "run_once",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub(crate) fn from_name(name: &str) -> Option<MissedTicks> {
        match name {
            "skip" => Some(MissedTicks::Skip),
            "run_once" => Some(MissedTicks::RunOnce),
            _ => None,
        }
    }
}

impl fmt::Display for MissedTicks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recurring task: its name, when it ticks, and what it submits at each tick.
///
/// The expression has five fields (minute, hour, day of month, month, day of week) or six,
/// with seconds first; names (`MON`, `JAN`), ranges, steps, lists, `L`, `W`, `#` and the
/// nicknames (`@daily`, `@hourly`...) work as in Vixie cron. It is read in UTC unless
/// [`time_zone`](Self::time_zone) names a zone: `0 3 * * *` in `Europe/Paris` is 03:00 Paris
/// time all year, summer and winter. A local time the clocks skip (spring forward) runs at
/// the first moment after the gap; a local time they repeat (fall back) runs once.
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # use validator::Validate;
/// # #[derive(Debug, Serialize, Deserialize, Validate)] struct NightlyReport { recipients: String }
/// # impl tasklib::Task for NightlyReport { const NAME: &'static str = "nightly_report"; type Output = (); }
/// # fn example(tasks: &tasklib::TaskLib) -> Result<(), tasklib::Error> {
/// use tasklib::{MissedTicks, Schedule, SubmitOptions};
///
/// tasks.schedule(
///     Schedule::new("nightly-report", "0 3 * * *")?
///         .time_zone("Europe/Paris")?
///         .args(NightlyReport { recipients: "ops@example.com".into() })
///         .options(SubmitOptions::new().queue("reports").max_retries(5))
///         .missed(MissedTicks::RunOnce),
/// )?;
/// // Every worker pool this `TaskLib` starts now runs the schedule.
/// let workers = tasks.spawn_workers(4)?;
/// # drop(workers);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Schedule {
    name: String,
    timing: Timing,
    task: Option<ScheduledArgs>,
    /// Why the arguments were refused, reported by [`TaskLib::schedule`](crate::TaskLib::schedule).
    args_error: Option<Error>,
    options: SubmitOptions,
    missed: MissedTicks,
}

/// The task a schedule submits, checked: its name, JSON arguments and its type's defaults.
#[derive(Debug)]
struct ScheduledArgs {
    name: String,
    args: Value,
    defaults: OwnedDefaults,
    /// The type's [`Task::unique_key`] for the arguments: refused, not ignored.
    type_key: Option<String>,
}

impl Schedule {
    /// A schedule named `name` (its identity across processes and in `tasklib_schedules`)
    /// ticking on the cron `expression`, in UTC, skipping missed ticks. Give it its task with
    /// [`args`](Self::args).
    ///
    /// # Errors
    /// [`Error::InvalidCron`] for an expression that does not parse or never matches (the
    /// 30th of February); [`Error::InvalidOption`] for an empty name or one holding the NUL
    /// character.
    pub fn new(name: impl Into<String>, expression: &str) -> Result<Schedule> {
        let name = name.into();
        if name.trim().is_empty() || name.contains('\0') {
            return Err(Error::InvalidOption {
                option: "name",
                reason: "a schedule's name must not be empty nor contain the NUL character"
                    .to_owned(),
            });
        }
        Ok(Schedule {
            name,
            timing: Timing::parse(expression, Tz::UTC)?,
            task: None,
            args_error: None,
            options: SubmitOptions::new(),
            missed: MissedTicks::default(),
        })
    }

    /// Reads the expression in the IANA time zone `zone` (`Europe/Paris`, `America/New_York`,
    /// `UTC`) instead of UTC.
    ///
    /// # Errors
    /// [`Error::UnknownTimeZone`] for a name the time zone database does not know.
    pub fn time_zone(mut self, zone: &str) -> Result<Schedule> {
        self.timing.zone = zone
            .trim()
            .parse::<Tz>()
            .map_err(|_| Error::UnknownTimeZone {
                zone: zone.to_owned(),
            })?;
        Ok(self)
    }

    /// The task each tick submits: validated and serialized now, once. Invalid arguments are
    /// reported by [`TaskLib::schedule`](crate::TaskLib::schedule).
    pub fn args<T: Task>(mut self, args: T) -> Schedule {
        self.args_error = None;
        self.task = None;
        if let Err(source) = args.validate() {
            self.args_error = Some(Error::InvalidArgs {
                task: T::NAME.to_owned(),
                index: None,
                source,
            });
            return self;
        }
        match serde_json::to_value(&args) {
            Ok(json) => {
                self.task = Some(ScheduledArgs {
                    name: T::NAME.to_owned(),
                    args: json,
                    defaults: OwnedDefaults::of::<T>(),
                    type_key: args.unique_key(),
                })
            }
            Err(source) => {
                self.args_error = Some(Error::Serialize {
                    task: T::NAME.to_owned(),
                    source,
                })
            }
        }
        self
    }

    /// Options of every task the schedule submits (queue, priority, retries, timeout, tags),
    /// as for [`TaskLib::submit_with`](crate::TaskLib::submit_with). A delay or a time is
    /// refused: a scheduled task is due at its tick.
    pub fn options(mut self, options: SubmitOptions) -> Schedule {
        self.options = options;
        self
    }

    /// What to do with missed ticks. Defaults to [`MissedTicks::Skip`].
    pub fn missed(mut self, missed: MissedTicks) -> Schedule {
        self.missed = missed;
        self
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cron expression, as given.
    pub fn expression(&self) -> &str {
        &self.timing.expression
    }

    /// The time zone the expression is read in (`UTC` unless set).
    pub fn zone_name(&self) -> &'static str {
        self.timing.zone.name()
    }

    /// The first tick strictly after `after`, if the expression has one.
    pub fn next_tick_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.timing.next_after(after)
    }

    /// Checks the schedule and turns it into what a pool runs; `prepare` checks the task's
    /// row as a submit would (capabilities, limits, defaults).
    pub(crate) fn into_recurring(
        self,
        prepare: impl FnOnce(
            &str,
            Value,
            &OwnedDefaults,
            &SubmitOptions,
            Option<String>,
        ) -> Result<NewTask>,
    ) -> Result<Recurring> {
        if let Some(error) = self.args_error {
            return Err(error);
        }
        let Some(task) = self.task else {
            return Err(Error::InvalidOption {
                option: "args",
                reason: format!(
                    "schedule `{}` has no task: give it one with `Schedule::args`",
                    self.name
                ),
            });
        };
        if self.options.is_delayed() {
            return Err(Error::InvalidOption {
                option: "delay",
                reason: format!(
                    "the tasks of schedule `{}` are due at their tick: drop the delay",
                    self.name
                ),
            });
        }
        let mut row = prepare(
            &task.name,
            task.args,
            &task.defaults,
            &self.options,
            task.type_key,
        )?;
        // A tick's task has no submitter: whoever registered the schedule is not it.
        row.trace_context = None;
        if row.unique.is_some() {
            return Err(Error::InvalidOption {
                option: "unique_key",
                reason: format!(
                    "the task of schedule `{}` has a unique key: a schedule already makes one \
                     task per tick; drop the key (or use a type without one)",
                    self.name
                ),
            });
        }
        Ok(Recurring {
            name: self.name,
            timing: self.timing,
            missed: self.missed,
            row,
        })
    }
}

/// When a schedule ticks: a parsed expression and its zone.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    expression: String,
    cron: Cron,
    zone: Tz,
}

impl Timing {
    /// Parses `expression` (five fields, or six with seconds first) for `zone`.
    pub(crate) fn parse(expression: &str, zone: Tz) -> Result<Timing> {
        let invalid = |reason: String| Error::InvalidCron {
            expression: expression.to_owned(),
            reason,
        };
        let cron = Cron::from_str(expression).map_err(|e| invalid(e.to_string()))?;
        let timing = Timing {
            expression: expression.trim().to_owned(),
            cron,
            zone,
        };
        if timing.next_after(Utc::now()).is_none() {
            return Err(invalid("it never matches".to_owned()));
        }
        Ok(timing)
    }

    /// Parses a zone name as stored; `None` when this build does not know it.
    pub(crate) fn zone(name: &str) -> Option<Tz> {
        name.parse().ok()
    }

    /// The zone's IANA name.
    pub(crate) fn zone_name(&self) -> &'static str {
        self.zone.name()
    }

    pub(crate) fn expression(&self) -> &str {
        &self.expression
    }

    /// The latest tick at or before `now`. Ticks are whole seconds, so `now` is truncated.
    pub(crate) fn latest_at_or_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.trunc_subsecs(0).with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first tick strictly after `now`.
    pub(crate) fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.trunc_subsecs(0).with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// A checked schedule, as a worker pool runs it.
#[derive(Debug, Clone)]
pub(crate) struct Recurring {
    pub(crate) name: String,
    pub(crate) timing: Timing,
    pub(crate) missed: MissedTicks,
    /// The task each tick submits; each tick gets a fresh id and its own tags.
    row: NewTask,
}

/// Ticks one round claims at most: a minute's worth of a schedule that ticks every second,
/// the most that can be on time at once.
const MAX_TICKS_PER_ROUND: usize = 61;

/// A tick to claim, and whether it submits a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DueTick {
    pub(crate) at: DateTime<Utc>,
    /// False for a missed tick of a schedule that skips them: claimed, submits nothing.
    pub(crate) run: bool,
}

impl Recurring {
    /// The ticks to claim at `now` (the database's clock), oldest first, given `last_tick`,
    /// the latest one claimed; empty when nothing is due.
    ///
    /// Every tick after `last_tick` that is still on time (at most [`MISSED_TICK_GRACE`] old)
    /// is claimed on its own and submits its task, so a process that wakes a little late
    /// catches up tick by tick. Older ticks are missed: they are claimed as one, the latest
    /// of them, which submits a task only under [`MissedTicks::RunOnce`].
    pub(crate) fn due(&self, last_tick: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Vec<DueTick> {
        // Ticks at or after the horizon are on time.
        let grace = chrono::Duration::from_std(MISSED_TICK_GRACE).unwrap_or_default();
        let horizon = now - grace;
        let just_before = |t: DateTime<Utc>| t - chrono::Duration::nanoseconds(1);
        let after_last = |t: DateTime<Utc>| last_tick.is_none_or(|last| t > last);
        let mut due = Vec::new();
        if let Some(missed) = self.timing.latest_at_or_before(just_before(horizon))
            && after_last(missed)
        {
            due.push(DueTick {
                at: missed,
                run: self.missed == MissedTicks::RunOnce,
            });
        }
        let mut cursor = match last_tick {
            Some(last) if last >= horizon => last,
            _ => just_before(horizon),
        };
        while let Some(at) = self.timing.next_after(cursor) {
            if at > now || due.len() > MAX_TICKS_PER_ROUND {
                break;
            }
            due.push(DueTick { at, run: true });
            cursor = at;
        }
        due
    }

    /// The task of tick `at`: a fresh id, due at the tick, tagged `schedule` (the schedule's
    /// name) and `tick` (its time, RFC 3339 in UTC) besides the options' tags.
    pub(crate) fn task_at(&self, at: DateTime<Utc>) -> NewTask {
        let mut row = self.row.clone();
        row.id = Uuid::now_v7();
        row.scheduled_at = Some(at);
        row.delay_seconds = 0.0;
        if let Value::Object(tags) = &mut row.tags {
            tags.insert("schedule".to_owned(), Value::String(self.name.clone()));
            tags.insert(
                "tick".to_owned(),
                Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            );
        }
        row
    }

    /// The task's name.
    pub(crate) fn task_name(&self) -> &str {
        &self.row.name
    }
}

/// A schedule as stored in the database (`tasklib_schedules`): what
/// [`TaskLib::list_schedules`](crate::TaskLib::list_schedules) and `tasklib schedules` show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// The schedule's name.
    pub name: String,
    /// The task name it submits.
    pub task: String,
    /// Its cron expression.
    pub cron: String,
    /// The time zone the expression is read in.
    pub time_zone: String,
    /// What it does with missed ticks.
    pub missed: MissedTicks,
    /// The latest tick claimed (submitted or skipped); `None` before the first.
    pub last_tick: Option<DateTime<Utc>>,
    /// The task the latest submitted tick created.
    pub last_task_id: Option<Uuid>,
    /// The next tick after now (the database's clock), as the stored expression says;
    /// `None` when it has none, or this build cannot read the expression or zone.
    pub next_run: Option<DateTime<Utc>>,
    /// The last time a worker pool registered the schedule or claimed a tick: a schedule
    /// that no process runs any more keeps its row, growing older here.
    pub updated_at: DateTime<Utc>,
}

impl ScheduleInfo {
    /// The next tick after `now` of a stored expression and zone; `None` when either cannot
    /// be read.
    pub(crate) fn next_run_of(cron: &str, zone: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let zone = Timing::zone(zone)?;
        let cron = Cron::from_str(cron).ok()?;
        Timing {
            expression: String::new(),
            cron,
            zone,
        }
        .next_after(now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .unwrap_or(DateTime::UNIX_EPOCH)
    }

    fn recurring(expression: &str, zone: Tz, missed: MissedTicks) -> Result<Recurring> {
        Ok(Recurring {
            name: "s".to_owned(),
            timing: Timing::parse(expression, zone)?,
            missed,
            row: NewTask {
                id: Uuid::nil(),
                name: "t".to_owned(),
                queue: "default".to_owned(),
                args: Value::Object(Default::default()),
                priority: 0,
                max_retries: 3,
                timeout_seconds: None,
                scheduled_at: None,
                delay_seconds: 0.0,
                tags: serde_json::json!({"team": "ops"}),
                unique: None,
                trace_context: None,
            },
        })
    }

    #[test]
    fn five_and_six_fields_and_nicknames_parse() -> Result<()> {
        let every_second = Timing::parse("* * * * * *", Tz::UTC)?;
        let t = utc(2026, 5, 1, 12, 0, 0);
        assert_eq!(every_second.next_after(t), Some(utc(2026, 5, 1, 12, 0, 1)));
        let daily = Timing::parse("0 3 * * *", Tz::UTC)?;
        assert_eq!(daily.next_after(t), Some(utc(2026, 5, 2, 3, 0, 0)));
        assert_eq!(daily.latest_at_or_before(t), Some(utc(2026, 5, 1, 3, 0, 0)));
        let nickname = Timing::parse("@hourly", Tz::UTC)?;
        assert_eq!(nickname.next_after(t), Some(utc(2026, 5, 1, 13, 0, 0)));
        Ok(())
    }

    #[test]
    fn a_tick_is_its_own_latest_and_sub_seconds_do_not_matter() -> Result<()> {
        let timing = Timing::parse("*/5 * * * * *", Tz::UTC)?;
        let tick = utc(2026, 5, 1, 12, 0, 5);
        assert_eq!(timing.latest_at_or_before(tick), Some(tick));
        let later = tick + chrono::Duration::milliseconds(700);
        assert_eq!(timing.latest_at_or_before(later), Some(tick));
        assert_eq!(timing.next_after(later), Some(utc(2026, 5, 1, 12, 0, 10)));
        Ok(())
    }

    #[test]
    fn bad_expressions_and_zones_are_typed_errors() {
        for bad in [
            "",
            "61 * * * *",
            "* * *",
            "0 3 * * MONDAY-ish",
            "0 0 30 2 *",
        ] {
            match Schedule::new("s", bad) {
                Err(Error::InvalidCron { expression, reason }) => {
                    assert_eq!(expression, bad);
                    assert!(!reason.is_empty());
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let never = Schedule::new("s", "0 0 30 2 *")
            .err()
            .map(|e| e.to_string());
        assert!(never.is_some_and(|e| e.contains("never matches")), "Feb 30");
        match Schedule::new("s", "0 3 * * *").and_then(|s| s.time_zone("Mars/Olympus")) {
            Err(Error::UnknownTimeZone { zone }) => assert_eq!(zone, "Mars/Olympus"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Schedule::new(" ", "0 3 * * *"),
            Err(Error::InvalidOption { option: "name", .. })
        ));
    }

    /// Europe/Paris moves from +01:00 to +02:00 at 02:00 local on 29 March 2026, and back at
    /// 03:00 local on 25 October 2026.
    #[test]
    fn named_zones_follow_daylight_saving_time() -> Result<()> {
        let paris = Schedule::new("s", "0 3 * * *")?.time_zone("Europe/Paris")?;
        assert_eq!(paris.zone_name(), "Europe/Paris");
        // Winter: 03:00 in Paris is 02:00 UTC; from the switch on, 01:00 UTC.
        assert_eq!(
            paris.next_tick_after(utc(2026, 3, 27, 12, 0, 0)),
            Some(utc(2026, 3, 28, 2, 0, 0))
        );
        assert_eq!(
            paris.next_tick_after(utc(2026, 3, 28, 12, 0, 0)),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
        // 02:30 does not exist in Paris on 29 March: it runs at the end of the gap, 03:00
        // CEST (01:00 UTC), once.
        let gap = Schedule::new("s", "30 2 * * *")?.time_zone("Europe/Paris")?;
        let first = gap.next_tick_after(utc(2026, 3, 28, 12, 0, 0));
        assert_eq!(first, Some(utc(2026, 3, 29, 1, 0, 0)));
        assert_eq!(
            gap.timing.latest_at_or_before(utc(2026, 3, 29, 1, 0, 5)),
            first,
            "searching back finds the same tick"
        );
        assert_eq!(
            first.and_then(|t| gap.next_tick_after(t)),
            Some(utc(2026, 3, 30, 0, 30, 0))
        );
        // 02:30 happens twice on 25 October (at 00:30 and 01:30 UTC): it runs once.
        let first = gap.next_tick_after(utc(2026, 10, 24, 12, 0, 0));
        assert_eq!(first, Some(utc(2026, 10, 25, 0, 30, 0)));
        assert_eq!(
            first.and_then(|t| gap.next_tick_after(t)),
            Some(utc(2026, 10, 26, 1, 30, 0))
        );
        // The same expression in UTC does not move.
        let plain = Schedule::new("s", "0 3 * * *")?;
        assert_eq!(
            plain.next_tick_after(utc(2026, 3, 28, 12, 0, 0)),
            Some(utc(2026, 3, 29, 3, 0, 0))
        );
        Ok(())
    }

    #[test]
    fn on_time_ticks_run_and_missed_ones_follow_the_setting() -> Result<()> {
        let skip = recurring("0 * * * *", Tz::UTC, MissedTicks::Skip)?;
        let once = recurring("0 * * * *", Tz::UTC, MissedTicks::RunOnce)?;
        let tick = utc(2026, 5, 1, 12, 0, 0);
        let last = Some(utc(2026, 5, 1, 11, 0, 0));
        let runs = |at| DueTick { at, run: true };
        // On time (within the grace): runs whatever the setting.
        let now = tick + chrono::Duration::seconds(2);
        for schedule in [&skip, &once] {
            assert_eq!(schedule.due(last, now), vec![runs(tick)]);
        }
        // Already claimed: nothing.
        assert_eq!(skip.due(Some(tick), now), vec![]);
        // Missed (every process down for hours): skipped, or run once for the latest tick.
        let long_ago = Some(utc(2026, 4, 1, 0, 0, 0));
        let now = tick + chrono::Duration::minutes(20);
        assert_eq!(
            skip.due(long_ago, now),
            vec![DueTick {
                at: tick,
                run: false
            }]
        );
        assert_eq!(once.due(long_ago, now), vec![runs(tick)]);
        // Just past the grace counts as missed; at the grace, on time.
        let grace = chrono::Duration::from_std(MISSED_TICK_GRACE).unwrap_or_default();
        assert_eq!(skip.due(last, tick + grace), vec![runs(tick)]);
        assert_eq!(
            skip.due(last, tick + grace + chrono::Duration::milliseconds(1)),
            vec![DueTick {
                at: tick,
                run: false
            }]
        );
        Ok(())
    }

    #[test]
    fn late_rounds_catch_up_on_time_ticks_one_by_one() -> Result<()> {
        let every_second = recurring("* * * * * *", Tz::UTC, MissedTicks::Skip)?;
        let last = utc(2026, 5, 1, 12, 0, 0);
        let now = last + chrono::Duration::milliseconds(3_400);
        let ticks: Vec<_> = every_second.due(Some(last), now);
        assert_eq!(
            ticks,
            (1..=3)
                .map(|s| DueTick {
                    at: last + chrono::Duration::seconds(s),
                    run: true
                })
                .collect::<Vec<_>>()
        );
        // Down for ten minutes: the ticks older than the grace are one skipped claim, the
        // last minute's are claimed one by one.
        let now = last + chrono::Duration::minutes(10);
        let ticks = every_second.due(Some(last), now);
        let horizon = now - chrono::Duration::from_std(MISSED_TICK_GRACE).unwrap_or_default();
        assert_eq!(
            ticks.first(),
            Some(&DueTick {
                at: horizon - chrono::Duration::seconds(1),
                run: false
            })
        );
        assert_eq!(
            ticks.len(),
            62,
            "one missed claim and 61 on time (both ends)"
        );
        assert!(ticks.iter().skip(1).all(|t| t.run && t.at >= horizon));
        assert_eq!(ticks.last().map(|t| t.at), Some(now));
        Ok(())
    }

    #[test]
    fn each_tick_gets_a_fresh_id_and_its_tags() -> Result<()> {
        let schedule = recurring("0 * * * *", Tz::UTC, MissedTicks::Skip)?;
        let tick = utc(2026, 5, 1, 12, 0, 0);
        let a = schedule.task_at(tick);
        let b = schedule.task_at(tick);
        assert_ne!(a.id, b.id);
        assert_eq!(a.scheduled_at, Some(tick));
        assert_eq!(
            a.tags,
            serde_json::json!({"team": "ops", "schedule": "s", "tick": "2026-05-01T12:00:00Z"})
        );
        Ok(())
    }

    #[test]
    fn stored_definitions_give_the_next_run() {
        let now = utc(2026, 5, 1, 12, 0, 0);
        assert_eq!(
            ScheduleInfo::next_run_of("0 3 * * *", "Europe/Paris", now),
            Some(utc(2026, 5, 2, 1, 0, 0))
        );
        assert_eq!(ScheduleInfo::next_run_of("0 3 * * *", "Nowhere", now), None);
        assert_eq!(ScheduleInfo::next_run_of("nonsense", "UTC", now), None);
    }

    #[test]
    fn missed_tick_names_round_trip() {
        for missed in [MissedTicks::Skip, MissedTicks::RunOnce] {
            assert_eq!(MissedTicks::from_name(missed.as_str()), Some(missed));
        }
        assert_eq!(MissedTicks::from_name("later"), None);
    }
}
