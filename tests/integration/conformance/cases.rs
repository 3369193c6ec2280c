//! The cases, each a function of a [`Harness`]: written once, run on every engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tasklib::{
    Capability, Chain, Error, Schedule, SubmitOptions, TaskContext, TaskError, TaskStatus,
    TaskWorker, WorkerEvent,
};
use uuid::Uuid;

use super::Harness;
use super::tasks::{
    AddNumbers, Email, Explode, Flaky, Hold, Multiply, Report, Sleepy, register_common,
};
use crate::common::{PATIENCE, TestResult};

fn supports(h: &Harness, capability: Capability) -> bool {
    h.tasks.capabilities().supports(capability)
}

pub(crate) async fn submit_and_wait_for_the_result(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    let id = h.tasks.submit(AddNumbers { a: 15, b: 25 }).await?;
    let before = h.tasks.get_result(id).await?;
    assert_eq!(before.status, TaskStatus::Pending, "{before:?}");
    assert!(before.value.is_none());

    let pool = h.tasks.spawn_workers(2)?;
    let result = h.tasks.wait_result(id, PATIENCE).await?;
    pool.shutdown().await?;
    assert!(result.status == "completed", "{result:?}");
    assert_eq!(result.id, id);
    assert_eq!(result.value_as::<i64>()?, 40);
    assert_eq!(result.error, None);
    assert_eq!(h.tasks.get_result(id).await?, result);
    Ok(())
}

pub(crate) async fn results_of_unknown_ids_are_not_found(h: &Harness) -> TestResult {
    let unknown = Uuid::now_v7();
    let read = h.tasks.get_result(unknown).await;
    assert!(read.as_ref().is_err_and(Error::is_not_found), "{read:?}");
    let waited = h.tasks.wait_result(unknown, PATIENCE).await;
    assert!(
        waited.as_ref().is_err_and(Error::is_not_found),
        "{waited:?}"
    );
    Ok(())
}

