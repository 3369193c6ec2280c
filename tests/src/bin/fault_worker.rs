//! A worker process for the fault suite: serves
//! [`FaultJob`] tasks with the [`Recorder`] handler until its
//! standard input closes (then shuts down gracefully) or it is killed.
//!
//! Settings come from the environment:
//! - `FAULT_DATABASE_URL` (required);
//! - `FAULT_WORKER_ID`, `FAULT_CONCURRENCY` (default 4);
//! - `FAULT_LOCK_TIMEOUT` (default `2s`), `FAULT_POLL_INTERVAL` (default `200ms`); either may
//!   be `library` for tasklib's own default, as an application that sets nothing gets;
//! - `FAULT_BEHAVIOUR`: `finish` (default), `sleep:<duration>`, `hold:<duration>`, `hang`;
//! - `FAULT_SCHEDULE`: `<name>=<cron expression>` runs that schedule, which submits
//!   `FaultJob { n: 0 }` at each tick (the schedules suite runs several such processes);
//! - `FAULT_QUEUES`: comma-separated queues to serve, each with `FAULT_CONCURRENCY` slots
//!   (default: the task type's own queue);
//! - `RUST_LOG` for its log on standard error (default `warn`).
//!
//! Standard input is the lifeline: the test holds the other end of the pipe, so the worker
//! also stops when the test process dies, whatever killed it.

use std::time::Duration;

use tasklib::{Config, Schedule, TaskLib, TaskWorker};
use tasklib_tests::fault::{Behaviour, FaultJob, Recorder};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The duration in `name`, else `default`; `None` for `library` (tasklib's own default).
fn duration(name: &'static str, default: Duration) -> Result<Option<Duration>> {
    match var(name) {
        Some(text) if text.trim() == "library" => Ok(None),
        Some(text) => Ok(Some(tasklib::parse_duration(name, &text)?)),
        None => Ok(Some(default)),
    }
}

#[tokio::main]
async fn main() -> Result {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let url = var("FAULT_DATABASE_URL").ok_or("FAULT_DATABASE_URL is not set")?;
    let concurrency: usize = var("FAULT_CONCURRENCY").map_or(Ok(4), |c| c.parse())?;
    let behaviour: Behaviour = var("FAULT_BEHAVIOUR")
        .as_deref()
        .unwrap_or("finish")
        .parse()?;
    let mut config = Config::builder(url).max_connections(u32::try_from(concurrency + 4)?);
    if let Some(lock) = duration("FAULT_LOCK_TIMEOUT", Duration::from_secs(2))? {
        config = config.lock_timeout(lock);
    }
    if let Some(poll) = duration("FAULT_POLL_INTERVAL", Duration::from_millis(200))? {
        config = config.poll_interval(poll);
    }
    if let Some(id) = var("FAULT_WORKER_ID") {
        config = config.worker_id(id);
    }
    let tasks = TaskLib::connect_with(config.build()?).await?;
    tasks.register(Recorder::new(tasks.db()?.clone(), behaviour))?;
    if let Some(schedule) = var("FAULT_SCHEDULE") {
        let (name, expression) = schedule
            .split_once('=')
            .ok_or("FAULT_SCHEDULE is <name>=<cron expression>")?;
        tasks.schedule(Schedule::new(name, expression)?.args(FaultJob { n: 0 }))?;
    }

    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        // Read until end of file: the test closed the pipe, or died.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed_tx.send(());
    });
    let mut worker = TaskWorker::new(&tasks).concurrency(concurrency);
    for queue in var("FAULT_QUEUES").iter().flat_map(|q| q.split(',')) {
        worker = worker.queue(queue.trim(), concurrency);
    }
    worker
        .run_until(async {
            let _ = closed_rx.await;
        })
        .await?;
    Ok(())
}
