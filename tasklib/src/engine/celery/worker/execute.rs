//! Running one message: the handler under the attempt rules every engine shares
//! ([`crate::attempt`]), then the outcome written as Celery writes it — the result
//! (`SETEX` + `PUBLISH`), a retry re-published with `retries + 1` and an `eta`, or the next
//! chain step published with the result prepended — and only then the ack.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tracing::Instrument;
use uuid::Uuid;

use super::consumer::Delivery;
use super::{Shared, unacked};
use crate::Result;
use crate::attempt::{self, Write};
use crate::engine::celery::meta::{EXC_MODULE, Meta, State, exception, meta_key};
use crate::engine::celery::protocol::{
    DecodeError, Incoming, MAX_RETRIES_HEADER, Outgoing, SNOOZES_HEADER, STEP_HEADER, Signature,
    TRACEPARENT_HEADER,
};
use crate::engine::celery::submit::{encode, to_json};
use crate::task::{TaskContext, TaskError};
use crate::worker::{TaskOutcome, WorkerEvent};

/// `exc_type` of a failure raised by a tasklib handler.
const EXC_TYPE: &str = "TaskFailed";

/// Runs a delivered message in the slot `permit` holds.
pub(crate) async fn execute(
    shared: Arc<Shared>,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
    alive: mpsc::Sender<()>,
) {
    let started = Instant::now();
    let headers = &delivery.incoming.envelope.headers;
    let id = headers.id.parse::<Uuid>().unwrap_or_default();
    let name = headers.task.clone();
    // The same span as the PostgreSQL engine's (without `task.wait_ms`: a message does not
    // say when it was due), continuing the submitter's trace when the message carries one.
    let span = tracing::info_span!(
        parent: None,
        "tasklib.task",
        task.id = %id,
        task.name = %name,
        task.attempt = headers.retries + snoozes(headers) + 1,
        task.queue = %delivery.incoming.envelope.properties.delivery_info.routing_key,
    );
    crate::trace::continue_trace(
        &span,
        headers
            .extra
            .get(TRACEPARENT_HEADER)
            .and_then(Value::as_str),
    );
    shared.counters.running.fetch_add(1, Ordering::Relaxed);
    let outcome = async {
        match run(&shared, &delivery.incoming, id).await {
            Ok(write) => finish(&shared, &delivery.incoming, write).await,
            Err(not_registered) => not_registered,
        }
    }
    .instrument(span)
    .await;
    shared.counters.running.fetch_sub(1, Ordering::Relaxed);
    let outcome = match outcome {
        Ok(outcome) => {
            let mut conn = shared.broker.conn();
            match unacked::ack(&mut conn, &delivery.tag).await {
                Ok(()) => outcome,
                Err(e) => {
                    tracing::warn!(error = %shared.broker.error(e), %id, "could not ack; the message may run again");
                    outcome
                }
            }
        }
        Err(error) => {
            // Not acked: the message comes back after the visibility timeout.
            tracing::error!(error = %error, %id, task = %name, "could not write the outcome; the message will be redelivered");
            TaskOutcome::Lost
        }
    };
    shared.release(&delivery.tag);
    shared.emit(WorkerEvent::TaskFinished {
        id,
        name,
        outcome,
        duration: started.elapsed(),
    });
    drop(permit);
    drop(alive);
}

