//! `tasklib_workers`: the live worker pools, for the dashboard and `tasklib workers`.
//!
//! Each pool writes its row when it starts, refreshes `heartbeat_at` and `expires_at` at
//! every heartbeat (a third of its lock timeout), and deletes it when it stops. A pool that
//! dies leaves its row behind: readers show only rows whose `expires_at` is in the future,
//! and a starting pool deletes rows that expired more than a day ago.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[r#"
CREATE TABLE tasklib_workers (
    pool_id uuid PRIMARY KEY,
    worker_id text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    queues jsonb NOT NULL,
    slots integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
)
"#];

const DOWN: &[&str] = &["DROP TABLE IF EXISTS tasklib_workers"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
