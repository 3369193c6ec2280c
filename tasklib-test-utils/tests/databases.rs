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