/// Runs the handler and decides what to write; `Err` carries the outcome of a message that
/// no handler here can run (already written).
async fn run(
    shared: &Shared,
    incoming: &Incoming,
    id: Uuid,
) -> Result<(Write, u32), Result<TaskOutcome>> {
    let headers = &incoming.envelope.headers;
    let Some(registered) = shared.registry.get(&headers.task) else {
        // As a Celery worker does: a FAILURE naming the task.
        tracing::error!(task = %headers.task, %id, "received a task that is not registered here");
        let result = exception("NotRegistered", &headers.task, "celery.exceptions");
        let written = write_meta(shared, incoming, State::Failure, result, None).await;
        return Err(written.map(|()| TaskOutcome::Failed));
    };
    let info = &registered.info;
    let retries = headers.retries;
    let snoozes = snoozes(headers);
    let max_retries = headers
        .extra
        .get(MAX_RETRIES_HEADER)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .or(info.max_retries)
        .unwrap_or(shared.config.max_retries());
    let limits: Vec<f64> = headers
        .timelimit
        .iter()
        .flatten()
        .copied()
        .filter(|s| *s > 0.0 && s.is_finite())
        .collect();
    let timeout = limits
        .into_iter()
        .reduce(f64::min)
        .map(Duration::from_secs_f64)
        .or(info.timeout)
        .or(shared.config.default_task_timeout());
    let (_never, cancelled) = watch::channel(false);
    let ctx = TaskContext {
        id,
        name: headers.task.clone(),
        queue: incoming
            .envelope
            .properties
            .delivery_info
            .routing_key
            .clone(),
        attempt: retries + snoozes + 1,
        retry_count: retries,
        max_retries,
        worker_id: shared.config.worker_id().to_owned(),
        tags: Value::Object(Map::new()),
        cancelled,
        progress: crate::progress::Progress::Unsupported(crate::backend::BackendType::Celery),
    };
    shared.emit(WorkerEvent::TaskStarted {
        id,
        name: headers.task.clone(),
        attempt: retries + snoozes + 1,
    });
    let outcome = match task_args(&incoming.body.0, &incoming.body.1) {
        Ok(args) => attempt::run(registered.handler.as_ref(), args, ctx, timeout).await,
        Err(reason) => Err(TaskError::permanent(reason)),
    };
    Ok((
        attempt::decide(&shared.policy, retries, max_retries, outcome, false),
        retries,
    ))
}

/// Celery's `(args, kwargs)` as the JSON a handler decodes: keyword arguments as an object,
/// positional ones as an array (mapped onto the fields in order).
fn task_args(args: &[Value], kwargs: &Map<String, Value>) -> Result<Value, String> {
    match (args.is_empty(), kwargs.is_empty()) {
        (true, _) => Ok(Value::Object(kwargs.clone())),
        (false, true) => Ok(Value::Array(args.to_vec())),
        (false, false) => Err(format!(
            "the message has both positional arguments {} and keyword arguments {}: a tasklib \
             handler takes one or the other (send all of them by keyword, or all by position)",
            Value::Array(args.to_vec()),
            Value::Object(kwargs.clone())
        )),
    }
}

/// Writes what `decide` said; returns the outcome to report.
async fn finish(
    shared: &Shared,
    incoming: &Incoming,
    (write, retries): (Write, u32),
) -> Result<TaskOutcome> {
    let mut rest = incoming.body.2.chain.clone().unwrap_or_default();
    match write {
        Write::Complete(value) => {
            let next = rest.pop();
            let next_message = next
                .map(|step| next_step(shared, incoming, step, rest, value.clone()))
                .transpose()?;
            write_meta(
                shared,
                incoming,
                State::Success,
                value,
                next_message.as_ref().map(|m| m.id.as_str()),
            )
            .await?;
            if let Some(message) = next_message {
                push(shared, &message.list_key(), &encode(&message)?).await?;
            }
            Ok(TaskOutcome::Completed)
        }
        Write::Fail {
            error,
            retry_in: Some(delay),
        } => {
            let again = retry_message(incoming, retries + 1, delay)?;
            let key = crate::engine::celery::protocol::list_key(
                &incoming.envelope.properties.delivery_info.routing_key,
                incoming.envelope.properties.priority,
            );
            push(shared, &key, &again).await?;
            let result = exception(EXC_TYPE, &error, EXC_MODULE);
            write_meta(shared, incoming, State::Retry, result, None).await?;
            Ok(TaskOutcome::Retrying { delay })
        }
        Write::Fail {
            error,
            retry_in: None,
        } => {
            let result = exception(EXC_TYPE, &error, EXC_MODULE);
            write_meta(shared, incoming, State::Failure, result, None).await?;
            cancel_rest(shared, incoming, &rest, "failed").await?;
            Ok(TaskOutcome::Failed)
        }
        Write::Snooze(delay) => {
            // Sent again with its retry count unchanged: Celery's `retry` with a countdown
            // that does not count.
            let mut snoozed = incoming.clone();
            let count = snoozes(&snoozed.envelope.headers) + 1;
            snoozed
                .envelope
                .headers
                .extra
                .insert(SNOOZES_HEADER.to_owned(), json!(count));
            let again = retry_message(&snoozed, retries, delay)?;
            let key = crate::engine::celery::protocol::list_key(
                &incoming.envelope.properties.delivery_info.routing_key,
                incoming.envelope.properties.priority,
            );
            push(shared, &key, &again).await?;
            let result = exception(EXC_TYPE, &format!("snoozed for {delay:?}"), EXC_MODULE);
            write_meta(shared, incoming, State::Retry, result, None).await?;
            Ok(TaskOutcome::Snoozed { delay })
        }
        Write::Cancel(reason) => {
            let result = exception("TaskRevokedError", &reason, "celery.exceptions");
            write_meta(shared, incoming, State::Revoked, result, None).await?;
            cancel_rest(shared, incoming, &rest, "was cancelled").await?;
            Ok(TaskOutcome::Cancelled)
        }
    }
}

