//! Test helpers for applications using [tasklib](https://docs.rs/tasklib) (and for tasklib's
//! own tests): an isolated PostgreSQL database per test, against a real server, never a mock.
//!
//! ```no_run
//! use tasklib_test_utils::TestDatabase;
//!
//! #[tokio::test]
//! async fn queues_a_welcome_email() -> Result<(), Box<dyn std::error::Error>> {
//!     let db = TestDatabase::new().await?; // migrated, empty `tasks` table, all yours
//!     let tasks = tasklib::TaskLib::connect(db.url()).await?;
//!     // ... exercise your code, then look at what it queued ...
//!     assert!(tasks.list_tasks(&tasklib::TaskFilter::new()).await?.is_empty());
//!     Ok(())
//! } // the database is dropped here
//! # fn main() {}
//! ```
//!
//! ## Where the databases live
//!
//! - With `DATABASE_URL` set, each [`TestDatabase`] is a new database on that server, named
//!   `tasklib_test_<process>_<random>`, dropped (`WITH (FORCE)`) when the value drops. The
//!   user needs the `CREATEDB` right. A per-process template, `tasklib_tpl_<process>_<random>`,
//!   migrated once, makes each migrated database one `CREATE DATABASE … TEMPLATE` away. Once
//!   the process has exited — normally, by a panic, or killed — a watchdog drops the template
//!   and any test database the process did not drop, using `psql` (on `PATH` or under
//!   `/usr/lib/postgresql/*/bin`) with the URL's credentials passed in libpq's environment
//!   variables. Without `psql` those stay: drop `tasklib_tpl_%` databases from time to time.
//!   (A template shared between processes, keyed by the migration list, would save one
//!   migration per process but needs cross-process locking and goes stale while a migration
//!   is being written; one per process is simpler and always current.)
//! - Without it, the first test of a process starts a private cluster from the installed
//!   server binaries (`initdb`, `pg_ctl` on `PATH` or under `/usr/lib/postgresql/*/bin`,
//!   newest version first), listening only on a Unix socket in a temporary directory, with
//!   `fsync=off`. Concurrent first uses start one cluster. A watchdog stops it
//!   (`pg_ctl -m immediate stop`) and deletes the directory once the process has exited,
//!   however it exited. As root, the binaries run as the `postgres` user (PostgreSQL refuses
//!   root).
//! - A test that must restart the server itself gets a [`TestCluster`] of its own; one that
//!   tests TLS to the database, a [`TestTlsCluster`] (TCP, `ssl=on`, a certificate made in the
//!   test with a CA of its own). A [`TestPgBouncer`] puts a private PgBouncer in transaction
//!   pooling mode in front of a test database.
//!
//! [`TestDatabase::url`] works with both SeaORM (`sea_orm::Database::connect`, sqlx) and
//! `tokio_postgres::connect`. For the private cluster it names the socket directory,
//! percent-encoded, as the host: `postgres://postgres@%2Ftmp%2Ftasklib-pg-…:5432/<db>`. (The
//! `?host=/dir` form is avoided: beside a `localhost` host, tokio-postgres would try TCP on
//! localhost first, and could reach another server there.)
//!
//! Each test may run on its own tokio runtime: the shared state (the cluster, the template)
//! is managed on one background runtime of this crate, and every operation opens a fresh
//! connection, so nothing shared is tied to a test's runtime.
//!
//! ## Queue helpers
//!
//! [`drain`] runs workers until nothing is runnable; [`enqueued`] and [`assert_enqueued`]
//! look at what your code submitted, typed.
//!
//! Tests may run in parallel: every database is separate.
//!
//! ## Redis and Celery
//!
//! For the Celery engine: [`TestRedis`] starts a private `redis-server` on a free loopback
//! port (never the machine's own Redis), killed on drop; [`CeleryVenv`] is a Python virtual
//! environment with `celery[redis]`, built once per machine; [`CeleryWorker`] runs a real
//! Celery worker as a child process and [`CeleryVenv::run_script`] a Python client, over the
//! modules of a [`PythonApp`]. None of this needs a cargo feature.

mod celery;
mod cluster;
mod database;
mod error;
mod pgbouncer;
mod private_cluster;
mod queue;
mod redis;
mod server;
mod service;
mod temporal;
mod tls_cluster;
mod venv;
mod watchdog;

pub use celery::{CELERY_REQUIREMENT, CeleryError, CeleryVenv, CeleryWorker, PythonApp};
pub use database::TestDatabase;
pub use error::TestDbError;
pub use pgbouncer::TestPgBouncer;
pub use private_cluster::TestCluster;
pub use queue::{Drained, QueueTestError, assert_enqueued, drain, enqueued};
pub use redis::{TestRedis, TestRedisError};
pub use temporal::{NAMESPACES, TEMPORAL_REQUIREMENTS, TestTemporal, TestTemporalError};
pub use tls_cluster::{TLS_TEST_HOSTS, TestTlsCluster};
