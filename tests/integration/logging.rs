//! What a worker logs: its start line, and a span per task execution.

use tasklib::{TaskContext, TaskError, TaskOutcome};

use crate::common::{Job, LogCapture, TestResult, finished, job, setup};

// A current-thread runtime: every task of the pool runs on this thread, where the capturing
// subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn worker_logs_its_start_and_a_span_per_task() -> TestResult {
    let (capture, _guard) = LogCapture::install(tracing::Level::DEBUG);

    let env = setup().await?;
    env.tasks.register(|job: Job, _: TaskContext| async move {
        tracing::info!("inside the handler");
        Ok::<_, TaskError>(job.label)
    })?;
    let pool = env.tasks.spawn_workers(3)?;
    let mut events = pool.subscribe();
    let id = env.tasks.submit(job("traced")).await?;
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Completed);
    pool.shutdown().await?;

    let text = capture.text();
    let start = format!(
        "Starting TaskWorker {} with concurrency=3",
        env.tasks.config().worker_id()
    );
    assert!(text.contains(&start), "no start line in:\n{text}");
    let handler_line = text
        .lines()
        .find(|l| l.contains("inside the handler"))
        .ok_or_else(|| format!("handler log missing:\n{text}"))?;
    for field in [
        format!("task.id={id}"),
        "task.name=job".into(),
        "task.attempt=1".into(),
        "task.queue=default".into(),
    ] {
        assert!(
            handler_line.contains(&field),
            "{field} missing from: {handler_line}"
        );
    }
    Ok(())
}