/// The steps after a step that failed or was cancelled end `REVOKED` (tasklib's cancelled),
/// naming the step. (A Celery worker marks them `FAILURE` with the same exception instead.)
async fn cancel_rest(
    shared: &Shared,
    incoming: &Incoming,
    rest: &[Signature],
    what: &str,
) -> Result<()> {
    let headers = &incoming.envelope.headers;
    let step = match headers.extra.get(STEP_HEADER).and_then(Value::as_u64) {
        Some(n) => format!("step {n}"),
        None => "an earlier step".to_owned(),
    };
    let reason = format!(
        "cancelled: {step} of the chain (task {}) {what}",
        headers.id
    );
    for signature in rest {
        let Some(step_id) = signature.options.get("task_id").and_then(Value::as_str) else {
            continue;
        };
        let meta = Meta::new(
            State::Revoked,
            step_id,
            exception("TaskRevokedError", &reason, "celery.exceptions"),
            None,
            Utc::now(),
        );
        publish_meta(shared, step_id, &meta).await?;
    }
    Ok(())
}

/// The next chain step's message: the result in front of its arguments (unless the
/// signature is immutable), the rest of the chain with it.
fn next_step(
    shared: &Shared,
    incoming: &Incoming,
    step: Signature,
    rest: Vec<Signature>,
    value: Value,
) -> Result<Outgoing> {
    let headers = &incoming.envelope.headers;
    let option = |key: &str| step.options.get(key);
    let id = option("task_id")
        .and_then(Value::as_str)
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    let queue = option("queue")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| shared.registry.get(&step.task).map(|r| r.info.queue))
        .unwrap_or_else(|| {
            incoming
                .envelope
                .properties
                .delivery_info
                .routing_key
                .clone()
        });
    let priority = option("priority")
        .and_then(Value::as_u64)
        .map_or(0, |p| p.min(9) as u8);
    let mut extra_headers = option("headers")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(n) = headers.extra.get(STEP_HEADER).and_then(Value::as_u64) {
        extra_headers.insert(STEP_HEADER.to_owned(), json!(n + 1));
    }
    let mut args = Vec::with_capacity(step.args.len() + 1);
    if !step.immutable {
        args.push(value);
    }
    args.extend(step.args);
    Ok(Outgoing {
        task: step.task,
        id,
        queue,
        priority,
        args,
        kwargs: step.kwargs,
        chain: Some(rest),
        eta: None,
        retries: 0,
        timelimit: [
            option("time_limit").and_then(Value::as_f64),
            option("soft_time_limit").and_then(Value::as_f64),
        ],
        root_id: headers
            .root_id
            .clone()
            .unwrap_or_else(|| headers.id.clone()),
        parent_id: Some(headers.id.clone()),
        origin: shared.config.worker_id().to_owned(),
        extra_headers,
        delivery_tag: Uuid::now_v7().to_string(),
    })
}

