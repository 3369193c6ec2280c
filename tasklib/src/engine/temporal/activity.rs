//! The activities: every registered task name is an activity of that name, run by the same
//! attempt rules as on every engine ([`crate::attempt`]), heartbeating while the handler
//! runs so that Temporal notices a worker that died (after the heartbeat timeout, the lock
//! timeout) and runs the activity again elsewhere.
//!
//! What an attempt decides is reported as Temporal understands it: a value completes the
//! activity; a retryable failure carries tasklib's backoff as its next retry delay; a
//! failure for good, a cancel and a snooze are non-retryable failures of their own types,
//! which the workflow reads ([`super::workflow`]).
//!
//! The SDK registers an activity under the name its definition type gives; tasklib's names
//! are known only at run time, so [`TaskActivity::definition`] reads the name being
//! registered from a thread-local set just before ([`Runner::register_all`]).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use temporalio_common::ActivityDefinition;
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityError, ActivityImplementer, ExecutableActivity,
};
use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use super::plan::{
    ActivityMeta, CANCEL_FAILURE, FAILED_FAILURE, RETRY_FAILURE, SNOOZE_FAILURE, from_payload,
    json_payload,
};
use super::worker::Shared;
use crate::attempt::{self, Write};
use crate::backend::BackendType;
use crate::task::{TaskContext, TaskError};
use crate::worker::{TaskOutcome, WorkerEvent};

thread_local! {
    /// The activity name being registered (see the module docs).
    static REGISTERING: RefCell<String> = const { RefCell::new(String::new()) };
}

/// One activity type: a tasklib task name.
pub(crate) struct TaskActivity {
    name: String,
}

impl ActivityDefinition for TaskActivity {
    type Input = RawValue;
    type Output = RawValue;

    fn name(&self) -> &str {
        &self.name
    }
}

impl ExecutableActivity for TaskActivity {
    type Implementer = Runner;
    const REQUIRES_INSTANCE: bool = true;

    fn definition() -> Self {
        TaskActivity {
            name: REGISTERING.with(|name| name.borrow().clone()),
        }
    }

    fn execute(
        receiver: Option<Arc<Runner>>,
        ctx: ActivityContext,
        input: RawValue,
    ) -> BoxFuture<'static, Result<RawValue, ActivityError>> {
        Box::pin(async move {
            match receiver {
                Some(runner) => runner.run(ctx, input).await,
                None => Err(failure(
                    "the tasklib activity runner is missing".to_owned(),
                    FAILED_FAILURE,
                    None,
                )),
            }
        })
    }
}

/// Runs the activities of one group of queues, in the group's slots.
pub(crate) struct Runner {
    pub(crate) shared: Arc<Shared>,
    /// The group's slots: tasks of its queues running at once.
    pub(crate) slots: Arc<Semaphore>,
}

impl ActivityImplementer for Runner {
    fn register_all(self: Arc<Self>, defs: &mut ActivityDefinitions) {
        for name in self.shared.names.clone() {
            REGISTERING.with(|registering| *registering.borrow_mut() = name);
            defs.register_activity::<TaskActivity>(Arc::clone(&self));
        }
    }
}

fn failure(message: String, kind: &str, delay: Option<Duration>) -> ActivityError {
    let failure = ApplicationFailure::builder(message)
        .type_name(kind.to_owned())
        .non_retryable(kind != RETRY_FAILURE)
        .maybe_next_retry_delay(delay)
        .build();
    ActivityError::application(failure)
}

