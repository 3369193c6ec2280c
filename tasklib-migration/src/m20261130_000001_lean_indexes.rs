//! Leaner secondary indexes: completed rows, and rows without tags, no longer enter the
//! listing indexes.
//!
//! Every claim and every completion writes a new row version, and a version enters every
//! index whose predicate it matches (a state change cannot be a HOT update). Completed rows
//! are the bulk of a busy table and are rarely listed by name or counted by state, so the
//! name and state indexes now leave them out; tasks without tags are never found by a tag
//! filter, so the tag index leaves them out. Measured with `tasklib-bench drain`: about a
//! third more tasks per second (`docs/performance.md`).
//!
//! Listing completed tasks by name now walks the primary key newest first and filters;
//! listing them by tag still uses the tag index.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[
    "DROP INDEX IF EXISTS tasks_name_idx",
    "CREATE INDEX tasks_name_idx ON tasks (name, id) WHERE state <> 'completed'",
    "DROP INDEX IF EXISTS tasks_state_queue_idx",
    "CREATE INDEX tasks_state_queue_idx ON tasks (state, queue) WHERE state <> 'completed'",
    "DROP INDEX IF EXISTS tasks_tags_idx",
    "CREATE INDEX tasks_tags_idx ON tasks USING gin (tags jsonb_path_ops) WHERE tags <> '{}'::jsonb",
];

const DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS tasks_name_idx",
    "CREATE INDEX tasks_name_idx ON tasks (name, id)",
    "DROP INDEX IF EXISTS tasks_state_queue_idx",
    "CREATE INDEX tasks_state_queue_idx ON tasks (state, queue)",
    "DROP INDEX IF EXISTS tasks_tags_idx",
    "CREATE INDEX tasks_tags_idx ON tasks USING gin (tags jsonb_path_ops)",
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
