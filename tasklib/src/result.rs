//! Results, the same on every engine: [`TaskResult`] and its [`TaskStatus`].

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::{Error, Result};

/// Where a task (or a chain) stands, in terms every engine can answer.
///
/// A task that failed and waits for a retry is [`Pending`](Self::Pending): it will run again
/// (its last error is in [`TaskResult::error`]). [`Failed`](Self::Failed) is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TaskStatus {
    /// Waiting to run: submitted, scheduled later, waiting for a retry, or a chain step waiting
    /// for the step before it.
    Pending,
    /// An attempt is running.
    Running,
    /// Finished successfully; the value is stored.
    Completed,
    /// Failed for good; the error is stored.
    Failed,
    /// Cancelled; the reason is stored as the error.
    Cancelled,
}

impl TaskStatus {
    /// `"pending"`, `"running"`, `"completed"`, `"failed"` or `"cancelled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled: it will not change again by itself.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for TaskStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The outcome of a task or a chain, as [`TaskLib::get_result`](crate::TaskLib::get_result)
/// and [`TaskLib::wait_result`](crate::TaskLib::wait_result) return it.
///
/// For a chain, it is the last step's result once every step completed, or the first step
/// that failed or was cancelled (the later steps are then cancelled too).
///
/// ```
/// # fn show(result: tasklib::TaskResult) -> tasklib::Result<()> {
/// if result.status == "completed" {
///     let sum: i64 = result.value_as()?;
///     println!("{sum}");
/// } else if let Some(error) = &result.error {
///     eprintln!("{}: {error}", result.status);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TaskResult {
    /// The task's (or chain's) id.
    pub id: Uuid,
    /// Where it stands.
    pub status: TaskStatus,
    /// The handler's output, once completed.
    pub value: Option<Value>,
    /// The error of the last failed attempt (also while a retry waits), or why it was
    /// cancelled.
    pub error: Option<String>,
}

impl TaskResult {
    /// True once it will not change again: completed, failed or cancelled.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// True when it completed.
    pub fn is_completed(&self) -> bool {
        self.status == TaskStatus::Completed
    }

    /// The value decoded into the task's output type.
    ///
    /// # Errors
    /// [`Error::NotCompleted`] when there is no value (the task has not completed; the error
    /// says how it stands), [`Error::ResultMismatch`] when the value does not fit `T`.
    pub fn value_as<T: DeserializeOwned>(&self) -> Result<T> {
        let Some(value) = &self.value else {
            return Err(Error::NotCompleted {
                id: self.id,
                status: self.status,
                error: self.error.clone(),
            });
        };
        T::deserialize(value).map_err(|source| Error::ResultMismatch {
            id: self.id,
            source,
        })
    }
}

/// A chain's result from its steps' results, in step order — the rule every engine follows:
/// the first step that failed for good or was cancelled, else the last step's result once all
/// completed, else running while a step runs and pending otherwise (with the error of a step
/// that waits for a retry). The result carries the chain's `id`; `None` without steps.
pub(crate) fn chain_outcome(id: Uuid, mut steps: Vec<TaskResult>) -> Option<TaskResult> {
    let ended = steps
        .iter()
        .position(|r| matches!(r.status, TaskStatus::Failed | TaskStatus::Cancelled));
    let outcome = if let Some(at) = ended {
        steps.swap_remove(at)
    } else if steps.iter().all(TaskResult::is_completed) {
        steps.pop()?
    } else {
        let status = if steps.iter().any(|r| r.status == TaskStatus::Running) {
            TaskStatus::Running
        } else {
            TaskStatus::Pending
        };
        let error = steps
            .into_iter()
            .find(|r| !r.is_completed())
            .and_then(|r| r.error);
        TaskResult {
            id,
            status,
            value: None,
            error,
        }
    };
    Some(TaskResult { id, ..outcome })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(status: TaskStatus, value: Option<i64>, error: Option<&str>) -> TaskResult {
        TaskResult {
            id: Uuid::now_v7(),
            status,
            value: value.map(Value::from),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn chain_outcome_is_the_first_failure_or_the_last_value() {
        let id = Uuid::now_v7();
        let done = chain_outcome(
            id,
            vec![
                step(TaskStatus::Completed, Some(5), None),
                step(TaskStatus::Completed, Some(50), None),
            ],
        );
        assert_eq!(
            done.as_ref().map(|r| (r.id, r.status)),
            Some((id, TaskStatus::Completed))
        );
        assert_eq!(done.and_then(|r| r.value), Some(Value::from(50)));

        let failed = chain_outcome(
            id,
            vec![
                step(TaskStatus::Completed, Some(5), None),
                step(TaskStatus::Failed, None, Some("boom")),
                step(TaskStatus::Cancelled, None, Some("an earlier step failed")),
            ],
        );
        assert_eq!(
            failed.as_ref().map(|r| (r.id, r.status)),
            Some((id, TaskStatus::Failed))
        );
        assert_eq!(failed.and_then(|r| r.error).as_deref(), Some("boom"));

        let waiting = chain_outcome(
            id,
            vec![
                step(TaskStatus::Completed, Some(5), None),
                step(TaskStatus::Pending, None, Some("try again")),
                step(TaskStatus::Pending, None, None),
            ],
        );
        assert_eq!(
            waiting.as_ref().map(|r| r.status),
            Some(TaskStatus::Pending)
        );
        assert_eq!(waiting.and_then(|r| r.error).as_deref(), Some("try again"));
        let running = chain_outcome(
            id,
            vec![
                step(TaskStatus::Completed, Some(5), None),
                step(TaskStatus::Running, None, None),
            ],
        );
        assert_eq!(running.map(|r| r.status), Some(TaskStatus::Running));
        assert!(chain_outcome(id, Vec::new()).is_none());
    }

    #[test]
    fn typed_values_and_missing_ones() {
        let done = TaskResult {
            id: Uuid::nil(),
            status: TaskStatus::Completed,
            value: Some(json!(40)),
            error: None,
        };
        assert!(matches!(done.value_as::<i64>(), Ok(40)));
        assert!(matches!(
            done.value_as::<String>(),
            Err(Error::ResultMismatch { .. })
        ));
        let failed = TaskResult {
            status: TaskStatus::Failed,
            value: None,
            error: Some("boom".into()),
            ..done
        };
        let message = failed.value_as::<i64>().err().map(|e| e.to_string());
        assert!(message.is_some_and(|m| m.contains("failed") && m.contains("boom")));
        assert!(failed.status == "failed");
    }
}
