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
//!   `tasklib_test_<random>`, dropped when the value drops. The user needs the `CREATEDB` right.
//!   A per-process template, `tasklib_tpl_<random>` migrated once, makes each migrated
//!   database one `CREATE DATABASE … TEMPLATE` away; it is not dropped (there is no hook at
//!   process exit), so a long-lived shared server collects one small database per test run:
//!   drop `tasklib_tpl_%` databases from time to time, or prefer the private cluster.
//! - Without it, the first test of a process starts a private cluster from the installed
//!   server binaries (`initdb`, `pg_ctl` on `PATH` or under `/usr/lib/postgresql/*/bin`), on
//!   a Unix socket in a temporary directory, with `fsync=off`. A watchdog stops it and deletes
//!   the directory once the process has exited. As root, the binaries run as the `postgres`
//!   user (PostgreSQL refuses root).
//! - A test that must restart the server itself gets a [`TestCluster`] of its own.
//!
//! ## Queue helpers
//!
//! [`drain`] runs workers until nothing is runnable; [`enqueued`] and [`assert_enqueued`]
//! look at what your code submitted, typed.
//!
//! Tests may run in parallel: every database is separate, and a shared background runtime
//! does the administrative work, so tests on different tokio runtimes can share the server.

mod cluster;
mod database;
mod error;
mod private_cluster;
mod queue;
mod service;

pub use database::TestDatabase;
pub use error::TestDbError;
pub use private_cluster::TestCluster;
pub use queue::{Drained, QueueTestError, assert_enqueued, drain, enqueued};
