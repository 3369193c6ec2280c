//! Unique tasks: `unique_key` and `unique_window`, and one unique index per scope.
//!
//! - `unique_key`: the key a submit or the task type gave, or NULL (most tasks).
//! - `unique_window`: for a key unique per period, the start of the period's window at
//!   submit (aligned on the epoch); NULL for a key unique while the task is unfinished.
//! - `tasks_unique_open_idx`: at most one unfinished task (pending, running, or failed and
//!   waiting for a retry) per name and key. Its predicate matches the claim index's, so a
//!   task leaves it when it completes, fails for good or is cancelled, and the key is free.
//! - `tasks_unique_window_idx`: at most one task per name, key and window, in any state.
//!
//! Rows without a key are in neither index, so tasks that are not unique pay nothing. The
//! indexes are built empty (no row has a key yet), but building them reads the table once,
//! holding off writes meanwhile: on a very large table, apply this migration at a quiet time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[
    "ALTER TABLE tasks ADD COLUMN unique_key text, ADD COLUMN unique_window timestamptz",
    r#"
CREATE UNIQUE INDEX tasks_unique_open_idx ON tasks (name, unique_key)
WHERE unique_key IS NOT NULL AND unique_window IS NULL
  AND (state IN ('pending', 'running') OR (state = 'failed' AND next_retry_at IS NOT NULL))
"#,
    r#"
CREATE UNIQUE INDEX tasks_unique_window_idx ON tasks (name, unique_key, unique_window)
WHERE unique_key IS NOT NULL AND unique_window IS NOT NULL
"#,
];

const DOWN: &[&str] = &[
    "DROP INDEX tasks_unique_window_idx",
    "DROP INDEX tasks_unique_open_idx",
    "ALTER TABLE tasks DROP COLUMN unique_window, DROP COLUMN unique_key",
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
