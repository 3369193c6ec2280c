//! Cluster-wide limits per queue, beside the pause in `tasklib_queues`:
//!
//! - `concurrency_limit`: at most this many tasks of the queue `running` at once, across
//!   every worker process.
//! - `rate_limit` starts per `rate_period` seconds: at most this many tasks of the queue
//!   started in each window of `rate_period` (aligned on the epoch); `rate_window_start` and
//!   `rate_window_count` count the starts of the current window.
//! - `tasklib_running(queue)`: the running tasks of a queue, counted with a fresh snapshot
//!   (a volatile function reads with its own), so that a claim that waited for another's lock
//!   on the queue's row sees the tasks that claim started.
//!
//! A claim of a limited queue locks the queue's row, so claims of that queue take turns
//! across the cluster; queues without limits never touch it that way.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[
    r#"
ALTER TABLE tasklib_queues
    ADD COLUMN concurrency_limit integer CONSTRAINT tasklib_queues_concurrency_check
        CHECK (concurrency_limit > 0),
    ADD COLUMN rate_limit integer CONSTRAINT tasklib_queues_rate_limit_check
        CHECK (rate_limit > 0),
    ADD COLUMN rate_period double precision CONSTRAINT tasklib_queues_rate_period_check
        CHECK (rate_period >= 1),
    ADD COLUMN rate_window_start timestamptz,
    ADD COLUMN rate_window_count integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT tasklib_queues_rate_check CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
"#,
    r#"
DO $do$
DECLARE
    home text := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = 'tasks'::regclass);
BEGIN
    EXECUTE format(
        'CREATE FUNCTION %I.tasklib_running(of_queue text) RETURNS bigint '
        'LANGUAGE plpgsql VOLATILE AS %L',
        home,
        format('BEGIN RETURN (SELECT count(*) FROM %I.tasks '
               'WHERE state = ''running'' AND queue = of_queue); END', home));
END
$do$
"#,
];

const DOWN: &[&str] = &[
    "DROP FUNCTION IF EXISTS tasklib_running(text)",
    r#"
ALTER TABLE tasklib_queues
    DROP CONSTRAINT tasklib_queues_rate_check,
    DROP COLUMN rate_window_count,
    DROP COLUMN rate_window_start,
    DROP COLUMN rate_period,
    DROP COLUMN rate_limit,
    DROP COLUMN concurrency_limit
"#,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
