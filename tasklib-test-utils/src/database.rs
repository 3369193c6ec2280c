//! [`TestDatabase`]: one fresh database, dropped when the value is.

use std::fmt;
use std::sync::Arc;

use crate::error::TestDbError;
use crate::service::{Service, service_async};

/// A database of its own for one test, dropped (with `DROP DATABASE … WITH (FORCE)`) when
/// this value is dropped.
///
/// Created on the server at `DATABASE_URL` when it is set (the user needs the `CREATEDB`
/// right), otherwise on a private throwaway cluster that this process starts from the
/// installed PostgreSQL binaries and that is stopped and deleted after the process exits.
#[must_use = "the database is dropped when this value is"]
pub struct TestDatabase {
    name: String,
    url: String,
    service: Arc<Service>,
}

impl TestDatabase {
    /// A fresh database with tasklib's migrations applied. It is copied from a template
    /// migrated once per process, so this costs one `CREATE DATABASE` (tens of
    /// milliseconds); the first call of a process also starts the private cluster and
    /// migrates the template (a few seconds).
    ///
    /// # Errors
    /// [`TestDbError::NoServer`] when there is neither `DATABASE_URL` nor an installed
    /// PostgreSQL; the other variants when the server refuses.
    pub async fn new() -> Result<TestDatabase, TestDbError> {
        let service = service_async().await?;
        let name = service
            .on_service(Arc::clone(&service).create_migrated())
            .await??;
        Ok(Self::wrap(service, name))
    }

    /// A fresh, empty database: no tables at all. For testing migrations themselves, or for
    /// code that should apply them (`TaskLib::connect` does).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub async fn empty() -> Result<TestDatabase, TestDbError> {
        let service = service_async().await?;
        let name = service
            .on_service(Arc::clone(&service).create_empty())
            .await??;
        Ok(Self::wrap(service, name))
    }

    fn wrap(service: Arc<Service>, name: String) -> TestDatabase {
        let url = service.url(&name);
        TestDatabase { name, url, service }
    }

    /// The connection URL; both SeaORM (sqlx) and tokio-postgres accept it. It may hold
    /// `DATABASE_URL`'s password: do not log it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.service
            .drop_database_blocking(std::mem::take(&mut self.name));
    }
}
