//! The statements the worker runs, in one place so they can be read and reviewed together.
//!
//! Every statement takes `now` as an optional parameter (`COALESCE($n, now())`), so tests can
//! fix the clock; production passes NULL and uses the database's clock, never the worker's.

/// The runnable rows of queue `$1` with names in `$2`, in claim order, up to `{limit}`,
/// locked (`SKIP LOCKED`), numbered; for [`CLAIM`] and [`CLAIM_LIMITED`]. `extra` is one
/// more condition on the rows.
macro_rules! pick_runnable {
    ($extra:literal) => {
        concat!(
            r#"
picked AS MATERIALIZED (
    SELECT id, COALESCE(next_retry_at, scheduled_at) AS due
    FROM tasks
    WHERE queue = $1
      AND (state = 'pending' OR (state = 'failed' AND next_retry_at IS NOT NULL))
      AND COALESCE(next_retry_at, scheduled_at) <= COALESCE($5::timestamptz, now())
      AND name = ANY($2::text[])"#,
            $extra,
            r#"
    ORDER BY priority DESC, COALESCE(next_retry_at, scheduled_at), id
    LIMIT {limit}
    FOR UPDATE SKIP LOCKED
), numbered AS (
    SELECT id, due, row_number() OVER () AS n FROM picked
)"#
        )
    };
}

/// The update that starts the picked rows, and what it returns; for [`CLAIM`] and
/// [`CLAIM_LIMITED`]. `from` and `condition` join the numbered rows (and more); `now` is the
/// start time.
macro_rules! start_picked {
    ($now:literal, $from:literal, $condition:literal) => {
        concat!(
            r#"
UPDATE tasks AS t
SET state = 'running',
    worker_id = $3,
    started_at = CASE WHEN numbered.n <= $6 THEN "#,
            $now,
            r#" END,
    locked_until = COALESCE($5::timestamptz, now()) + make_interval(secs => $4),
    attempt = t.attempt + 1,
    retry_count = t.retry_count + CASE WHEN t.state = 'failed' THEN 1 ELSE 0 END,
    next_retry_at = NULL,
    completed_at = NULL
FROM "#,
            $from,
            r#"
WHERE t.id = numbered.id"#,
            $condition,
            r#"
RETURNING t.id, t.name, t.queue, t.args, t.attempt, t.retry_count, t.max_retries, t.tags,
          t.timeout_seconds, t.cancel_requested_at IS NOT NULL AS cancel_requested,
          t.chain_id IS NOT NULL AS chained, t.started_at IS NOT NULL AS started,
          t.trace_context,
          extract(epoch FROM "#,
            $now,
            r#" - numbered.due)::float8 AS waited"#
        )
    };
}

/// The `later` CTE of the statements that end a task without success: the pending later
/// steps of the chain of each `ended` row become `cancelled`, with the reason, and those
/// someone waits for notify `tasks_done`. `condition` is more of its `WHERE`, ending in `AND`.
macro_rules! cancel_later_steps {
    ($condition:literal) => {
        concat!(
            r#"
), later AS (
    UPDATE tasks AS t
    SET state = 'cancelled', completed_at = now(),
        error = format('cancelled: step %s of the chain did not succeed', ended.chain_step)
    FROM ended
    WHERE "#,
            $condition,
            r#"ended.chain_id IS NOT NULL AND t.chain_id = ended.chain_id
      AND t.chain_step > ended.chain_step AND t.state = 'pending'
    RETURNING t.id,
              CASE WHEN t.notify_done
                   THEN pg_notify(tasklib_channel('tasks_done'), concat_ws(' ', t.id, t.chain_id)) END
)"#
        )
    };
}