impl Runner {
    async fn run(&self, ctx: ActivityContext, input: RawValue) -> Result<RawValue, ActivityError> {
        let shared = &self.shared;
        let info = ctx.info().clone();
        let name = info.activity_type.clone();
        let id = Uuid::parse_str(&info.activity_id).unwrap_or_default();
        let Some(registered) = shared.registry.get(&name) else {
            return Err(failure(
                format!("task `{name}` is not registered on this worker"),
                FAILED_FAILURE,
                None,
            ));
        };
        let args = match input.payloads.first() {
            Some(payload) => from_payload::<Value>(payload),
            None => Ok(Value::Object(Map::new())),
        };
        // A second payload comes from tasklib's workflow; a foreign caller sends only the
        // arguments, and the task type's settings apply.
        let meta = match input.payloads.get(1).map(from_payload::<ActivityMeta>) {
            Some(Ok(meta)) => meta,
            _ => ActivityMeta {
                snoozes: 0,
                max_retries: registered
                    .info
                    .max_retries
                    .unwrap_or(shared.config.max_retries()),
                timeout_seconds: None,
            },
        };
        let timeout = meta
            .timeout_seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .or(registered.info.timeout)
            .or(shared.config.default_task_timeout());
        let retry_count = info.attempt.saturating_sub(1);
        let attempt = retry_count + meta.snoozes + 1;

        let Ok(_slot) = Arc::clone(&self.slots).acquire_owned().await else {
            return Err(failure(
                "the worker pool is shutting down".to_owned(),
                RETRY_FAILURE,
                None,
            ));
        };
        let started = Instant::now();
        shared.counters.received.fetch_add(1, Ordering::Relaxed);
        shared.counters.running.fetch_add(1, Ordering::Relaxed);
        shared.emit(WorkerEvent::TaskStarted {
            id,
            name: name.clone(),
            attempt,
        });
        let (cancel, cancelled) = watch::channel(false);
        let task_ctx = TaskContext {
            id,
            name: name.clone(),
            queue: info.task_queue.clone(),
            attempt,
            retry_count,
            max_retries: meta.max_retries,
            worker_id: shared.config.worker_id().to_owned(),
            tags: Value::Object(Map::new()),
            cancelled,
            progress: crate::progress::Progress::Unsupported(BackendType::Temporal),
        };
        let outcome = match args {
            Ok(args) => {
                let run = attempt::run(registered.handler.as_ref(), args, task_ctx, timeout);
                tokio::pin!(run);
                let every = (info
                    .heartbeat_timeout
                    .unwrap_or(shared.config.lock_timeout())
                    / 3)
                .max(Duration::from_millis(100));
                let mut beat = tokio::time::interval(every);
                beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut asked_to_cancel = false;
                loop {
                    tokio::select! {
                        outcome = &mut run => break outcome,
                        _ = beat.tick() => {
                            if let Err(e) = ctx.record_heartbeat(()).await {
                                tracing::warn!(error = %e, %id, "could not record a heartbeat");
                            }
                        }
                        () = ctx.cancelled(), if !asked_to_cancel => {
                            asked_to_cancel = true;
                            let _ = cancel.send(true);
                        }
                    }
                }
            }
            Err(reason) => Err(TaskError::permanent(format!(
                "the arguments of task `{name}` cannot be read: {reason}"
            ))),
        };
        let write = attempt::decide(
            &shared.policy,
            retry_count,
            meta.max_retries,
            outcome,
            *cancel.borrow(),
        );
        let (result, event) = match write {
            Write::Complete(value) => match json_payload(&value) {
                Ok(payload) => (Ok(RawValue::new(vec![payload])), TaskOutcome::Completed),
                Err(e) => (
                    Err(failure(
                        format!("the output cannot be written as JSON: {e}"),
                        FAILED_FAILURE,
                        None,
                    )),
                    TaskOutcome::Failed,
                ),
            },
            Write::Fail {
                error,
                retry_in: Some(delay),
            } => (
                Err(failure(error, RETRY_FAILURE, Some(delay))),
                TaskOutcome::Retrying { delay },
            ),
            Write::Fail {
                error,
                retry_in: None,
            } => (
                Err(failure(error, FAILED_FAILURE, None)),
                TaskOutcome::Failed,
            ),
            Write::Cancel(reason) => (
                Err(failure(reason, CANCEL_FAILURE, None)),
                TaskOutcome::Cancelled,
            ),
            Write::Snooze(delay) => (
                Err(failure(
                    format!("snoozed for {delay:?}"),
                    SNOOZE_FAILURE,
                    Some(delay),
                )),
                TaskOutcome::Snoozed { delay },
            ),
        };
        shared.counters.running.fetch_sub(1, Ordering::Relaxed);
        shared.emit(WorkerEvent::TaskFinished {
            id,
            name,
            outcome: event,
            duration: started.elapsed(),
        });
        result
    }
}
