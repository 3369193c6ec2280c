//! The process-wide test database service.
//!
//! Each `#[tokio::test]` has its own runtime, and a connection made on one runtime dies with
//! it; so everything shared between tests — the server choice, the cluster, the migrated
//! template — lives on one background runtime owned by this module, and tests talk to it
//! through tasks spawned there.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tasklib_migration::MigratorTrait;
use tokio::runtime::Runtime;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use crate::cluster::Cluster;
use crate::error::TestDbError;

/// Where test databases are created.
#[derive(Debug)]
enum Server {
    /// The server of `DATABASE_URL`.
    External { base: url::Url },
    /// The throwaway cluster.
    Private(Cluster),
}

impl Server {
    fn url(&self, database: &str) -> String {
        match self {
            Server::External { base } => {
                let mut url = base.clone();
                url.set_path(&format!("/{database}"));
                url.to_string()
            }
            Server::Private(cluster) => cluster.url(database),
        }
    }

    /// The database to connect to for CREATE/DROP DATABASE.
    fn admin_url(&self) -> String {
        match self {
            Server::External { base } => base.to_string(),
            Server::Private(cluster) => cluster.url("postgres"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Service {
    runtime: Runtime,
    server: Server,
    template: OnceCell<String>,
}

static SERVICE: OnceLock<Arc<Service>> = OnceLock::new();
static STARTING: Mutex<()> = Mutex::new(());

/// The service, started on first use. A failed start is not remembered: the next test tries
/// again (and reports the same error, usually).
pub(crate) fn service() -> Result<Arc<Service>, TestDbError> {
    if let Some(service) = SERVICE.get() {
        return Ok(Arc::clone(service));
    }
    let _guard = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(service) = SERVICE.get() {
        return Ok(Arc::clone(service));
    }
    let server = match std::env::var("DATABASE_URL") {
        Ok(raw) if !raw.trim().is_empty() => {
            let base = url::Url::parse(&raw).map_err(|e| TestDbError::InvalidUrl(e.to_string()))?;
            if !matches!(base.scheme(), "postgres" | "postgresql") {
                return Err(TestDbError::InvalidUrl(format!(
                    "scheme `{}` is not postgres",
                    base.scheme()
                )));
            }
            Server::External { base }
        }
        _ => Server::Private(Cluster::start()?),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tasklib-test-db")
        .enable_all()
        .build()
        .map_err(|e| TestDbError::Cluster {
            step: "starting the test database runtime",
            detail: e.to_string(),
        })?;
    let service = Arc::new(Service {
        runtime,
        server,
        template: OnceCell::new(),
    });
    let _ = SERVICE.set(Arc::clone(&service));
    Ok(service)
}

/// A short random hex string.
pub(crate) fn random_suffix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The tail of a v7 id is random.
    id[id.len() - 10..].to_owned()
}

async fn admin(url: &str, step: &'static str) -> Result<tokio_postgres::Client, TestDbError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|source| TestDbError::Database { step, source })?;
    tokio::spawn(connection);
    Ok(client)
}

impl Service {
    pub(crate) fn url(&self, database: &str) -> String {
        self.server.url(database)
    }

    /// Runs `work` on the service runtime and waits for it, from any runtime.
    pub(crate) async fn on_service<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, TestDbError> {
        self.runtime
            .spawn(work)
            .await
            .map_err(|_| TestDbError::ServiceGone)
    }

    /// Creates an empty database and returns its name.
    pub(crate) async fn create_empty(self: Arc<Self>) -> Result<String, TestDbError> {
        self.create_named("tasklib_test").await
    }

    /// Creates an empty database named `<prefix>_<random>`.
    async fn create_named(&self, prefix: &str) -> Result<String, TestDbError> {
        let name = format!("{prefix}_{}", random_suffix());
        let client = admin(&self.server.admin_url(), "connecting to create a database").await?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|source| TestDbError::Database {
                step: "CREATE DATABASE",
                source,
            })?;
        Ok(name)
    }

    /// Creates a database copied from the migrated template and returns its name.
    pub(crate) async fn create_migrated(self: Arc<Self>) -> Result<String, TestDbError> {
        let template = self
            .template
            .get_or_try_init(|| Arc::clone(&self).create_template())
            .await?
            .clone();
        let name = format!("tasklib_test_{}", random_suffix());
        let client = admin(
            &self.server.admin_url(),
            "connecting to create a test database",
        )
        .await?;
        let statement = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
        let mut tries = 0;
        loop {
            tries += 1;
            match client.batch_execute(&statement).await {
                Ok(()) => return Ok(name),
                // Two copies of one template at the same instant: PostgreSQL refuses the
                // second while the first holds the template; try again.
                Err(error)
                    if tries < 50
                        && error.as_db_error().is_some_and(|e| {
                            e.message().contains("is being accessed by other users")
                        }) =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(20 * tries)).await;
                }
                Err(source) => {
                    return Err(TestDbError::Database {
                        step: "CREATE DATABASE ... TEMPLATE",
                        source,
                    });
                }
            }
        }
    }

    /// Creates this process's template and applies tasklib's migrations to it.
    async fn create_template(self: Arc<Self>) -> Result<String, TestDbError> {
        let name = self.create_named("tasklib_tpl").await?;
        let url = self.server.url(&name);
        let mut options = sea_orm::ConnectOptions::new(url);
        options.max_connections(1).sqlx_logging(false);
        let db = sea_orm::Database::connect(options)
            .await
            .map_err(TestDbError::Migrate)?;
        tasklib_migration::Migrator::up(&db, None)
            .await
            .map_err(TestDbError::Migrate)?;
        db.close().await.map_err(TestDbError::Migrate)?;
        Ok(name)
    }

    /// Drops a database, disconnecting whoever is still connected.
    pub(crate) async fn drop_database(self: Arc<Self>, name: String) -> Result<(), TestDbError> {
        let client = admin(
            &self.server.admin_url(),
            "connecting to drop a test database",
        )
        .await?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .map_err(|source| TestDbError::Database {
                step: "DROP DATABASE",
                source,
            })
    }

    /// Spawns a drop on the service runtime and blocks until it is done (for `Drop`).
    pub(crate) fn drop_database_blocking(self: &Arc<Self>, name: String) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let this = Arc::clone(self);
        self.runtime.spawn(async move {
            let result = this.drop_database(name).await;
            let _ = done_tx.send(result);
        });
        match done_rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not drop a test database"),
            Err(_) => tracing::warn!("dropping a test database timed out"),
        }
    }
}
