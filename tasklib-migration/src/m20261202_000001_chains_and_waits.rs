//! Chains and result waits.
//!
//! - `chain_id` and `chain_step`: a task that is step `chain_step` (from 0) of the chain
//!   `chain_id`. Every step of a chain is inserted when the chain is submitted; the steps after
//!   the first wait with `scheduled_at = '9999-12-31 00:00:00+00'` (never due, so never claimed
//!   and never notified) until the previous step's success releases them, in the same
//!   transaction that records that success. Not `'infinity'`: drivers that read timestamps into
//!   calendar types (chrono through sqlx, for one) cannot represent it and fail on such rows. The index serves "the steps of this chain, in order" and holds only
//!   chained rows, so plain tasks pay nothing for it.
//! - `notify_done`: set by a caller waiting for the task's result. Only then does the write
//!   that finishes the task send a `tasks_done` notification: a `NOTIFY` serialises the
//!   commits that send one, so finishing a task nobody waits for must not send any.
//!
//! Adding nullable columns, and a column with a constant default, rewrites nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[
    "ALTER TABLE tasks ADD COLUMN chain_id uuid",
    "ALTER TABLE tasks ADD COLUMN chain_step integer CHECK (chain_step >= 0)",
    "ALTER TABLE tasks ADD COLUMN notify_done boolean NOT NULL DEFAULT false",
    "CREATE INDEX tasks_chain_idx ON tasks (chain_id, chain_step) WHERE chain_id IS NOT NULL",
];

const DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS tasks_chain_idx",
    "ALTER TABLE tasks DROP COLUMN IF EXISTS notify_done",
    "ALTER TABLE tasks DROP COLUMN IF EXISTS chain_step",
    "ALTER TABLE tasks DROP COLUMN IF EXISTS chain_id",
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
