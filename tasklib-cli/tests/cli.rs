//! The `tasklib` admin command, run as a real process against a real database.

use std::process::{Command, Output};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasklib::{SubmitOptions, Task, TaskLib};
use tasklib_test_utils::TestDatabase;
use validator::Validate;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Export {
    report: String,
}

impl Task for Export {
    const NAME: &'static str = "export";
    type Output = ();
}

/// Runs `tasklib <args>` against `db` (through DATABASE_URL, as an operator would).
fn tasklib(db: &TestDatabase, args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_tasklib"))
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("TASKLIB_CONNECT_TIMEOUT", "2s")
        .output()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure: exit code `code`, one line on stderr, no panic.
fn assert_one_line_error(out: &Output, code: i32) -> Result<String, String> {
    let err = stderr(out);
    if out.status.code() != Some(code) {
        return Err(format!(
            "expected exit {code}, got {:?}; stderr: {err}",
            out.status.code()
        ));
    }
    if err.trim().lines().count() != 1 || err.contains("panicked") || err.contains("backtrace") {
        return Err(format!("expected one error line, got: {err}"));
    }
    Ok(err)
}

async fn seeded()
-> Result<(TestDatabase, TaskLib, Vec<uuid::Uuid>), Box<dyn std::error::Error + Send + Sync>> {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let mut ids = Vec::new();
    for (report, queue, tag) in [
        ("daily", "default", "daily"),
        ("weekly", "reports", "weekly"),
        ("broken", "reports", "weekly"),
    ] {
        ids.push(
            tasks
                .submit_with(
                    Export {
                        report: report.into(),
                    },
                    SubmitOptions::new().queue(queue).tag("batch", tag),
                )
                .await?,
        );
    }
    let client = {
        let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
    };
    client
        .execute(
            "UPDATE tasks SET state = 'failed', error = 'disk full: /var/exports\ncaused by: ENOSPC',
                    completed_at = now() - interval '10 days', attempt = 4, retry_count = 3
             WHERE args->>'report' = 'broken'",
            &[],
        )
        .await?;
    client
        .execute(
            "UPDATE tasks SET state = 'completed', completed_at = now() - interval '8 days', attempt = 1
             WHERE args->>'report' = 'daily'",
            &[],
        )
        .await?;
    Ok((db, tasks, ids))
}

#[tokio::test]
async fn migrate_creates_the_schema() -> TestResult {
    let db = TestDatabase::empty().await?;
    let out = tasklib(&db, &["migrate"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "migrations applied");
    // Other commands now work, and do not migrate by themselves.
    let out = tasklib(&db, &["status"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "no tasks");
    Ok(())
}

#[tokio::test]
async fn status_shows_counts_per_queue_as_a_table_and_as_json() -> TestResult {
    let (db, _tasks, _) = seeded().await?;
    let out = tasklib(&db, &["status"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("QUEUE"), "{text}");
    assert!(
        lines[1].starts_with("default") && lines[2].starts_with("reports"),
        "{text}"
    );
    // Aligned: every column starts at the same offset on every line.
    let col = |line: &str| {
        line.find("PENDING")
            .or_else(|| line.find(|c: char| c.is_ascii_digit()))
    };
    assert_eq!(col(lines[0]), col(lines[1]), "{text}");

    let out = tasklib(&db, &["status", "--json"])?;
    let json: Value = serde_json::from_slice(&out.stdout)?;
    let reports = &json["queues"][1];
    assert_eq!(reports["queue"], "reports");
    assert_eq!(reports["counts"]["pending"], 1);
    assert_eq!(reports["counts"]["failed_permanent"], 1);
    assert!(reports["oldest_pending_age_seconds"].is_number());
    Ok(())
}

#[tokio::test]
async fn list_filters_and_prints_json_for_scripts() -> TestResult {
    let (db, _tasks, ids) = seeded().await?;
    let out = tasklib(
        &db,
        &[
            "list",
            "--queue",
            "reports",
            "--tag",
            "batch=weekly",
            "--json",
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout)?;
    let listed: Vec<&str> = json
        .as_array()
        .ok_or("not an array")?
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(listed, vec![ids[2].to_string(), ids[1].to_string()]);

    let out = tasklib(&db, &["list", "--state", "failed"])?;
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains(&ids[2].to_string()) && text.contains("disk full"),
        "{text}"
    );

    let out = tasklib(&db, &["list", "--state", "done"])?;
    let err = assert_one_line_error(&out, 2)?;
    assert!(err.contains("done"), "{err}");
    Ok(())
}

#[tokio::test]
async fn show_prints_every_field_and_the_error_in_full() -> TestResult {
    let (db, _tasks, ids) = seeded().await?;
    let out = tasklib(&db, &["show", &ids[2].to_string()])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "state",
        "failed",
        "retries       3 of 3",
        "disk full: /var/exports\ncaused by: ENOSPC",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let out = tasklib(&db, &["show", &ids[0].to_string(), "--json"])?;
    let json: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["state"], "completed");

    let err = assert_one_line_error(&tasklib(&db, &["show", "not-a-uuid"])?, 1)?;
    assert!(
        err.contains("not-a-uuid") && err.contains("not a task id"),
        "{err}"
    );
    let missing = uuid::Uuid::now_v7();
    let err = assert_one_line_error(&tasklib(&db, &["show", &missing.to_string()])?, 1)?;
    assert!(err.contains("no task with id"), "{err}");
    Ok(())
}

#[tokio::test]
async fn retry_cancel_and_prune_change_the_rows() -> TestResult {
    let (db, tasks, ids) = seeded().await?;
    // A pending task cannot be retried: a one-line error.
    let err = assert_one_line_error(&tasklib(&db, &["retry", &ids[1].to_string()])?, 1)?;
    assert!(err.contains("pending"), "{err}");

    let out = tasklib(&db, &["retry", "--failed", "--name", "export"])?;
    assert_eq!(stdout(&out).trim(), "re-queued 1 task", "{}", stderr(&out));
    assert!(tasks.get_task(ids[2]).await?.ok_or("missing")?.is_pending());

    let out = tasklib(&db, &["cancel", &ids[1].to_string()])?;
    assert_eq!(stdout(&out).trim(), format!("cancelled {}", ids[1]));
    assert!(
        tasks
            .get_task(ids[1])
            .await?
            .ok_or("missing")?
            .is_cancelled()
    );
    let out = tasklib(&db, &["retry", &ids[1].to_string()])?;
    assert_eq!(
        stdout(&out).trim(),
        format!("re-queued {}", ids[1]),
        "{}",
        stderr(&out)
    );

    let out = tasklib(
        &db,
        &["prune", "--state", "completed", "--older-than", "7d"],
    )?;
    assert_eq!(stdout(&out).trim(), "deleted 1 task", "{}", stderr(&out));
    assert!(tasks.get_task(ids[0]).await?.is_none());
    let err = assert_one_line_error(
        &tasklib(&db, &["prune", "--state", "pending", "--older-than", "7d"])?,
        1,
    )?;
    assert!(err.contains("pending"), "{err}");
    Ok(())
}

#[tokio::test]
async fn bad_flags_and_unreachable_databases_are_one_line_errors() -> TestResult {
    let db = TestDatabase::new().await?;
    assert_one_line_error(&tasklib(&db, &["status", "--frobnicate"])?, 2)?;
    assert_one_line_error(
        &tasklib(
            &db,
            &["prune", "--state", "completed", "--older-than", "soon"],
        )?,
        2,
    )?;

    let out = Command::new(env!("CARGO_BIN_EXE_tasklib"))
        .args([
            "status",
            "--database-url",
            "postgres://ops:s3cr3t-pw@127.0.0.1:1/app",
        ])
        .env("TASKLIB_CONNECT_TIMEOUT", "1s")
        .env_remove("DATABASE_URL")
        .output()?;
    let err = assert_one_line_error(&out, 1)?;
    assert!(err.contains("could not connect"), "{err}");
    assert!(!err.contains("s3cr3t-pw"), "password leaked: {err}");

    let out = Command::new(env!("CARGO_BIN_EXE_tasklib"))
        .arg("status")
        .env_remove("DATABASE_URL")
        .output()?;
    let err = assert_one_line_error(&out, 1)?;
    assert!(err.contains("DATABASE_URL"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_tasklib"))
        .arg("--help")
        .env("DATABASE_URL", "postgres://u:hidden-pw@h/db")
        .output()?;
    assert!(out.status.success());
    let help = stdout(&out);
    assert!(
        help.contains("prune") && help.contains("DATABASE_URL"),
        "{help}"
    );
    assert!(
        !help.contains("hidden-pw"),
        "--help shows the URL's value: {help}"
    );
    Ok(())
}
