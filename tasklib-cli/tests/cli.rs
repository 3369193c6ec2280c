//! The `tasklib` admin command, run as a real process against a real database.

use std::process::{Command, Output};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tasklib::migration::MigratorTrait;
use tasklib::{
    BackendType, Schedule, SubmitOptions, Task, TaskContext, TaskError, TaskLib, WorkerEvent,
};
use tasklib_test_utils::TestDatabase;
use uuid::Uuid;
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

/// The demo worker's `add_numbers` (`examples/worker_cli`), which the workers in these tests
/// run. The `tasklib` command knows nothing of it.
#[derive(Debug, Serialize, Deserialize, Validate)]
struct AddNumbers {
    a: i64,
    b: i64,
}

impl Task for AddNumbers {
    const NAME: &'static str = "add_numbers";
    type Output = i64;
}

/// Registers the demo worker's `add_numbers` handler on `tasks`.
fn register_adder(tasks: &TaskLib) -> tasklib::Result<()> {
    tasks.register(|numbers: AddNumbers, _: TaskContext| async move {
        Ok::<_, TaskError>(numbers.a + numbers.b)
    })
}

/// Runs `tasklib <args>` against `db` (through DATABASE_URL, as an operator would).
fn tasklib(db: &TestDatabase, args: &[&str]) -> std::io::Result<Output> {
    tasklib_with(db, args, &[])
}

/// [`tasklib`] with more variables set; the engine is the default unless they choose one.
fn tasklib_with(db: &TestDatabase, args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tasklib"));
    command
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("TASKLIB_CONNECT_TIMEOUT", "2s")
        .env_remove("TASK_BACKEND_TYPE");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output()
}

