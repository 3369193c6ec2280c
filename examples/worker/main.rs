//! A dedicated worker process: registers its handlers and works until SIGINT (Ctrl-C) or
//! SIGTERM, then shuts down gracefully — running tasks finish (up to the grace period),
//! nothing new is claimed.
//!
//! ```text
//! cargo run -p tasklib-examples --example worker
//! # in another shell: kill -TERM <pid>   (or press Ctrl-C here)
//! ```
//!
//! It submits a few slow tasks at start so there is something to watch.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasklib::{Config, SubmitOptions, Task, TaskContext, TaskError, TaskLib, TaskWorker};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Render {
    #[validate(range(min = 1, max = 60))]
    seconds: u64,
}

impl Task for Render {
    const NAME: &'static str = "render";
    type Output = u64;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tasklib_examples::init_logging("info");
    let (url, _throwaway) = tasklib_examples::database_url().await?;
    let config = Config::builder(url)
        .shutdown_grace_period(Duration::from_secs(10))
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;

    tasks.register(|job: Render, ctx: TaskContext| async move {
        // Long work checks for cancellation between steps.
        for _ in 0..job.seconds {
            if ctx.is_cancelled() {
                return Err(TaskError::cancel("asked to stop"));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(job.seconds)
    })?;
    for seconds in [1, 2, 3] {
        tasks
            .submit_with(Render { seconds }, SubmitOptions::new())
            .await?;
    }

    println!(
        "working (pid {}); press Ctrl-C or send SIGTERM to stop",
        std::process::id()
    );
    // Blocks until SIGINT/SIGTERM, then stops claiming and waits for running tasks.
    TaskWorker::new(&tasks).concurrency(4).run().await?;
    println!("stopped cleanly; counts: {:?}", tasks.count_tasks().await?);
    Ok(())
}
