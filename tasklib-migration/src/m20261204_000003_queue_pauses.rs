//! Queues that are paused: a small table beside `tasks`, one row per queue ever paused.
//!
//! - `tasklib_queues(queue, paused_at)`: `paused_at` set while the queue is paused. Submits
//!   to a paused queue are accepted; workers claim nothing from it.
//! - Pausing and resuming notify `tasks_queues` (through `tasklib_channel`), so every worker
//!   pool hears of it at once; pools also read the table when they start and on every
//!   heartbeat, so a lost notification is made up for.
//!
//! The claim checks the table too (one primary-key probe per claim), so a claim that was
//! already on its way when the pause came cannot start a task submitted after it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[r#"
CREATE TABLE tasklib_queues (
    queue text PRIMARY KEY CONSTRAINT tasklib_queues_queue_check CHECK (queue <> ''),
    paused_at timestamptz
)
"#];

const DOWN: &[&str] = &["DROP TABLE tasklib_queues"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
