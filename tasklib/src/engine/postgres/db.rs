//! tasklib's handle on the database, and how its statements travel through a transaction
//! pooler.
//!
//! Directly connected, [`Db`] is the SeaORM pool and nothing more: sqlx prepares each
//! statement once per connection, under a name, and reuses it.
//!
//! Behind a pooler in transaction mode (PgBouncer's `pool_mode = transaction`), a client's
//! connection is lent a server connection for one transaction at a time. Two things then
//! break, and [`Db`] in [`Mode::Pooler`] avoids both:
//! - a named prepared statement lives on the server connection that prepared it, which the
//!   next transaction may not get; another client may even have prepared a different
//!   statement under the same name there. Statements are therefore unnamed
//!   (`persistent(false)`), and the pool keeps no statement cache.
//! - sqlx sends a statement in two steps (parse and describe, then bind and execute), each
//!   ended by a `Sync`. Outside a transaction the pooler may hand the server connection to
//!   another client in between. Each statement therefore runs in a transaction of its own,
//!   which keeps one server connection for both steps.
//!
//! That costs two round trips per statement (`BEGIN`, `COMMIT`) on top of the two an unnamed
//! statement takes. A pooler that tracks prepared statements itself (PgBouncer 1.21 and later
//! with `max_prepared_statements` set) needs none of this: connect as to a server.

use std::sync::Arc;

use sea_orm::sqlx::{self, PgPool, Postgres};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult,
    RuntimeErr, Statement,
};
use sea_query_sqlx::SqlxValues;

/// How tasklib sends its statements: see the module's documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A server, or a pooler that keeps prepared statements working.
    Direct,
    /// A pooler in transaction mode: one transaction per statement, no named statements.
    Pooler {
        /// `BEGIN`, followed by the `SET LOCAL search_path` a schema other than `public`
        /// needs (a pooler does not pass the startup parameter that sets it otherwise).
        begin: Arc<str>,
    },
}

impl Mode {
    /// The pooler mode for tasklib's tables in `schema`.
    pub(crate) fn pooler(schema: &str) -> Mode {
        let begin = if schema == crate::config::DEFAULT_SCHEMA {
            "BEGIN".to_owned()
        } else {
            // The name was checked when the configuration was built (letters, digits, `_`).
            format!("BEGIN; SET LOCAL search_path TO \"{schema}\"")
        };
        Mode::Pooler {
            begin: begin.into(),
        }
    }
}

/// The SeaORM pool, and how tasklib's statements go through it ([`Mode`]).
#[derive(Clone, Debug)]
pub(crate) struct Db {
    conn: DatabaseConnection,
    mode: Mode,
}

impl Db {
    pub(crate) fn new(conn: DatabaseConnection, mode: Mode) -> Db {
        Db { conn, mode }
    }

    /// The SeaORM pool itself, as the application gets it from `TaskLib::db`.
    pub(crate) fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub(crate) fn mode(&self) -> &Mode {
        &self.mode
    }

    fn pool(&self) -> &PgPool {
        self.conn.get_postgres_connection_pool()
    }

    /// Opens the transaction one statement runs in, the pooler's way. Dropped without a
    /// commit (on an error, or a cancelled future), sqlx rolls it back before the connection
    /// is used again.
    async fn begin(
        begin: &str,
        pool: &PgPool,
    ) -> Result<sqlx::Transaction<'static, Postgres>, DbErr> {
        pool.begin_with(sqlx::AssertSqlSafe(begin.to_owned()))
            .await
            .map_err(acquire_error)
    }
}

/// `stmt` as a statement the server does not keep: no name to collide or go missing.
fn unnamed(stmt: Statement) -> sqlx::query::Query<'static, Postgres, SqlxValues> {
    let values = SqlxValues(stmt.values.unwrap_or(sea_orm::Values(Vec::new())));
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql), values).persistent(false)
}

async fn commit(txn: sqlx::Transaction<'static, Postgres>) -> Result<(), DbErr> {
    txn.commit().await.map_err(exec_error)
}

fn exec_error(error: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(error)))
}

fn query_error(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)))
}

fn acquire_error(error: sqlx::Error) -> DbErr {
    match error {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(other))),
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match &self.mode {
            Mode::Direct => self.conn.execute_raw(stmt).await,
            Mode::Pooler { begin } => {
                let mut txn = Db::begin(begin, self.pool()).await?;
                let done = unnamed(stmt).execute(&mut *txn).await.map_err(exec_error)?;
                commit(txn).await?;
                Ok(done.into())
            }
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match &self.mode {
            Mode::Direct => self.conn.execute_unprepared(sql).await,
            // The simple protocol names no statement; the transaction is for `search_path`.
            Mode::Pooler { begin } => {
                let mut txn = Db::begin(begin, self.pool()).await?;
                let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut *txn)
                    .await
                    .map_err(exec_error)?;
                commit(txn).await?;
                Ok(done.into())
            }
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match &self.mode {
            Mode::Direct => self.conn.query_one_raw(stmt).await,
            Mode::Pooler { begin } => {
                let mut txn = Db::begin(begin, self.pool()).await?;
                let row = unnamed(stmt)
                    .fetch_optional(&mut *txn)
                    .await
                    .map_err(query_error)?;
                commit(txn).await?;
                Ok(row.map(QueryResult::from))
            }
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.mode {
            Mode::Direct => self.conn.query_all_raw(stmt).await,
            Mode::Pooler { begin } => {
                let mut txn = Db::begin(begin, self.pool()).await?;
                let rows = unnamed(stmt)
                    .fetch_all(&mut *txn)
                    .await
                    .map_err(query_error)?;
                commit(txn).await?;
                Ok(rows.into_iter().map(QueryResult::from).collect())
            }
        }
    }
}