/// [`tasklib`] on a blocking thread, so that a worker on this test's runtime keeps running.
async fn tasklib_async(db: &TestDatabase, args: &[&str]) -> std::io::Result<Output> {
    let url = db.url().to_owned();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tasklib"))
            .args(args)
            .env("DATABASE_URL", url)
            .env("TASKLIB_CONNECT_TIMEOUT", "2s")
            .env_remove("TASK_BACKEND_TYPE")
            .output()
    })
    .await
    .map_err(std::io::Error::other)?
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
    let applied = stdout(&out);
    let expected = format!(
        "applied {} migration(s): m20261123_000001_create_tasks, ",
        tasklib::migration::Migrator::migrations().len()
    );
    assert!(applied.starts_with(&expected), "{applied}");
    let out = tasklib(&db, &["migrate"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "no migrations pending: the schema is up to date"
    );
    // Other commands now work, and do not migrate by themselves.
    let out = tasklib(&db, &["status"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "no tasks");
    Ok(())
}

#[tokio::test]
async fn every_command_works_in_a_schema_of_its_own() -> TestResult {
    let db = TestDatabase::empty().await?;
    let out = tasklib(&db, &["--schema", "ops", "migrate"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tasklib(
        &db,
        &[
            "--schema",
            "ops",
            "submit",
            "add_numbers",
            "--args",
            "[1, 2]",
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    // The variable does what the flag does.
    let out = tasklib_with(&db, &["status", "--json"], &[("TASKLIB_SCHEMA", "ops")])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["queues"][0]["counts"]["pending"], 1, "{json}");
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let in_public: bool = client
        .query_one("SELECT to_regclass('public.tasks') IS NOT NULL", &[])
        .await?
        .get(0);
    assert!(!in_public, "the CLI wrote into public");
    let out = tasklib(&db, &["--schema", "Bad-Name", "status"])?;
    let err = assert_one_line_error(&out, 1)?;
    assert!(err.contains("schema"), "{err}");
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
        "trace         -",
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
async fn show_has_the_history_retry_force_reruns_and_delete_removes() -> TestResult {
    let (db, tasks, ids) = seeded().await?;
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .execute(
            r#"UPDATE tasks SET progress = '{"rows": 5}',
                    errors = '[{"attempt": 3, "error": "disk full", "worker": "w-1",
                                "at": "2026-12-01T10:00:00Z"}]'
               WHERE args->>'report' = 'broken'"#,
            &[],
        )
        .await?;
    let out = tasklib(&db, &["show", &ids[2].to_string()])?;
    let text = stdout(&out);
    for expected in [
        r#"progress      {"rows":5}"#,
        "failed attempts (oldest first):",
        "attempt 3 at 2026-12-01T10:00:00+00:00 on w-1: disk full",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    // A completed task: plain retry refuses it, --force runs it again.
    let err = assert_one_line_error(&tasklib(&db, &["retry", &ids[0].to_string()])?, 1)?;
    assert!(err.contains("completed") && err.contains("force"), "{err}");
    let out = tasklib(&db, &["retry", "--force", &ids[0].to_string()])?;
    assert_eq!(
        stdout(&out).trim(),
        format!("re-queued {} to run again", ids[0]),
        "{}",
        stderr(&out)
    );
    assert!(tasks.get_task(ids[0]).await?.ok_or("missing")?.is_pending());

    let out = tasklib(&db, &["delete", &ids[1].to_string()])?;
    assert_eq!(
        stdout(&out).trim(),
        format!("deleted {} (1 row)", ids[1]),
        "{}",
        stderr(&out)
    );
    assert!(tasks.get_task(ids[1]).await?.is_none());
    let err = assert_one_line_error(&tasklib(&db, &["delete", &ids[1].to_string()])?, 1)?;
    assert!(err.contains("no task with id"), "{err}");
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
    for expected in [
        "prune",
        "submit",
        "result",
        "DATABASE_URL",
        "TASK_BACKEND_TYPE",
    ] {
        assert!(help.contains(expected), "{expected} missing from: {help}");
    }
    assert!(
        !help.contains("hidden-pw"),
        "--help shows the URL's value: {help}"
    );
    Ok(())
}

/// Submits with the command and reads the result with it, while a worker (in this process,
/// registered as the demo worker registers `add_numbers`) runs the tasks.
#[tokio::test]
async fn submit_then_result_wait_against_a_running_worker() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    register_adder(&tasks)?;
    let pool = tasks.spawn_workers(2)?;

    for args in ["[15, 25]", r#"{"a": 15, "b": 25}"#] {
        let out = tasklib_async(&db, &["submit", "add_numbers", "--args", args]).await?;
        assert!(out.status.success(), "{}", stderr(&out));
        let printed = stdout(&out);
        assert_eq!(printed.lines().count(), 1, "{printed}");
        let id: Uuid = printed.trim().parse()?;

        let out =
            tasklib_async(&db, &["result", &id.to_string(), "--wait", "30s", "--json"]).await?;
        assert!(out.status.success(), "{}", stderr(&out));
        let json: Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(
            json,
            json!({"id": id, "status": "completed", "value": 40, "error": null})
        );

        let out = tasklib_async(&db, &["result", &id.to_string()]).await?;
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("status  completed") && text.contains("value   40"),
            "{text}"
        );
    }

    // Arguments that do not fit the worker's type: the task fails for good, and `result`
    // prints it and exits 1 with the reason.
    let out = tasklib_async(&db, &["submit", "add_numbers", "--args", r#"["x", 25]"#]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let out = tasklib_async(&db, &["result", &id, "--wait", "30s", "--json"]).await?;
    let err = assert_one_line_error(&out, 1)?;
    assert!(err.contains(&format!("task {id} failed")), "{err}");
    let json: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["status"], "failed");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("do not deserialize")),
        "{json}"
    );

    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn submit_takes_queue_delay_and_priority_and_result_says_what_is_unfinished() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let out = tasklib(
        &db,
        &[
            "submit",
            "add_numbers",
            "--args",
            r#"{"a": 1, "b": 2}"#,
            "--queue",
            "math",
            "--delay",
            "10m",
            "--priority",
            "-3",
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let id: Uuid = stdout(&out).trim().parse()?;
    let task = tasks.get_task(id).await?.ok_or("not submitted")?;
    assert_eq!(
        (task.name.as_str(), task.queue.as_str(), task.priority),
        ("add_numbers", "math", -3)
    );
    assert_eq!(task.args, json!({"a": 1, "b": 2}));
    assert!(task.scheduled_at > chrono::Utc::now() + chrono::Duration::minutes(9));

    // Not finished: printed as it stands, and exit 1.
    let out = tasklib(&db, &["result", &id.to_string()])?;
    let err = assert_one_line_error(&out, 1)?;
    assert!(err.contains("has not finished: it is pending"), "{err}");
    assert!(stdout(&out).contains("status  pending"), "{}", stdout(&out));
    let out = tasklib(
        &db,
        &["result", &id.to_string(), "--wait", "200ms", "--json"],
    )?;
    let err = assert_one_line_error(&out, 1)?;
    assert!(err.contains("did not finish within"), "{err}");
    let json: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["status"], "pending");

    // No arguments at all is `{}`.
    let out = tasklib(&db, &["submit", "cleanup"])?;
    let id: Uuid = stdout(&out).trim().parse()?;
    assert_eq!(
        tasks.get_task(id).await?.ok_or("not submitted")?.args,
        json!({})
    );

    // Arguments that are not a JSON object or array are a bad command line.
    for args in ["[15", "42"] {
        let err = assert_one_line_error(
            &tasklib(&db, &["submit", "add_numbers", "--args", args])?,
            2,
        )?;
        assert!(err.contains("--args"), "{err}");
    }
    assert_one_line_error(&tasklib(&db, &["submit", " "])?, 2)?;
    Ok(())
}

#[tokio::test]
async fn result_of_an_unknown_or_malformed_id_fails() -> TestResult {
    let db = TestDatabase::new().await?;
    let missing = Uuid::now_v7().to_string();
    for args in [
        &["result", missing.as_str()][..],
        &["result", missing.as_str(), "--wait", "5s"][..],
        &["result", missing.as_str(), "--json"][..],
    ] {
        let out = tasklib(&db, args)?;
        let err = assert_one_line_error(&out, 1)?;
        assert!(err.contains(&format!("no task with id {missing}")), "{err}");
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
    let err = assert_one_line_error(&tasklib(&db, &["result", "not-a-uuid"])?, 1)?;
    assert!(err.contains("not a task id"), "{err}");
    Ok(())
}

#[tokio::test]
async fn the_engine_comes_from_the_flag_or_the_variable() -> TestResult {
    let db = TestDatabase::new().await?;
    // Unknown names: a bad command line from the flag, a bad configuration from the
    // variable; both name the valid ones.
    let from_flag = tasklib(&db, &["status", "--backend", "nosuch"])?;
    let from_env = tasklib_with(&db, &["status"], &[("TASK_BACKEND_TYPE", "nosuch")])?;
    for (out, code) in [(from_flag, 2), (from_env, 1)] {
        let err = assert_one_line_error(&out, code)?;
        assert!(
            err.contains("nosuch") && err.contains("postgres, celery, temporal, hatchet"),
            "{err}"
        );
    }
    // The flag wins over the variable.
    let out = tasklib_with(
        &db,
        &["status", "--backend", "postgres"],
        &[("TASK_BACKEND_TYPE", "nosuch")],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    // Hatchet is known and refused, saying why.
    let err = assert_one_line_error(&tasklib(&db, &["status", "--backend", "hatchet"])?, 1)?;
    assert!(err.contains("not supported yet"), "{err}");

    let Some((engine, feature)) = engine_not_compiled_in() else {
        return Ok(()); // every engine is compiled in: nothing more to refuse
    };
    let id = Uuid::now_v7().to_string();
    for out in [
        tasklib(
            &db,
            &[
                "submit",
                "add_numbers",
                "--args",
                "[1, 2]",
                "--backend",
                engine.as_str(),
            ],
        )?,
        tasklib_with(
            &db,
            &["result", &id],
            &[("TASK_BACKEND_TYPE", engine.as_str())],
        )?,
        tasklib(&db, &["status", "--backend", engine.as_str()])?,
    ] {
        let err = assert_one_line_error(&out, 1)?;
        assert!(
            err.contains(&format!("`{engine}` backend is not compiled in"))
                && err.contains(&format!("cargo feature `{feature}`")),
            "{err}"
        );
    }
    // Another engine than PostgreSQL does not ask for a database.
    let out = Command::new(env!("CARGO_BIN_EXE_tasklib"))
        .args(["result", &id, "--backend", engine.as_str()])
        .env_remove("DATABASE_URL")
        .env_remove("TASK_BACKEND_TYPE")
        .output()?;
    let err = assert_one_line_error(&out, 1)?;
    assert!(err.contains(&format!("cargo feature `{feature}`")), "{err}");
    Ok(())
}

#[tokio::test]
async fn submit_with_a_unique_key_prints_the_holder_and_says_it_was_a_duplicate() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let submit = |period: Option<&str>| {
        let mut args = vec!["submit", "export", "--args", r#"{"report": "q3"}"#];
        args.extend(["--unique-key", "q3"]);
        if let Some(period) = period {
            args.extend(["--unique-period", period]);
        }
        tasklib(&db, &args)
    };
    let first = submit(None)?;
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(stderr(&first), "", "a new task is not a duplicate");
    let id: Uuid = stdout(&first).trim().parse()?;
    let again = submit(None)?;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again).trim().parse::<Uuid>()?, id);
    assert!(stderr(&again).contains("duplicate"), "{}", stderr(&again));

    // Per period: another scope, so another task, then its duplicate.
    let windowed = submit(Some("1h"))?;
    let windowed_id: Uuid = stdout(&windowed).trim().parse()?;
    assert_ne!(windowed_id, id);
    let record = tasks.get_task(windowed_id).await?.ok_or("not submitted")?;
    assert!(record.unique_window.is_some());
    assert_eq!(
        stdout(&submit(Some("1h"))?).trim().parse::<Uuid>()?,
        windowed_id
    );
    let shown = stdout(&tasklib(&db, &["show", &id.to_string()])?);
    assert!(shown.contains("q3 (while unfinished)"), "{shown}");

    // A period without a key, or a bad one, is a bad command line.
    assert_one_line_error(
        &tasklib(&db, &["submit", "export", "--unique-period", "1h"])?,
        2,
    )?;
    assert_one_line_error(
        &tasklib(
            &db,
            &[
                "submit",
                "export",
                "--unique-key",
                "k",
                "--unique-period",
                "soon",
            ],
        )?,
        2,
    )?;
    Ok(())
}

#[tokio::test]
async fn pause_and_resume_show_in_status() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    tasks
        .submit_with(
            Export { report: "r".into() },
            SubmitOptions::new().queue("reports"),
        )
        .await?;
    let out = tasklib(&db, &["pause", "reports"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("paused queue reports"),
        "{}",
        stdout(&out)
    );
    // A queue with no task yet can be paused too, and is listed.
    assert!(tasklib(&db, &["pause", "empty"])?.status.success());
    let json: Value = serde_json::from_slice(&tasklib(&db, &["status", "--json"])?.stdout)?;
    let queues = json["queues"].as_array().ok_or("no queues")?;
    let paused = |name: &str| {
        queues
            .iter()
            .find(|q| q["queue"] == name)
            .map(|q| q["paused"].clone())
    };
    assert_eq!(paused("reports"), Some(json!(true)), "{json}");
    assert_eq!(paused("empty"), Some(json!(true)), "{json}");
    let table = stdout(&tasklib(&db, &["status"])?);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("reports") && l.contains("paused")),
        "{table}"
    );

    assert!(tasklib(&db, &["resume", "reports"])?.status.success());
    let json: Value = serde_json::from_slice(&tasklib(&db, &["status", "--json"])?.stdout)?;
    let queues = json["queues"].as_array().ok_or("no queues")?;
    let reports = queues
        .iter()
        .find(|q| q["queue"] == "reports")
        .ok_or("reports missing")?;
    assert_eq!(reports["paused"], json!(false), "{json}");
    assert!(
        tasks
            .queue_status()
            .await?
            .iter()
            .any(|q| q.queue == "empty" && q.paused)
    );
    // An empty queue name is refused, in one line that says why.
    let err = assert_one_line_error(&tasklib(&db, &["pause", " "])?, 1)?;
    assert!(err.contains("queue name must not be empty"), "{err}");
    Ok(())
}

