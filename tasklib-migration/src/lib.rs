//! Database migrations for [tasklib](https://docs.rs/tasklib)'s `tasks` table.
//!
//! Most applications never use this crate directly: `TaskLib::connect` applies pending
//! migrations at startup, under a PostgreSQL advisory lock so that many instances can start at
//! once. Applications that run their migrations themselves (a deploy step, or their own
//! sea-orm-migration `Migrator`) use [`Migrator`] here.
//!
//! The history of these migrations lives in its own table, [`MIGRATION_TABLE`]
//! (`tasklib_migrations`), so it never collides with the host application's own
//! `seaql_migrations`.
//!
//! A migration that has been released is never edited: changes come as new migrations.
//!
//! ```no_run
//! use sea_orm_migration::MigratorTrait;
//! use tasklib_migration::Migrator;
//!
//! # async fn run(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
//! // Without the advisory lock: prefer `tasklib::migrate`, which takes it for you.
//! Migrator::up(db, None).await?;
//! # Ok(())
//! # }
//! ```

use sea_orm_migration::prelude::*;

pub use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261123_000001_create_tasks;
mod m20261130_000001_lean_indexes;
mod m20261202_000001_chains_and_waits;
mod m20261203_000001_schema_channels;
mod m20261204_000002_progress_and_errors;
mod m20261204_000003_queue_pauses;
mod m20261204_000004_retry_count_at_claim;
mod m20261204_000005_unique_keys;
mod m20261204_000006_schedules;
mod m20261204_000007_queue_limits;
mod m20261204_000008_worker_pools;
mod m20261204_000009_trace_context;

/// Runs `statements` in order on the migration's connection: the body of migrations that are
/// a list of SQL statements each way.
async fn execute_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Name of the table that records which tasklib migrations have been applied.
pub const MIGRATION_TABLE: &str = "tasklib_migrations";

/// The list of tasklib migrations, in order.
///
/// Implements [`MigratorTrait`]: `Migrator::up(&db, None)` applies what is pending,
/// `Migrator::get_pending_migrations(&db)` lists it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_tasks::Migration),
            Box::new(m20261130_000001_lean_indexes::Migration),
            Box::new(m20261202_000001_chains_and_waits::Migration),
            Box::new(m20261203_000001_schema_channels::Migration),
            Box::new(m20261204_000002_progress_and_errors::Migration),
            Box::new(m20261204_000003_queue_pauses::Migration),
            Box::new(m20261204_000004_retry_count_at_claim::Migration),
            Box::new(m20261204_000005_unique_keys::Migration),
            Box::new(m20261204_000006_schedules::Migration),
            Box::new(m20261204_000007_queue_limits::Migration),
            Box::new(m20261204_000008_worker_pools::Migration),
            Box::new(m20261204_000009_trace_context::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new(MIGRATION_TABLE).into_iden()
    }
}