/// Claims up to `{limit}` runnable tasks of queue `$1` whose names are in `$2`, for worker
/// `$3`, locking them for `$4` seconds.
///
/// - The locking select sits in a `MATERIALIZED` CTE so it runs exactly once: the planner
///   cannot re-evaluate it inside a nested loop and lock (and update) more than `{limit}` rows.
/// - `SKIP LOCKED` makes concurrent claimers take different rows instead of waiting.
/// - The `WHERE` repeats the predicate of `tasks_claim_idx` word for word, so the partial
///   index is used and finished rows cost nothing; its column order serves the `ORDER BY`.
/// - `attempt` is the fencing token: every later write of this attempt names it.
/// - Claiming a failed task starts a retry, so `retry_count` counts it here, not at the
///   failure: a task waiting for its retry keeps `retry_count < max_retries`, which is what
///   the monitoring queries read (`docs/monitoring.md`).
/// - It returns only what the executor reads, not `t.*`: with `waited`, the seconds from
///   the row's due time to this claim (for the wait histogram of the `metrics` feature and
///   the task's span), and `trace_context`, the submitter's trace (NULL unless the submitter
///   had the `otel` feature and a trace; a short text when set).
/// - A paused queue, or one with cluster-wide limits (`tasklib_queues`), yields nothing: one
///   primary-key probe of a small table per claim, evaluated once (an init plan), so that a
///   claim decided before the pool heard of a pause cannot start a task submitted after it,
///   and one decided before it heard of a limit cannot exceed it. The producer stops
///   claiming as soon as it hears of a pause, and claims a limited queue with
///   [`CLAIM_LIMITED`].
/// - Only the first `$6` rows (the producer's free slots) are marked started (`started_at`);
///   the rest are claimed ahead and wait in the producer's buffer until [`MARK_STARTED`]. A
///   row whose lock expires before it started goes back without counting as an attempt (see
///   [`RESCUE_EXPIRED`]).
/// - The limit is written into the text (an integer, never user input), not bound: with a
///   bound `LIMIT $n`, the cached generic plan cannot know the limit is small and sorted
///   every runnable row on each claim (measured: 5× slower drains; `docs/performance.md`).
/// - The claim is committed durably, like every default write: an asynchronous commit (tried
///   for issue 17) would start tasks sooner on a durable server, but a server crash could then
///   lose an acknowledged claim, and with it the count of an attempt that ran
///   (`docs/performance.md`).
pub(crate) const CLAIM: &str = concat!(
    "WITH",
    pick_runnable!(
        r#"
      AND NOT EXISTS (SELECT 1 FROM tasklib_queues AS p
                      WHERE p.queue = $1
                        AND (p.paused_at IS NOT NULL OR p.concurrency_limit IS NOT NULL
                             OR p.rate_limit IS NOT NULL))"#
    ),
    start_picked!("COALESCE($5::timestamptz, now())", "numbered", ""),
);

/// [`CLAIM`] for a queue with cluster-wide limits (same parameters and result): it claims
/// no more than the limits leave.
///
/// - It locks the queue's row of `tasklib_queues` first, so the claims of a limited queue
///   take turns across the cluster, each seeing what the one before it started.
/// - The concurrency left is the limit less the queue's `running` rows, counted by
///   `tasklib_running`, a volatile function: it reads with a snapshot taken after the lock,
///   where a count in this statement would use the statement's own, older one.
/// - The rate left is the limit less the starts counted in the current window (aligned on
///   the epoch); the claim adds its own starts to that count in the same statement.
/// - Its clock is `clock_timestamp()` read once the lock is held (`clock`), not `now()`,
///   which is the statement's start: a claim that waited for the lock through the turn of a
///   window must count in the new window, and its rows start when it decided, after the tasks
///   it counted as finished had finished. Windows never go back (`GREATEST`).
/// - A paused queue yields nothing (its row is not selected).
/// - Rows picked beyond what the limits leave stay as they were; their lock ends with the
///   statement.
pub(crate) const CLAIM_LIMITED: &str = concat!(
    r#"
WITH queue AS MATERIALIZED (
    SELECT concurrency_limit, rate_limit, rate_period, rate_window_start, rate_window_count
    FROM tasklib_queues
    WHERE queue = $1 AND paused_at IS NULL
    FOR UPDATE
), clock AS MATERIALIZED (
    SELECT queue.*, COALESCE($5::timestamptz, clock_timestamp()) AS at FROM queue
), windowed AS MATERIALIZED (
    SELECT clock.*,
           GREATEST(to_timestamp(floor(extract(epoch FROM at) / rate_period) * rate_period),
                    rate_window_start) AS window_now
    FROM clock
), budget AS MATERIALIZED (
    SELECT LEAST(
               CASE WHEN concurrency_limit IS NULL THEN {limit}
                    ELSE concurrency_limit - tasklib_running($1) END,
               CASE WHEN rate_limit IS NULL THEN {limit}
                    WHEN rate_window_start IS DISTINCT FROM window_now THEN rate_limit
                    ELSE rate_limit - rate_window_count END) AS left_over,
           window_now, at
    FROM windowed
),"#,
    pick_runnable!(""),
    r#", claimed AS ("#,
    start_picked!(
        "budget.at",
        "numbered, budget",
        " AND numbered.n <= budget.left_over"
    ),
    r#"
), counted AS (
    UPDATE tasklib_queues AS q
    SET rate_window_count = CASE WHEN q.rate_window_start IS DISTINCT FROM budget.window_now
                                 THEN 0 ELSE q.rate_window_count END
                            + (SELECT count(*) FROM claimed),
        rate_window_start = budget.window_now
    FROM budget
    WHERE q.queue = $1 AND q.rate_limit IS NOT NULL AND EXISTS (SELECT 1 FROM claimed)
)
SELECT * FROM claimed
"#
);

