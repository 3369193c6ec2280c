//! The worker command made by `tasklib::cli::run_worker_command`, run as a real process.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tasklib::{SubmitOptions, TaskLib};
use tasklib_examples::demo_tasks::{CallApi, ProcessFile};
use tasklib_test_utils::TestDatabase;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const WORKER: &str = env!("CARGO_BIN_EXE_demo-worker");

fn run(args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Output> {
    let mut cmd = Command::new(WORKER);
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TASK_QUEUES");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
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
        "--queues",
        "--concurrency",
        "--database-url",
        "DATABASE_URL",
        "TASK_QUEUES",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
    assert!(!help.contains("very-secret"), "{help}");
    Ok(())
}

#[test]
fn bad_command_lines_exit_2_with_one_line() -> TestResult {
    for args in [
        &["--frobnicate"][..],
        &["--database-url", "postgres://h/db", "--concurrency", "0"][..],
    ] {
        let out = run(args, &[])?;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // No database at all: clap says which flag or variable is missing.
    let out = run(&[], &[])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--database-url"));
    Ok(())
}

#[test]
fn an_unreachable_database_exits_1_without_the_password() -> TestResult {
    let out = run(
        &["--database-url", "postgres://w:pa55-word@127.0.0.1:1/app"],
        &[("TASKLIB_CONNECT_TIMEOUT", "1s")],
    )?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not connect"), "{err}");
    assert!(!err.contains("pa55-word"), "{err}");
    Ok(())
}

/// Polls until `id` is completed (the worker is another process: no event to await).
async fn completed(
    tasks: &TaskLib,
    id: uuid::Uuid,
) -> Result<tasklib::TaskRecord, Box<dyn std::error::Error + Send + Sync>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let task = tasks.get_task(id).await?.ok_or("missing")?;
        if task.is_completed() || Instant::now() > deadline {
            return Ok(task);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serves_the_queues_from_env_and_stops_cleanly_on_sigterm() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let mut child = Command::new(WORKER)
        .args([
            "--concurrency",
            "file_processing=2",
            "--poll-interval",
            "100ms",
        ])
        .env("DATABASE_URL", db.url())
        .env("TASK_QUEUES", "file_processing")
        .env("TASKLIB_WORKER_ID", "demo-1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
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
    let done = completed(&tasks, file).await?;
    assert_eq!(
        done.result_as::<String>()?.as_deref(),
        Some("processed a.csv on demo-1")
    );
    // api_processing is not served by this worker.
    assert!(tasks.get_task(api).await?.ok_or("missing")?.is_pending());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait()? {
            break exit;
        }
        if Instant::now() > deadline {
            child.kill()?;
            return Err("worker did not stop after SIGTERM".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut log)?;
    }
    assert!(
        log.contains("Starting TaskWorker demo-1 with concurrency=2"),
        "{log}"
    );
    assert!(log.contains("worker pool stopped"), "{log}");
    Ok(())
}

#[tokio::test]
async fn per_queue_concurrency_from_flags() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let mut child = Command::new(WORKER)
        .args([
            "--database-url",
            db.url(),
            "--queues",
            "file_processing,api_processing",
            "--concurrency",
            "file_processing=2,api_processing=8",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let ids = [
        tasks
            .submit(ProcessFile {
                path: "b.csv".into(),
            })
            .await?,
        tasks
            .submit_with(
                CallApi {
                    endpoint: "/y".into(),
                },
                SubmitOptions::new(),
            )
            .await?,
    ];
    for id in ids {
        assert!(completed(&tasks, id).await?.is_completed());
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let exit = child.wait()?;
    assert!(exit.success());
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut log)?;
    }
    assert!(log.contains("with concurrency=10"), "2 + 8 slots: {log}");
    Ok(())
}
