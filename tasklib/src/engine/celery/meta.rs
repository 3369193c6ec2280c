//! Results as Celery's Redis result backend keeps them: `celery-task-meta-<id>`, a JSON
//! object written with `SETEX` (the result expiry) and `PUBLISH`ed on a channel of the same
//! name, and how its states map onto [`TaskStatus`].
//!
//! | Celery state | [`TaskStatus`] | value / error |
//! |---|---|---|
//! | no key | unknown: [`Error::NotFound`](crate::Error::NotFound) | |
//! | `PENDING`, `RECEIVED` | pending | |
//! | `RETRY` | pending | the failed attempt's error |
//! | `STARTED` (and custom states, such as `PROGRESS`) | running | |
//! | `SUCCESS` | completed | `result` |
//! | `FAILURE` | failed | `exc_type: exc_message` |
//! | `REVOKED` | cancelled | the reason |

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::protocol::format_time;
use crate::result::{TaskResult, TaskStatus};

/// Prefix of a result's key and channel.
pub(crate) const META_PREFIX: &str = "celery-task-meta-";
/// Prefix of the key listing a chain's steps (tasklib's own: Celery has no chain id).
pub(crate) const CHAIN_PREFIX: &str = "tasklib-chain-";
/// `exc_module` of the failures tasklib handlers raise.
pub(crate) const EXC_MODULE: &str = "tasklib";

/// The key (and channel) of a task's result.
pub(crate) fn meta_key(id: &str) -> String {
    format!("{META_PREFIX}{id}")
}

/// The key of a chain's step list.
pub(crate) fn chain_key(id: Uuid) -> String {
    format!("{CHAIN_PREFIX}{id}")
}

/// Celery's task states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Pending,
    Retry,
    Success,
    Failure,
    Revoked,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Retry => "RETRY",
            State::Success => "SUCCESS",
            State::Failure => "FAILURE",
            State::Revoked => "REVOKED",
        }
    }
}

/// One stored result, in Celery's key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) result: Value,
    #[serde(default)]
    pub(crate) traceback: Option<String>,
    #[serde(default)]
    pub(crate) children: Option<Vec<Value>>,
    #[serde(default)]
    pub(crate) date_done: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parent_id: Option<String>,
    #[serde(default)]
    pub(crate) task_id: Option<String>,
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

