//! Monitoring: submit a mix of tasks (some fail), let workers run them, then list and count
//! them the way a dashboard or an on-call engineer would.
//!
//! ```text
//! cargo run -p tasklib-examples --example with_monitoring
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasklib::{
    Config, SubmitOptions, Task, TaskContext, TaskError, TaskFilter, TaskLib, TaskState,
    WorkerEvent,
};
use validator::Validate;

/// Resizes an image; a zero width is a bug in the caller (permanent), a width over 4000
/// simulates a flaky backend (retried, then failed).
#[derive(Debug, Serialize, Deserialize, Validate)]
struct ResizeImage {
    #[validate(length(min = 1))]
    path: String,
    width: u32,
}

impl Task for ResizeImage {
    const NAME: &'static str = "resize_image";
    const QUEUE: &'static str = "images";
    type Output = String;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tasklib_examples::init_logging("warn");
    let (url, _throwaway) = tasklib_examples::database_url().await?;
    let config = Config::builder(url)
        .base_retry_delay(Duration::from_millis(100))
        .poll_interval(Duration::from_millis(100))
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;

    tasks.register_blocking(|img: ResizeImage, _: TaskContext| {
        if img.width == 0 {
            return Err(TaskError::permanent(format!(
                "{}: width must be positive",
                img.path
            )));
        }
        if img.width > 4000 {
            return Err(TaskError::retry(std::io::Error::other(
                "image service unavailable",
            )));
        }
        Ok(format!(
            "{}@{}w.jpg",
            img.path.trim_end_matches(".jpg"),
            img.width
        ))
    })?;

    let batch = SubmitOptions::new().tag("batch", "2026-11-23");
    let mut ids = tasks
        .submit_many(
            (1..=5).map(|n| ResizeImage {
                path: format!("photos/{n}.jpg"),
                width: 400 * n,
            }),
            batch.clone(),
        )
        .await?;
    ids.push(
        tasks
            .submit_with(
                ResizeImage {
                    path: "photos/bad.jpg".into(),
                    width: 0,
                },
                batch.clone(),
            )
            .await?,
    );
    ids.push(
        tasks
            .submit_with(
                ResizeImage {
                    path: "photos/huge.jpg".into(),
                    width: 8000,
                },
                batch.clone().max_retries(2),
            )
            .await?,
    );
    println!("submitted {} tasks\n", ids.len());

    let workers = tasks.spawn_workers(3)?;
    let mut events = workers.subscribe();
    // Wait until every task reached a final state.
    loop {
        let pending = tasks
            .list_tasks(
                &TaskFilter::new()
                    .tags(serde_json::json!({"batch": "2026-11-23"}))
                    .limit(100),
            )
            .await?
            .into_iter()
            .filter(|t| !t.is_terminal())
            .count();
        if pending == 0 {
            break;
        }
        // Re-check after the next finished attempt.
        while !matches!(events.recv().await?, WorkerEvent::TaskFinished { .. }) {}
    }
    workers.shutdown().await?;

    let counts = tasks.count_tasks().await?;
    println!("status counts");
    println!("  pending          {:>4}", counts.pending);
    println!("  running          {:>4}", counts.running);
    println!("  completed        {:>4}", counts.completed);
    println!("  failed, retrying {:>4}", counts.failed_retrying);
    println!("  failed for good  {:>4}", counts.failed_permanent);
    println!("  cancelled        {:>4}\n", counts.cancelled);

    println!("completed, with results");
    for task in tasks
        .list_tasks(&TaskFilter::new().state(TaskState::Completed))
        .await?
    {
        let took = match (task.started_at, task.completed_at) {
            (Some(s), Some(c)) => format!("{} ms", (c - s).num_milliseconds()),
            _ => "-".into(),
        };
        println!(
            "  {}  {:<14} {:<28} {took}",
            task.id,
            task.name,
            task.result.unwrap_or_default()
        );
    }
    println!("\nfailed, with errors (the dead letters)");
    for task in tasks
        .list_tasks(&TaskFilter::new().state(TaskState::Failed).queue("images"))
        .await?
    {
        println!(
            "  {}  attempts={} retries={}/{}  error: {}",
            task.id,
            task.attempt,
            task.retry_count,
            task.max_retries,
            task.error.unwrap_or_default()
        );
    }
    Ok(())
}
