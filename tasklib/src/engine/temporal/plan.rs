//! What the generic workflow is given and what it records, the ids of chain steps, and the
//! mapping of tasklib's options onto Temporal's. Pure: unit-tested without a server.
//!
//! One workflow type, [`WORKFLOW_TYPE`], runs a [`Plan`]: one step for a task, several for a
//! chain. Each step is one activity named after the task; the workflow records each finished
//! step's [`Outcome`] in its memo ([`OUTCOMES_MEMO`]), so that one `DescribeWorkflowExecution`
//! tells where every step stands.

use std::collections::HashMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use uuid::Uuid;

use crate::config::Config;
use crate::result::{TaskResult, TaskStatus};
use crate::submit::NewTask;
use crate::{Error, Result};

/// The workflow type every tasklib task and chain runs as.
pub(crate) const WORKFLOW_TYPE: &str = "tasklib";
/// The memo key holding the step ids of a workflow, set at start.
pub(crate) const STEPS_MEMO: &str = "tasklib_steps";
/// The memo key holding the outcomes of the finished steps, updated by the workflow.
pub(crate) const OUTCOMES_MEMO: &str = "tasklib_outcomes";
/// The start-to-close timeout of an activity whose task has no time limit: Temporal wants
/// one. A worker that dies is noticed by the heartbeat timeout long before.
pub(crate) const NO_TIME_LIMIT: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Added to a task's time limit for the activity's start-to-close timeout: the handler is
/// stopped at its limit by the worker itself (a retryable failure, as on every engine);
/// Temporal's timeout only catches a worker that could not report.
pub(crate) const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// Application failure types the activity reports, read back by the workflow.
pub(crate) const SNOOZE_FAILURE: &str = "TasklibSnooze";
/// The handler cancelled its task ([`TaskError::cancel`](crate::TaskError::cancel)).
pub(crate) const CANCEL_FAILURE: &str = "TasklibCancel";
/// The task failed for good (a permanent error, or its retries are used up).
pub(crate) const FAILED_FAILURE: &str = "TasklibFailed";
/// A failed attempt that will be retried.
pub(crate) const RETRY_FAILURE: &str = "TasklibRetry";

/// The workflow's input: the steps to run in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<StepPlan>,
}

/// One step: an activity and its options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct StepPlan {
    /// The step's task id: the activity id.
    pub(crate) id: Uuid,
    /// The task name: the activity type.
    pub(crate) name: String,
    /// The Temporal task queue of the activity: the tasklib queue.
    pub(crate) queue: String,
    /// The first step's whole arguments; a later step's extra positional arguments (an
    /// array), after which the previous step's output is put in front.
    pub(crate) args: Value,
    pub(crate) max_retries: u32,
    pub(crate) timeout_seconds: Option<f64>,
    /// Temporal's priority key (1 highest .. 5 lowest), when not the default.
    pub(crate) priority_key: Option<u32>,
    /// The retry backoff: first delay, multiplier and longest delay, in milliseconds.
    pub(crate) retry_initial_ms: u64,
    pub(crate) retry_multiplier: f64,
    pub(crate) retry_max_ms: u64,
    /// How long the activity may go without a heartbeat: the lock timeout.
    pub(crate) heartbeat_ms: u64,
}

/// What the activity gets besides the task's arguments (a second payload; absent when the
/// activity is called by a workflow that is not tasklib's).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ActivityMeta {
    /// Snoozes so far: they count in the attempt number, not in the retries.
    pub(crate) snoozes: u32,
    /// The task's retries.
    pub(crate) max_retries: u32,
    /// The task's time limit, if any.
    #[serde(default)]
    pub(crate) timeout_seconds: Option<f64>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Ended {
    Completed,
    Failed,
    Cancelled,
}

/// A finished step, as the workflow records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) id: Uuid,
    pub(crate) ended: Ended,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Outcome {
    pub(crate) fn to_result(&self) -> TaskResult {
        TaskResult {
            id: self.id,
            status: match self.ended {
                Ended::Completed => TaskStatus::Completed,
                Ended::Failed => TaskStatus::Failed,
                Ended::Cancelled => TaskStatus::Cancelled,
            },
            value: self.value.clone(),
            error: self.error.clone(),
        }
    }
}

