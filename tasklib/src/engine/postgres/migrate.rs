//! Applying tasklib's migrations safely when many instances start at once.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use tasklib_migration::{Migrator, MigratorTrait};

use super::db::{Db, Mode};

use crate::{Error, Result};

/// The key of the transaction-scoped advisory lock that serialises migrations of the
/// `public` schema (`'tasklib'` in ASCII). Other tasklib versions use the same key, so an old
/// and a new instance starting together never migrate at the same time. Another schema has a
/// key of its own ([`migration_lock_key`]), so installations in two schemas never wait for
/// each other.
pub const MIGRATION_LOCK_KEY: i64 = 0x0074_6173_6b6c_6962;

/// The migration lock's key for tasklib's tables in `schema`: [`MIGRATION_LOCK_KEY`] for
/// `public`, else that key mixed with the schema's name (64-bit FNV-1a, stable across
/// versions).
pub fn migration_lock_key(schema: &str) -> i64 {
    if schema == "public" {
        return MIGRATION_LOCK_KEY;
    }
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    MIGRATION_LOCK_KEY ^ i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Applies pending tasklib migrations to the connection's current schema (the first of its
/// `search_path`), in one transaction holding `pg_advisory_xact_lock` with that schema's
/// [`migration_lock_key`] ([`MIGRATION_LOCK_KEY`] for `public`).
///
/// Instances that start together queue on the lock; the first applies the migrations, the
/// others then find nothing pending. A failure rolls everything back. `TaskLib::connect` calls
/// this unless [`ConfigBuilder::run_migrations`](crate::ConfigBuilder::run_migrations) is off.
///
/// # Errors
/// [`Error::Migration`] when a migration or the lock fails.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    apply(&Db::new(db.clone(), Mode::Direct), None)
        .await
        .map(drop)
}

/// [`migrate`] into `schema` (created if missing), or the current schema when `None`; the
/// names of the migrations this call applied. The connections must have `schema` first in
/// their `search_path`, except behind a transaction pooler, where the transaction sets it.
pub(crate) async fn apply(db: &Db, schema: Option<&str>) -> Result<Vec<String>> {
    let pooled = matches!(db.mode(), Mode::Pooler { .. });
    let txn = db.connection().begin().await.map_err(Error::Migration)?;
    if let (true, Some(schema)) = (pooled, schema) {
        // A pooler passes no `search_path` at connect; the name was checked when the
        // configuration was built (letters, digits, `_`).
        txn.execute_unprepared(&format!("SET LOCAL search_path TO \"{schema}\""))
            .await
            .map_err(Error::Migration)?;
    }
    let schema = match schema {
        Some(schema) => schema.to_owned(),
        None => txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT COALESCE(current_schema(), 'public') AS schema",
            ))
            .await
            .map_err(Error::Migration)?
            .map(|row| row.try_get::<String>("", "schema"))
            .transpose()
            .map_err(Error::Migration)?
            .unwrap_or_else(|| "public".to_owned()),
    };
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [migration_lock_key(&schema).into()],
    ))
    .await
    .map_err(Error::Migration)?;
    // The history table is created with IF NOT EXISTS on every start; the server's notice that
    // it exists ("relation … already exists, skipping") is noise in the application's log.
    txn.execute_unprepared("SET LOCAL client_min_messages = warning")
        .await
        .map_err(Error::Migration)?;
    if schema != "public" {
        // Under the lock: two instances creating it at once would otherwise collide. The name
        // was checked when the configuration was built (letters, digits, `_`).
        txn.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await
            .map_err(Error::Migration)?;
    }
    let pending = Migrator::get_pending_migrations(&txn)
        .await
        .map_err(Error::Migration)?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    Migrator::up(&txn, None).await.map_err(Error::Migration)?;
    if pooled {
        // The migrator's statements were prepared under names (the pool caches none behind a
        // pooler); the server connection goes back to the pooler without them, so that
        // another client cannot meet them.
        txn.execute_unprepared("DEALLOCATE ALL")
            .await
            .map_err(Error::Migration)?;
    }
    txn.commit().await.map_err(Error::Migration)?;
    Ok(pending)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schema_has_its_own_stable_lock_key() {
        assert_eq!(migration_lock_key("public"), MIGRATION_LOCK_KEY);
        assert_ne!(migration_lock_key("jobs"), migration_lock_key("jobs2"));
        // Pinned: a key that changed between versions would let two versions migrate at once.
        assert_eq!(migration_lock_key("jobs"), 4_741_565_474_086_061_759);
    }
}
