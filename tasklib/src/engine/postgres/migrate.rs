//! Applying tasklib's migrations safely when many instances start at once.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use tasklib_migration::{Migrator, MigratorTrait};

use crate::{Error, Result};

/// The key of the transaction-scoped advisory lock that serialises migrations
/// (`'tasklib'` in ASCII). Other tasklib versions use the same key, so an old and a new
/// instance starting together never migrate at the same time.
pub const MIGRATION_LOCK_KEY: i64 = 0x0074_6173_6b6c_6962;

/// Applies pending tasklib migrations, in one transaction holding
/// `pg_advisory_xact_lock(`[`MIGRATION_LOCK_KEY`]`)`.
///
/// Instances that start together queue on the lock; the first applies the migrations, the
/// others then find nothing pending. A failure rolls everything back. `TaskLib::connect` calls
/// this unless [`ConfigBuilder::run_migrations`](crate::ConfigBuilder::run_migrations) is off.
///
/// # Errors
/// [`Error::Migration`] when a migration or the lock fails.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    let txn = db.begin().await.map_err(Error::Migration)?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK_KEY.into()],
    ))
    .await
    .map_err(Error::Migration)?;
    // The history table is created with IF NOT EXISTS on every start; the server's notice that
    // it exists ("relation … already exists, skipping") is noise in the application's log.
    txn.execute_unprepared("SET LOCAL client_min_messages = warning")
        .await
        .map_err(Error::Migration)?;
    Migrator::up(&txn, None).await.map_err(Error::Migration)?;
    txn.commit().await.map_err(Error::Migration)?;
    Ok(())
}

/// Names of tasklib migrations not yet applied to this database.
///
/// # Errors
/// [`Error::Migration`] when the history table cannot be read.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>> {
    let pending = Migrator::get_pending_migrations(db)
        .await
        .map_err(Error::Migration)?;
    Ok(pending.iter().map(|m| m.name().to_owned()).collect())
}
