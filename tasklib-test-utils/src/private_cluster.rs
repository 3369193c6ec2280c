//! [`TestCluster`]: a PostgreSQL server of one test's own, which the test may restart.

use std::fmt;
use std::path::PathBuf;

use tokio_postgres::NoTls;

use crate::cluster::{arm_watchdog, create_base_dir, find_bin_dir, is_root, pg, run};
use crate::error::TestDbError;

const PORT: u16 = 5432;

/// A whole PostgreSQL server for one test, for what a shared server cannot be used for:
/// restarting it under a running application (`pg_ctl restart -m fast`).
///
/// Like the throwaway cluster behind [`TestDatabase`](crate::TestDatabase), it is started from
/// the installed server binaries, listens only on a Unix socket in a fresh temporary directory
/// (so it cannot collide with another server), trusts every local connection (any password is
/// accepted), and runs as the `postgres` user when the test runs as root. It costs an `initdb`
/// (about a second), so use it only where a [`TestDatabase`](crate::TestDatabase) will not do.
///
/// Dropping the value stops the server and deletes its directory; a watchdog does the same if
/// the test process dies first.
///
/// ```no_run
/// use tasklib_test_utils::TestCluster;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = TestCluster::start().await?;
/// let url = cluster.create_database().await?;
/// let tasks = tasklib::TaskLib::connect(&url).await?;
/// cluster.restart().await?; // every connection is cut; the server is back when this returns
/// # drop(tasks);
/// # Ok(())
/// # }
/// ```
#[must_use = "the cluster is stopped when this value is dropped"]
pub struct TestCluster {
    bin: PathBuf,
    base: PathBuf,
    data: PathBuf,
    log: PathBuf,
    as_root: bool,
    /// The server's command-line options, for starting it again after [`stop`](Self::stop).
    options: String,
}

impl TestCluster {
    /// Creates and starts a new cluster (`initdb` then `pg_ctl start`, on a blocking thread).
    ///
    /// # Errors
    /// [`TestDbError::NoServer`] when the server binaries are not installed,
    /// [`TestDbError::Cluster`] (with the server log's tail) when a step fails.
    pub async fn start() -> Result<TestCluster, TestDbError> {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .map_err(|e| TestDbError::Cluster {
                step: "starting a private cluster",
                detail: e.to_string(),
            })?
    }

    fn start_blocking() -> Result<TestCluster, TestDbError> {
        let bin = find_bin_dir().ok_or(TestDbError::NoServer)?;
        let as_root = is_root();
        let base = std::env::temp_dir().join(format!(
            "tasklib-pgp-{}-{}",
            std::process::id(),
            crate::service::random_suffix()
        ));
        create_base_dir(&base, as_root)?;
        let data = base.join("data");
        let log = base.join("postgres.log");
        let options = format!(
            "-k {} -h '' -p {PORT} -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=100 -c shared_buffers=32MB",
            base.display()
        );
        let cluster = TestCluster {
            bin,
            base,
            data,
            log,
            as_root,
            options,
        };
        // From here on, dropping `cluster` cleans up whatever exists.
        run(
            "initdb",
            pg(as_root, &cluster.bin.join("initdb"))
                .arg("-D")
                .arg(&cluster.data)
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
        )?;
        let started = cluster.pg_ctl("pg_ctl start", &["-o", &cluster.options, "start"]);
        arm_watchdog(&cluster.bin, &cluster.base, &cluster.data, as_root);
        started.map_err(|e| cluster.with_log(e))?;
        tracing::info!(dir = %cluster.base.display(), "started a private PostgreSQL cluster");
        Ok(cluster)
    }

    /// A URL for `database` on this cluster, as user `postgres`; SeaORM (sqlx) and
    /// tokio-postgres both accept it.
    pub fn url(&self, database: &str) -> String {
        let dir = self.base.display().to_string().replace('/', "%2F");
        format!("postgres://postgres@{dir}:{PORT}/{database}")
    }

