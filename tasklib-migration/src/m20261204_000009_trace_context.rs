//! The trace a task belongs to (tasklib's cargo feature `otel`):
//!
//! - `trace_context text`: the W3C `traceparent` of the span that submitted the task
//!   (`00-{trace id}-{span id}-{flags}`), which the worker's span for the task continues.
//!   NULL when the submitter kept no trace (the feature off, no OpenTelemetry layer, no span),
//!   and for the tasks of a schedule's ticks, which have no submitter.
//!
//! Added without a table rewrite (no default), and in no index: only the claim reads it,
//! from rows it already holds.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &["ALTER TABLE tasks ADD COLUMN trace_context text"];

const DOWN: &[&str] = &["ALTER TABLE tasks DROP COLUMN trace_context"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
