//! The worker command made by `tasklib::cli::run_worker_command`, run as a real process.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tasklib::{BackendType, RedactedUrl, SubmitOptions, Task, TaskLib, TaskStatus};
use tasklib_examples::demo_tasks::{CallApi, ProcessFile};
use tasklib_test_utils::{TestCluster, TestDatabase};
use validator::Validate;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

const WORKER: &str = env!("CARGO_BIN_EXE_demo-worker");

/// How long a test waits for the worker to finish a task or to stop.
const PATIENCE: Duration = Duration::from_secs(30);

/// The demo worker's `add_numbers`, as a producer in another program declares it: only the
/// name and the fields are shared.
#[derive(Debug, Serialize, Deserialize, Validate)]
struct AddNumbers {
    a: i64,
    b: i64,
}

impl Task for AddNumbers {
    const NAME: &'static str = "add_numbers";
    type Output = i64;
}

/// The worker command with `args`, in an environment holding only `env` of tasklib's
/// variables.
fn worker(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(WORKER);
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TASK_QUEUES")
        .env_remove("TASK_BACKEND_TYPE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Output> {
    worker(args, env).output()
}

/// A failure: exit code `code` and one line on stderr, which is returned.
fn one_line_error(out: &Output, code: i32) -> Result<String, String> {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() != Some(code) {
        return Err(format!(
            "expected exit {code}, got {:?}; stderr: {err}",
            out.status.code()
        ));
    }
    if err.trim().lines().count() != 1 {
        return Err(format!("expected one error line, got: {err}"));
    }
    Ok(err)
}

/// The first engine this build lacks, and the cargo feature that adds it; `None` once every
/// engine with a feature is compiled in.
fn engine_not_compiled_in() -> Option<(BackendType, &'static str)> {
    [BackendType::Celery, BackendType::Temporal]
        .into_iter()
        .find_map(|engine| match engine.ensure_available() {
            Err(tasklib::Error::BackendNotCompiled { feature, .. }) => Some((engine, feature)),
            _ => None,
        })
}

/// A worker process whose log (stderr) is read as it comes, so that it never blocks on a
/// full pipe; killed if the test ends without stopping it.
struct Worker {
    child: Option<Child>,
    log: Option<JoinHandle<String>>,
}

impl Worker {
    fn start(args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Worker> {
        let mut child = worker(args, env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let log = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut log = String::new();
                // A read error ends the log early; the assertions on it then say what is missing.
                let _ = stderr.read_to_string(&mut log);
                log
            })
        });
        Ok(Worker {
            child: Some(child),
            log,
        })
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status and its log.
    async fn stop(mut self) -> Result<(ExitStatus, String), BoxError> {
        let (child, log) = match (self.child.take(), self.log.take()) {
            (Some(child), Some(log)) => (child, log),
            _ => return Err("the worker was already stopped".into()),
        };
        let pid = child.id().to_string();
        if !Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success()
        {
            return Err("could not send SIGTERM to the worker".into());
        }
        wait_for_exit(child, log, "of SIGTERM").await
    }

    /// Waits for the process to exit on its own; returns its status and its log.
    async fn exited(mut self) -> Result<(ExitStatus, String), BoxError> {
        let (child, log) = match (self.child.take(), self.log.take()) {
            (Some(child), Some(log)) => (child, log),
            _ => return Err("the worker was already stopped".into()),
        };
        wait_for_exit(child, log, "").await
    }
}