pub(crate) async fn waiting_gives_up_at_its_timeout(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    // No worker runs: the task stays pending.
    let id = h.tasks.submit(AddNumbers { a: 1, b: 2 }).await?;
    let waited = h.tasks.wait_result(id, Duration::from_millis(300)).await;
    match waited {
        Err(Error::WaitTimeout { id: late, timeout }) => {
            assert_eq!(late, id);
            assert_eq!(timeout, Duration::from_millis(300));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(h.tasks.get_result(id).await?.status, TaskStatus::Pending);
    Ok(())
}

pub(crate) async fn delayed_submit_runs_no_earlier(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    let delay = Duration::from_millis(1500);
    let options = SubmitOptions::new().delay(delay);
    if !supports(h, Capability::Delay) {
        let refused = h
            .tasks
            .submit_with(AddNumbers { a: 1, b: 1 }, options)
            .await;
        assert!(refused.is_err_and(|e| e.is_unsupported()));
        return Ok(());
    }
    let pool = h.tasks.spawn_workers(2)?;
    let submitted = Instant::now();
    let id = h
        .tasks
        .submit_with(AddNumbers { a: 1, b: 1 }, options)
        .await?;
    let result = h.tasks.wait_result(id, PATIENCE).await?;
    let took = submitted.elapsed();
    pool.shutdown().await?;
    assert_eq!(result.value_as::<i64>()?, 2);
    assert!(
        took >= delay,
        "ran after {took:?}, before its delay of {delay:?}"
    );
    Ok(())
}

pub(crate) async fn failures_are_recorded(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    let id = h
        .tasks
        .submit(Explode {
            input: json!(null),
            message: "disk on fire".into(),
        })
        .await?;
    let pool = h.tasks.spawn_workers(1)?;
    let result = h.tasks.wait_result(id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(result.status, TaskStatus::Failed, "{result:?}");
    assert!(result.value.is_none());
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.contains("disk on fire")),
        "{result:?}"
    );
    let typed = result.value_as::<()>();
    assert!(
        matches!(typed, Err(Error::NotCompleted { .. })),
        "{typed:?}"
    );
    Ok(())
}

pub(crate) async fn retries_until_success(h: &Harness) -> TestResult {
    let calls = register_common(&h.tasks)?;
    let options = SubmitOptions::new().max_retries(3);
    if !supports(h, Capability::Retries) {
        let refused = h.tasks.submit_with(Flaky { failures: 2 }, options).await;
        assert!(refused.is_err_and(|e| e.is_unsupported()));
        return Ok(());
    }
    let id = h.tasks.submit_with(Flaky { failures: 2 }, options).await?;
    let pool = h.tasks.spawn_workers(1)?;
    let result = h.tasks.wait_result(id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(result.value_as::<u32>()?, 3, "{result:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Out of retries: the last error is the result's.
    let id = h
        .tasks
        .submit_with(Flaky { failures: 5 }, SubmitOptions::new().max_retries(1))
        .await?;
    let pool = h.tasks.spawn_workers(1)?;
    let result = h.tasks.wait_result(id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(result.status, TaskStatus::Failed, "{result:?}");
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.contains("attempt 2 fails"))
    );
    Ok(())
}

pub(crate) async fn a_snooze_runs_again_without_using_a_retry(h: &Harness) -> TestResult {
    h.tasks
        .register(|args: Sleepy, ctx: TaskContext| async move {
            if ctx.attempt() <= args.snoozes {
                return Err(TaskError::snooze(Duration::from_millis(100)));
            }
            Ok((ctx.attempt(), ctx.retry_count()))
        })?;
    // No retries at all: each snooze must come back anyway.
    let id = h
        .tasks
        .submit_with(Sleepy { snoozes: 2 }, SubmitOptions::new().max_retries(0))
        .await?;
    let pool = h.tasks.spawn_workers(1)?;
    let result = h.tasks.wait_result(id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(result.value_as::<(u32, u32)>()?, (3, 0), "{result:?}");
    Ok(())
}

pub(crate) async fn progress_is_kept_or_refused(h: &Harness) -> TestResult {
    h.tasks
        .register(|args: Report, ctx: TaskContext| async move {
            match ctx.set_progress(json!({ "rows": args.rows })).await {
                Ok(()) => Ok(true),
                Err(error) if error.is_unsupported() => Ok(false),
                Err(error) => Err(TaskError::retry(error)),
            }
        })?;
    let id = h.tasks.submit(Report { rows: 7 }).await?;
    let pool = h.tasks.spawn_workers(1)?;
    let result = h.tasks.wait_result(id, PATIENCE).await?;
    pool.shutdown().await?;
    let kept = supports(h, Capability::Progress);
    assert_eq!(result.value_as::<bool>()?, kept, "{result:?}");
    if kept {
        let record = h.tasks.get_task(id).await?.ok_or("task gone")?;
        assert_eq!(record.progress, Some(json!({ "rows": 7 })));
    }
    Ok(())
}

pub(crate) async fn three_step_chain_feeds_each_output_forward(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    // (2 + 3) * 10 + 1: Celery's rule, the previous output first.
    let chain = Chain::new(AddNumbers { a: 2, b: 3 })
        .then::<Multiply>([json!(10)])
        .then::<AddNumbers>([json!(1)]);
    if !supports(h, Capability::Chains) {
        let refused = h.tasks.submit_chain(chain).await;
        assert!(refused.is_err_and(|e| e.is_unsupported()));
        return Ok(());
    }
    let ids = h.tasks.submit_chain(chain).await?;
    assert_eq!(ids.steps.len(), 3);
    // Every id is known, and readable, before anything ran.
    for step in &ids.steps {
        assert_eq!(h.tasks.get_result(*step).await?.status, TaskStatus::Pending);
    }
    assert_eq!(
        h.tasks.get_result(ids.id).await?.status,
        TaskStatus::Pending
    );

    let pool = h.tasks.spawn_workers(2)?;
    let result = h.tasks.wait_result(ids.id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(result.status, TaskStatus::Completed, "{result:?}");
    assert_eq!(result.id, ids.id);
    assert_eq!(result.value_as::<i64>()?, 51);
    let values: Vec<i64> =
        futures::future::try_join_all(ids.steps.iter().map(|step| h.tasks.get_result(*step)))
            .await?
            .iter()
            .map(|r| r.value_as::<i64>())
            .collect::<Result<_, _>>()?;
    assert_eq!(values, [5, 50, 51]);
    Ok(())
}

pub(crate) async fn chain_steps_retry_on_their_own(h: &Harness) -> TestResult {
    let calls = register_common(&h.tasks)?;
    if !supports(h, Capability::Chains) || !supports(h, Capability::Retries) {
        return Ok(());
    }
    // 0 + 1 = 1 feeds `flaky` (failures = 1): it fails once, succeeds on attempt 2 and
    // returns 2, which the last step adds 10 to.
    let ids = h
        .tasks
        .submit_chain(
            Chain::new(AddNumbers { a: 0, b: 1 })
                .then::<Flaky>([])
                .options(SubmitOptions::new().max_retries(2))
                .then::<AddNumbers>([json!(10)]),
        )
        .await?;
    let pool = h.tasks.spawn_workers(2)?;
    let result = h.tasks.wait_result(ids.id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(result.value_as::<i64>()?, 12, "{result:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the middle step ran twice");
    Ok(())
}

pub(crate) async fn chain_stops_at_the_failed_step(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    if !supports(h, Capability::Chains) {
        return Ok(());
    }
    let ids = h
        .tasks
        .submit_chain(
            Chain::new(AddNumbers { a: 2, b: 3 })
                .then::<Explode>([json!("middle step broke")])
                .then::<AddNumbers>([json!(1)]),
        )
        .await?;
    let pool = h.tasks.spawn_workers(2)?;
    let result = h.tasks.wait_result(ids.id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(result.status, TaskStatus::Failed, "{result:?}");
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.contains("middle step broke")),
        "{result:?}"
    );
    let first = h.tasks.get_result(ids.steps[0]).await?;
    assert_eq!(first.value_as::<i64>()?, 5);
    let middle = h.tasks.get_result(ids.steps[1]).await?;
    assert_eq!(middle.status, TaskStatus::Failed);
    let last = h.tasks.get_result(ids.steps[2]).await?;
    assert_eq!(last.status, TaskStatus::Cancelled, "{last:?}");
    assert!(
        last.error.as_deref().is_some_and(|e| e.contains("step 1")),
        "the reason names the step that failed: {last:?}"
    );
    Ok(())
}

pub(crate) async fn cancel_a_waiting_task_and_a_chain(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    if !supports(h, Capability::Cancel) {
        return Ok(());
    }
    // No worker: everything waits.
    let id = h.tasks.submit(AddNumbers { a: 1, b: 1 }).await?;
    h.tasks.cancel(id).await?;
    let result = h.tasks.wait_result(id, PATIENCE).await?;
    assert_eq!(result.status, TaskStatus::Cancelled, "{result:?}");
    let again = h.tasks.cancel(id).await;
    assert!(
        matches!(again, Err(Error::InvalidState { .. })),
        "{again:?}"
    );

    if supports(h, Capability::Chains) {
        let ids = h
            .tasks
            .submit_chain(Chain::new(AddNumbers { a: 1, b: 1 }).then::<Multiply>([json!(2)]))
            .await?;
        h.tasks.cancel(ids.id).await?;
        let pool = h.tasks.spawn_workers(1)?;
        let chain = h.tasks.wait_result(ids.id, PATIENCE).await?;
        for step in &ids.steps {
            assert_eq!(
                h.tasks.get_result(*step).await?.status,
                TaskStatus::Cancelled
            );
        }
        pool.shutdown().await?;
        assert_eq!(chain.status, TaskStatus::Cancelled, "{chain:?}");
    }
    Ok(())
}

pub(crate) async fn workers_serve_two_queues_with_their_own_concurrency(h: &Harness) -> TestResult {
    if !supports(h, Capability::Queues) {
        return Ok(());
    }
    // Queue `wide` (3 slots): its tasks meet at a barrier of 3, which only three tasks running
    // at once can pass. Queue `narrow` (1 slot): never more than one at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let running = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let most = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    {
        let (barrier, running, most) = (barrier.clone(), running.clone(), most.clone());
        h.tasks.register(move |job: Hold, ctx: TaskContext| {
            let (barrier, running, most) = (barrier.clone(), running.clone(), most.clone());
            async move {
                let q = usize::from(ctx.queue() == "wide");
                let now = running[q].fetch_add(1, Ordering::SeqCst) + 1;
                most[q].fetch_max(now, Ordering::SeqCst);
                if q == 1 {
                    barrier.wait().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                running[q].fetch_sub(1, Ordering::SeqCst);
                Ok::<_, TaskError>(job.n)
            }
        })?;
    }
    let narrow = h
        .tasks
        .submit_many(
            (0..4).map(|n| Hold { n }),
            SubmitOptions::new().queue("narrow"),
        )
        .await?;
    let wide = h
        .tasks
        .submit_many(
            (0..6).map(|n| Hold { n }),
            SubmitOptions::new().queue("wide"),
        )
        .await?;
    let pool = TaskWorker::new(&h.tasks)
        .queue("narrow", 1)
        .queue("wide", 3)
        .spawn()?;
    assert_eq!(pool.concurrency(), 4);
    for id in narrow.iter().chain(&wide) {
        let result = h.tasks.wait_result(*id, PATIENCE).await?;
        assert!(result.is_completed(), "{result:?}");
    }
    pool.shutdown().await?;
    assert_eq!(
        most[0].load(Ordering::SeqCst),
        1,
        "narrow ran more than one at once"
    );
    assert_eq!(
        most[1].load(Ordering::SeqCst),
        3,
        "wide ran more than its 3 slots"
    );
    Ok(())
}

pub(crate) async fn bad_input_writes_nothing(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    let invalid = h
        .tasks
        .submit(Email {
            to: "not an address".into(),
        })
        .await;
    assert!(
        matches!(invalid, Err(Error::InvalidArgs { .. })),
        "{invalid:?}"
    );
    let mismatched = h
        .tasks
        .submit_json(
            "add_numbers",
            json!({"a": "fifteen", "b": 25}),
            SubmitOptions::new(),
        )
        .await;
    assert!(
        matches!(mismatched, Err(Error::ArgsMismatch { .. })),
        "{mismatched:?}"
    );
    let unknown = h
        .tasks
        .submit_json("no_such_task", json!({}), SubmitOptions::new())
        .await;
    assert!(
        matches!(unknown, Err(Error::UnknownTask { .. })),
        "{unknown:?}"
    );
    let bad_chain = h
        .tasks
        .submit_chain(
            Chain::new(AddNumbers { a: 1, b: 2 })
                .then::<Email>([])
                .then::<AddNumbers>([json!(1)])
                .options(SubmitOptions::new().delay(Duration::from_secs(5))),
        )
        .await;
    assert!(
        matches!(bad_chain, Err(Error::InvalidOption { .. })),
        "{bad_chain:?}"
    );
    let invalid_first = h
        .tasks
        .submit_chain(Chain::new(Email { to: "nope".into() }).then::<AddNumbers>([json!(1)]))
        .await;
    assert!(
        matches!(invalid_first, Err(Error::InvalidArgs { .. })),
        "{invalid_first:?}"
    );
    assert_eq!(h.written().await?, 0, "a refused submit wrote something");
    Ok(())
}

pub(crate) async fn submit_by_name_with_positional_or_keyword_arguments(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    let positional = h
        .tasks
        .submit_json("add_numbers", json!([15, 25]), SubmitOptions::new())
        .await?;
    let keyword = h
        .tasks
        .submit_json(
            "add_numbers",
            json!({"a": 15, "b": 25}),
            SubmitOptions::new(),
        )
        .await?;
    let too_many = h
        .tasks
        .submit_json("add_numbers", json!([1, 2, 3]), SubmitOptions::new())
        .await;
    assert!(
        matches!(too_many, Err(Error::ArgsMismatch { .. })),
        "{too_many:?}"
    );
    let pool = h.tasks.spawn_workers(2)?;
    for id in [positional, keyword] {
        let result = h.tasks.wait_result(id, PATIENCE).await?;
        assert_eq!(result.value_as::<i64>()?, 40, "{result:?}");
    }
    pool.shutdown().await?;
    Ok(())
}

pub(crate) async fn submit_by_name_without_the_task_type(h: &Harness) -> TestResult {
    // The producer has no registration: arguments are stored as given, and the worker that
    // registered the type maps and validates them when it runs the task.
    let positional = h
        .tasks
        .submit_by_name("add_numbers", json!([15, 25]), SubmitOptions::new())
        .await?;
    let invalid = h
        .tasks
        .submit_by_name(
            "email",
            json!({"to": "not an address"}),
            SubmitOptions::new(),
        )
        .await?;
    let not_args = h
        .tasks
        .submit_by_name("add_numbers", json!(15), SubmitOptions::new())
        .await;
    assert!(
        matches!(not_args, Err(Error::InvalidOption { .. })),
        "{not_args:?}"
    );
    register_common(&h.tasks)?;
    let pool = h.tasks.spawn_workers(2)?;
    let sum = h.tasks.wait_result(positional, PATIENCE).await?;
    let refused = h.tasks.wait_result(invalid, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(sum.value_as::<i64>()?, 40, "{sum:?}");
    assert_eq!(refused.status, TaskStatus::Failed, "{refused:?}");
    assert!(
        refused
            .error
            .as_deref()
            .is_some_and(|e| e.contains("invalid")),
        "{refused:?}"
    );
    Ok(())
}

/// A schedule submits its task at its ticks, or the engine refuses it at registration,
/// before anything is written (never ignored).
pub(crate) async fn a_schedule_submits_its_task_or_is_refused(h: &Harness) -> TestResult {
    register_common(&h.tasks)?;
    let schedule = Schedule::new("every-second", "* * * * * *")?.args(AddNumbers { a: 20, b: 22 });
    if !supports(h, Capability::Schedules) {
        let refused = h.tasks.schedule(schedule);
        assert!(
            matches!(
                refused,
                Err(Error::Unsupported {
                    capability: Capability::Schedules,
                    ..
                })
            ),
            "{refused:?}"
        );
        assert_eq!(h.written().await?, 0);
        return Ok(());
    }
    h.tasks.schedule(schedule)?;
    let pool = h.tasks.spawn_workers(2)?;
    let mut events = pool.subscribe();
    let id = crate::common::wait_for(&mut events, |event| match event {
        WorkerEvent::ScheduleTicked { task, .. } => *task,
        _ => None,
    })
    .await?;
    let result = h.tasks.wait_result(id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(result.value_as::<i64>()?, 42, "{result:?}");
    Ok(())
}
