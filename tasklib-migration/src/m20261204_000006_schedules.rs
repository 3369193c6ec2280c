//! Recurring tasks: one row per schedule that a worker pool has registered.
//!
//! - `tasklib_schedules(name, task, cron, time_zone, missed, last_tick, next_tick,
//!   last_task_id, created_at, updated_at)`. Schedules are defined in application code; a pool
//!   that runs them writes their definition here when it starts, so that other processes
//!   (the `tasklib schedules` command, plain SQL) can see them.
//! - `last_tick` is the latest tick claimed, whether its task was submitted or the tick was
//!   skipped. A tick is claimed by one conditional `UPDATE … WHERE last_tick < $tick` whose
//!   statement also inserts the task, so exactly one process submits each tick however many
//!   run the schedule.
//! - `next_tick` is the tick after the latest one claimed (informational: each process
//!   computes ticks from the expression itself).
//! - `updated_at` is the last time a pool registered the schedule or claimed one of its
//!   ticks: a schedule no process runs any more keeps its row, and shows its age there.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[r#"
CREATE TABLE tasklib_schedules (
    name text PRIMARY KEY CONSTRAINT tasklib_schedules_name_check CHECK (name <> ''),
    task text NOT NULL,
    cron text NOT NULL,
    time_zone text NOT NULL DEFAULT 'UTC',
    missed text NOT NULL DEFAULT 'skip'
        CONSTRAINT tasklib_schedules_missed_check CHECK (missed IN ('skip', 'run_once')),
    last_tick timestamptz,
    next_tick timestamptz,
    last_task_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
)
"#];

const DOWN: &[&str] = &["DROP TABLE tasklib_schedules"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
