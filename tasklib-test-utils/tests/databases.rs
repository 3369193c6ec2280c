//! The test databases are real, separate, migrated or empty as asked, and gone when dropped.

use tasklib_test_utils::TestDatabase;
use tokio_postgres::NoTls;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn databases_are_separate_and_migrated() -> TestResult {
    let a = TestDatabase::new().await?;
    let b = TestDatabase::new().await?;
    assert_ne!(a.name(), b.name());
    let ca = connect(a.url()).await?;
    let cb = connect(b.url()).await?;
    ca.batch_execute("INSERT INTO tasks (name, args) VALUES ('only_in_a', '{}')")
        .await?;
    let in_a: i64 = ca
        .query_one("SELECT count(*) FROM tasks", &[])
        .await?
        .get(0);
    let in_b: i64 = cb
        .query_one("SELECT count(*) FROM tasks", &[])
        .await?
        .get(0);
    assert_eq!((in_a, in_b), (1, 0));
    Ok(())
}

#[tokio::test]
async fn empty_databases_have_no_tables_and_sea_orm_can_connect() -> TestResult {
    let db = TestDatabase::empty().await?;
    let client = connect(db.url()).await?;
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(tables, 0);
    let orm = sea_orm::Database::connect(db.url()).await?;
    orm.ping().await?;
    orm.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_dropped_database_is_gone() -> TestResult {
    let keeper = TestDatabase::empty().await?;
    let db = TestDatabase::new().await?;
    let name = db.name().to_owned();
    // Even with a connection still open: the drop disconnects it.
    let _open = connect(db.url()).await?;
    drop(db);
    let client = connect(keeper.url()).await?;
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .await?
        .get(0);
    assert!(!exists, "{name} still exists");
    Ok(())
}

#[tokio::test]
async fn debug_output_does_not_show_the_url() -> TestResult {
    let db = TestDatabase::empty().await?;
    let shown = format!("{db:?}");
    assert!(shown.contains(db.name()));
    assert!(!shown.contains("postgres://"));
    Ok(())
}

#[test]
fn many_tests_at_once_share_one_server_and_one_template() -> TestResult {
    // Like a test harness: each thread has its own runtime, all start at the same moment.
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || -> Result<(String, i64, i64), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                start.wait();
                runtime.block_on(async {
                    let db = TestDatabase::new().await.map_err(|e| e.to_string())?;
                    let client = connect(db.url()).await.map_err(|e| e.to_string())?;
                    let row = client
                        .query_one(
                            "SELECT (SELECT system_identifier FROM pg_control_system()), \
                             (SELECT count(*) FROM tasks)",
                            &[],
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((db.name().to_owned(), row.get(0), row.get(1)))
                })
            })
        })
        .collect();
    let mut names = std::collections::HashSet::new();
    let mut servers = std::collections::HashSet::new();
    for thread in threads {
        let (name, server, tasks) = thread.join().map_err(|_| "a thread panicked")??;
        names.insert(name);
        servers.insert(server);
        assert_eq!(tasks, 0, "migrated and empty");
    }
    assert_eq!(names.len(), 8, "every database is new");
    assert_eq!(servers.len(), 1, "one server for the whole process");
    Ok(())
}

#[tokio::test]
async fn both_drivers_use_a_migrated_database() -> TestResult {
    use tasklib_migration::MigratorTrait;
    let db = TestDatabase::new().await?;
    let orm = sea_orm::Database::connect(db.url()).await?;
    let pending = tasklib_migration::Migrator::get_pending_migrations(&orm).await?;
    assert!(pending.is_empty(), "{} migrations pending", pending.len());
    orm.close().await?;
    let client = connect(db.url()).await?;
    let applied: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {}",
                tasklib_migration::MIGRATION_TABLE
            ),
            &[],
        )
        .await?
        .get(0);
    assert_eq!(
        applied,
        tasklib_migration::Migrator::migrations().len() as i64
    );
    Ok(())
}

/// Set in the environment of the child process of
/// `what_a_killed_process_leaves_is_cleaned_up`.
const CHILD_VAR: &str = "TASKLIB_TEST_UTILS_EXIT_CHILD";

/// Run as a child process by the test below: makes a database, never drops it, and is killed.
#[tokio::test]
#[ignore = "a helper that the exit clean-up test runs in a child process"]
async fn exit_cleanup_child() -> TestResult {
    if std::env::var_os(CHILD_VAR).is_none() {
        return Ok(());
    }
    use std::io::Write;
    let db = TestDatabase::new().await?;
    let mut out = std::io::stdout();
    writeln!(out, "CHILD {} {}", db.name(), db.url())?;
    out.flush()?;
    std::mem::forget(db);
    std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status()?;
    Err("still alive after kill -KILL".into())
}

#[tokio::test]
async fn what_a_killed_process_leaves_is_cleaned_up() -> TestResult {
    let external = std::env::var("DATABASE_URL").is_ok_and(|u| !u.trim().is_empty());
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["--ignored", "--exact", "exit_cleanup_child", "--nocapture"])
        .env(CHILD_VAR, "1")
        .stdin(std::process::Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD "))
        .ok_or_else(|| {
            format!(
                "the child printed no database: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let (name, url) = line.split_once(' ').ok_or("malformed child line")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    if external {
        // The test database and the child's template are dropped by its watchdog (with psql).
        let tag = name
            .strip_prefix("tasklib_test_")
            .and_then(|rest| rest.split('_').next())
            .ok_or("unexpected database name")?;
        assert_eq!(tag.len(), 8, "a process tag in {name}");
        let keeper = TestDatabase::empty().await?;
        let client = connect(keeper.url()).await?;
        loop {
            let left: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_database WHERE datname LIKE 'tasklib\\_%' AND datname LIKE '%\\_' || $1 || '\\_%'",
                    &[&tag],
                )
                .await?
                .get(0);
            if left == 0 {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{left} databases of the killed process are left").into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    } else {
        // The child's own cluster is stopped and its directory (the socket's) removed.
        let host = url
            .strip_prefix("postgres://postgres@")
            .and_then(|rest| rest.split(':').next())
            .ok_or("unexpected URL form")?
            .replace("%2F", "/");
        let dir = std::path::Path::new(&host);
        assert!(host.contains("/tasklib-pg-"), "a cluster directory: {host}");
        loop {
            if !dir.exists() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{} still exists", dir.display()).into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
