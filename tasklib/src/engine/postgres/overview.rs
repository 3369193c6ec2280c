//! The reads behind [`crate::overview`]: open tasks by queue (through the partial indexes of
//! unfinished rows), tasks finished per minute (through the index on `completed_at`), and the
//! live pools of `tasklib_workers`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::read::queue_settings;
use crate::overview::{MAX_OVERVIEW_MINUTES, MinuteCounts, QueueOverview, QueueSlots, WorkerInfo};
use crate::{Error, QueueLimits, Result, TaskState};

/// Unfinished rows by queue and state: an index-only count over the partial `(state, queue)`
/// index, which reads no row (failed and cancelled rows pile up across the table's history
/// until retention removes them; reading each would mean reading the whole heap).
const OPEN_BY_QUEUE: &str = r#"
SELECT queue, state, count(*) AS n, now() AS now
FROM tasks
WHERE state <> 'completed'
GROUP BY 1, 2
"#;

/// The backlog (pending rows, and failed rows waiting for their retry) by queue, due now or
/// later, with the oldest due: through the claim index, whose predicate this repeats, so only
/// the backlog's rows are read.
const BACKLOG_BY_QUEUE: &str = r#"
SELECT queue, (state = 'failed') AS retrying,
       (COALESCE(next_retry_at, scheduled_at) > now()) AS later, count(*) AS n,
       min(scheduled_at) FILTER (WHERE state = 'pending' AND scheduled_at <= now()) AS oldest_due
FROM tasks
WHERE state = 'pending' OR (state = 'failed' AND next_retry_at IS NOT NULL)
GROUP BY 1, 2, 3
"#;

const FINISHED_BY_MINUTE: &str = r#"
SELECT queue, state, date_trunc('minute', completed_at) AS minute, count(*) AS n,
       now() AS now
FROM tasks
WHERE completed_at >= date_trunc('minute', now()) - make_interval(mins => $1)
GROUP BY 1, 2, 3
"#;

const LIVE_WORKERS: &str = r#"
WITH running AS (
    SELECT worker_id, count(*) AS n
    FROM tasks
    WHERE state = 'running'
    GROUP BY worker_id
)
SELECT w.pool_id, w.worker_id, w.host, w.pid, w.queues, w.slots, w.started_at, w.heartbeat_at,
       w.expires_at, COALESCE(r.n, 0) AS running
FROM tasklib_workers w
LEFT JOIN running r ON r.worker_id = w.worker_id
WHERE w.expires_at > now()
ORDER BY w.started_at, w.pool_id
"#;

#[derive(Debug, FromQueryResult)]
struct OpenRow {
    queue: String,
    state: TaskState,
    n: i64,
    now: DateTime<Utc>,
}

#[derive(Debug, FromQueryResult)]
struct BacklogRow {
    queue: String,
    retrying: bool,
    later: bool,
    n: i64,
    oldest_due: Option<DateTime<Utc>>,
}

#[derive(Debug, FromQueryResult)]
struct FinishedRow {
    queue: String,
    state: TaskState,
    minute: DateTime<Utc>,
    n: i64,
    now: DateTime<Utc>,
}

