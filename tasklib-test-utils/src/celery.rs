//! Real Python Celery for tests: a virtual environment with `celery[redis]`, built once per
//! machine, a Celery worker run as a child process, and client scripts run to completion.
//!
//! The environment lives in `$TASKLIB_CELERY_VENV`, else `$HOME/.cache/tasklib/celery-venv`
//! (else under the system's temporary directory). It is built with `python3 -m venv` and
//! `pip install 'celery[redis]>=5.3,<6'` the first time, into a directory beside it that is
//! renamed into place when complete, so a half-built environment is never used.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::time::Duration;

use crate::watchdog;

/// What `pip` installs.
pub const CELERY_REQUIREMENT: &str = "celery[redis]>=5.3,<6";
/// How long a Celery worker may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why Celery could not be set up or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CeleryError {
    /// Building the virtual environment failed.
    #[error(
        "could not build the Celery virtual environment at {path}: {detail} (needs python3 with the venv module, e.g. `apt-get install python3-venv`, and access to PyPI)"
    )]
    Venv {
        /// Where.
        path: PathBuf,
        /// The failing command's output.
        detail: String,
    },
    /// A process could not be started or did not behave.
    #[error("{what} failed: {detail}")]
    Process {
        /// What was run.
        what: String,
        /// Its output or the OS error.
        detail: String,
    },
}

/// The virtual environment with Celery.
#[derive(Debug, Clone)]
pub struct CeleryVenv {
    dir: PathBuf,
}

static VENV: OnceLock<CeleryVenv> = OnceLock::new();
static BUILDING: Mutex<()> = Mutex::new(());

impl CeleryVenv {
    /// The environment, built on first use (minutes, once per machine).
    ///
    /// # Errors
    /// [`CeleryError::Venv`] when it cannot be built.
    pub fn get() -> Result<CeleryVenv, CeleryError> {
        if let Some(venv) = VENV.get() {
            return Ok(venv.clone());
        }
        let _guard = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(venv) = VENV.get() {
            return Ok(venv.clone());
        }
        let dir = venv_dir();
        if !dir.join("bin").join("celery").exists() {
            build(&dir)?;
        }
        let venv = CeleryVenv { dir };
        Ok(VENV.get_or_init(|| venv).clone())
    }

    /// Its `python`.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// Runs a Python script to completion in `dir` (so it can import the modules there),
    /// with `envs` set.
    ///
    /// # Errors
    /// [`CeleryError::Process`] when it cannot start or exits non-zero (the error holds its
    /// output).
    pub fn run_script(
        &self,
        dir: &Path,
        script: &str,
        envs: &[(&str, &str)],
    ) -> Result<Output, CeleryError> {
        let output = Command::new(self.python())
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .envs(envs.iter().copied())
            .env("PYTHONPATH", dir)
            .output()
            .map_err(|e| CeleryError::Process {
                what: "python".into(),
                detail: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(CeleryError::Process {
                what: "a Python client script".into(),
                detail: format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(output)
    }
}

fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TASKLIB_CELERY_VENV") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/tasklib/celery-venv"),
        None => std::env::temp_dir().join("tasklib-celery-venv"),
    }
}

fn build(dir: &Path) -> Result<(), CeleryError> {
    crate::venv::build(dir, &[CELERY_REQUIREMENT], |dir| {
        dir.join("bin").join("celery").exists()
    })
    .map_err(|detail| CeleryError::Venv {
        path: dir.to_owned(),
        detail,
    })
}

/// A directory of Python modules for a test (a Celery app, tasks), removed on drop.
#[derive(Debug)]
pub struct PythonApp {
    dir: PathBuf,
}

impl PythonApp {
    /// Writes `files` (name, content) into a new temporary directory.
    ///
    /// # Errors
    /// [`CeleryError::Process`] when the files cannot be written.
    pub fn new(files: &[(&str, &str)]) -> Result<PythonApp, CeleryError> {
        let dir = std::env::temp_dir().join(format!(
            "tasklib-celery-app-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            for (name, content) in files {
                std::fs::write(dir.join(name), content)?;
            }
            Ok(())
        };
        write().map_err(|e| CeleryError::Process {
            what: "writing the Python app".into(),
            detail: e.to_string(),
        })?;
        Ok(PythonApp { dir })
    }

    /// Where the modules are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PythonApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Celery worker process (`python -m celery -A <app> worker`), stopped on drop.
#[derive(Debug)]
pub struct CeleryWorker {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl CeleryWorker {
    /// Starts a worker for app module `app` (in `dir`) on `queues` with `concurrency`
    /// processes, with `envs` set (the app reads its broker URL there), and waits until it
    /// says it is ready.
    ///
    /// # Errors
    /// [`CeleryError::Process`] when it cannot start or is not ready in time (the error
    /// holds its log).
    pub fn start(
        venv: &CeleryVenv,
        dir: &Path,
        app: &str,
        queues: &[&str],
        concurrency: usize,
        envs: &[(&str, &str)],
    ) -> Result<CeleryWorker, CeleryError> {
        let mut child = Command::new(venv.python())
            .args(["-m", "celery", "-A", app, "worker", "--loglevel", "INFO"])
            .arg("-Q")
            .arg(queues.join(","))
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .args([
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ])
            .arg("-n")
            .arg(format!("py{}@%h", uuid::Uuid::now_v7().simple()))
            .current_dir(dir)
            .env("PYTHONPATH", dir)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| CeleryError::Process {
                what: "starting a Celery worker".into(),
                detail: e.to_string(),
            })?;
        watchdog::after_exit(
            "test celery worker",
            &format!("kill -9 -{} 2>/dev/null", child.id()),
            &[],
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut ready = Some(ready_tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains(" ready.")
                        && let Some(tx) = ready.take()
                    {
                        let _ = tx.send(());
                    }
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            });
        }
        let mut worker = CeleryWorker { child, log };
        if ready_rx.recv_timeout(READY_TIMEOUT).is_err() {
            let log = worker.log();
            worker.stop();
            return Err(CeleryError::Process {
                what: "a Celery worker".into(),
                detail: format!("not ready within {READY_TIMEOUT:?}:\n{log}"),
            });
        }
        Ok(worker)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    /// Stops it and its pool processes at once (SIGKILL to its process group).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CeleryWorker {
    fn drop(&mut self) {
        self.stop();
    }
}
