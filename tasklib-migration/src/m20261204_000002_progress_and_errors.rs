//! What a task says while it runs, and every failed attempt rather than only the last.
//!
//! - `progress jsonb`: what the handler last reported (`TaskContext::set_progress`), kept
//!   after the task finishes. NULL until it reports.
//! - `errors jsonb`: the failed attempts, oldest first, at most the last 20, each
//!   `{"attempt", "error", "worker", "at"}`. Only failures write it, so a task that succeeds
//!   first time pays nothing. `error` still holds the last one.
//!
//! Both are added without a table rewrite (a constant default).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[r#"
ALTER TABLE tasks
    ADD COLUMN progress jsonb,
    ADD COLUMN errors jsonb NOT NULL DEFAULT '[]'::jsonb
        CONSTRAINT tasks_errors_check CHECK (jsonb_typeof(errors) = 'array')
"#];

const DOWN: &[&str] = &[r#"
ALTER TABLE tasks DROP COLUMN errors, DROP COLUMN progress
"#];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