#[tokio::test]
async fn limit_sets_and_clears_a_queues_limits_and_status_shows_them() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let out = tasklib(
        &db,
        &["limit", "partner", "--concurrency", "5", "--rate", "100/1m"],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("concurrency 5, 100 per 60s"),
        "{}",
        stdout(&out)
    );
    let status = tasks.queue_status().await?;
    let partner = status
        .iter()
        .find(|q| q.queue == "partner")
        .ok_or("a limited queue is listed")?;
    assert_eq!(partner.limits.concurrency, Some(5));
    assert_eq!(
        partner.limits.rate.map(|r| (r.starts, r.period.as_secs())),
        Some((100, 60))
    );
    let json: Value = serde_json::from_slice(&tasklib(&db, &["status", "--json"])?.stdout)?;
    let listed = json["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["queue"] == "partner"))
        .ok_or("partner missing")?;
    assert_eq!(listed["limits"]["concurrency"], json!(5), "{json}");
    assert_eq!(
        listed["limits"]["rate"]["period_seconds"],
        json!(60.0),
        "{json}"
    );
    let table = stdout(&tasklib(&db, &["status"])?);
    assert!(table.contains("LIMITS"), "{table}");

    // No limit given: the limits go.
    let out = tasklib(&db, &["limit", "partner"])?;
    assert!(stdout(&out).contains("no limits"), "{}", stdout(&out));
    assert!(
        tasks
            .queue_status()
            .await?
            .iter()
            .all(|q| q.limits.is_empty())
    );
    // Bad limits are a bad command line.
    for bad in [
        vec!["limit", "partner", "--concurrency", "0"],
        vec!["limit", "partner", "--rate", "10"],
        vec!["limit", "partner", "--rate", "10/100ms"],
        vec!["limit", "partner", "--rate", "0/1m"],
    ] {
        assert_one_line_error(&tasklib(&db, &bad)?, 2)?;
    }
    Ok(())
}

