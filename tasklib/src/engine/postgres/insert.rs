//! Writing new tasks: one row, many rows in one statement, a chain's steps, and the task of
//! a schedule's tick.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use crate::chain::{ChainIds, NewChain};
use crate::submit::NewTask;
use crate::unique::Submitted;
use crate::{Error, Result};

/// Inserts all rows in one statement: each column is one typed array parameter, zipped back
/// into rows by `unnest`. One statement means a bulk submit is all-or-nothing and, through the
/// statement-level trigger, sends one `NOTIFY` per queue. Delays are added to the database's
/// `now()`, so the worker's clock and the submitter's agree.
///
/// Typed arrays travel in PostgreSQL's binary format and need no parsing on either side, unlike
/// one JSON document of rows (measured: `docs/performance.md`). Array elements cannot be NULL
/// through the driver, so absent values are encoded: a timeout of 0 (never valid) is none,
/// `$9` says which rows have an explicit `scheduled_at`, and a trace context `''` is none.
/// The trace contexts `$12` are an empty array when no row has one (always, without the
/// `otel` feature): `unnest` pads a shorter array with NULLs.
const INSERT_TASKS: &str = r#"
INSERT INTO tasks (id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at,
                   tags, trace_context)
SELECT r.id, r.name, r.queue, r.args, r.priority, r.max_retries, NULLIF(r.timeout_seconds, 0),
       CASE WHEN r.has_scheduled_at THEN r.scheduled_at
            ELSE now() + make_interval(secs => r.delay_seconds) END,
       r.tags, NULLIF(r.trace_context, '')
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int4[], $6::int4[],
            $7::float8[], $8::timestamptz[], $9::bool[], $10::float8[], $11::jsonb[],
            $12::text[])
     AS r(id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at,
          has_scheduled_at, delay_seconds, tags, trace_context)
"#;

/// One row, as plain parameters: cheaper to plan than [`INSERT_TASKS`] for a single submit
/// (measured: `docs/performance.md`). Same columns and defaults.
const INSERT_TASK: &str = r#"
INSERT INTO tasks (id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at,
                   tags, trace_context)
VALUES ($1, $2, $3, $4, $5, $6, $7,
        COALESCE($8::timestamptz, now() + make_interval(secs => $9::float8)), $10, $11)
"#;

/// [`INSERT_TASKS`] for a batch holding unique tasks: two more columns, the unique key `$13`
/// (`''` for none) and the scope's period in seconds `$14` (0: while unfinished). A row whose
/// key is taken is skipped (`ON CONFLICT DO NOTHING`, arbitrated by the unique indexes, so
/// concurrent submitters cannot both insert); the ids returned are those written. Rows go in
/// their order, so within a batch the first of two duplicates wins. A period's window is
/// aligned on the epoch and taken from the database clock. Batches without unique keys never
/// come here: they pay nothing for the feature.
const INSERT_UNIQUE: &str = r#"
INSERT INTO tasks (id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at,
                   tags, trace_context, unique_key, unique_window)
SELECT r.id, r.name, r.queue, r.args, r.priority, r.max_retries, NULLIF(r.timeout_seconds, 0),
       CASE WHEN r.has_scheduled_at THEN r.scheduled_at
            ELSE now() + make_interval(secs => r.delay_seconds) END,
       r.tags, NULLIF(r.trace_context, ''), NULLIF(r.unique_key, ''),
       CASE WHEN r.unique_key <> '' AND r.unique_period > 0
            THEN to_timestamp(floor(extract(epoch FROM now()) / r.unique_period) * r.unique_period) END
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int4[], $6::int4[],
            $7::float8[], $8::timestamptz[], $9::bool[], $10::float8[], $11::jsonb[],
            $12::text[], $13::text[], $14::float8[]) WITH ORDINALITY
     AS r(id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at,
          has_scheduled_at, delay_seconds, tags, trace_context, unique_key, unique_period, n)
ORDER BY r.n
ON CONFLICT DO NOTHING
RETURNING id
"#;

