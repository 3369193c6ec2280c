//! Helpers for tests of code that submits or runs tasks: drain the queue, and assert what was
//! enqueued.

use std::time::Duration;

use tasklib::{Task, TaskFilter, TaskLib, TaskRecord, TaskState, TaskWorker, WorkerEvent};
use tokio::sync::broadcast::error::RecvError;

/// What [`drain`] ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// Attempts that finished (successes, failures, cancellations).
    pub attempts: u64,
}

/// Why [`drain`] or an assertion failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueTestError {
    /// tasklib failed.
    #[error("tasklib call failed")]
    Tasklib(#[from] tasklib::Error),
    /// Work was still runnable when the time ran out.
    #[error("the queue was not drained within {0:?}: {1} tasks still runnable or running")]
    NotDrained(Duration, u64),
    /// An expected task was not enqueued.
    #[error("no pending `{name}` task matched; pending ones: {pending}")]
    NotEnqueued {
        /// The task name.
        name: &'static str,
        /// The arguments of the pending tasks of that name, as JSON.
        pending: String,
    },
}

/// Runs workers for `tasks`'s registered task types until nothing is runnable now: every
/// pending task that is due, and every retry that comes due meanwhile, has run. Tasks
/// scheduled past the `limit` are left alone. Use a short `base_retry_delay` in tests that
/// exercise retries.
///
/// # Errors
/// [`QueueTestError::NotDrained`] when work remains after `limit`.
pub async fn drain(tasks: &TaskLib, limit: Duration) -> Result<Drained, QueueTestError> {
    let pool = TaskWorker::new(tasks)
        .concurrency(8)
        .poll_interval(Duration::from_millis(50))
        .spawn()?;
    let mut events = pool.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    let mut drained = Drained::default();
    loop {
        let left = outstanding(tasks, limit).await?;
        if left == 0 {
            break;
        }
        // Wait for the next finished attempt, then look again.
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(WorkerEvent::TaskFinished { .. })) => drained.attempts += 1,
            Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) | Err(_) => {
                let _ = pool.shutdown().await;
                return Err(QueueTestError::NotDrained(limit, left));
            }
        }
    }
    // Every executor has emitted its event once shutdown returns: count the ones not seen yet.
    pool.shutdown().await?;
    loop {
        match events.try_recv() {
            Ok(WorkerEvent::TaskFinished { .. }) => drained.attempts += 1,
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    Ok(drained)
}

/// Tasks running, or pending and due within `horizon` (retries included).
async fn outstanding(tasks: &TaskLib, horizon: Duration) -> Result<u64, QueueTestError> {
    let horizon = chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::MAX);
    let until = chrono::Utc::now() + horizon;
    let mut n = 0;
    let mut filter = TaskFilter::new()
        .state(TaskState::Pending)
        .state(TaskState::Running)
        .state(TaskState::Failed)
        .limit(tasklib::MAX_LIST_LIMIT);
    loop {
        let page = tasks.list_tasks(&filter).await?;
        n += page
            .iter()
            .filter(|t| match t.state {
                TaskState::Running => true,
                TaskState::Pending => t.scheduled_at <= until,
                TaskState::Failed => t.next_retry_at.is_some_and(|at| at <= until),
                _ => false,
            })
            .count() as u64;
        match page.last() {
            Some(last) if page.len() as u64 == tasklib::MAX_LIST_LIMIT => {
                filter = filter.before(last.id)
            }
            _ => return Ok(n),
        }
    }
}

/// The pending tasks of type `T`, oldest first, with their arguments decoded.
///
/// # Errors
/// When the query fails or stored arguments no longer fit `T`.
pub async fn enqueued<T: Task>(tasks: &TaskLib) -> Result<Vec<(TaskRecord, T)>, QueueTestError> {
    let mut records = tasks
        .list_tasks(
            &TaskFilter::new()
                .name(T::NAME)
                .state(TaskState::Pending)
                .limit(tasklib::MAX_LIST_LIMIT),
        )
        .await?;
    records.reverse();
    records
        .into_iter()
        .map(|record| {
            let args = record.args_as::<T>()?;
            Ok((record, args))
        })
        .collect()
}

/// Asserts that a pending task of type `T` whose arguments satisfy `matches` exists, and
/// returns it.
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # use validator::Validate;
/// # #[derive(Debug, Serialize, Deserialize, Validate)] struct SendEmail { to: String }
/// # impl tasklib::Task for SendEmail { const NAME: &'static str = "send_email"; type Output = (); }
/// # async fn check(tasks: tasklib::TaskLib) -> Result<(), tasklib_test_utils::QueueTestError> {
/// let (record, _) = tasklib_test_utils::assert_enqueued::<SendEmail>(&tasks, |e| e.to == "ada@example.com").await?;
/// assert_eq!(record.queue, "default");
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`QueueTestError::NotEnqueued`], listing the pending tasks of that name, when none match.
pub async fn assert_enqueued<T: Task>(
    tasks: &TaskLib,
    matches: impl Fn(&T) -> bool,
) -> Result<(TaskRecord, T), QueueTestError> {
    let all = enqueued::<T>(tasks).await?;
    let pending = serde_json::to_string(&all.iter().map(|(r, _)| &r.args).collect::<Vec<_>>())
        .unwrap_or_default();
    all.into_iter()
        .find(|(_, args)| matches(args))
        .ok_or(QueueTestError::NotEnqueued {
            name: T::NAME,
            pending,
        })
}