/// Marks attempts `$3` of tasks `$1` (arrays of the same length), claimed ahead by worker
/// `$2`, as started, just before they run; returns the ids marked. A row rescued, released or
/// cancelled since the claim is not marked, and must not run.
///
/// The mark is committed asynchronously (`synchronous_commit` off for this transaction only):
/// it is a cheap marker, not an outcome. It survives the worker's death (the server has it);
/// only a crash of the server itself within a fraction of a second of the mark can lose it,
/// and then an attempt that was under way when both died is not counted.
///
/// It runs for most tasks of a busy pool, a few rows at a time, so it is written to be planned
/// once per connection: the arrays are read through scalar subqueries (init plans), which the
/// planner cannot look into. With the arrays visible, each call's plan estimated its few rows
/// better than a cached generic plan could, and PostgreSQL planned the statement anew on every
/// call (measured: 1.00 plans a call, more server time than the update itself). The attempt of
/// each row is looked up by the row's position in the id array.
pub(crate) const MARK_STARTED: &str = r#"
UPDATE tasks AS t
SET started_at = now()
WHERE t.id = ANY(CAST((SELECT $1::uuid[]) AS uuid[]))
  AND t.attempt = (CAST((SELECT $3::int4[]) AS int4[]))[
                      array_position(CAST((SELECT $1::uuid[]) AS uuid[]), t.id)]
  AND t.worker_id = $2 AND t.state = 'running' AND t.started_at IS NULL
  AND set_config('synchronous_commit', 'off', true) IS NOT NULL
RETURNING t.id
"#;

/// Completes many attempts of worker `$4` in one statement: `$1`, `$2` and `$3` are the ids,
/// attempts and results, as arrays of the same length. Fenced: a row is written only if this
/// worker still holds that attempt (not if its lock expired and it was rescued, cancelled, or
/// claimed again by someone else). Returns the ids written. One statement and one commit for
/// a batch of outcomes, instead of one per task. A task someone waits for notifies
/// `tasks_done` (see [`FAIL`]).
///
/// `t.id = ANY($1)` is there for the planner: it cannot see how many rows the arrays hold
/// and, joining on `u.id` alone, may scan the whole table per batch; with the id array it
/// looks each row up by primary key. Typed arrays, not a JSON document: the server does not
/// parse the batch, and the client does not build it.
///
/// Batches without chain steps (nearly all) take this plain statement; the chain release of
/// [`COMPLETE_MANY_CHAINED`] costs a CTE and a join that a drain of plain tasks measurably
/// pays for (`docs/performance.md`).
pub(crate) const COMPLETE_MANY: &str = r#"
UPDATE tasks AS t
SET state = 'completed', result = u.result, error = NULL,
    completed_at = COALESCE($5::timestamptz, now()), locked_until = NULL
FROM unnest($1::uuid[], $2::int4[], $3::jsonb[]) AS u(id, attempt, result)
WHERE t.id = ANY($1::uuid[])
  AND t.id = u.id AND t.worker_id = $4 AND t.attempt = u.attempt AND t.state = 'running'
RETURNING t.id,
          CASE WHEN t.notify_done
               THEN pg_notify(tasklib_channel('tasks_done'), concat_ws(' ', t.id, t.chain_id)) END
"#;

