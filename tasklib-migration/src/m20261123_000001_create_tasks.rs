//! The `tasks` table, its indexes, and the trigger that announces new work.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The table. Every fact about a task is in its row; column names are part of the public
/// contract, since users query them directly (see `docs/monitoring.md`).
const CREATE_TABLE: &str = r#"
CREATE TABLE tasks (
    id                  uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text             NOT NULL CHECK (name <> ''),
    queue               text             NOT NULL DEFAULT 'default' CHECK (queue <> ''),
    args                jsonb            NOT NULL DEFAULT '{}'::jsonb,
    state               text             NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    result              jsonb,
    error               text,
    -- Retries granted so far; an attempt that fails while retry_count < max_retries is retried.
    retry_count         integer          NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    max_retries         integer          NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    -- Attempts started (incremented by each claim). Fences outcome writes: a worker may only
    -- write the outcome of the attempt it claimed.
    attempt             integer          NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    scheduled_at        timestamptz      NOT NULL DEFAULT now(),
    started_at          timestamptz,
    completed_at        timestamptz,
    created_at          timestamptz      NOT NULL DEFAULT now(),
    next_retry_at       timestamptz,
    worker_id           text,
    locked_until        timestamptz,
    timeout_seconds     double precision CHECK (timeout_seconds > 0),
    priority            integer          NOT NULL DEFAULT 0,
    tags                jsonb            NOT NULL DEFAULT '{}'::jsonb
                        CHECK (jsonb_typeof(tags) = 'object'),
    cancel_requested_at timestamptz
)
"#;

/// Indexes. Each one costs every insert and state change, so each is here for a named query.
const CREATE_INDEXES: &[&str] = &[
    // The claim query: runnable rows of a queue, highest priority first, then the one due
    // longest. Partial, so completed, cancelled and terminally failed rows (the bulk of a
    // busy table) are not in it at all and cost the claim nothing.
    r#"CREATE INDEX tasks_claim_idx ON tasks
           (queue, priority DESC, (COALESCE(next_retry_at, scheduled_at)), id)
       WHERE state = 'pending' OR (state = 'failed' AND next_retry_at IS NOT NULL)"#,
    // Rescue of tasks whose worker died: running rows by lock expiry.
    r#"CREATE INDEX tasks_running_lock_idx ON tasks (locked_until) WHERE state = 'running'"#,
    // Counts per state and queue, listing filtered by state.
    r#"CREATE INDEX tasks_state_queue_idx ON tasks (state, queue)"#,
    // Listing filtered by task name, newest first.
    r#"CREATE INDEX tasks_name_idx ON tasks (name, id)"#,
    // Retention: finished rows by age. Partial, so pending and running rows are not in it.
    r#"CREATE INDEX tasks_finished_idx ON tasks (completed_at) WHERE completed_at IS NOT NULL"#,
    // Listing by tag containment: tags @> '{"batch": "weekly"}'.
    r#"CREATE INDEX tasks_tags_idx ON tasks USING gin (tags jsonb_path_ops)"#,
];

/// A busy queue table churns: every task is inserted, updated two or three times and later
/// deleted by retention. Vacuum it after 1 % of its rows changed rather than the default 20 %,
/// so dead tuples do not pile up in the claim index.
const AUTOVACUUM: &str = r#"
ALTER TABLE tasks SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 500,
    autovacuum_analyze_scale_factor = 0.02
)
"#;

/// One `NOTIFY tasks_new, '<queue>'` per inserting statement and queue, for rows runnable now.
///
/// A statement-level trigger with a transition table, rather than a row trigger, so a bulk
/// insert of ten thousand rows sends one notification per queue, not ten thousand (each
/// notification adds work to the commit, which holds a database-wide lock). Rows scheduled in
/// the future send nothing: the workers' poll tick finds them when due. The notification is
/// queued inside the inserting transaction and delivered only if it commits.
const NOTIFY_TRIGGER: &[&str] = &[
    r#"
CREATE FUNCTION tasklib_notify_tasks_new() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tasks_new', q.queue)
    FROM (SELECT DISTINCT queue FROM new_tasks
          WHERE state = 'pending' AND scheduled_at <= now()) AS q;
    RETURN NULL;
END
$$
"#,
    r#"
CREATE TRIGGER tasks_notify_new
    AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_tasks
    FOR EACH STATEMENT
    EXECUTE FUNCTION tasklib_notify_tasks_new()
"#,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(CREATE_TABLE).await?;
        for statement in CREATE_INDEXES {
            db.execute_unprepared(statement).await?;
        }
        db.execute_unprepared(AUTOVACUUM).await?;
        for statement in NOTIFY_TRIGGER {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE IF EXISTS tasks").await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS tasklib_notify_tasks_new()")
            .await?;
        Ok(())
    }
}
