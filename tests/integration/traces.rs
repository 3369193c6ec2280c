//! Traces that follow a task (feature `otel`): the submitter's trace context is stored with
//! the task, and the worker's `tasklib.task` span continues it; spans exported to an
//! in-memory OpenTelemetry exporter.

use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use tasklib::{Chain, Schedule, SubmitOptions, TaskContext, TaskError, TaskOutcome, WorkerEvent};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

use crate::common::{Env, Job, TestResult, job, setup_with, wait_for};

/// A subscriber for this thread that exports every span to an in-memory exporter, and the
/// exporter. Tests using it run on a current-thread runtime, so the worker pool's tasks run
/// on the thread where it is the default.
fn exporting() -> (
    tracing::subscriber::DefaultGuard,
    SdkTracerProvider,
    InMemorySpanExporter,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tasklib-tests")));
    let guard = crate::common::scoped_subscriber(subscriber);
    (guard, provider, exporter)
}

/// The finished spans named `name`.
fn named(exporter: &InMemorySpanExporter, name: &str) -> TestResult<Vec<SpanData>> {
    Ok(exporter
        .get_finished_spans()?
        .into_iter()
        .filter(|span| span.name == name)
        .collect())
}

/// The one finished span named `name`.
fn one(exporter: &InMemorySpanExporter, name: &str) -> TestResult<SpanData> {
    let mut spans = named(exporter, name)?;
    match spans.len() {
        1 => Ok(spans.remove(0)),
        n => Err(format!("{n} spans named {name}, expected one").into()),
    }
}

/// The `tasklib.task` spans of task `id`.
fn task_spans(exporter: &InMemorySpanExporter, id: Uuid) -> TestResult<Vec<SpanData>> {
    let id = id.to_string();
    Ok(named(exporter, "tasklib.task")?
        .into_iter()
        .filter(|span| {
            span.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "task.id" && kv.value.as_str() == id.as_str())
        })
        .collect())
}

/// The W3C `traceparent` of a span.
fn traceparent(span: &SpanData) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.span_context.trace_id(),
        span.span_context.span_id(),
        span.span_context.trace_flags().to_u8()
    )
}

async fn setup() -> TestResult<Env> {
    setup_with(|b| {
        b.base_retry_delay(Duration::from_millis(10))
            .poll_interval(Duration::from_millis(100))
    })
    .await
}

