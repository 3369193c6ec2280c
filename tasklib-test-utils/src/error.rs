//! Why a test database could not be made.

/// A test database could not be created. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestDbError {
    /// Neither `DATABASE_URL` nor the PostgreSQL server binaries are available.
    #[error(
        "no PostgreSQL for tests: DATABASE_URL is not set and `initdb`/`pg_ctl` were found neither on PATH nor under /usr/lib/postgresql/*/bin; install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`, Fedora: `dnf install postgresql-server`, macOS: `brew install postgresql`) or set DATABASE_URL to a server where this user may CREATE DATABASE"
    )]
    NoServer,

    /// Starting the throwaway cluster failed.
    #[error("{step} failed: {detail}")]
    Cluster {
        /// What was being done (`initdb`, `pg_ctl start`...).
        step: &'static str,
        /// The command's output or log tail.
        detail: String,
    },

    /// A statement against the server failed.
    #[error("{step} failed (is DATABASE_URL's user allowed to CREATE DATABASE?)")]
    Database {
        /// What was being done.
        step: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Applying tasklib's migrations to the template database failed.
    #[error("migrating the template database failed")]
    Migrate(#[source] sea_orm::DbErr),

    /// `DATABASE_URL` is not a URL this crate can derive database URLs from.
    #[error("DATABASE_URL is not a usable postgres:// URL: {0}")]
    InvalidUrl(String),

    /// The background service that manages test databases is gone (a panic in it).
    #[error("the test database service stopped unexpectedly")]
    ServiceGone,
}
