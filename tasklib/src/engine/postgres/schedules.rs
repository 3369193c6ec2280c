//! The `tasklib_schedules` table: writing a pool's schedules when it starts, reading their
//! latest ticks with the database's clock, and listing them. Claiming a tick, which also
//! writes its task, is [`insert::claim_tick`](super::insert::claim_tick).
//!
//! These statements run on tasklib's own pool, whose `search_path` names tasklib's schema.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use crate::Result;
use crate::schedule::{MissedTicks, Recurring, ScheduleInfo};

/// Writes each schedule's definition (`$1` names, `$2` task names, `$3` expressions, `$4`
/// zones, `$5` missed-tick settings, `$6` next ticks, the epoch for none: array elements
/// cannot be NULL through the driver). A new schedule starts at the database's `now()`: ticks
/// before it was first registered are not due. An existing one keeps its latest tick, so a
/// restart neither repeats nor (beyond its missed-tick setting) drops one.
const REGISTER: &str = r#"
INSERT INTO tasklib_schedules AS s (name, task, cron, time_zone, missed, last_tick, next_tick)
SELECT r.name, r.task, r.cron, r.time_zone, r.missed, now(),
       NULLIF(r.next_tick, 'epoch'::timestamptz)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
     AS r(name, task, cron, time_zone, missed, next_tick)
ON CONFLICT (name) DO UPDATE
SET task = excluded.task,
    cron = excluded.cron,
    time_zone = excluded.time_zone,
    missed = excluded.missed,
    last_tick = COALESCE(s.last_tick, excluded.last_tick),
    next_tick = excluded.next_tick,
    updated_at = now()
"#;

/// The latest tick of each schedule in `$1`, and the database's clock. One row per name, even
/// for a schedule whose row is gone (deleted by hand while pools ran): `registered` is false
/// and the pool writes it again.
const TICKS: &str = r#"
SELECT r.name, s.last_tick, s.name IS NOT NULL AS registered, now() AS now
FROM unnest($1::text[]) AS r(name)
LEFT JOIN tasklib_schedules AS s ON s.name = r.name
"#;

const LIST: &str = r#"
SELECT name, task, cron, time_zone, missed, last_tick, last_task_id, updated_at, now() AS now
FROM tasklib_schedules
ORDER BY name
"#;

#[derive(Debug, FromQueryResult)]
struct NowRow {
    now: DateTime<Utc>,
}

/// The database's clock.
pub(crate) async fn now<C: ConnectionTrait>(conn: &C) -> Result<DateTime<Utc>> {
    let row = NowRow::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT now() AS now",
    ))
    .one(conn)
    .await?
    .ok_or(sea_orm::DbErr::RecordNotFound(
        "SELECT now() returned no row".to_owned(),
    ))?;
    Ok(row.now)
}

/// Writes the definitions of `schedules`, each with its next tick after `now` (the
/// database's clock).
pub(crate) async fn register<C: ConnectionTrait>(
    conn: &C,
    schedules: &[std::sync::Arc<Recurring>],
    now: DateTime<Utc>,
) -> Result<()> {
    let n = schedules.len();
    let mut names = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    let mut crons = Vec::with_capacity(n);
    let mut zones = Vec::with_capacity(n);
    let mut missed = Vec::with_capacity(n);
    let mut next = Vec::with_capacity(n);
    for schedule in schedules {
        names.push(schedule.name.clone());
        tasks.push(schedule.task_name().to_owned());
        crons.push(schedule.timing.expression().to_owned());
        zones.push(schedule.timing.zone_name().to_owned());
        missed.push(schedule.missed.as_str().to_owned());
        next.push(
            schedule
                .timing
                .next_after(now)
                .unwrap_or(DateTime::UNIX_EPOCH),
        );
    }
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        REGISTER,
        [
            names.into(),
            tasks.into(),
            crons.into(),
            zones.into(),
            missed.into(),
            next.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// A schedule's latest tick, as [`ticks`] reads it.
#[derive(Debug, FromQueryResult)]
pub(crate) struct TickRow {
    pub(crate) name: String,
    pub(crate) last_tick: Option<DateTime<Utc>>,
    pub(crate) registered: bool,
    /// The database's clock, the same on every row.
    pub(crate) now: DateTime<Utc>,
}

/// The latest tick of each of `names`, with the database's clock.
pub(crate) async fn ticks<C: ConnectionTrait>(
    conn: &C,
    names: Vec<String>,
) -> Result<Vec<TickRow>> {
    Ok(TickRow::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        TICKS,
        [names.into()],
    ))
    .all(conn)
    .await?)
}

#[derive(Debug, FromQueryResult)]
struct ListRow {
    name: String,
    task: String,
    cron: String,
    time_zone: String,
    missed: String,
    last_tick: Option<DateTime<Utc>>,
    last_task_id: Option<Uuid>,
    updated_at: DateTime<Utc>,
    now: DateTime<Utc>,
}

/// Every schedule in the table, by name, with its next tick after the database's `now()`.
pub(crate) async fn list<C: ConnectionTrait>(conn: &C) -> Result<Vec<ScheduleInfo>> {
    let rows = ListRow::find_by_statement(Statement::from_string(DbBackend::Postgres, LIST))
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| ScheduleInfo {
            next_run: ScheduleInfo::next_run_of(&row.cron, &row.time_zone, row.now),
            // The table's check constraint allows only the two names.
            missed: MissedTicks::from_name(&row.missed).unwrap_or_default(),
            name: row.name,
            task: row.task,
            cron: row.cron,
            time_zone: row.time_zone,
            last_tick: row.last_tick,
            last_task_id: row.last_task_id,
            updated_at: row.updated_at,
        })
        .collect())
}