/// Waits up to [`PATIENCE`] for `child` to exit (killing it after that); its status and log.
async fn wait_for_exit(
    mut child: Child,
    log: JoinHandle<String>,
    after: &str,
) -> Result<(ExitStatus, String), BoxError> {
    let pid = child.id().to_string();
    let exited = tokio::task::spawn_blocking(move || -> Result<_, BoxError> {
        let status = child.wait()?;
        let log = log.join().map_err(|_| "the log reader panicked")?;
        Ok((status, log))
    });
    match tokio::time::timeout(PATIENCE, exited).await {
        Ok(joined) => joined?,
        Err(_) => {
            Command::new("kill").args(["-KILL", &pid]).status()?;
            Err(format!("the worker did not exit within {PATIENCE:?} {after}").into())
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn help_lists_the_flags_and_their_variables_without_values() -> TestResult {
    let out = run(
        &["--help"],
        &[("DATABASE_URL", "postgres://u:very-secret@h/db")],
    )?;
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--backend",
        "TASK_BACKEND_TYPE",
        "--queues",
        "--concurrency",
        "--database-url",
        "DATABASE_URL",
        "TASK_QUEUES",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
    assert!(!help.contains("very-secret"), "{help}");
    // The task types it serves, with their queues, listed without connecting anywhere.
    let listing = help
        .split_once("Task types this worker runs:")
        .map(|(_, list)| list)
        .ok_or_else(|| format!("no task types in help:\n{help}"))?;
    for (name, queue) in [
        ("add_numbers", "default"),
        ("call_api", "api_processing"),
        ("process_file", "file_processing"),
    ] {
        assert!(
            listing.lines().any(
                |l| l.trim_start().starts_with(name) && l.ends_with(&format!("queue: {queue}"))
            ),
            "{name} on {queue} missing:\n{listing}"
        );
    }
    Ok(())
}

#[test]
fn bad_command_lines_exit_2_with_one_line() -> TestResult {
    for args in [
        &["--frobnicate"][..],
        &["--database-url", "postgres://h/db", "--concurrency", "0"][..],
    ] {
        one_line_error(&run(args, &[])?, 2)?;
    }
    // No database at all: the error says which flag or variable is missing.
    let err = one_line_error(&run(&[], &[])?, 2)?;
    assert!(
        err.contains("--database-url") && err.contains("DATABASE_URL"),
        "{err}"
    );
    Ok(())
}

#[test]
fn unknown_engines_are_refused_with_the_valid_names() -> TestResult {
    // From the flag: a bad command line (2). From the variable: a bad configuration (1).
    let from_flag = run(
        &["--backend", "nosuch", "--database-url", "postgres://h/db"],
        &[],
    )?;
    let err = one_line_error(&from_flag, 2)?;
    assert!(
        err.contains("nosuch") && err.contains("postgres, celery, temporal, hatchet"),
        "{err}"
    );
    let from_env = run(
        &["--database-url", "postgres://h/db"],
        &[("TASK_BACKEND_TYPE", "nosuch")],
    )?;
    let err = one_line_error(&from_env, 1)?;
    assert!(
        err.contains("TASK_BACKEND_TYPE")
            && err.contains("nosuch")
            && err.contains("postgres, celery, temporal, hatchet"),
        "{err}"
    );
    Ok(())
}

#[test]
fn an_engine_not_compiled_in_names_its_cargo_feature() -> TestResult {
    let Some((engine, feature)) = engine_not_compiled_in() else {
        return Ok(()); // every engine is compiled in: nothing to refuse
    };
    // No DATABASE_URL: another engine than PostgreSQL does not ask for one.
    let from_flag = run(&["--backend", engine.as_str()], &[])?;
    let from_env = run(&[], &[("TASK_BACKEND_TYPE", engine.as_str())])?;
    for out in [from_flag, from_env] {
        let err = one_line_error(&out, 1)?;
        assert!(
            err.contains(&format!("`{engine}` backend is not compiled in"))
                && err.contains(&format!("cargo feature `{feature}`")),
            "{err}"
        );
    }
    Ok(())
}

#[test]
fn an_unreachable_database_exits_1_without_the_password() -> TestResult {
    let out = run(
        &["--database-url", "postgres://w:pa55-word@127.0.0.1:1/app"],
        &[("TASKLIB_CONNECT_TIMEOUT", "1s")],
    )?;
    assert_eq!(out.status.code(), Some(1));
    // The log (the engine it tried, first) shares stderr with the one line of the error.
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("could not connect"), "{err}");
    assert!(err.contains("tasklib backend: postgres"), "{err}");
    assert!(!err.contains("pa55-word"), "{err}");
    Ok(())
}

#[tokio::test]
async fn serves_the_queues_from_env_and_stops_cleanly_on_sigterm() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let worker = Worker::start(
        &[
            "--concurrency",
            "file_processing=2",
            "--poll-interval",
            "100ms",
        ],
        &[
            ("DATABASE_URL", db.url()),
            ("TASK_QUEUES", "file_processing"),
            ("TASKLIB_WORKER_ID", "demo-1"),
            ("RUST_LOG", "info"),
        ],
    )?;
    let file = tasks
        .submit(ProcessFile {
            path: "a.csv".into(),
        })
        .await?;
    let api = tasks
        .submit(CallApi {
            endpoint: "/x".into(),
        })
        .await?;
    let done = tasks.wait_result(file, PATIENCE).await?;
    assert_eq!(done.value_as::<String>()?, "processed a.csv on demo-1");
    // api_processing is not served by this worker.
    assert_eq!(tasks.get_result(api).await?.status, TaskStatus::Pending);

    let (exit, log) = worker.stop().await?;
    assert!(exit.success(), "exit status {exit}");
    assert!(
        log.contains("Starting TaskWorker demo-1 with concurrency=2"),
        "{log}"
    );
    assert!(log.contains("worker pool stopped"), "{log}");
    Ok(())
}

/// The database goes away for longer than `--max-outage`: the worker exits with status 1 and
/// one last line that says why, for its supervisor to start it again.
#[tokio::test]
async fn exits_non_zero_with_the_reason_when_the_database_stays_unreachable() -> TestResult {
    let cluster = TestCluster::start().await?;
    let url = cluster.create_database().await?;
    let tasks = TaskLib::connect(&url).await?;
    let worker = Worker::start(
        &[
            "--database-url",
            &url,
            "--poll-interval",
            "100ms",
            "--max-outage",
            "1s",
        ],
        &[("RUST_LOG", "warn")],
    )?;
    // Working first: it ran a task.
    let id = tasks.submit(AddNumbers { a: 2, b: 3 }).await?;
    assert_eq!(tasks.wait_result(id, PATIENCE).await?.value_as::<i64>()?, 5);
    drop(tasks);
    cluster.stop().await?;
    let (status, log) = worker.exited().await?;
    assert_eq!(status.code(), Some(1), "{log}");
    let last = log.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the worker pool stopped: the database could not be used for")
            && last.contains("(the limit is 1 s)"),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn serves_the_tasks_of_the_schema_it_is_given() -> TestResult {
    let db = TestDatabase::empty().await?;
    let tasks =
        TaskLib::connect_with(tasklib::Config::builder(db.url()).schema("ops").build()?).await?;
    let worker = Worker::start(
        &["--database-url", db.url(), "--queues", "default"],
        &[("TASKLIB_SCHEMA", "ops")],
    )?;
    let id = tasks.submit(AddNumbers { a: 20, b: 22 }).await?;
    assert_eq!(
        tasks.wait_result(id, PATIENCE).await?.value_as::<i64>()?,
        42
    );
    let (status, log) = worker.stop().await?;
    assert!(status.success(), "{log}");
    Ok(())
}

#[tokio::test]
async fn two_queues_with_their_own_concurrency_from_flags() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let worker = Worker::start(
        &[
            "--database-url",
            db.url(),
            "--queues",
            "file_processing,api_processing",
            "--concurrency",
            "file_processing=1,api_processing=3",
        ],
        &[],
    )?;
    let file = tasks
        .submit(ProcessFile {
            path: "b.csv".into(),
        })
        .await?;
    let api = tasks
        .submit_with(
            CallApi {
                endpoint: "/y".into(),
            },
            SubmitOptions::new(),
        )
        .await?;
    let sum = tasks.submit(AddNumbers { a: 1, b: 2 }).await?;
    for id in [file, api] {
        assert!(tasks.wait_result(id, PATIENCE).await?.is_completed());
    }
    // `default` is not among the queues served.
    assert_eq!(tasks.get_result(sum).await?.status, TaskStatus::Pending);
    let (exit, log) = worker.stop().await?;
    assert!(exit.success(), "exit status {exit}; log: {log}");
    assert!(log.contains("with concurrency=4"), "1 + 3 slots: {log}");
    Ok(())
}

#[tokio::test]
async fn adds_numbers_on_the_engine_the_flag_chooses() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    // The flag wins over the variable (which names an engine this build may lack).
    let worker = Worker::start(
        &["--backend", "postgres", "--queues", "default"],
        &[
            ("TASK_BACKEND_TYPE", "celery"),
            ("DATABASE_URL", db.url()),
            ("RUST_LOG", "info"),
        ],
    )?;
    // By name with positional arguments, as `tasklib submit add_numbers --args '[15, 25]'`
    // does; then typed, as a Rust producer would.
    let positional = tasks
        .submit_by_name("add_numbers", json!([15, 25]), SubmitOptions::new())
        .await?;
    let typed = tasks.submit(AddNumbers { a: 15, b: 25 }).await?;
    for id in [positional, typed] {
        let result = tasks.wait_result(id, PATIENCE).await?;
        assert_eq!(
            serde_json::to_value(&result)?,
            json!({"id": id, "status": "completed", "value": 40, "error": null})
        );
    }
    // An overflow fails for good, with the reason.
    let overflow = tasks.submit(AddNumbers { a: i64::MAX, b: 1 }).await?;
    let result = tasks.wait_result(overflow, PATIENCE).await?;
    assert_eq!(result.status, TaskStatus::Failed);
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.contains("does not fit")),
        "{result:?}"
    );

    let (exit, log) = worker.stop().await?;
    assert!(exit.success(), "exit status {exit}; log: {log}");
    let shown = format!(
        "tasklib backend: postgres (database_url={})",
        RedactedUrl::new(db.url())
    );
    assert!(log.contains(&shown), "{shown:?} missing from: {log}");
    Ok(())
}