/// The same message again for its next attempt: `retries` and `eta` set, a new delivery tag,
/// everything else as it came.
/// How many times the task snoozed before this delivery.
fn snoozes(headers: &crate::engine::celery::protocol::Headers) -> u32 {
    headers
        .extra
        .get(SNOOZES_HEADER)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

fn retry_message(incoming: &Incoming, retries: u32, delay: Duration) -> Result<String> {
    let mut envelope = incoming.envelope.clone();
    envelope.headers.retries = retries;
    let eta = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    envelope.headers.eta = Some(crate::engine::celery::protocol::format_time(eta));
    envelope.headers.extra.remove("redelivered");
    envelope.properties.delivery_tag = Uuid::now_v7().to_string();
    envelope
        .properties
        .delivery_info
        .extra
        .remove("redelivered");
    serde_json::to_string(&envelope).map_err(|source| crate::Error::Serialize {
        task: incoming.envelope.headers.task.clone(),
        source,
    })
}

async fn push(shared: &Shared, key: &str, payload: &str) -> Result<()> {
    let mut conn = shared.broker.conn();
    redis::cmd("LPUSH")
        .arg(key)
        .arg(payload)
        .exec_async(&mut conn)
        .await
        .map_err(|e| shared.broker.error(e))
}

/// Writes this message's result in `state`.
async fn write_meta(
    shared: &Shared,
    incoming: &Incoming,
    state: State,
    result: Value,
    child: Option<&str>,
) -> Result<()> {
    let headers = &incoming.envelope.headers;
    let mut meta = Meta::new(
        state,
        &headers.id,
        result,
        headers.parent_id.clone(),
        Utc::now(),
    );
    if let Some(child) = child {
        meta = meta.with_child(child);
    }
    publish_meta(shared, &headers.id, &meta).await
}

/// `SETEX` then `PUBLISH`, as Celery's Redis backend does.
async fn publish_meta(shared: &Shared, id: &str, meta: &Meta) -> Result<()> {
    let key = meta_key(id);
    let json = to_json(meta)?;
    let mut conn = shared.results.conn();
    redis::pipe()
        .cmd("SETEX")
        .arg(&key)
        .arg(shared.result_expires)
        .arg(&json)
        .ignore()
        .cmd("PUBLISH")
        .arg(&key)
        .arg(&json)
        .ignore()
        .exec_async(&mut conn)
        .await
        .map_err(|e| shared.results.error(e))
}

/// A message that is not Celery's: logged, and failed when its id can be read.
pub(crate) async fn unreadable(shared: &Shared, raw: &str, error: &DecodeError) {
    let id = serde_json::from_str::<Value>(raw).ok().and_then(|v| {
        v.pointer("/headers/id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    tracing::error!(error = %error, id = ?id, "dropped a message that is not a Celery message v2");
    if let Some(id) = id {
        let meta = Meta::new(
            State::Failure,
            &id,
            exception("DecodeError", &error.to_string(), "kombu.exceptions"),
            None,
            Utc::now(),
        );
        if let Err(e) = publish_meta(shared, &id, &meta).await {
            tracing::error!(error = %e, %id, "could not record the failure");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_keyword_or_positional() {
        let kwargs: Map<String, Value> = json!({"a": 1}).as_object().cloned().unwrap_or_default();
        assert_eq!(task_args(&[], &kwargs), Ok(json!({"a": 1})));
        assert_eq!(
            task_args(&[json!(1), json!(2)], &Map::new()),
            Ok(json!([1, 2]))
        );
        assert_eq!(task_args(&[], &Map::new()), Ok(json!({})));
        assert!(task_args(&[json!(1)], &kwargs).is_err_and(|e| e.contains("both")));
    }
}
