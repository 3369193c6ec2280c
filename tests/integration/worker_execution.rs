//! Executing tasks: results, retries with backoff, terminal failure, timeouts, panics,
//! permanent errors, retry-after, blocking handlers, cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tasklib::{
    CancelOutcome, Error, SubmitOptions, TaskContext, TaskError, TaskOutcome, TaskState,
    TaskWorker, WorkerEvent,
};

use crate::common::{
    Job, TestResult, finished, finished_all, job, listener_up, raw, setup, setup_with, started,
    wait_for,
};

fn fast_retries(b: tasklib::ConfigBuilder) -> tasklib::ConfigBuilder {
    b.base_retry_delay(Duration::from_millis(100))
        .retry_backoff_multiplier(2.0)
        .poll_interval(Duration::from_millis(50))
}

#[tokio::test]
async fn retries_follow_the_backoff_schedule_then_fail_for_good() -> TestResult {
    let env = setup_with(fast_retries).await?;
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    env.tasks.register(move |_: Job, ctx: TaskContext| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            Err::<String, _>(TaskError::retry(format!("attempt {} broke", ctx.attempt())))
        }
    })?;
    let pool = env.tasks.spawn_workers(2)?;
    let mut events = pool.subscribe();
    let id = env
        .tasks
        .submit_with(job("flaky"), SubmitOptions::new().max_retries(3))
        .await?;

    let mut outcomes = Vec::new();
    let mut retry_times = Vec::new();
    loop {
        let outcome = finished(&mut events, id).await?;
        let row = env.tasks.get_task(id).await?.ok_or("missing")?;
        if let Some(at) = row.next_retry_at {
            retry_times.push((at, row.started_at.ok_or("no start")?));
        }
        outcomes.push(outcome.clone());
        if outcome == TaskOutcome::Failed {
            break;
        }
    }
    let delays: Vec<Duration> = outcomes
        .iter()
        .filter_map(|o| match o {
            TaskOutcome::Retrying { delay } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays,
        vec![
            Duration::from_millis(100),
            Duration::from_millis(200),
            Duration::from_millis(400)
        ]
    );
    // Each retry is scheduled at least its delay after the failing attempt started.
    for ((next, started), delay) in retry_times.iter().zip(&delays) {
        assert!(*next - *started >= chrono::Duration::from_std(*delay)?);
    }
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert_eq!(task.state, TaskState::Failed);
    assert!(task.is_terminal());
    assert_eq!(task.retry_count, 3);
    assert_eq!(task.attempt, 4);
    assert_eq!(calls.load(Ordering::SeqCst), 4, "1 attempt + 3 retries");
    assert_eq!(task.error.as_deref(), Some("attempt 4 broke"));
    assert!(task.completed_at.is_some());
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn timeout_panic_and_permanent_errors_are_recorded_and_the_worker_goes_on() -> TestResult {
    let env = setup_with(fast_retries).await?;
    env.tasks.register(|job: Job, _: TaskContext| async move {
        match job.label.as_str() {
            "sleep" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(job.label)
            }
            "panic" => panic!("handler exploded"),
            "permanent" => Err(TaskError::permanent("the record is gone")),
            _ => Ok(job.label),
        }
    })?;
    let pool = env.tasks.spawn_workers(4)?;
    let mut events = pool.subscribe();
    let none = SubmitOptions::new().max_retries(0);
    let slow = env
        .tasks
        .submit_with(
            job("sleep"),
            none.clone().timeout(Duration::from_millis(300)),
        )
        .await?;
    let panics = env.tasks.submit_with(job("panic"), none.clone()).await?;
    let permanent = env
        .tasks
        .submit_with(job("permanent"), SubmitOptions::new().max_retries(5))
        .await?;

    assert_eq!(
        finished_all(&mut events, &[slow, panics, permanent]).await?,
        vec![TaskOutcome::Failed; 3]
    );
    let error = |id| {
        let tasks = env.tasks.clone();
        async move { tasks.get_task(id).await.map(|t| t.and_then(|t| t.error)) }
    };
    assert_eq!(error(slow).await?.as_deref(), Some("timed out after 300ms"));
    assert_eq!(
        error(panics).await?.as_deref(),
        Some("handler panicked: handler exploded")
    );
    assert_eq!(
        error(permanent).await?.as_deref(),
        Some("the record is gone")
    );
    let task = env.tasks.get_task(permanent).await?.ok_or("missing")?;
    assert_eq!(
        (task.retry_count, task.attempt, task.next_retry_at),
        (5, 1, None),
        "permanent: no retry despite 5 allowed; the retries count as used"
    );

    // The pool survived all of it.
    let ok = env.tasks.submit(job("fine")).await?;
    assert_eq!(finished(&mut events, ok).await?, TaskOutcome::Completed);
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn retry_after_uses_the_handlers_delay() -> TestResult {
    let env = setup_with(fast_retries).await?;
    env.tasks.register(|_: Job, ctx: TaskContext| async move {
        if ctx.attempt() == 1 {
            Err(TaskError::retry_after(
                Duration::from_millis(700),
                "rate limited",
            ))
        } else {
            Ok(format!("ok on attempt {}", ctx.attempt()))
        }
    })?;
    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let id = env.tasks.submit(job("x")).await?;
    assert_eq!(
        finished(&mut events, id).await?,
        TaskOutcome::Retrying {
            delay: Duration::from_millis(700)
        }
    );
    let waiting = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert!(waiting.is_retrying());
    assert_eq!(waiting.error.as_deref(), Some("rate limited"));
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Completed);
    let done = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert_eq!(
        done.result_as::<String>()?.as_deref(),
        Some("ok on attempt 2")
    );
    assert!(done.started_at.ok_or("no start")? >= waiting.next_retry_at.ok_or("no retry time")?);
    assert_eq!(done.error, None, "a success clears the last error");
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn blocking_handlers_run_on_the_blocking_pool() -> TestResult {
    let env = setup().await?;
    env.tasks.register_blocking(|job: Job, _: TaskContext| {
        // A blocking call would stall an async worker thread; here it is fine.
        std::thread::sleep(Duration::from_millis(20));
        let name = std::thread::current().name().unwrap_or_default().to_owned();
        Ok::<_, TaskError>(format!("{} on {name}", job.label))
    })?;
    let pool = env.tasks.spawn_workers(2)?;
    let mut events = pool.subscribe();
    let id = env.tasks.submit(job("resize")).await?;
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Completed);
    let result: String = env
        .tasks
        .get_task(id)
        .await?
        .ok_or("missing")?
        .result_as()?
        .ok_or("no result")?;
    assert!(result.starts_with("resize on "), "{result}");
    pool.shutdown().await?;
    Ok(())
}

