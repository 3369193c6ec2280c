//! Code shared by the examples: the axum app, the demo worker's tasks, and setup helpers.

pub mod axum_app;
pub mod demo_tasks;

use tasklib_test_utils::TestDatabase;

/// The database the examples use: `DATABASE_URL` when set, else a fresh database on a
/// throwaway PostgreSQL started from the installed binaries (kept alive by the returned
/// guard, removed when it drops and the process exits).
///
/// # Errors
/// When `DATABASE_URL` is unset and no PostgreSQL server binaries are installed; the message
/// says what to install.
pub async fn database_url()
-> Result<(String, Option<TestDatabase>), tasklib_test_utils::TestDbError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok((url, None)),
        _ => {
            println!("DATABASE_URL is not set: starting a throwaway PostgreSQL for this run");
            let db = TestDatabase::empty().await?;
            Ok((db.url().to_owned(), Some(db)))
        }
    }
}

/// Logs to stderr (stdout stays for the program's output), filtered by `RUST_LOG`, else by `default` (the driver's and the
/// migrator's chatter is kept to warnings).
pub fn init_logging(default: &str) {
    let filter = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| format!("{default},sqlx=warn,sea_orm_migration=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
