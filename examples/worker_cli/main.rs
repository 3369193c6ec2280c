//! A worker binary made with `tasklib::cli::run_worker_command`: the task code is compiled in,
//! the command line (`--queues`, `--concurrency`, `--database-url`, `DATABASE_URL`,
//! `TASK_QUEUES`, `--help`) comes from tasklib.
//!
//! ```text
//! cargo run -p tasklib-examples --bin demo-worker -- --help
//! DATABASE_URL=postgres://… cargo run -p tasklib-examples --bin demo-worker -- \
//!     --queues file_processing,api_processing --concurrency file_processing=2,api_processing=8
//! ```

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tasklib_examples::init_logging("info");
    tasklib::cli::run_worker_command(tasklib_examples::demo_tasks::register).await
}
