//! The process-wide test database service.
//!
//! Each `#[tokio::test]` has its own runtime, and a connection made on one runtime dies with
//! it; so everything shared between tests — the server choice, the cluster, the migrated
//! template — lives on one background runtime owned by this module, tests talk to it through
//! tasks spawned there, and every operation opens a fresh connection (nothing pooled outlives
//! the operation).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tasklib_migration::MigratorTrait;
use tokio::runtime::Runtime;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use crate::error::TestDbError;
use crate::server::{Server, libpq_env};
use crate::watchdog;

/// Prefix of the per-test databases: `tasklib_test_<process tag>_<random>`.
const TEST_PREFIX: &str = "tasklib_test";
/// Prefix of the per-process template: `tasklib_tpl_<process tag>_<random>`.
const TEMPLATE_PREFIX: &str = "tasklib_tpl";
/// How often a `CREATE DATABASE … TEMPLATE` that raced with another is tried.
const TEMPLATE_TRIES: u32 = 50;
/// How long `Drop` waits for `DROP DATABASE` before giving up with a warning.
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct Service {
    runtime: Runtime,
    server: Server,
    template: OnceCell<String>,
}

static SERVICE: OnceLock<Arc<Service>> = OnceLock::new();
static STARTING: Mutex<()> = Mutex::new(());

/// The service, started on first use; concurrent first uses start one. Blocks while the
/// private cluster starts, so call it from a blocking thread. A failed start is not
/// remembered: the next test tries again (and reports the same error, usually).
pub(crate) fn service() -> Result<Arc<Service>, TestDbError> {
    if let Some(service) = SERVICE.get() {
        return Ok(Arc::clone(service));
    }
    let _guard = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(service) = SERVICE.get() {
        return Ok(Arc::clone(service));
    }
    let server = Server::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tasklib-test-db")
        .enable_all()
        .build()
        .map_err(|e| TestDbError::Cluster {
            step: "starting the test database runtime",
            detail: e.to_string(),
        })?;
    if let Server::External { base } = &server {
        arm_external_cleanup(base);
    }
    let service = Arc::new(Service {
        runtime,
        server,
        template: OnceCell::new(),
    });
    let _ = SERVICE.set(Arc::clone(&service));
    Ok(service)
}

/// [`service`], from async code: the start runs on a blocking thread.
pub(crate) async fn service_async() -> Result<Arc<Service>, TestDbError> {
    tokio::task::spawn_blocking(service)
        .await
        .map_err(|_| TestDbError::ServiceGone)?
}

/// A short random hex string.
/// Creates an empty database with a fresh name through the server at `admin_url` (a
/// database URL whose user may `CREATE DATABASE`); returns the name. `what` names the server
/// in errors.
pub(crate) async fn create_random_database(
    admin_url: &str,
    what: &'static str,
) -> Result<String, TestDbError> {
    let name = format!("tasklib_test_{}", random_suffix());
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls)
        .await
        .map_err(|source| TestDbError::Database { step: what, source })?;
    let driver = tokio::spawn(connection);
    let created = client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .map_err(|source| TestDbError::Database {
            step: "CREATE DATABASE",
            source,
        });
    drop(client);
    let _ = driver.await;
    created?;
    Ok(name)
}

pub(crate) fn random_suffix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The tail of a v7 id is random.
    id[id.len() - 10..].to_owned()
}

/// A random tag for this process, in the names of the databases it creates, so that its exit
/// watchdog can find what it left behind.
fn process_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| random_suffix()[2..].to_owned())
}

/// After this process exits, drops whatever databases it left on `DATABASE_URL`'s server: its
/// template, and test databases a killed or aborted test never dropped. Needs `psql`; without
/// it they stay (see the crate docs).
fn arm_external_cleanup(base: &url::Url) {
    let Some(psql) = crate::cluster::find_binary("psql") else {
        tracing::info!(
            "psql not found: this process's tasklib_tpl_* database will stay on DATABASE_URL's server"
        );
        return;
    };
    let mut env = libpq_env(base);
    env.push((
        "TASKLIB_CLEANUP_SQL".to_owned(),
        format!(
            "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname) FROM pg_database \
             WHERE datname ~ '^({TEST_PREFIX}|{TEMPLATE_PREFIX})_{tag}_'",
            tag = process_tag()
        ),
    ));
    let cleanup = format!(
        r#"printf '%s\n\\gexec\n' "$TASKLIB_CLEANUP_SQL" | {} -X -q >/dev/null 2>&1"#,
        watchdog::sh_quote(&psql.display().to_string())
    );
    watchdog::after_exit("test databases on DATABASE_URL", &cleanup, &env);
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
        self.create_named(TEST_PREFIX).await
    }

    /// A new name `<prefix>_<process tag>_<random>`.
    fn new_name(prefix: &str) -> String {
        format!("{prefix}_{}_{}", process_tag(), random_suffix())
    }

    /// Creates an empty database named after `prefix` and returns its name.
    async fn create_named(&self, prefix: &str) -> Result<String, TestDbError> {
        let name = Self::new_name(prefix);
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
        let name = Self::new_name(TEST_PREFIX);
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
                // Something is still connected to the template (an autovacuum worker, or the
                // migration's connection not yet gone server-side): PostgreSQL refuses to copy
                // it meanwhile. Not a timing guess: a retry until the other session is gone.
                Err(error)
                    if tries < TEMPLATE_TRIES
                        && error.as_db_error().is_some_and(|e| {
                            e.message().contains("is being accessed by other users")
                        }) =>
                {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(tries))).await;
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

    /// Creates this process's template and applies tasklib's migrations to it. A template
    /// whose migration failed is dropped again, so the next test starts over.
    async fn create_template(self: Arc<Self>) -> Result<String, TestDbError> {
        let name = self.create_named(TEMPLATE_PREFIX).await?;
        match self.migrate(&name).await {
            Ok(()) => Ok(name),
            Err(error) => {
                if let Err(drop_error) = Arc::clone(&self).drop_database(name).await {
                    tracing::warn!(error = %drop_error, "could not drop a half-migrated template");
                }
                Err(error)
            }
        }
    }

    /// Applies tasklib's migrations to `database`, then closes the connection (a template
    /// cannot be copied while anyone is connected to it).
    async fn migrate(&self, database: &str) -> Result<(), TestDbError> {
        let mut options = sea_orm::ConnectOptions::new(self.server.url(database));
        options.max_connections(1).sqlx_logging(false);
        let db = sea_orm::Database::connect(options)
            .await
            .map_err(TestDbError::Migrate)?;
        let migrated = tasklib_migration::Migrator::up(&db, None)
            .await
            .map_err(TestDbError::Migrate);
        let closed = db.close().await.map_err(TestDbError::Migrate);
        migrated.and(closed)
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

    /// Runs a drop on the service runtime and blocks until it is done (for `Drop`, which
    /// cannot be async). The service runtime has its own thread, so blocking the caller's
    /// runtime here cannot deadlock; errors are logged, never panicked on.
    pub(crate) fn drop_database_blocking(self: &Arc<Self>, name: String) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let this = Arc::clone(self);
        self.runtime.spawn(async move {
            let result = this.drop_database(name).await;
            let _ = done_tx.send(result);
        });
        match done_rx.recv_timeout(DROP_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not drop a test database"),
            Err(_) => tracing::warn!("dropping a test database timed out"),
        }
    }
}