#[derive(Debug, FromQueryResult)]
struct WorkerRow {
    pool_id: Uuid,
    worker_id: String,
    host: String,
    pid: i32,
    queues: serde_json::Value,
    slots: i32,
    started_at: DateTime<Utc>,
    heartbeat_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    running: i64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn empty(queue: String, minutes: &[DateTime<Utc>]) -> QueueOverview {
    QueueOverview {
        queue,
        due: 0,
        scheduled: 0,
        running: 0,
        retrying: 0,
        failed: 0,
        cancelled: 0,
        oldest_due_age: None,
        paused: false,
        limits: QueueLimits::default(),
        finished: minutes
            .iter()
            .map(|&minute| MinuteCounts {
                minute,
                ..MinuteCounts::default()
            })
            .collect(),
    }
}

/// Each queue with open tasks, tasks finished in the last `minutes`, a pause or limits,
/// sorted by name.
pub(crate) async fn queues<C: ConnectionTrait>(
    conn: &C,
    minutes: u32,
) -> Result<Vec<QueueOverview>> {
    if !(1..=MAX_OVERVIEW_MINUTES).contains(&minutes) {
        return Err(Error::InvalidOption {
            option: "minutes",
            reason: format!("must be between 1 and {MAX_OVERVIEW_MINUTES}, got {minutes}"),
        });
    }
    let open =
        OpenRow::find_by_statement(Statement::from_string(DbBackend::Postgres, OPEN_BY_QUEUE))
            .all(conn)
            .await?;
    let backlog = BacklogRow::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        BACKLOG_BY_QUEUE,
    ))
    .all(conn)
    .await?;
    let finished = FinishedRow::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        FINISHED_BY_MINUTE,
        [i32::try_from(minutes).unwrap_or(i32::MAX).into()],
    ))
    .all(conn)
    .await?;
    // The database's clock, which the minutes of `finished` are on (the client's may differ).
    let now = open
        .first()
        .map(|row| row.now)
        .or_else(|| finished.first().map(|row| row.now))
        .unwrap_or_else(Utc::now);
    let this_minute = now.duration_trunc(Span::minutes(1)).unwrap_or(now);
    let window: Vec<DateTime<Utc>> = (0..=i64::from(minutes))
        .rev()
        .map(|back| this_minute - Span::minutes(back))
        .collect();

    let mut out: BTreeMap<String, QueueOverview> = BTreeMap::new();
    for row in open {
        let q = out
            .entry(row.queue.clone())
            .or_insert_with(|| empty(row.queue.clone(), &window));
        let n = count(row.n);
        match row.state {
            TaskState::Running => q.running += n,
            // All failed rows here; those waiting for a retry move to `retrying` below.
            TaskState::Failed => q.failed += n,
            TaskState::Cancelled => q.cancelled += n,
            TaskState::Pending | TaskState::Completed => {}
        }
    }
    for row in backlog {
        let q = out
            .entry(row.queue.clone())
            .or_insert_with(|| empty(row.queue.clone(), &window));
        let n = count(row.n);
        if row.retrying {
            q.retrying += n;
            q.failed = q.failed.saturating_sub(n);
        } else if row.later {
            q.scheduled += n;
        } else {
            q.due += n;
        }
        if let Some(oldest) = row.oldest_due {
            let age = (now - oldest).to_std().unwrap_or_default();
            q.oldest_due_age = Some(q.oldest_due_age.map_or(age, |a| a.max(age)));
        }
    }
    for row in finished {
        let q = out
            .entry(row.queue.clone())
            .or_insert_with(|| empty(row.queue.clone(), &window));
        let Some(slot) = q.finished.iter_mut().find(|m| m.minute == row.minute) else {
            continue;
        };
        let n = count(row.n);
        match row.state {
            TaskState::Completed => slot.completed += n,
            TaskState::Failed => slot.failed += n,
            TaskState::Cancelled => slot.cancelled += n,
            TaskState::Pending | TaskState::Running => {}
        }
    }
    for setting in queue_settings(conn).await? {
        let q = out
            .entry(setting.queue.clone())
            .or_insert_with(|| empty(setting.queue.clone(), &window));
        q.paused = setting.paused;
        q.limits = setting.limits;
    }
    Ok(out.into_values().collect())
}

/// The pools whose row has not expired, oldest first.
pub(crate) async fn workers<C: ConnectionTrait>(conn: &C) -> Result<Vec<WorkerInfo>> {
    let rows =
        WorkerRow::find_by_statement(Statement::from_string(DbBackend::Postgres, LIVE_WORKERS))
            .all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|row| WorkerInfo {
            pool_id: row.pool_id,
            worker_id: row.worker_id,
            host: row.host,
            pid: u32::try_from(row.pid).unwrap_or(0),
            queues: serde_json::from_value::<Vec<QueueSlots>>(row.queues).unwrap_or_default(),
            slots: u64::try_from(row.slots).unwrap_or(0),
            running: count(row.running),
            started_at: row.started_at,
            heartbeat_at: row.heartbeat_at,
            expires_at: row.expires_at,
        })
        .collect())
}
