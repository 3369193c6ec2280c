//! Why a test database could not be made.

use std::fmt;

/// A test database could not be created. Every message says what to do about it.
///
/// `Debug` shows the message and its causes, not the variant's fields: a test that returns
/// `Result` and fails with `?` prints `Debug`, and should say what to install or fix.
#[derive(thiserror::Error)]
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

impl fmt::Debug for TestDbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_says_what_to_do() {
        let shown = format!("{:?}", TestDbError::NoServer);
        assert!(shown.contains("apt-get install postgresql"), "{shown}");
    }
}