/// The tasks holding the unique keys `$2` of names `$1`, in the scopes `$3` (period seconds;
/// 0: while unfinished), for the duplicates [`INSERT_UNIQUE`] skipped: returns each input's
/// position (from 1) with the holder's id. Each branch repeats its index's predicate word for
/// word, so the lookups go through `tasks_unique_open_idx` and `tasks_unique_window_idx`.
const FIND_UNIQUE: &str = r#"
SELECT r.n, t.id
FROM unnest($1::text[], $2::text[], $3::float8[]) WITH ORDINALITY AS r(name, unique_key, unique_period, n)
JOIN tasks AS t ON t.name = r.name AND t.unique_key = r.unique_key
WHERE r.unique_period = 0
  AND t.unique_key IS NOT NULL AND t.unique_window IS NULL
  AND (t.state IN ('pending', 'running') OR (t.state = 'failed' AND t.next_retry_at IS NOT NULL))
UNION ALL
SELECT r.n, t.id
FROM unnest($1::text[], $2::text[], $3::float8[]) WITH ORDINALITY AS r(name, unique_key, unique_period, n)
JOIN tasks AS t ON t.name = r.name AND t.unique_key = r.unique_key
     AND t.unique_window = to_timestamp(floor(extract(epoch FROM now()) / r.unique_period) * r.unique_period)
WHERE r.unique_period > 0
  AND t.unique_key IS NOT NULL AND t.unique_window IS NOT NULL
"#;

/// How many times a batch of unique tasks is tried: a row is tried again only when the task
/// holding its key finished (or its window ended) between the insert and the lookup.
const UNIQUE_ROUNDS: usize = 5;

/// The insert statements with the table qualified by tasklib's schema: they may run on the
/// caller's own connection (`submit_in`), whose `search_path` is the application's, and whose
/// first `tasks` table may be the application's own.
#[derive(Debug, Clone)]
pub(crate) struct Inserts {
    one: String,
    many: String,
    chain: String,
    unique: String,
    find_unique: String,
    tick: String,
}

impl Inserts {
    /// The statements for the `tasks` table of `schema` (a checked identifier).
    pub(crate) fn new(schema: &str) -> Inserts {
        let qualify = |sql: &str| {
            sql.replacen(
                "INSERT INTO tasks ",
                &format!("INSERT INTO \"{schema}\".tasks "),
                1,
            )
            .replacen(
                "UPDATE tasklib_schedules ",
                &format!("UPDATE \"{schema}\".tasklib_schedules "),
                1,
            )
        };
        Inserts {
            one: qualify(INSERT_TASK),
            many: qualify(INSERT_TASKS),
            chain: qualify(INSERT_CHAIN),
            unique: qualify(INSERT_UNIQUE),
            find_unique: FIND_UNIQUE
                .replace("JOIN tasks AS t", &format!("JOIN \"{schema}\".tasks AS t")),
            tick: qualify(CLAIM_TICK),
        }
    }
}

/// The rows of a batch as one array per column, in [`INSERT_TASKS`]'s parameter order. Takes
/// the rows by value so their arguments are moved, not copied, into the statement.
fn columns(rows: Vec<NewTask>) -> Vec<sea_orm::Value> {
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut name = Vec::with_capacity(n);
    let mut queue = Vec::with_capacity(n);
    let mut args = Vec::with_capacity(n);
    let mut priority = Vec::with_capacity(n);
    let mut max_retries = Vec::with_capacity(n);
    let mut timeout = Vec::with_capacity(n);
    let mut scheduled_at = Vec::with_capacity(n);
    let mut has_scheduled_at = Vec::with_capacity(n);
    let mut delay = Vec::with_capacity(n);
    let mut tags = Vec::with_capacity(n);
    // Filled only when some row has a trace context (see `INSERT_TASKS`).
    let traced = rows.iter().any(|row| row.trace_context.is_some());
    let mut trace_context = Vec::with_capacity(if traced { n } else { 0 });
    for row in rows {
        id.push(row.id);
        name.push(row.name);
        queue.push(row.queue);
        args.push(row.args);
        priority.push(row.priority);
        max_retries.push(row.max_retries);
        timeout.push(row.timeout_seconds.unwrap_or(0.0));
        scheduled_at.push(row.scheduled_at.unwrap_or(DateTime::UNIX_EPOCH));
        has_scheduled_at.push(row.scheduled_at.is_some());
        delay.push(row.delay_seconds);
        tags.push(row.tags);
        if traced {
            trace_context.push(row.trace_context.unwrap_or_default());
        }
    }
    vec![
        id.into(),
        name.into(),
        queue.into(),
        args.into(),
        priority.into(),
        max_retries.into(),
        timeout.into(),
        scheduled_at.into(),
        has_scheduled_at.into(),
        delay.into(),
        tags.into(),
        trace_context.into(),
    ]
}

