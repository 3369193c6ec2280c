//! [`TestCluster`]: a PostgreSQL server of one test's own, which the test may restart.

use std::fmt;

use crate::cluster::Layout;
use crate::error::TestDbError;

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
    layout: Layout,
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
        let layout = Layout::create("tasklib-pgp")?;
        let cluster = TestCluster {
            options: layout.options(100, "32MB"),
            layout,
        };
        // From here on, dropping `cluster` cleans up whatever exists.
        let layout = &cluster.layout;
        layout.initdb()?;
        let started = layout.pg_ctl("pg_ctl start", &["-o", &cluster.options, "start"]);
        layout.arm_watchdog();
        started.map_err(|e| layout.with_log(e))?;
        tracing::info!(dir = %layout.base.display(), "started a private PostgreSQL cluster");
        Ok(cluster)
    }

    /// A URL for `database` on this cluster, as user `postgres`; SeaORM (sqlx) and
    /// tokio-postgres both accept it.
    pub fn url(&self, database: &str) -> String {
        self.layout.url(database)
    }

    /// Creates an empty database `tasklib_test_<random>` and returns its URL
    /// (`TaskLib::connect` applies the migrations).
    ///
    /// # Errors
    /// [`TestDbError::Database`] when the server refuses.
    pub async fn create_database(&self) -> Result<String, TestDbError> {
        let name = crate::service::create_random_database(
            &self.url("postgres"),
            "connecting to a private cluster",
        )
        .await?;
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
        let layout = self.layout.clone();
        let done = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
            layout.pg_ctl(step, &args)
        })
        .await
        .map_err(|e| TestDbError::Cluster {
            step,
            detail: e.to_string(),
        })?;
        done.map_err(|e| self.layout.with_log(e))
    }
}

impl fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCluster")
            .field("dir", &self.layout.base)
            .finish_non_exhaustive()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.layout.data.join("postmaster.pid").exists()
            && let Err(error) = self
                .layout
                .pg_ctl("pg_ctl stop", &["-m", "immediate", "stop"])
        {
            tracing::warn!(%error, "could not stop a private cluster; its watchdog will");
        }
        let _ = std::fs::remove_dir_all(&self.layout.base);
    }
}