impl StepPlan {
    /// The step for a checked row.
    pub(crate) fn new(task: &NewTask, config: &Config) -> Result<StepPlan> {
        Ok(StepPlan {
            id: task.id,
            name: task.name.clone(),
            queue: task.queue.clone(),
            args: task.args.clone(),
            max_retries: u32::try_from(task.max_retries).unwrap_or(0),
            timeout_seconds: task.timeout_seconds,
            priority_key: priority_key(task.priority)?,
            retry_initial_ms: millis(config.base_retry_delay()),
            retry_multiplier: config.retry_backoff_multiplier(),
            retry_max_ms: millis(config.max_retry_delay()),
            heartbeat_ms: millis(config.lock_timeout()),
        })
    }

    /// The activity's start-to-close timeout.
    pub(crate) fn start_to_close(&self) -> Duration {
        match self.timeout_seconds {
            Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s) + TIMEOUT_MARGIN,
            _ => NO_TIME_LIMIT,
        }
    }

    /// The activity's heartbeat timeout.
    pub(crate) fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(1000))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// tasklib's priority (higher first, 0 by default) as Temporal's priority key (1 highest,
/// 5 lowest, 3 by default): `3 - priority`; `None` for the default.
///
/// # Errors
/// [`Error::InvalidOption`] outside -2 ..= 2, which Temporal's five keys cannot express.
pub(crate) fn priority_key(priority: i32) -> Result<Option<u32>> {
    match priority {
        0 => Ok(None),
        -2..=2 => Ok(u32::try_from(3 - priority).ok()),
        _ => Err(Error::InvalidOption {
            option: "priority",
            reason: format!(
                "{priority} cannot be expressed on Temporal, whose priority keys run from 1 \
                 (highest) to 5 (lowest) around the default 3: use -2 to 2 (keys 5 to 1)"
            ),
        }),
    }
}

/// The largest chain: step ids carry their index in 16 bits.
pub(crate) const MAX_CHAIN_STEPS: usize = u16::MAX as usize - 1;

/// A chain's id and its steps' ids, made from the id the client chose: the chain keeps its
/// version-7 id with the last two bytes cleared; step `k` is the same id as version 8 with
/// `k + 1` in the last two bytes. So a step's id names its chain (the workflow that runs
/// it) without any store: see [`step_of`].
///
/// # Errors
/// [`Error::InvalidOption`] for more than [`MAX_CHAIN_STEPS`] steps.
pub(crate) fn chain_ids(chain: Uuid, steps: usize) -> Result<(Uuid, Vec<Uuid>)> {
    if steps > MAX_CHAIN_STEPS {
        return Err(Error::InvalidOption {
            option: "chain",
            reason: format!(
                "{steps} steps: the Temporal engine runs chains of at most {MAX_CHAIN_STEPS}"
            ),
        });
    }
    let mut bytes = chain.into_bytes();
    bytes[6] = (bytes[6] & 0x0F) | 0x70;
    bytes[14] = 0;
    bytes[15] = 0;
    let chain_id = Uuid::from_bytes(bytes);
    let ids = (0..steps)
        .map(|k| {
            let mut step = bytes;
            step[6] = (step[6] & 0x0F) | 0x80;
            let n = u16::try_from(k + 1).unwrap_or(u16::MAX).to_be_bytes();
            step[14] = n[0];
            step[15] = n[1];
            Uuid::from_bytes(step)
        })
        .collect();
    Ok((chain_id, ids))
}

/// The chain and index of a step id made by [`chain_ids`]; `None` for any other id.
pub(crate) fn step_of(id: Uuid) -> Option<(Uuid, usize)> {
    if id.get_version_num() != 8 {
        return None;
    }
    let mut bytes = id.into_bytes();
    let n = u16::from_be_bytes([bytes[14], bytes[15]]);
    if n == 0 {
        return None;
    }
    bytes[6] = (bytes[6] & 0x0F) | 0x70;
    bytes[14] = 0;
    bytes[15] = 0;
    Some((Uuid::from_bytes(bytes), usize::from(n - 1)))
}

/// A JSON payload as every Temporal SDK's default converter writes it (`json/plain`).
///
/// # Errors
/// What serde says when `value` cannot be written as JSON.
pub(crate) fn json_payload<T: Serialize>(value: &T) -> Result<Payload, serde_json::Error> {
    Ok(Payload {
        metadata: HashMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data: serde_json::to_vec(value)?,
        ..Default::default()
    })
}

