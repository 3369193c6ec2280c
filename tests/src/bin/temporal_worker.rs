//! A Rust worker process on the Temporal engine, for the test that kills one with SIGKILL
//! in the middle of its activities. Serves `nap` tasks (sleep `ms`, return `n`) and prints
//! `started <id> <attempt>` on standard output as each one starts.
//!
//! Settings come from the environment: `TEMPORAL_TEST_HOST`, `TEMPORAL_TEST_NAMESPACE`,
//! `TEMPORAL_TEST_LOCK_TIMEOUT_MS` (the heartbeat timeout; default 1000). Standard input is
//! the lifeline: the worker exits when it closes, so it never outlives the test.

use std::io::{Read, Write};
use std::time::Duration;

use tasklib::{BackendType, Config, TaskContext, TaskError, TaskLib, TaskWorker};
use tasklib_tests::nap::Nap;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn var(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

#[tokio::main]
async fn main() -> Result {
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let lock_ms: u64 = std::env::var("TEMPORAL_TEST_LOCK_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let config = Config::for_backend(BackendType::Temporal)
        .temporal_host(var("TEMPORAL_TEST_HOST")?)
        .temporal_namespace(var("TEMPORAL_TEST_NAMESPACE")?)
        .lock_timeout(Duration::from_millis(lock_ms))
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;
    tasks.register(|nap: Nap, ctx: TaskContext| async move {
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "started {} {}", ctx.id(), ctx.attempt())?;
            out.flush()?;
        }
        tokio::time::sleep(Duration::from_millis(nap.ms)).await;
        Ok::<_, TaskError>(nap.n)
    })?;
    TaskWorker::new(&tasks).concurrency(2).run().await?;
    Ok(())
}
