//! The quick start, end to end: define a task, connect, register a handler, submit (a valid
//! and an invalid task), run workers until the work is done, and inspect the results.
//!
//! ```text
//! cargo run -p tasklib-examples --example simple
//! ```
//!
//! With `DATABASE_URL` set it uses that database; without, it starts a throwaway PostgreSQL
//! from the installed binaries (as the tests do) and removes it on exit.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasklib::{SubmitOptions, Task, TaskContext, TaskError, TaskLib, TaskOutcome, WorkerEvent};
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

    // Work in the same process until both are done.
    let workers = tasks.spawn_workers(4)?;
    let mut events = workers.subscribe();
    let mut remaining = 2;
    while remaining > 0 {
        if let WorkerEvent::TaskFinished {
            id,
            outcome,
            duration,
            ..
        } = events.recv().await?
        {
            println!("  [event] {id} finished: {outcome:?} in {duration:?}");
            if outcome == TaskOutcome::Completed {
                remaining -= 1;
            }
        }
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