/// [`COMPLETE_MANY`] for a batch holding chain steps (same parameters and fence).
///
/// A completed chain step releases the next step in the same transaction: the next step's
/// positional arguments get this step's value in front, it becomes due now, and its queue is
/// notified. A worker that dies before the commit leaves both rows as they were; after it,
/// both are written. So a step is never lost between two steps, nor run twice because of one.
pub(crate) const COMPLETE_MANY_CHAINED: &str = r#"
WITH done AS (
    UPDATE tasks AS t
    SET state = 'completed', result = u.result, error = NULL,
        completed_at = COALESCE($5::timestamptz, now()), locked_until = NULL
    FROM unnest($1::uuid[], $2::int4[], $3::jsonb[]) AS u(id, attempt, result)
    WHERE t.id = ANY($1::uuid[])
      AND t.id = u.id AND t.worker_id = $4 AND t.attempt = u.attempt AND t.state = 'running'
    RETURNING t.id, t.chain_id, t.chain_step, u.result -> 'value' AS value,
              CASE WHEN t.notify_done
                   THEN pg_notify(tasklib_channel('tasks_done'), concat_ws(' ', t.id, t.chain_id)) END
), released AS (
    UPDATE tasks AS n
    SET scheduled_at = COALESCE($5::timestamptz, now()),
        args = jsonb_build_array(done.value) || n.args
    FROM done
    WHERE done.chain_id IS NOT NULL AND n.chain_id = done.chain_id
      AND n.chain_step = done.chain_step + 1
      AND n.state = 'pending' AND n.scheduled_at = '9999-12-31 00:00:00+00'
    RETURNING n.queue
)
SELECT id, (SELECT count(pg_notify(tasklib_channel('tasks_new'), q.queue))
            FROM (SELECT DISTINCT queue FROM released) AS q) AS notified
FROM done
"#;