#[tokio::test]
async fn schedules_lists_each_schedule_with_its_last_tick_and_next_run() -> TestResult {
    let db = TestDatabase::new().await?;
    let out = tasklib(&db, &["schedules"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("no schedules"), "{}", stdout(&out));

    // A worker pool registers its schedule; wait for its first tick, then stop it.
    let tasks = TaskLib::connect(db.url()).await?;
    tasks.register(|args: AddNumbers, _: TaskContext| async move {
        Ok::<_, TaskError>(args.a + args.b)
    })?;
    tasks.schedule(
        Schedule::new("sums", "* * * * * *")?
            .time_zone("Europe/Paris")?
            .args(AddNumbers { a: 1, b: 2 }),
    )?;
    let pool = tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let first_tick = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if let WorkerEvent::ScheduleTicked { tick, .. } = events.recv().await? {
                return Ok::<_, tokio::sync::broadcast::error::RecvError>(tick);
            }
        }
    })
    .await??;
    pool.shutdown().await?;

    let out = tasklib(&db, &["schedules"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("NAME"), "{text}");
    for column in ["CRON", "ZONE", "MISSED", "LAST TICK", "NEXT RUN"] {
        assert!(lines[0].contains(column), "{text}");
    }
    assert!(lines[1].starts_with("sums"), "{text}");
    for cell in ["add_numbers", "* * * * * *", "Europe/Paris", "skip"] {
        assert!(lines[1].contains(cell), "{cell}: {text}");
    }

    let out = tasklib(&db, &["schedules", "--json"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout)?;
    let sums = &json["schedules"][0];
    assert_eq!(sums["name"], "sums", "{json}");
    assert_eq!(sums["task"], "add_numbers");
    assert_eq!(sums["cron"], "* * * * * *");
    assert_eq!(sums["time_zone"], "Europe/Paris");
    assert_eq!(sums["missed"], "skip");
    let time = |field: &str| {
        sums[field]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .ok_or(format!("{field} is not a time: {json}"))
    };
    let last_tick = time("last_tick")?;
    assert!(last_tick >= first_tick, "{json}");
    assert!(time("next_run")? > last_tick, "{json}");
    assert!(sums["last_task_id"].is_string(), "{json}");
    // The last tick is the one shown in the table.
    let shown = last_tick
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(lines[1].contains(&shown), "{shown}: {text}");
    Ok(())
}

#[tokio::test]
async fn workers_lists_the_running_pools() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    register_adder(&tasks)?;
    let out = tasklib_async(&db, &["workers"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "no worker pool is running");

    let pool = tasks.spawn_workers(3)?;
    // The pool writes its row at its first heartbeat, just after it starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let json = loop {
        let out = tasklib_async(&db, &["workers", "--json"]).await?;
        assert!(out.status.success(), "{}", stderr(&out));
        let json: Value = serde_json::from_slice(&out.stdout)?;
        if json["workers"].as_array().is_some_and(|w| !w.is_empty()) {
            break json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never showed"
        );
    };
    let worker = &json["workers"][0];
    assert_eq!(worker["worker_id"], pool.worker_id());
    assert_eq!(worker["slots"], 3);
    assert_eq!(worker["pid"], std::process::id());
    let out = tasklib_async(&db, &["workers"]).await?;
    let table = stdout(&out);
    assert!(
        table.contains("HEARTBEAT AGO") && table.contains(pool.worker_id()),
        "{table}"
    );
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn dashboard_serves_the_pages_and_metrics_and_keeps_to_loopback_without_a_password()
-> TestResult {
    use tokio::io::AsyncBufReadExt;

    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    register_adder(&tasks)?;
    let pool = tasks.spawn_workers(2)?;
    let id = tasks.submit(AddNumbers { a: 1, b: 2 }).await?;
    tasks
        .wait_result(id, std::time::Duration::from_secs(30))
        .await?;

    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_tasklib"))
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", db.url())
        .env_remove("TASKLIB_DASHBOARD_USER")
        .env_remove("TASKLIB_DASHBOARD_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = server.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await??
        .ok_or("the dashboard printed nothing")?;
    let base = first
        .strip_prefix("dashboard on ")
        .ok_or_else(|| format!("unexpected first line: {first}"))?
        .trim_end_matches('/')
        .to_owned();

    let page = reqwest::get(format!("{base}/tasks/{id}")).await?;
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let html = page.text().await?;
    assert!(html.contains("add_numbers"), "{html}");
    assert!(
        !html.contains("do-retry"),
        "a completed task offers no retry"
    );
    assert!(
        html.contains("do-delete"),
        "the standalone server allows actions"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("tasklib_queue_pending{queue=\"default\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tasklib_queue_running{queue=\"default\"}"),
        "{metrics}"
    );
    server.kill().await?;

    // Beyond loopback without a user and password: refused, one line, non-zero.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tasklib"))
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .env("DATABASE_URL", db.url())
        .env_remove("TASKLIB_DASHBOARD_USER")
        .env_remove("TASKLIB_DASHBOARD_PASSWORD")
        .output()
        .await?;
    let err = assert_one_line_error(&out, 1)?;
    assert!(err.contains("TASKLIB_DASHBOARD_USER"), "{err}");
    pool.shutdown().await?;
    Ok(())
}
