//! [`TaskRecord`]: a task as read back from the database.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::TaskState;
use crate::entity::task;
use crate::{Error, Result};

/// Everything stored about one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TaskRecord {
    /// Time-ordered id.
    pub id: Uuid,
    /// The task type's name.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// Its arguments.
    pub args: Value,
    /// Its state.
    pub state: TaskState,
    /// The handler's output when completed (the `value` of the stored `{"value": …}`).
    pub result: Option<Value>,
    /// The last error, with its causes.
    pub error: Option<String>,
    /// Retries started so far (a retry counts when claimed); at least `max_retries` once the
    /// task failed for good.
    pub retry_count: u32,
    /// Retries allowed.
    pub max_retries: u32,
    /// Attempts started.
    pub attempt: u32,
    /// When it becomes (or became) runnable.
    pub scheduled_at: DateTime<Utc>,
    /// When the last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When a failed task runs again; `None` for a terminal failure.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The worker that holds or last held it.
    pub worker_id: Option<String>,
    /// Until when that worker's lock holds.
    pub locked_until: Option<DateTime<Utc>>,
    /// Time limit of one attempt, in seconds.
    pub timeout_seconds: Option<f64>,
    /// Priority (higher first).
    pub priority: i32,
    /// Tags (a JSON object).
    pub tags: Value,
    /// When cancellation was asked for while it ran.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// The chain this task is a step of ([`ChainIds::id`](crate::ChainIds::id)).
    pub chain_id: Option<Uuid>,
    /// Its position in the chain, from 0.
    pub chain_step: Option<u32>,
    /// What the handler last reported
    /// ([`TaskContext::set_progress`](crate::TaskContext::set_progress)); kept after it
    /// finishes.
    pub progress: Option<Value>,
    /// The failed attempts, oldest first: the last 20 (and [`error`](Self::error) holds the
    /// last one).
    pub errors: Vec<AttemptError>,
    /// Its unique key ([`SubmitOptions::unique_key`](crate::SubmitOptions::unique_key)), if
    /// any.
    pub unique_key: Option<String>,
    /// For a key unique per period ([`UniqueScope::Period`](crate::UniqueScope::Period)), the
    /// start of the window it holds.
    pub unique_window: Option<DateTime<Utc>>,
    /// The W3C `traceparent` of the span that submitted it (`00-{trace id}-{span id}-{flags}`),
    /// which its runs continue: kept with the cargo feature `otel` when the submitter was in
    /// an OpenTelemetry trace. Its trace id finds the task's trace in a tracing backend.
    pub trace_context: Option<String>,
}

/// One failed attempt of a task, as kept in its history ([`TaskRecord::errors`]).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct AttemptError {
    /// Which attempt failed (1 for the first run).
    pub attempt: u32,
    /// The error, with its causes.
    pub error: String,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// When the failure was recorded.
    pub at: DateTime<Utc>,
}

impl TaskRecord {
    /// Waiting to run (possibly scheduled later).
    pub fn is_pending(&self) -> bool {
        self.state == TaskState::Pending
    }
    /// Claimed and executing.
    pub fn is_running(&self) -> bool {
        self.state == TaskState::Running
    }
    /// Finished successfully.
    pub fn is_completed(&self) -> bool {
        self.state == TaskState::Completed
    }
    /// The last attempt failed (retrying or terminal; see [`is_terminal`](Self::is_terminal)).
    pub fn is_failed(&self) -> bool {
        self.state == TaskState::Failed
    }
    /// Failed, with a retry scheduled.
    pub fn is_retrying(&self) -> bool {
        self.is_failed() && self.next_retry_at.is_some()
    }
    /// Cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.state == TaskState::Cancelled
    }
    /// In a final state: completed, cancelled, or failed with no retry left.
    pub fn is_terminal(&self) -> bool {
        match self.state {
            TaskState::Completed | TaskState::Cancelled => true,
            TaskState::Failed => self.next_retry_at.is_none(),
            TaskState::Pending | TaskState::Running => false,
        }
    }
    /// Has a stored result (it completed).
    pub fn has_result(&self) -> bool {
        self.result.is_some()
    }
    /// Has a stored error.
    pub fn has_error(&self) -> bool {
        self.error.is_some()
    }

    /// The result decoded into the task's output type.
    ///
    /// # Errors
    /// [`Error::ArgsMismatch`] when the stored value does not fit `T`; `Ok(None)` when there is
    /// no result yet.
    pub fn result_as<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.result
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|source| Error::ArgsMismatch {
                task: self.name.clone(),
                index: None,
                source,
            })
    }

    /// The arguments decoded into their type.
    ///
    /// # Errors
    /// [`Error::ArgsMismatch`] when they do not fit `T`.
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.args.clone()).map_err(|source| Error::ArgsMismatch {
            task: self.name.clone(),
            index: None,
            source,
        })
    }
}

fn utc(t: sea_orm::prelude::DateTimeWithTimeZone) -> DateTime<Utc> {
    t.with_timezone(&Utc)
}

fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

impl From<task::Model> for TaskRecord {
    fn from(m: task::Model) -> Self {
        let result = m.result.map(|stored| match stored {
            Value::Object(mut map) if map.contains_key("value") => {
                map.remove("value").unwrap_or(Value::Null)
            }
            other => other,
        });
        TaskRecord {
            id: m.id,
            name: m.name,
            queue: m.queue,
            args: m.args,
            state: m.state,
            result,
            error: m.error,
            retry_count: count(m.retry_count),
            max_retries: count(m.max_retries),
            attempt: count(m.attempt),
            scheduled_at: utc(m.scheduled_at),
            started_at: m.started_at.map(utc),
            completed_at: m.completed_at.map(utc),
            created_at: utc(m.created_at),
            next_retry_at: m.next_retry_at.map(utc),
            worker_id: m.worker_id,
            locked_until: m.locked_until.map(utc),
            timeout_seconds: m.timeout_seconds,
            priority: m.priority,
            tags: m.tags,
            cancel_requested_at: m.cancel_requested_at.map(utc),
            chain_id: m.chain_id,
            chain_step: m.chain_step.map(count),
            progress: m.progress,
            // Written only by tasklib's own statements; an entry that does not parse (edited
            // by hand) is left out rather than failing the whole read.
            errors: match m.errors {
                Value::Array(entries) => entries
                    .into_iter()
                    .filter_map(|e| serde_json::from_value(e).ok())
                    .collect(),
                _ => Vec::new(),
            },
            unique_key: m.unique_key,
            unique_window: m.unique_window.map(utc),
            trace_context: m.trace_context,
        }
    }
}