/// Writes one checked row through any SeaORM connection (the pool, or the caller's
/// transaction) and returns its id, or the id of the task holding its unique key.
pub(crate) async fn insert_one<C: ConnectionTrait>(
    conn: &C,
    sql: &Inserts,
    row: NewTask,
) -> Result<Submitted> {
    if row.unique.is_some() {
        let mut submitted = insert_unique(conn, sql, vec![row]).await?;
        return submitted
            .pop()
            .ok_or(Error::Database(sea_orm::DbErr::RecordNotInserted));
    }
    let id = row.id;
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        &sql.one,
        [
            row.id.into(),
            row.name.into(),
            row.queue.into(),
            row.args.into(),
            row.priority.into(),
            row.max_retries.into(),
            row.timeout_seconds.into(),
            row.scheduled_at.into(),
            row.delay_seconds.into(),
            row.tags.into(),
            row.trace_context.into(),
        ],
    );
    conn.execute_raw(statement).await?;
    Ok(Submitted::new(id))
}

/// Writes checked rows in one statement (one row goes through [`insert_one`]) and returns
/// their ids, in order; a unique task whose key is taken gets the holder's id.
pub(crate) async fn insert<C: ConnectionTrait>(
    conn: &C,
    sql: &Inserts,
    mut rows: Vec<NewTask>,
) -> Result<Vec<Submitted>> {
    if rows.iter().any(|row| row.unique.is_some()) {
        return insert_unique(conn, sql, rows).await;
    }
    if rows.len() <= 1 {
        return match rows.pop() {
            Some(row) => Ok(vec![insert_one(conn, sql, row).await?]),
            None => Ok(Vec::new()),
        };
    }
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, &sql.many, columns(rows));
    let result = conn.execute_raw(statement).await?;
    debug_assert_eq!(result.rows_affected(), ids.len() as u64);
    Ok(ids.into_iter().map(Submitted::new).collect())
}

/// Writes a batch holding unique tasks: [`INSERT_UNIQUE`], then [`FIND_UNIQUE`] for the rows
/// it skipped. A skipped row whose holder is gone by the lookup (it finished in between) is
/// tried again, up to [`UNIQUE_ROUNDS`] times. The lookup is a statement of its own, so it
/// sees holders committed by others while the insert waited on them.
async fn insert_unique<C: ConnectionTrait>(
    conn: &C,
    sql: &Inserts,
    rows: Vec<NewTask>,
) -> Result<Vec<Submitted>> {
    let mut out: Vec<Option<Submitted>> = vec![None; rows.len()];
    // The rows still to write, each with its position in `out`.
    let mut todo: Vec<(usize, NewTask)> = rows.into_iter().enumerate().collect();
    for _ in 0..UNIQUE_ROUNDS {
        let batch: Vec<NewTask> = todo.iter().map(|(_, row)| row.clone()).collect();
        let written: HashSet<Uuid> = conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                &sql.unique,
                columns_with_keys(batch),
            ))
            .await?
            .iter()
            .map(|row| row.try_get::<Uuid>("", "id"))
            .collect::<std::result::Result<_, _>>()?;
        let mut skipped: Vec<(usize, NewTask)> = Vec::new();
        for (position, row) in std::mem::take(&mut todo) {
            if written.contains(&row.id) {
                out[position] = Some(Submitted::new(row.id));
            } else {
                skipped.push((position, row));
            }
        }
        if skipped.is_empty() {
            break;
        }
        let (names, keys, periods) = unique_keys(skipped.iter().map(|(_, row)| row));
        let found = conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                &sql.find_unique,
                [names.into(), keys.into(), periods.into()],
            ))
            .await?;
        for row in found {
            let n: i64 = row.try_get("", "n")?;
            let id: Uuid = row.try_get("", "id")?;
            let skipped_row = usize::try_from(n - 1).ok().and_then(|k| skipped.get(k));
            if let Some((position, _)) = skipped_row {
                out[*position].get_or_insert(Submitted::duplicate_of(id));
            }
        }
        // Rows neither written nor found: their holder finished in between; try again.
        todo = skipped
            .into_iter()
            .filter(|(position, _)| out[*position].is_none())
            .collect();
        if todo.is_empty() {
            break;
        }
    }
    if let Some((_, row)) = todo.first() {
        return Err(Error::UniqueKeyContended {
            task: row.name.clone(),
            key: row
                .unique
                .as_ref()
                .map(|u| u.key.clone())
                .unwrap_or_default(),
        });
    }
    Ok(out.into_iter().flatten().collect())
}

