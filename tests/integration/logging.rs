//! What a worker logs: its start line, and a span per task execution.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tasklib::{TaskContext, TaskError, TaskOutcome};

use crate::common::{Job, TestResult, finished, job, setup};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime: every task of the pool runs on this thread, where the capturing
// subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn worker_logs_its_start_and_a_span_per_task() -> TestResult {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Callsites first hit on another test's thread (with no subscriber) cached "never
    // interested"; make them ask again now that this thread has one.
    tracing::callsite::rebuild_interest_cache();

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

    let text = String::from_utf8(capture.0.lock().map_err(|_| "poisoned")?.clone())?;
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