/// A handler whose first attempt asks for a retry, and which opens a span of its own.
fn register_handler(tasks: &tasklib::TaskLib) -> TestResult {
    tasks.register(|job: Job, ctx: TaskContext| async move {
        tracing::info_span!("inside_handler", attempt = ctx.attempt()).in_scope(|| {
            tracing::info!("working");
        });
        if job.label == "retried" && ctx.attempt() == 1 {
            return Err(TaskError::retry_after(Duration::ZERO, "once more"));
        }
        Ok::<_, TaskError>(job.label)
    })?;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_continues_the_trace_of_the_span_that_submitted_it() -> TestResult {
    let (_guard, provider, exporter) = exporting();
    let env = setup().await?;
    register_handler(&env.tasks)?;
    let pool = env.tasks.spawn_workers(2)?;
    let mut events = pool.subscribe();

    let request = tracing::info_span!("submit_request");
    let (traced, retried) = async {
        let traced = env.tasks.submit(job("traced")).await?;
        let retried = env.tasks.submit(job("retried")).await?;
        TestResult::Ok((traced, retried))
    }
    .instrument(request.clone())
    .await?;
    drop(request);
    // Outside any span: a root, in a trace of its own.
    let untraced = env.tasks.submit(job("untraced")).await?;

    // Every attempt's outcome, until the three tasks completed.
    let mut outcomes = Vec::new();
    while [traced, retried, untraced]
        .iter()
        .any(|id| !outcomes.contains(&(*id, TaskOutcome::Completed)))
    {
        outcomes.push(
            wait_for(&mut events, |event| match event {
                WorkerEvent::TaskFinished { id, outcome, .. } => Some((*id, outcome.clone())),
                _ => None,
            })
            .await?,
        );
    }
    assert!(
        matches!(
            outcomes.iter().find(|(id, _)| *id == retried),
            Some((_, TaskOutcome::Retrying { .. }))
        ),
        "{outcomes:?}"
    );
    // Every attempt's span has ended once the pool has drained (this thread runs them all).
    pool.shutdown().await?;
    provider.force_flush()?;

    let request = one(&exporter, "submit_request")?;
    let request_trace = request.span_context.trace_id();
    assert_ne!(request_trace, TraceId::INVALID);

    // What was stored: the request span's traceparent; nothing for the untraced task.
    let tasks = &env.tasks;
    let stored = |id| async move {
        TestResult::Ok(
            tasks
                .get_task(id)
                .await?
                .ok_or("task not found")?
                .trace_context,
        )
    };
    assert_eq!(stored(traced).await?, Some(traceparent(&request)));
    assert_eq!(stored(retried).await?, Some(traceparent(&request)));
    assert_eq!(stored(untraced).await?, None);

    // The task's span: in the request's trace, its parent the request span (remote: it was
    // read back from the row), with the task's fields as attributes.
    let task = match task_spans(&exporter, traced)?.as_slice() {
        [task] => task.clone(),
        other => return Err(format!("{} spans for the traced task", other.len()).into()),
    };
    assert_eq!(task.span_context.trace_id(), request_trace);
    assert_eq!(task.parent_span_id, request.span_context.span_id());
    assert!(task.parent_span_is_remote);
    for key in [
        "task.name",
        "task.queue",
        "task.attempt",
        "task.wait_ms",
        "task.id",
    ] {
        assert!(
            task.attributes.iter().any(|kv| kv.key.as_str() == key),
            "{key} missing from {:?}",
            task.attributes
        );
    }

    // A span opened in the handler is the task span's child.
    let inside: Vec<SpanData> = named(&exporter, "inside_handler")?
        .into_iter()
        .filter(|span| span.parent_span_id == task.span_context.span_id())
        .collect();
    assert_eq!(inside.len(), 1, "no handler span under the task's span");
    assert_eq!(inside[0].span_context.trace_id(), request_trace);

    // Both attempts of the retried task continue the same trace, from the same parent.
    let attempts = task_spans(&exporter, retried)?;
    assert_eq!(attempts.len(), 2, "one span per attempt");
    for attempt in &attempts {
        assert_eq!(attempt.span_context.trace_id(), request_trace);
        assert_eq!(attempt.parent_span_id, request.span_context.span_id());
    }

    // The untraced task's span is a root, in a new trace.
    let root = match task_spans(&exporter, untraced)?.as_slice() {
        [root] => root.clone(),
        other => return Err(format!("{} spans for the untraced task", other.len()).into()),
    };
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    assert_ne!(root.span_context.trace_id(), TraceId::INVALID);
    assert_ne!(root.span_context.trace_id(), request_trace);
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn every_submit_path_keeps_the_context_and_schedules_keep_none() -> TestResult {
    let (_guard, provider, exporter) = exporting();
    let env = setup().await?;
    register_handler(&env.tasks)?;

    let submit_all = || async {
        let mut ids = vec![env.tasks.submit(job("one")).await?];
        ids.extend(
            env.tasks
                .submit_many([job("a"), job("b")], SubmitOptions::new())
                .await?,
        );
        ids.push(
            env.tasks
                .submit_unique(job("u"), SubmitOptions::new().unique_key("k"))
                .await?
                .id,
        );
        ids.push(
            env.tasks
                .submit_json("job", json!({"label": "json"}), SubmitOptions::new())
                .await?,
        );
        ids.extend(
            env.tasks
                .submit_chain(Chain::new(job("first")).then::<Job>([]))
                .await?
                .steps,
        );
        let txn = sea_orm::TransactionTrait::begin(env.tasks.db()?).await?;
        ids.push(
            env.tasks
                .submit_in(&txn, job("in"), SubmitOptions::new())
                .await?,
        );
        txn.commit().await?;
        TestResult::Ok(ids)
    };
    let request = tracing::info_span!("submit_request");
    let traced = submit_all().instrument(request.clone()).await?;
    drop(request);
    // The same again outside any span (the unique key is still held: the same task back).
    let untraced = submit_all().await?;
    // Registered inside a span: the tasks of its ticks have no submitter all the same.
    tracing::info_span!("schedule_request").in_scope(|| {
        env.tasks
            .schedule(Schedule::new("every-second", "* * * * * *")?.args(job("scheduled")))
    })?;
    provider.force_flush()?;
    let request = traceparent(&one(&exporter, "submit_request")?);

    for id in &traced {
        let record = env.tasks.get_task(*id).await?.ok_or("task not found")?;
        assert_eq!(
            record.trace_context.as_deref(),
            Some(request.as_str()),
            "task {} ({})",
            record.id,
            record.name
        );
    }
    for id in untraced.iter().filter(|id| !traced.contains(id)) {
        let record = env.tasks.get_task(*id).await?.ok_or("task not found")?;
        assert_eq!(record.trace_context, None, "task {}", record.id);
    }

    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let tick = wait_for(&mut events, |event| match event {
        WorkerEvent::TaskFinished { id, name, .. } => {
            (name == "job" && !traced.contains(id) && !untraced.contains(id)).then_some(*id)
        }
        _ => None,
    })
    .await?;
    pool.shutdown().await?;
    let record = env.tasks.get_task(tick).await?.ok_or("task not found")?;
    assert_eq!(record.args, json!({"label": "scheduled"}));
    assert_eq!(record.trace_context, None);
    Ok(())
}

/// The Celery engine carries the context in the message header `traceparent`, and its Rust
/// worker continues it.
#[cfg(feature = "celery")]
#[tokio::test(flavor = "current_thread")]
async fn a_celery_task_continues_the_trace_of_its_submitter() -> TestResult {
    let (_guard, provider, exporter) = exporting();
    let redis = tasklib_test_utils::TestRedis::start()?;
    let config = tasklib::Config::for_backend(tasklib::BackendType::Celery)
        .celery_broker_url(redis.url(0))
        .celery_result_backend(redis.url(1))
        .poll_interval(Duration::from_millis(200))
        .build()?;
    let tasks = tasklib::TaskLib::connect_with(config).await?;
    register_handler(&tasks)?;
    let pool = tasks.spawn_workers(1)?;
    let request = tracing::info_span!("submit_request");
    let traced = tasks
        .submit(job("traced"))
        .instrument(request.clone())
        .await?;
    drop(request);
    let untraced = tasks.submit(job("untraced")).await?;
    for id in [traced, untraced] {
        let result = tasks.wait_result(id, crate::common::PATIENCE).await?;
        assert_eq!(result.status, tasklib::TaskStatus::Completed, "{result:?}");
    }
    pool.shutdown().await?;
    provider.force_flush()?;

    let request = one(&exporter, "submit_request")?;
    let task = match task_spans(&exporter, traced)?.as_slice() {
        [task] => task.clone(),
        other => return Err(format!("{} spans for the traced task", other.len()).into()),
    };
    assert_eq!(
        task.span_context.trace_id(),
        request.span_context.trace_id()
    );
    assert_eq!(task.parent_span_id, request.span_context.span_id());
    assert!(task.parent_span_is_remote);
    let root = match task_spans(&exporter, untraced)?.as_slice() {
        [root] => root.clone(),
        other => return Err(format!("{} spans for the untraced task", other.len()).into()),
    };
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    assert_ne!(
        root.span_context.trace_id(),
        request.span_context.trace_id()
    );
    Ok(())
}
