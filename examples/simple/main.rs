//! The quick start, end to end: define tasks, connect, register handlers, submit (a valid and
//! an invalid task, and a chain of two steps), run workers, wait for the results, and inspect
//! them.
//!
//! ```text
//! cargo run -p tasklib-examples --example simple
//! ```
//!
//! With `DATABASE_URL` set it uses that database; without, it starts a throwaway PostgreSQL
//! from the installed binaries (as the tests do) and removes it on exit.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasklib::{Chain, SubmitOptions, Task, TaskContext, TaskError, TaskLib};
use validator::Validate;

/// The arguments of a task: plain data, validated when submitted.
#[derive(Debug, Serialize, Deserialize, Validate)]
struct SendEmail {
    #[validate(email)]
    to: String,
    #[validate(length(min = 1, max = 200))]
    subject: String,
}

impl Task for SendEmail {
    const NAME: &'static str = "send_email";
    type Output = String;
}

/// A second step for a chain: it receives the receipt `send_email` returned (the previous
/// step's output goes first in the next step's positional arguments).
#[derive(Debug, Serialize, Deserialize, Validate)]
struct RecordDelivery {
    receipt: String,
}

impl Task for RecordDelivery {
    const NAME: &'static str = "record_delivery";
    type Output = usize;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tasklib_examples::init_logging("info");

    // Keep the throwaway database (if any) alive until the end of main.
    let (url, _throwaway) = tasklib_examples::database_url().await?;

    // Connecting applies tasklib's migrations (under an advisory lock).
    let tasks = TaskLib::connect(&url).await?;

    // The handler: a closure here; a struct implementing `Handler` can carry shared state.
    tasks.register(|email: SendEmail, ctx: TaskContext| async move {
        println!(
            "  [worker] attempt {}: sending {:?} to {}",
            ctx.attempt(),
            email.subject,
            email.to
        );
        Ok::<_, TaskError>(format!("sent to {}", email.to))
    })?;
    tasks.register(|delivery: RecordDelivery, _ctx: TaskContext| async move {
        println!("  [worker] recording {:?}", delivery.receipt);
        Ok::<_, TaskError>(delivery.receipt.len())
    })?;

    // Submit. Invalid arguments are refused before anything is written.
    let rejected = tasks
        .submit(SendEmail {
            to: "not-an-email".into(),
            subject: "Hi".into(),
        })
        .await;
    if let Err(err) = &rejected {
        println!("rejected as expected: {err}");
        if let Some(fields) = err.validation_errors() {
            println!("  field errors: {fields}");
        }
    }
    let first = tasks
        .submit(SendEmail {
            to: "ada@example.com".into(),
            subject: "Welcome".into(),
        })
        .await?;
    let second = tasks
        .submit_with(
            SendEmail {
                to: "grace@example.com".into(),
                subject: "Reminder".into(),
            },
            SubmitOptions::new()
                .delay(Duration::from_millis(500))
                .priority(5)
                .tag("campaign", "onboarding"),
        )
        .await?;
    println!("submitted {first} and {second} (the second runs after 500 ms)");

    // A chain: send, then record the delivery with what the send returned.
    let chain = tasks
        .submit_chain(
            Chain::new(SendEmail {
                to: "edsger@example.com".into(),
                subject: "Chained".into(),
            })
            .then::<RecordDelivery>([]),
        )
        .await?;
    println!("submitted chain {} (steps {:?})", chain.id, chain.steps);

    // Work in the same process, and wait for each result (woken when the task finishes).
    let workers = tasks.spawn_workers(4)?;
    for id in [first, second, chain.id] {
        let result = tasks.wait_result(id, Duration::from_secs(30)).await?;
        println!(
            "  [result] {id}: {} {}",
            result.status,
            result.value.map(|v| v.to_string()).unwrap_or_default()
        );
    }
    workers.shutdown().await?;

    // Inspect.
    for id in [first, second] {
        let task = tasks.get_task(id).await?.ok_or("task vanished")?;
        println!(
            "{id}: state={} result={} attempts={}",
            task.state,
            task.result
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            task.attempt
        );
    }
    println!("counts: {:?}", tasks.count_tasks().await?);
    Ok(())
}