/// Records a failed attempt (fenced as [`COMPLETE_MANY`]). `$5` is the delay before the retry
/// in seconds, or NULL for a terminal failure. A retry is counted when it is claimed
/// ([`CLAIM`]); a failure for good sets `retry_count` to at least `max_retries`, whatever
/// ended it, so `retry_count < max_retries` on a failed row always means "a retry is coming".
/// Returns the id when written.
///
/// Every statement that ends a task without success (this one, [`CANCELLED_BY_HANDLER`],
/// [`RESCUE_EXPIRED`], and the client's cancel) ends the later steps of its chain too: they
/// wait for this one, so they become `cancelled`, with the reason (the `later` CTE). And each
/// statement that finishes a task someone waits for (`notify_done`) notifies `tasks_done` with
/// the task's id and its chain's; tasks nobody waits for notify nothing, since a `NOTIFY`
/// serialises the commits that send one. Here only a failure for good (`$5` NULL) does either:
/// a step that will be retried holds its chain where it is.
pub(crate) const FAIL: &str = concat!(
    r#"
WITH ended AS (
    UPDATE tasks AS t
    SET state = 'failed', error = $4, locked_until = NULL,
        errors = jsonb_path_query_array(
            t.errors || jsonb_build_object('attempt', t.attempt, 'error', $4::text,
                                           'worker', $2::text, 'at', COALESCE($6::timestamptz, now())),
            '$[last - 19 to last]'),
        retry_count = CASE WHEN $5::float8 IS NULL THEN GREATEST(t.retry_count, t.max_retries)
                           ELSE t.retry_count END,
        next_retry_at = COALESCE($6::timestamptz, now()) + make_interval(secs => $5::float8),
        completed_at = CASE WHEN $5::float8 IS NULL THEN COALESCE($6::timestamptz, now()) END
    WHERE id = $1 AND worker_id = $2 AND attempt = $3 AND state = 'running'
    RETURNING t.id, t.chain_id, t.chain_step, t.next_retry_at,
              CASE WHEN $5::float8 IS NULL AND t.notify_done
                   THEN pg_notify(tasklib_channel('tasks_done'), concat_ws(' ', t.id, t.chain_id)) END
"#,
    cancel_later_steps!("$5::float8 IS NULL AND "),
    r#"
SELECT id FROM ended
"#
);

/// Records that the handler cancelled its task (fenced as [`COMPLETE_MANY`]); a chain's later
/// steps are cancelled with it. Returns the id when written.
pub(crate) const CANCELLED_BY_HANDLER: &str = concat!(
    r#"
WITH ended AS (
    UPDATE tasks AS t
    SET state = 'cancelled', error = $4, locked_until = NULL,
        completed_at = COALESCE($5::timestamptz, now())
    WHERE id = $1 AND worker_id = $2 AND attempt = $3 AND state = 'running'
    RETURNING t.id, t.chain_id, t.chain_step,
              CASE WHEN t.notify_done
                   THEN pg_notify(tasklib_channel('tasks_done'), concat_ws(' ', t.id, t.chain_id)) END
"#,
    cancel_later_steps!(""),
    r#"
SELECT id FROM ended
"#
);

/// Puts attempt `$3` of task `$1`, held by worker `$2`, back to wait `$4` seconds: the
/// handler snoozed. The attempt stays recorded (`attempt` keeps its count) but uses no retry
/// (`retry_count` is unchanged); the task is `pending` again, due then, and its queue is
/// notified when that is now. Fenced as [`COMPLETE_MANY`]. Returns the id when written.
pub(crate) const SNOOZE: &str = r#"
UPDATE tasks AS t
SET state = 'pending', locked_until = NULL, next_retry_at = NULL,
    scheduled_at = COALESCE($5::timestamptz, now()) + make_interval(secs => $4::float8)
WHERE id = $1 AND worker_id = $2 AND attempt = $3 AND state = 'running'
RETURNING t.id,
          CASE WHEN $4::float8 <= 0 THEN pg_notify(tasklib_channel('tasks_new'), t.queue) END
"#;

/// Records progress `$4` (JSON) reported by attempt `$3` of task `$1`, held by worker `$2`.
/// Fenced as [`COMPLETE_MANY`]; returns the id when written.
pub(crate) const SET_PROGRESS: &str = r#"
UPDATE tasks
SET progress = $4::jsonb
WHERE id = $1 AND worker_id = $2 AND attempt = $3 AND state = 'running'
RETURNING id
"#;

/// Extends the locks of the tasks `$1` that worker `$2` still holds, by `$3` seconds, and
/// reports which of them someone asked to cancel.
pub(crate) const HEARTBEAT: &str = r#"
UPDATE tasks
SET locked_until = COALESCE($4::timestamptz, now()) + make_interval(secs => $3)
WHERE id = ANY($1::uuid[]) AND worker_id = $2 AND state = 'running'
RETURNING id, cancel_requested_at IS NOT NULL AS cancel_requested
"#;

/// Hands attempts `$3` of tasks `$1` (arrays of the same length), claimed by worker `$2` but
/// never started, back to the queue, undoing the claim (at shutdown, and for rows claimed
/// ahead that waited too long). Fenced like an outcome: a row rescued and claimed again since
/// is left alone. The attempt does not count, nor the retry the claim counted: a claimed
/// retry goes back `failed`, due now, with `retry_count` one lower. Notifies each queue that
/// got rows back, once, so idle workers take them at once; returns the ids released.
pub(crate) const RELEASE: &str = r#"
WITH released AS (
    UPDATE tasks AS t
    SET state = CASE WHEN t.retry_count > 0 THEN 'failed' ELSE 'pending' END,
        next_retry_at = CASE WHEN t.retry_count > 0 THEN now() END,
        retry_count = GREATEST(t.retry_count - 1, 0),
        attempt = t.attempt - 1, worker_id = NULL, locked_until = NULL, started_at = NULL
    FROM unnest($1::uuid[], $3::int4[]) AS r(id, attempt)
    WHERE t.id = ANY($1::uuid[])
      AND t.id = r.id AND t.attempt = r.attempt AND t.worker_id = $2 AND t.state = 'running'
    RETURNING t.id, t.queue
)
SELECT id, (SELECT count(pg_notify(tasklib_channel('tasks_new'), q.queue))
            FROM (SELECT DISTINCT queue FROM released) AS q) AS notified
FROM released
"#;

/// Rescues up to `$1` tasks whose lock expired (their worker died or stalled). A task that
/// had started (`started_at` set): the lost attempt counts as a failure, so the task is
/// retried at once if it has retries left and fails for good otherwise; one whose cancel was
/// asked while it ran is cancelled, not retried. A task only claimed
/// ahead, never started: it goes back as [`RELEASE`] would put it, and the attempt does not
/// count (`returned`). `SKIP LOCKED` lets several pools rescue concurrently. The queues of
/// tasks to run again are notified once each, so idle workers take them at once rather than
/// on their next poll tick.
pub(crate) const RESCUE_EXPIRED: &str = concat!(
    r#"
WITH expired AS MATERIALIZED (
    SELECT id, worker_id
    FROM tasks
    WHERE state = 'running' AND locked_until < COALESCE($2::timestamptz, now())
    ORDER BY locked_until
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), returned AS (
    UPDATE tasks AS t
    SET state = CASE WHEN t.retry_count > 0 THEN 'failed' ELSE 'pending' END,
        next_retry_at = CASE WHEN t.retry_count > 0 THEN COALESCE($2::timestamptz, now()) END,
        retry_count = GREATEST(t.retry_count - 1, 0),
        attempt = t.attempt - 1, worker_id = NULL, locked_until = NULL
    FROM expired
    WHERE t.id = expired.id AND t.started_at IS NULL
    RETURNING t.id, t.name, t.queue, expired.worker_id
), rescued AS (
    UPDATE tasks AS t
    SET state = CASE WHEN t.cancel_requested_at IS NULL THEN 'failed' ELSE 'cancelled' END,
        error = CASE WHEN t.cancel_requested_at IS NULL
                     THEN format('worker %s stopped heartbeating (died or stalled) during attempt %s; its lock expired at %s',
                                 t.worker_id, t.attempt, t.locked_until)
                     ELSE format('cancelled: asked to stop while it ran, and worker %s stopped heartbeating during attempt %s',
                                 t.worker_id, t.attempt) END,
        errors = jsonb_path_query_array(
            t.errors || jsonb_build_object(
                'attempt', t.attempt, 'worker', t.worker_id, 'at', COALESCE($2::timestamptz, now()),
                'error', format('worker %s stopped heartbeating (died or stalled) during attempt %s; its lock expired at %s',
                                t.worker_id, t.attempt, t.locked_until)),
            '$[last - 19 to last]'),
        locked_until = NULL,
        next_retry_at = CASE WHEN t.cancel_requested_at IS NULL AND t.retry_count < t.max_retries
                             THEN COALESCE($2::timestamptz, now()) END,
        completed_at = CASE WHEN t.cancel_requested_at IS NULL AND t.retry_count < t.max_retries
                            THEN NULL ELSE COALESCE($2::timestamptz, now()) END
    FROM expired
    WHERE t.id = expired.id AND t.started_at IS NOT NULL
    RETURNING t.id, t.name, t.queue, t.worker_id, t.next_retry_at IS NOT NULL AS retrying,
              t.chain_id, t.chain_step, t.notify_done
), ended AS MATERIALIZED (
    SELECT id, chain_id, chain_step,
           CASE WHEN notify_done THEN pg_notify(tasklib_channel('tasks_done'), concat_ws(' ', id, chain_id)) END
    FROM rescued WHERE NOT retrying
"#,
    cancel_later_steps!(""),
    r#", notified AS MATERIALIZED (
    SELECT count(pg_notify(tasklib_channel('tasks_new'), q.queue)) AS queues
    FROM (SELECT queue FROM rescued WHERE retrying UNION SELECT queue FROM returned) AS q
)
SELECT id, name, queue, worker_id, retrying, false AS returned, queues AS notified
FROM rescued, notified
UNION ALL
SELECT id, name, queue, worker_id, true, true, queues
FROM returned, notified
"#
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: durability is not traded for speed by default. Only the mark of rows claimed
    /// ahead (off by default) may commit asynchronously.
    #[test]
    fn default_writes_commit_durably() {
        for (name, text) in [
            ("CLAIM", CLAIM),
            ("CLAIM_LIMITED", CLAIM_LIMITED),
            ("COMPLETE_MANY", COMPLETE_MANY),
            ("COMPLETE_MANY_CHAINED", COMPLETE_MANY_CHAINED),
            ("FAIL", FAIL),
            ("CANCELLED_BY_HANDLER", CANCELLED_BY_HANDLER),
            ("SNOOZE", SNOOZE),
            ("RELEASE", RELEASE),
            ("RESCUE_EXPIRED", RESCUE_EXPIRED),
        ] {
            assert!(
                !text.contains("synchronous_commit"),
                "{name} commits asynchronously"
            );
        }
        assert!(MARK_STARTED.contains("set_config('synchronous_commit', 'off', true)"));
    }
}