impl Meta {
    /// A result in `state`; `date_done` is set for the ready states, as Celery does.
    pub(crate) fn new(
        state: State,
        id: &str,
        result: Value,
        parent_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Meta {
        let ready = matches!(state, State::Success | State::Failure | State::Revoked);
        Meta {
            status: state.as_str().to_owned(),
            result,
            traceback: None,
            children: Some(Vec::new()),
            date_done: ready.then(|| format_time(now)),
            parent_id,
            task_id: Some(id.to_owned()),
            extra: Map::new(),
        }
    }

    /// What tasklib writes at submit, so that a submitted id reads `pending` and an unknown
    /// one `not found`.
    pub(crate) fn pending(id: &str) -> Meta {
        Meta {
            date_done: None,
            ..Meta::new(State::Pending, id, Value::Null, None, Utc::now())
        }
    }

    /// Names the next chain step as this result's child, as Celery's `AsyncResult.as_tuple`.
    pub(crate) fn with_child(mut self, child: &str) -> Meta {
        self.children = Some(vec![json!([[child, null], null])]);
        self
    }

    /// The result as tasklib reports it.
    pub(crate) fn to_result(&self, id: Uuid) -> TaskResult {
        let (status, value, error) = match self.status.as_str() {
            "SUCCESS" => (TaskStatus::Completed, Some(self.result.clone()), None),
            "FAILURE" => (TaskStatus::Failed, None, Some(exception_text(&self.result))),
            "REVOKED" => (
                TaskStatus::Cancelled,
                None,
                Some(exception_text(&self.result)),
            ),
            "RETRY" => (
                TaskStatus::Pending,
                None,
                Some(exception_text(&self.result)),
            ),
            "PENDING" | "RECEIVED" => (TaskStatus::Pending, None, None),
            _ => (TaskStatus::Running, None, None),
        };
        TaskResult {
            id,
            status,
            value,
            error,
        }
    }
}

/// Celery's serialized exception: `{"exc_type", "exc_message": [...], "exc_module"}`.
pub(crate) fn exception(exc_type: &str, message: &str, module: &str) -> Value {
    json!({"exc_type": exc_type, "exc_message": [message], "exc_module": module})
}

/// `Type: message` of a serialized exception (just the message for tasklib's own).
fn exception_text(result: &Value) -> String {
    let message = match result.get("exc_message") {
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return result.to_string(),
    };
    let module = result.get("exc_module").and_then(Value::as_str);
    match result.get("exc_type").and_then(Value::as_str) {
        Some(_) if module == Some(EXC_MODULE) => message,
        Some(kind) => format!("{kind}: {message}"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .unwrap_or_default()
    }

    /// The exact JSON Celery's Redis backend stores; `AsyncResult.get()` reads it (checked
    /// in the integration tests).
    #[test]
    fn golden_success_and_failure() -> Result<(), serde_json::Error> {
        let done = Meta::new(State::Success, "abc", json!(40), None, now());
        assert_eq!(
            serde_json::to_string(&done)?,
            r#"{"status":"SUCCESS","result":40,"traceback":null,"children":[],"date_done":"2026-01-02T03:04:05.000000+00:00","task_id":"abc"}"#
        );
        let failed = Meta::new(
            State::Failure,
            "abc",
            exception("TaskFailed", "disk on fire", EXC_MODULE),
            Some("p".into()),
            now(),
        );
        assert_eq!(
            serde_json::to_string(&failed)?,
            r#"{"status":"FAILURE","result":{"exc_message":["disk on fire"],"exc_module":"tasklib","exc_type":"TaskFailed"},"traceback":null,"children":[],"date_done":"2026-01-02T03:04:05.000000+00:00","parent_id":"p","task_id":"abc"}"#
        );
        assert_eq!(
            serde_json::to_string(&Meta::pending("abc"))?,
            r#"{"status":"PENDING","result":null,"traceback":null,"children":[],"date_done":null,"task_id":"abc"}"#
        );
        let chained = Meta::new(State::Success, "abc", json!(5), None, now()).with_child("n");
        assert_eq!(chained.children, Some(vec![json!([["n", null], null])]));
        Ok(())
    }

    #[test]
    fn states_map_onto_task_statuses() -> Result<(), serde_json::Error> {
        let id = Uuid::nil();
        let read = |text: &str| -> Result<TaskResult, serde_json::Error> {
            Ok(serde_json::from_str::<Meta>(text)?.to_result(id))
        };
        let done = read(
            r#"{"status": "SUCCESS", "result": [1, 2], "traceback": null, "children": [], "date_done": "x", "task_id": "t"}"#,
        )?;
        assert_eq!(
            (done.status, done.value),
            (TaskStatus::Completed, Some(json!([1, 2])))
        );
        let failed = read(
            r#"{"status": "FAILURE", "result": {"exc_type": "ZeroDivisionError", "exc_message": ["division by zero"], "exc_module": "builtins"}, "traceback": "Traceback..."}"#,
        )?;
        assert_eq!(failed.status, TaskStatus::Failed);
        assert_eq!(
            failed.error.as_deref(),
            Some("ZeroDivisionError: division by zero")
        );
        let ours = read(
            r#"{"status": "FAILURE", "result": {"exc_type": "TaskFailed", "exc_message": ["boom"], "exc_module": "tasklib"}}"#,
        )?;
        assert_eq!(ours.error.as_deref(), Some("boom"));
        let revoked = read(
            r#"{"status": "REVOKED", "result": {"exc_type": "TaskRevokedError", "exc_message": ["revoked"], "exc_module": "celery.exceptions"}}"#,
        )?;
        assert_eq!(revoked.status, TaskStatus::Cancelled);
        let retry = read(
            r#"{"status": "RETRY", "result": {"exc_type": "TaskFailed", "exc_message": ["later"], "exc_module": "tasklib"}}"#,
        )?;
        assert_eq!(
            (retry.status, retry.error.as_deref()),
            (TaskStatus::Pending, Some("later"))
        );
        assert_eq!(
            read(r#"{"status": "STARTED", "result": {"pid": 1}}"#)?.status,
            TaskStatus::Running
        );
        assert_eq!(
            read(r#"{"status": "PROGRESS", "result": {"done": 3}}"#)?.status,
            TaskStatus::Running
        );
        assert_eq!(
            read(r#"{"status": "PENDING", "result": null}"#)?.status,
            TaskStatus::Pending
        );
        Ok(())
    }
}
