//! `retry_count` counts the retries *started*: a claim of a failed task increments it, a
//! failure no longer does, and a failure for good leaves it at least `max_retries`.
//!
//! With that, the plain monitoring queries agree with `next_retry_at`:
//! `state = 'failed' AND retry_count < max_retries` is exactly the tasks waiting for a retry,
//! and `state = 'failed' AND retry_count >= max_retries` exactly the ones failed for good,
//! however they failed (retries used up, a permanent error, a worker lost on the last attempt).
//!
//! This migration moves existing rows to that meaning: a failed task waiting for retry *n*
//! held `n` (retries granted) and now holds `n - 1`; a task failed for good with retries
//! unused now holds `max_retries`. Other rows mean the same under both rules.
//!
//! Workers of an older tasklib count a retry at the failure and would, beside newer ones,
//! count some retries twice: stop the old workers before the new ones start.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[
    r#"
UPDATE tasks SET retry_count = retry_count - 1
WHERE state = 'failed' AND next_retry_at IS NOT NULL AND retry_count > 0
"#,
    r#"
UPDATE tasks SET retry_count = max_retries
WHERE state = 'failed' AND next_retry_at IS NULL AND retry_count < max_retries
"#,
];

/// Back to "retries granted": a task waiting for a retry counts it again. The retries a
/// permanent failure skipped cannot be told apart from used ones any more, and stay counted.
const DOWN: &[&str] = &[r#"
UPDATE tasks SET retry_count = retry_count + 1
WHERE state = 'failed' AND next_retry_at IS NOT NULL
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