    /// Creates an empty database `tasklib_test_<random>` and returns its URL
    /// (`TaskLib::connect` applies the migrations).
    ///
    /// # Errors
    /// [`TestDbError::Database`] when the server refuses.
    pub async fn create_database(&self) -> Result<String, TestDbError> {
        let name = format!("tasklib_test_{}", crate::service::random_suffix());
        let (client, connection) = tokio_postgres::connect(&self.url("postgres"), NoTls)
            .await
            .map_err(|source| TestDbError::Database {
                step: "connecting to a private cluster",
                source,
            })?;
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
        Ok(self.url(&name))
    }

    /// Restarts the server the way an operator would (`pg_ctl restart -m fast`): every
    /// session is terminated, open transactions roll back, and the call returns once the
    /// server accepts connections again. Runs on a blocking thread, so tasks of the calling
    /// runtime keep running (and see the outage) meanwhile.
    ///
    /// # Errors
    /// [`TestDbError::Cluster`], with the server log's tail, when the restart fails.
    pub async fn restart(&self) -> Result<(), TestDbError> {
        self.pg_ctl_blocking("pg_ctl restart", vec!["-m", "fast", "restart"])
            .await
    }

    /// Stops the server (`pg_ctl stop -m fast`): every session is terminated and new ones are
    /// refused until [`start_again`](Self::start_again). With `restart`, an outage as long as
    /// the test wants.
    ///
    /// # Errors
    /// [`TestDbError::Cluster`], with the server log's tail, when stopping fails.
    pub async fn stop(&self) -> Result<(), TestDbError> {
        self.pg_ctl_blocking("pg_ctl stop", vec!["-m", "fast", "stop"])
            .await
    }

    /// Starts the server again after [`stop`](Self::stop), with the same settings and data.
    ///
    /// # Errors
    /// [`TestDbError::Cluster`], with the server log's tail, when starting fails.
    pub async fn start_again(&self) -> Result<(), TestDbError> {
        let options = self.options.clone();
        self.pg_ctl_blocking(
            "pg_ctl start",
            vec!["-o".to_owned(), options, "start".to_owned()],
        )
        .await
    }

    /// Runs `pg_ctl` on a blocking thread, so the calling runtime's tasks keep running.
    async fn pg_ctl_blocking<S: AsRef<str> + Send + 'static>(
        &self,
        step: &'static str,
        args: Vec<S>,
    ) -> Result<(), TestDbError> {
        let bin = self.bin.clone();
        let data = self.data.clone();
        let log = self.log.clone();
        let as_root = self.as_root;
        let done = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
            pg_ctl(as_root, &bin, &data, &log, step, &args)
        })
        .await
        .map_err(|e| TestDbError::Cluster {
            step,
            detail: e.to_string(),
        })?;
        done.map_err(|e| self.with_log(e))
    }

    fn pg_ctl(&self, step: &'static str, args: &[&str]) -> Result<(), TestDbError> {
        pg_ctl(self.as_root, &self.bin, &self.data, &self.log, step, args)
    }

    /// Adds the last lines of the server log to a failed step's error.
    fn with_log(&self, error: TestDbError) -> TestDbError {
        match error {
            TestDbError::Cluster { step, detail } => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                TestDbError::Cluster {
                    step,
                    detail: format!("{detail}\nserver log:\n{tail}"),
                }
            }
            other => other,
        }
    }
}

/// Runs `pg_ctl -D data -l log -w -t 60 <args>`. The log file matters beyond logging: without
/// it the server would inherit pg_ctl's output pipes, and waiting for pg_ctl's output would
/// wait for the server to exit.
fn pg_ctl(
    as_root: bool,
    bin: &std::path::Path,
    data: &std::path::Path,
    log: &std::path::Path,
    step: &'static str,
    args: &[&str],
) -> Result<(), TestDbError> {
    run(
        step,
        pg(as_root, &bin.join("pg_ctl"))
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(log)
            .args(["-w", "-t", "60"])
            .args(args),
    )
}

impl fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCluster")
            .field("dir", &self.base)
            .finish_non_exhaustive()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists()
            && let Err(error) = self.pg_ctl("pg_ctl stop", &["-m", "immediate", "stop"])
        {
            tracing::warn!(%error, "could not stop a private cluster; its watchdog will");
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