/// The columns of [`INSERT_UNIQUE`]: [`columns`] and the unique keys and periods.
fn columns_with_keys(rows: Vec<NewTask>) -> Vec<sea_orm::Value> {
    let (_, keys, periods) = unique_keys(rows.iter());
    let mut values = columns(rows);
    values.push(keys.into());
    values.push(periods.into());
    values
}

/// Names, unique keys (`''` for none) and scope periods (0 for while unfinished) of `rows`,
/// as [`FIND_UNIQUE`] takes them.
fn unique_keys<'a>(
    rows: impl Iterator<Item = &'a NewTask>,
) -> (Vec<String>, Vec<String>, Vec<f64>) {
    let mut names = Vec::new();
    let mut keys = Vec::new();
    let mut periods = Vec::new();
    for row in rows {
        names.push(row.name.clone());
        match &row.unique {
            Some(unique) => {
                keys.push(unique.key.clone());
                periods.push(unique.scope.period_seconds());
            }
            None => {
                keys.push(String::new());
                periods.push(0.0);
            }
        }
    }
    (names, keys, periods)
}

/// A chain's steps, in one statement: the columns of [`INSERT_TASKS`] plus the chain id `$13`
/// and each row's step number `$14`. Step 0 is scheduled as its options say; the later steps
/// wait at `'9999-12-31 00:00:00+00'` (never due: not claimed, and the insert trigger does
/// not announce them; the migration says why not `'infinity'`) until the step before them completes and releases them (`sql::RELEASE_NEXT_STEP`).
const INSERT_CHAIN: &str = r#"
INSERT INTO tasks (id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at,
                   tags, trace_context, chain_id, chain_step)
SELECT r.id, r.name, r.queue, r.args, r.priority, r.max_retries, NULLIF(r.timeout_seconds, 0),
       CASE WHEN r.step > 0 THEN '9999-12-31 00:00:00+00'::timestamptz
            WHEN r.has_scheduled_at THEN r.scheduled_at
            ELSE now() + make_interval(secs => r.delay_seconds) END,
       r.tags, NULLIF(r.trace_context, ''), $13::uuid, r.step
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int4[], $6::int4[],
            $7::float8[], $8::timestamptz[], $9::bool[], $10::float8[], $11::jsonb[],
            $12::text[], $14::int4[])
     AS r(id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at,
          has_scheduled_at, delay_seconds, tags, trace_context, step)
"#;

/// Writes every step of a chain in one statement (all or nothing) and returns the ids.
pub(crate) async fn insert_chain<C: ConnectionTrait>(
    conn: &C,
    sql: &Inserts,
    chain: NewChain,
) -> Result<ChainIds> {
    let steps: Vec<Uuid> = chain.steps.iter().map(|row| row.id).collect();
    let numbers: Vec<i32> = (0..steps.len())
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    let mut values = columns(chain.steps);
    values.push(chain.id.into());
    values.push(numbers.into());
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        &sql.chain,
        values,
    ))
    .await?;
    Ok(ChainIds {
        id: chain.id,
        steps,
    })
}