/// Registers a `Job` handler that returns its label; the counter says how often it ran.
fn counting_handler(tasks: &tasklib::TaskLib) -> TestResult<Arc<AtomicU32>> {
    let ran = Arc::new(AtomicU32::new(0));
    let counter = ran.clone();
    tasks.register(move |job: Job, _: TaskContext| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, TaskError>(job.label)
        }
    })?;
    Ok(ran)
}

#[tokio::test]
async fn cancelling_a_waiting_task_means_it_never_runs() -> TestResult {
    let env = setup().await?;
    let ran = counting_handler(&env.tasks)?;
    let doomed = env
        .tasks
        .submit_with(
            job("doomed"),
            SubmitOptions::new().delay(Duration::from_millis(300)),
        )
        .await?;
    assert_eq!(env.tasks.cancel(doomed).await?, CancelOutcome::Cancelled);
    let again = env.tasks.cancel(doomed).await;
    assert!(
        matches!(
            again,
            Err(Error::InvalidState {
                state: TaskState::Cancelled,
                ..
            })
        ),
        "{again:?}"
    );
    assert!(
        env.tasks
            .cancel(uuid::Uuid::now_v7())
            .await
            .is_err_and(|e| e.is_not_found())
    );

    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_millis(50))
        .spawn()?;
    let mut events = pool.subscribe();
    // A task submitted after it, and due after it, runs: the cancelled one was skipped.
    let later = env
        .tasks
        .submit_with(
            job("later"),
            SubmitOptions::new().delay(Duration::from_millis(600)),
        )
        .await?;
    assert_eq!(finished(&mut events, later).await?, TaskOutcome::Completed);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    let task = env.tasks.get_task(doomed).await?.ok_or("missing")?;
    assert_eq!(task.state, TaskState::Cancelled);
    assert_eq!(task.attempt, 0);
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_task_claimed_with_its_cancellation_requested_never_starts() -> TestResult {
    let env = setup().await?;
    let ran = counting_handler(&env.tasks)?;
    // What a task looks like when cancellation was asked for while this or another worker
    // held it claimed ahead, and it went back to the queue unstarted.
    let id = env.tasks.submit(job("asked to stop")).await?;
    raw(&env.db)
        .await?
        .execute(
            "UPDATE tasks SET cancel_requested_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let mut started_ids = Vec::new();
    let outcome = wait_for(&mut events, |e| match e {
        WorkerEvent::TaskStarted { id, .. } => {
            started_ids.push(*id);
            None
        }
        WorkerEvent::TaskFinished {
            id: done, outcome, ..
        } if *done == id => Some(outcome.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(outcome, TaskOutcome::Cancelled);
    assert!(
        started_ids.is_empty(),
        "no handler started: {started_ids:?}"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert_eq!(task.state, TaskState::Cancelled);
    assert_eq!(
        task.error.as_deref(),
        Some("cancelled: requested before the task started")
    );
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_running_handler_observes_cancellation() -> TestResult {
    let env = setup().await?;
    env.tasks.register(|_: Job, ctx: TaskContext| async move {
        tokio::select! {
            _ = ctx.cancelled() => Err(TaskError::cancel("stopped on request")),
            _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok("finished".to_owned()),
        }
    })?;
    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_secs(60))
        .spawn()?;
    let mut events = pool.subscribe();
    listener_up(&mut events).await?;
    let id = env.tasks.submit(job("long")).await?;
    started(&mut events, id).await?;
    assert_eq!(env.tasks.cancel(id).await?, CancelOutcome::Requested);
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Cancelled);
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert_eq!(task.state, TaskState::Cancelled);
    assert!(task.cancel_requested_at.is_some());
    assert_eq!(task.error.as_deref(), Some("cancelled: stopped on request"));
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn handlers_get_shared_state_without_globals() -> TestResult {
    struct Greeter {
        greeting: String,
        served: AtomicU32,
    }
    impl tasklib::Handler<Job> for Greeter {
        async fn run(&self, job: Job, _: TaskContext) -> Result<String, TaskError> {
            self.served.fetch_add(1, Ordering::SeqCst);
            Ok(format!("{}, {}", self.greeting, job.label))
        }
    }
    let env = setup().await?;
    env.tasks.register(Greeter {
        greeting: "Hello".into(),
        served: AtomicU32::new(0),
    })?;
    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let id = env.tasks.submit(job("Ada")).await?;
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Completed);
    let result: Option<String> = env
        .tasks
        .get_task(id)
        .await?
        .ok_or("missing")?
        .result_as()?;
    assert_eq!(result.as_deref(), Some("Hello, Ada"));
    pool.shutdown().await?;
    Ok(())
}