/// A payload read as JSON. `binary/null` (Python's `None`) reads as `null`.
///
/// # Errors
/// Why it cannot be read: another encoding, or JSON that does not fit `T`.
pub(crate) fn from_payload<T: DeserializeOwned>(payload: &Payload) -> Result<T, String> {
    let encoding = payload
        .metadata
        .get("encoding")
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .unwrap_or_default();
    match encoding.as_str() {
        "json/plain" => serde_json::from_slice(&payload.data).map_err(|e| e.to_string()),
        "binary/null" => serde_json::from_value(Value::Null).map_err(|e| e.to_string()),
        other => Err(format!(
            "a payload encoded as `{other}`: tasklib reads only JSON (`json/plain`)"
        )),
    }
}

/// The arguments of step `k`: the first step's own, or the previous output in front of a
/// later step's extra arguments (the chain rule of every engine).
pub(crate) fn step_args(step: &StepPlan, index: usize, previous: Option<&Value>) -> Value {
    match (index, previous, &step.args) {
        (0, _, args) | (_, None, args) => args.clone(),
        (_, Some(previous), Value::Array(extra)) => {
            let mut args = Vec::with_capacity(extra.len() + 1);
            args.push(previous.clone());
            args.extend(extra.iter().cloned());
            Value::Array(args)
        }
        (_, Some(previous), other) => Value::Array(vec![previous.clone(), other.clone()]),
    }
}

/// The outcome of the steps after step `failed`, which ended `how`.
pub(crate) fn cancelled_after(plan: &Plan, failed: usize, how: Ended) -> Vec<Outcome> {
    let what = match how {
        Ended::Cancelled => "was cancelled",
        _ => "failed",
    };
    let cause = plan.steps.get(failed).map(|s| s.id).unwrap_or_default();
    plan.steps
        .iter()
        .skip(failed + 1)
        .map(|step| Outcome {
            id: step.id,
            ended: Ended::Cancelled,
            value: None,
            error: Some(format!(
                "cancelled: step {failed} of the chain (task {cause}) {what}"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn step_ids_name_their_chain_and_index() -> Result<()> {
        let chain = Uuid::now_v7();
        let (id, steps) = chain_ids(chain, 3)?;
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(steps.len(), 3);
        for (k, step) in steps.iter().enumerate() {
            assert_eq!(step_of(*step), Some((id, k)));
        }
        assert_eq!(step_of(id), None);
        assert_eq!(step_of(Uuid::now_v7()), None);
        assert!(chain_ids(chain, MAX_CHAIN_STEPS + 1).is_err());
        Ok(())
    }

    #[test]
    fn priorities_map_onto_temporal_keys_or_are_refused() -> Result<()> {
        assert_eq!(priority_key(0)?, None);
        assert_eq!(priority_key(2)?, Some(1));
        assert_eq!(priority_key(-2)?, Some(5));
        assert!(matches!(
            priority_key(3),
            Err(Error::InvalidOption {
                option: "priority",
                ..
            })
        ));
        assert!(priority_key(i32::MIN).is_err());
        Ok(())
    }

    #[test]
    fn later_steps_get_the_previous_output_first() {
        let step = |args| StepPlan {
            id: Uuid::nil(),
            name: "n".into(),
            queue: "q".into(),
            args,
            max_retries: 0,
            timeout_seconds: None,
            priority_key: None,
            retry_initial_ms: 1,
            retry_multiplier: 1.0,
            retry_max_ms: 1,
            heartbeat_ms: 1,
        };
        let first = step(json!({"a": 1}));
        assert_eq!(step_args(&first, 0, None), json!({"a": 1}));
        let later = step(json!([10]));
        assert_eq!(step_args(&later, 1, Some(&json!(5))), json!([5, 10]));
    }

    #[test]
    fn payloads_round_trip_as_plain_json() -> Result<(), String> {
        let payload = json_payload(&json!({"a": 1})).map_err(|e| e.to_string())?;
        assert_eq!(payload.data, br#"{"a":1}"#);
        assert_eq!(from_payload::<Value>(&payload)?, json!({"a": 1}));
        Ok(())
    }
}
