//! The task types of the conformance suite (the seeds' `add_numbers` among them).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tasklib::{Task, TaskContext, TaskError, TaskLib};
use validator::Validate;

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub(crate) struct AddNumbers {
    pub(crate) a: i64,
    pub(crate) b: i64,
}

impl Task for AddNumbers {
    const NAME: &'static str = "add_numbers";
    type Output = i64;
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub(crate) struct Multiply {
    pub(crate) value: i64,
    pub(crate) by: i64,
}

impl Task for Multiply {
    const NAME: &'static str = "multiply";
    type Output = i64;
}

/// Fails for good with its message; in a chain it gets the previous output first.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub(crate) struct Explode {
    pub(crate) input: serde_json::Value,
    pub(crate) message: String,
}

impl Task for Explode {
    const NAME: &'static str = "explode";
    type Output = ();
}

/// Fails (retryably) on its first `failures` attempts, then returns the attempt number.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub(crate) struct Flaky {
    pub(crate) failures: u32,
}

impl Task for Flaky {
    const NAME: &'static str = "flaky";
    type Output = u32;
}

/// Snoozes on its first `snoozes` attempts, then returns its attempt and retry count.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub(crate) struct Sleepy {
    pub(crate) snoozes: u32,
}

impl Task for Sleepy {
    const NAME: &'static str = "sleepy";
    type Output = (u32, u32);
}

/// Reports progress; returns whether the engine took the report.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub(crate) struct Report {
    pub(crate) rows: u32,
}

impl Task for Report {
    const NAME: &'static str = "report";
    type Output = bool;
}

/// Waits at a barrier or a gate the test holds, per queue: for concurrency checks.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub(crate) struct Hold {
    pub(crate) n: i64,
}

impl Task for Hold {
    const NAME: &'static str = "hold";
    type Output = i64;
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub(crate) struct Email {
    #[validate(email)]
    pub(crate) to: String,
}

impl Task for Email {
    const NAME: &'static str = "email";
    type Output = ();
}

/// Registers the arithmetic, failing and email tasks; counts the calls of `flaky`.
pub(crate) fn register_common(tasks: &TaskLib) -> crate::common::TestResult<Arc<AtomicUsize>> {
    tasks.register(|args: AddNumbers, _: TaskContext| async move {
        Ok::<_, TaskError>(args.a + args.b)
    })?;
    tasks.register(|args: Multiply, _: TaskContext| async move {
        Ok::<_, TaskError>(args.value * args.by)
    })?;
    tasks.register(|args: Explode, _: TaskContext| async move {
        Err::<(), _>(TaskError::permanent(args.message))
    })?;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    tasks.register(move |args: Flaky, ctx: TaskContext| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt() <= args.failures {
                Err(TaskError::retry(format!("attempt {} fails", ctx.attempt())))
            } else {
                Ok(ctx.attempt())
            }
        }
    })?;
    tasks.register(|_: Email, _: TaskContext| async move { Ok::<_, TaskError>(()) })?;
    Ok(calls)
}
