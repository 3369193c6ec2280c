//! A private PgBouncer per test, in transaction pooling mode, in front of one test database:
//! `pgbouncer` started as a child process on a free loopback port, stopped when the value
//! drops (and, should the test process die first, by an exit watchdog).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{find_binary, is_root};
use crate::error::TestDbError;
use crate::server::percent_decode;
use crate::watchdog;

/// How long PgBouncer may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A PgBouncer of one's own in transaction pooling mode, killed on drop.
///
/// Every database name it is asked for goes to the upstream database it was started for,
/// through at most [`server_connections`](Self::start) server connections: clients take
/// turns on them, one transaction at a time, as PgBouncer's `pool_mode = transaction` does in
/// production. It passes on only the startup parameters PgBouncer knows (no
/// `ignore_startup_parameters`), like a stock installation.
///
/// ```no_run
/// # async fn demo() -> Result<(), tasklib_test_utils::TestDbError> {
/// let db = tasklib_test_utils::TestDatabase::new().await?;
/// let bouncer = tasklib_test_utils::TestPgBouncer::start(db.url(), 2)?;
/// let pooled_url = bouncer.url(); // postgres://<user>@127.0.0.1:<port>/<database>
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestPgBouncer {
    child: Child,
    port: u16,
    user: String,
    database: String,
    dir: PathBuf,
}

impl TestPgBouncer {
    /// Starts PgBouncer in front of the database at `upstream` (a `postgres://` URL, TCP or a
    /// Unix socket directory as the host), sharing at most `server_connections` server
    /// connections among its clients, and waits until it accepts connections.
    ///
    /// # Errors
    /// [`TestDbError::Cluster`] when `pgbouncer` is not installed (the message says how to
    /// install it), `upstream` does not parse, or it does not come up.
    pub fn start(upstream: &str, server_connections: u32) -> Result<TestPgBouncer, TestDbError> {
        let failed = |detail: String| TestDbError::Cluster {
            step: "starting pgbouncer",
            detail,
        };
        let binary = find_binary("pgbouncer")
            .or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.exists()))
            .ok_or_else(|| {
                failed(
                    "`pgbouncer` was found neither on PATH nor in /usr/sbin: install it \
                     (Debian/Ubuntu: `apt-get install pgbouncer`)"
                        .to_owned(),
                )
            })?;
        let upstream = Upstream::parse(upstream).map_err(failed)?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| failed(format!("no free port: {e}")))?;
        let dir = std::env::temp_dir().join(format!(
            "tasklib-pgbouncer-{}-{}",
            std::process::id(),
            crate::service::random_suffix()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(&ini, upstream.ini(port, server_connections))
            .map_err(|e| failed(format!("{}: {e}", ini.display())))?;
        let mut command = Command::new(&binary);
        if is_root() {
            // PgBouncer refuses to run as root; it drops to this user after reading its files.
            command.args(["-u", "postgres"]);
        }
        let mut child = command
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("{}: {e}", binary.display())))?;
        watchdog::after_exit(
            "test pgbouncer",
            &format!("kill -9 {} 2>/dev/null", child.id()),
            &[],
        );
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut log = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
                }
                return Err(failed(format!("pgbouncer exited ({status}): {log}")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(failed(format!(
                    "pgbouncer did not listen on port {port} within {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(TestPgBouncer {
            child,
            port,
            user: upstream.user,
            database: upstream.database,
            dir,
        })
    }

    /// The pooled database: `postgres://<user>@127.0.0.1:<port>/<database>`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            self.user, self.port, self.database
        )
    }

    /// PgBouncer's admin console (`SHOW POOLS`, `SHOW STATS`...), for tests that check what
    /// went through it.
    pub fn admin_url(&self) -> String {
        format!("postgres://{}@127.0.0.1:{}/pgbouncer", self.user, self.port)
    }
}

impl Drop for TestPgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the pooled connections go.
struct Upstream {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    database: String,
}

impl Upstream {
    fn parse(url: &str) -> Result<Upstream, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("upstream URL: {e}"))?;
        let decode = percent_decode;
        let host = parsed
            .host_str()
            .map(decode)
            .filter(|h| !h.is_empty())
            .ok_or("upstream URL has no host")?;
        let database = parsed.path().trim_start_matches('/').to_owned();
        if database.is_empty() {
            return Err("upstream URL names no database".to_owned());
        }
        Ok(Upstream {
            host,
            port: parsed.port().unwrap_or(5432),
            user: match parsed.username() {
                "" => "postgres".to_owned(),
                user => decode(user),
            },
            password: parsed.password().map(decode),
            database,
        })
    }

    /// The configuration: every database name leads to the upstream database, any client
    /// user is let in and connects upstream as the URL's user.
    fn ini(&self, port: u16, server_connections: u32) -> String {
        let mut target = format!(
            "host={} port={} dbname={} user={}",
            self.host, self.port, self.database, self.user
        );
        if let Some(password) = &self.password {
            let _ = write!(target, " password={password}");
        }
        format!(
            "[databases]\n\
             * = {target}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = any\n\
             admin_users = {user}\n\
             pool_mode = transaction\n\
             default_pool_size = {server_connections}\n\
             max_client_conn = 200\n",
            user = self.user,
        )
    }
}
