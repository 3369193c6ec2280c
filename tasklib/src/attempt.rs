//! One attempt, the same on every engine: the handler runs under its time limit (a panic or a
//! timeout becomes a retryable error), and its outcome decides what is written — completed,
//! failed with a retry after the backoff, failed for good, or cancelled. Each engine writes
//! the decision its own way; the rules are here once, so a handler behaves the same anywhere.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;

use crate::registry::ErasedHandler;
use crate::retry::BackoffPolicy;
use crate::task::{TaskContext, TaskError};

/// Calls the handler under its time limit; a panic or a timeout becomes a retryable error.
pub(crate) async fn run(
    handler: &dyn ErasedHandler,
    args: Value,
    ctx: TaskContext,
    timeout: Option<Duration>,
) -> Result<Value, TaskError> {
    let run = AssertUnwindSafe(handler.call(args, ctx)).catch_unwind();
    let finished = match timeout {
        Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| limit),
        None => Ok(run.await),
    };
    match finished {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(TaskError::retry(format!(
            "handler panicked: {}",
            panic_message(&*panic)
        ))),
        Err(limit) => Err(TaskError::retry(format!(
            "timed out after {}",
            human(limit)
        ))),
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

/// `30s`, `1.5s`, `250ms`.
fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// What an attempt's outcome writes.
#[derive(Debug)]
pub(crate) enum Write {
    /// Completed, with the handler's output.
    Complete(Value),
    /// Failed: retried after `retry_in`, or for good when `None`.
    Fail {
        error: String,
        retry_in: Option<Duration>,
    },
    /// Cancelled, with the reason.
    Cancel(String),
    /// Snoozed: runs again after the delay, using no retry.
    Snooze(Duration),
}

/// Decides the write for an outcome. Pure, so the rules are unit-tested.
pub(crate) fn decide(
    policy: &BackoffPolicy,
    retry_count: u32,
    max_retries: u32,
    outcome: Result<Value, TaskError>,
    cancel_requested: bool,
) -> Write {
    let retries_left = retry_count < max_retries;
    match outcome {
        Ok(value) => Write::Complete(value),
        Err(TaskError::Cancel(reason)) => Write::Cancel(format!("cancelled: {reason}")),
        // Asked to stop while it ran: a snooze would only postpone the cancel.
        Err(TaskError::Snooze(_)) if cancel_requested => {
            Write::Cancel("cancelled while running (it snoozed)".to_owned())
        }
        Err(TaskError::Snooze(delay)) => Write::Snooze(delay),
        Err(error) if cancel_requested => {
            Write::Cancel(format!("cancelled while running: {}", error.message()))
        }
        Err(error @ TaskError::Permanent(_)) => Write::Fail {
            error: error.message(),
            retry_in: None,
        },
        Err(error @ TaskError::Retry(_)) => Write::Fail {
            error: error.message(),
            retry_in: retries_left.then(|| policy.delay(retry_count + 1)),
        },
        Err(TaskError::RetryAfter(delay, source)) => Write::Fail {
            error: crate::task::error_chain(source.as_ref()),
            retry_in: retries_left.then_some(delay),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_secs(5),
            multiplier: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.0,
        }
    }

    #[test]
    fn retry_uses_backoff_while_retries_are_left() {
        match decide(&policy(), 1, 3, Err(TaskError::retry("boom")), false) {
            Write::Fail { error, retry_in } => {
                assert_eq!(error, "boom");
                assert_eq!(retry_in, Some(Duration::from_secs(10)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&policy(), 3, 3, Err(TaskError::retry("boom")), false),
            Write::Fail { retry_in: None, .. }
        ));
    }

    #[test]
    fn permanent_cancel_and_retry_after() {
        assert!(matches!(
            decide(&policy(), 0, 3, Err(TaskError::permanent("bad")), false),
            Write::Fail { retry_in: None, .. }
        ));
        assert!(matches!(
            decide(&policy(), 0, 3, Err(TaskError::cancel("user left")), false),
            Write::Cancel(_)
        ));
        assert!(matches!(
            decide(&policy(), 0, 3, Err(TaskError::retry_after(Duration::from_secs(42), "rate limited")), false),
            Write::Fail { retry_in: Some(d), .. } if d == Duration::from_secs(42)
        ));
        assert!(matches!(
            decide(&policy(), 0, 3, Err(TaskError::retry("x")), true),
            Write::Cancel(_)
        ));
        assert!(matches!(
            decide(&policy(), 0, 3, Ok(Value::Null), true),
            Write::Complete(_)
        ));
    }

    #[test]
    fn formats_durations_for_messages() {
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