/// Claims tick `$9` of schedule `$8` and, when `$11`, writes its task (`$1`…`$7` as in
/// [`INSERT_TASK`], due at the tick, tags `$12`), in one statement: exactly one process gets
/// each tick, however many run the schedule, and the task exists if and only if its tick was
/// claimed.
///
/// - The `UPDATE` is the claim. Concurrent claimers of the same tick queue on the schedule's
///   row lock; once the first commits, the others re-check `last_tick < $9` on the row it
///   wrote, find it false, and update nothing, so their `INSERT` (fed by the `UPDATE`'s
///   rows) writes nothing either. No advisory lock, no session state: it works through a
///   transaction pooler.
/// - A tick older than `last_tick` is never claimed, so a process whose clock or expression
///   lags cannot submit a tick again.
/// - `$11` false claims the tick without a task: a missed tick that the schedule skips.
/// - `$10` is the tick after this one, kept for readers of the table.
const CLAIM_TICK: &str = r#"
WITH claimed AS (
    UPDATE tasklib_schedules AS s
    SET last_tick = $9::timestamptz,
        next_tick = $10::timestamptz,
        last_task_id = CASE WHEN $11::bool THEN $1::uuid ELSE s.last_task_id END,
        updated_at = now()
    WHERE s.name = $8::text AND (s.last_tick IS NULL OR s.last_tick < $9::timestamptz)
    RETURNING s.name
), inserted AS (
    INSERT INTO tasks (id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at, tags)
    SELECT $1::uuid, $2::text, $3::text, $4::jsonb, $5::int4, $6::int4, $7::float8,
           $9::timestamptz, $12::jsonb
    FROM claimed
    WHERE $11::bool
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM claimed) AS claimed, (SELECT id FROM inserted) AS task_id
"#;

/// What [`claim_tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TickClaim {
    /// This call claimed the tick and wrote its task.
    Submitted(Uuid),
    /// This call claimed the tick and wrote nothing (a skipped missed tick).
    Skipped,
    /// Another process had claimed this tick, or a later one.
    Taken,
}

#[derive(Debug, FromQueryResult)]
struct ClaimRow {
    claimed: bool,
    task_id: Option<Uuid>,
}

/// Claims tick `tick` of schedule `schedule` and, when `run`, writes `row` as its task (see
/// [`CLAIM_TICK`]); `next` is the schedule's tick after this one.
pub(crate) async fn claim_tick<C: ConnectionTrait>(
    conn: &C,
    sql: &Inserts,
    schedule: &str,
    tick: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    row: NewTask,
    run: bool,
) -> Result<TickClaim> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        &sql.tick,
        [
            row.id.into(),
            row.name.into(),
            row.queue.into(),
            row.args.into(),
            row.priority.into(),
            row.max_retries.into(),
            row.timeout_seconds.into(),
            schedule.into(),
            tick.into(),
            next.into(),
            run.into(),
            row.tags.into(),
        ],
    );
    let claim = ClaimRow::find_by_statement(statement)
        .one(conn)
        .await?
        .ok_or(sea_orm::DbErr::RecordNotFound(
            "the tick claim returned no row".to_owned(),
        ))?;
    Ok(match (claim.claimed, claim.task_id) {
        (true, Some(id)) => TickClaim::Submitted(id),
        (true, None) => TickClaim::Skipped,
        (false, _) => TickClaim::Taken,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_insert_names_the_schemas_table() {
        let sql = Inserts::new("jobs");
        for text in [&sql.one, &sql.many, &sql.chain, &sql.tick] {
            assert!(text.contains("INSERT INTO \"jobs\".tasks ("), "{text}");
        }
        assert!(sql.tick.contains("UPDATE \"jobs\".tasklib_schedules AS s"));
    }
}
