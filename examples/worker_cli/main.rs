//! A worker binary made with `tasklib::cli::run_worker_command`: the task code is compiled in,
//! the command line (`--backend`, `--queues`, `--concurrency`, `--database-url`,
//! `TASK_BACKEND_TYPE`, `DATABASE_URL`, `TASK_QUEUES`, `--help`) comes from tasklib.
//!
//! ```text
//! cargo run -p tasklib-examples --bin demo-worker -- --help
//! DATABASE_URL=postgres://… cargo run -p tasklib-examples --bin demo-worker -- \
//!     --queues file_processing,api_processing --concurrency file_processing=2,api_processing=8
//! ```
//!
//! Besides the demo tasks it runs `add_numbers` on the `default` queue, to try an engine from
//! the shell:
//!
//! ```text
//! DATABASE_URL=postgres://… cargo run -p tasklib-examples --bin demo-worker -- --queues default
//! id=$(tasklib submit add_numbers --args '[15, 25]')
//! tasklib result "$id" --wait 30s --json     # {"id":"…","status":"completed","value":40,…}
//! ```

use std::process::ExitCode;

use tasklib::TaskLib;

/// The demo tasks, and `add_numbers`.
fn register(tasks: &TaskLib) -> tasklib::Result<()> {
    tasklib_examples::demo_tasks::register(tasks)?;
    tasklib_examples::demo_tasks::register_add_numbers(tasks)
}

#[tokio::main]
async fn main() -> ExitCode {
    tasklib_examples::init_logging("info");
    tasklib::cli::run_worker_command(register).await
}