/// A free loopback port (taken and released at once).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The value of the sample `metric{labels}` (labels as printed, in any order) in Prometheus'
/// text format.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.starts_with(&format!("{metric}{{"))
                && labels.iter().all(|label| line.contains(label))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn serves_prometheus_metrics_of_the_tasks_it_runs() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let worker = Worker::start(
        &["--queues", "default", "--metrics-listen", &listen],
        &[
            ("DATABASE_URL", db.url()),
            ("RUST_LOG", "info"),
            // A heartbeat (which samples the queue gauges) every second.
            ("TASKLIB_LOCK_TIMEOUT", "3s"),
        ],
    )?;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(tasks.submit(AddNumbers { a: n, b: 1 }).await?);
    }
    let overflow = tasks.submit(AddNumbers { a: i64::MAX, b: 1 }).await?;
    for id in ids.iter().chain([&overflow]) {
        tasks.wait_result(*id, PATIENCE).await?;
    }
    // The outcome is counted just after it is written: scrape until it shows.
    let url = format!("http://{listen}/metrics");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let text = loop {
        let text = match reqwest::get(&url).await {
            Ok(response) => response.text().await?,
            Err(_) => String::new(),
        };
        let done = sample(
            &text,
            "tasklib_tasks_completed_total",
            &[r#"name="add_numbers""#],
        );
        let sampled = sample(&text, "tasklib_queue_pending", &[r#"queue="default""#]);
        if (done == Some(3.0) && sampled == Some(0.0)) || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let add = [r#"name="add_numbers""#, r#"queue="default""#];
    assert_eq!(
        sample(&text, "tasklib_tasks_completed_total", &add),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tasklib_tasks_failed_total", &add),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tasklib_task_run_seconds_count", &add),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tasklib_task_wait_seconds_count", &add),
        Some(4.0),
        "{text}"
    );
    // The gauges, sampled at a heartbeat: nothing is left to do.
    assert_eq!(
        sample(&text, "tasklib_queue_pending", &[r#"queue="default""#]),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "tasklib_queue_running", &[r#"queue="default""#]).is_some(),
        "{text}"
    );
    assert!(
        text.contains("tasklib_task_run_seconds_bucket{"),
        "histograms, not summaries: {text}"
    );
    let (exit, log) = worker.stop().await?;
    assert!(exit.success(), "exit status {exit}; log: {log}");
    assert!(log.contains("serving Prometheus metrics"), "{log}");
    Ok(())
}
