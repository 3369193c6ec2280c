//! Recurring tasks against a real PostgreSQL: exactly one task per tick across three worker
//! processes, missed ticks after downtime (skipped, or run once), schedules through a
//! transaction pooler in a schema of their own, and the checks made when registering.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Timelike, Utc};
use serde_json::json;
use tasklib::{
    Config, Error, MissedTicks, Schedule, SubmitOptions, TaskContext, TaskError, TaskLib,
    WorkerEvent,
};
use tasklib_test_utils::{TestDatabase, TestPgBouncer};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::common::{Job, PATIENCE, SendEmail, TestResult, job, raw, setup, setup_with, wait_for};
use crate::fault_support::{WorkerProcess, connect_raw, create_executions, poll_until, scalar};

/// A tick every second, so that tests see several in a few seconds.
const EVERY_SECOND: &str = "* * * * * *";

fn register_job(tasks: &TaskLib) -> TestResult {
    tasks.register(|job: Job, _: TaskContext| async move { Ok::<_, TaskError>(job.label) })?;
    Ok(())
}

/// Waits for the next tick this pool claimed: the schedule, the tick, and its task if any.
async fn next_tick(
    events: &mut broadcast::Receiver<WorkerEvent>,
) -> TestResult<(String, DateTime<Utc>, Option<Uuid>)> {
    wait_for(events, |event| match event {
        WorkerEvent::ScheduleTicked {
            schedule,
            tick,
            task,
        } => Some((schedule.clone(), *tick, *task)),
        _ => None,
    })
    .await
}

/// The ticks whose task schedule `name` submitted (their `tick` tag), in order.
async fn submitted_ticks(client: &tokio_postgres::Client, name: &str) -> TestResult<Vec<String>> {
    let rows = client
        .query(
            "SELECT tags->>'tick' FROM tasks
             WHERE tags @> jsonb_build_object('schedule', $1::text)
             ORDER BY scheduled_at, id",
            &[&name],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Three `fault_worker` processes run the same per-second schedule: every tick between the
/// first and the last one submitted has exactly one task, and each was claimed by exactly one
/// process (their logs say which).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_submit_exactly_one_task_per_tick() -> TestResult {
    let db = TestDatabase::new().await?;
    create_executions(db.url()).await?;
    let settings = [
        ("FAULT_SCHEDULE", "every-second=* * * * * *"),
        (
            "RUST_LOG",
            "warn,tasklib::engine::postgres::worker::scheduler=debug",
        ),
    ];
    let workers = ["cron-a", "cron-b", "cron-c"]
        .into_iter()
        .map(|id| WorkerProcess::spawn(db.url(), id, &settings))
        .collect::<TestResult<Vec<_>>>()?;
    // Other processes send no events: the database and their logs are what can be watched.
    poll_until("the three schedulers to start", PATIENCE, || {
        let started = workers
            .iter()
            .all(|w| w.log().contains("running 1 schedule(s)"));
        async move { Ok(started) }
    })
    .await?;
    let client = connect_raw(db.url()).await?;
    let since: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.get(0);
    let count_since = "SELECT count(*) FROM tasks
                       WHERE tags @> '{\"schedule\": \"every-second\"}' AND scheduled_at > $1";
    poll_until("six ticks with all three running", PATIENCE, || {
        let client = &client;
        async move { Ok(scalar(client, count_since, &[&since]).await? >= 6) }
    })
    .await?;
    let mut logs = Vec::new();
    for worker in workers {
        let id = worker.id.clone();
        logs.push((id, worker.stop_with_log().await?));
    }

    let ticks = submitted_ticks(&client, "every-second").await?;
    let distinct: BTreeSet<&String> = ticks.iter().collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "a tick submitted twice: {ticks:?}"
    );
    let instants = ticks
        .iter()
        .map(|t| DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc)))
        .collect::<Result<Vec<_>, _>>()?;
    let (first, last) = match (instants.first(), instants.last()) {
        (Some(first), Some(last)) => (*first, *last),
        _ => return Err("no tick was submitted".into()),
    };
    assert_eq!(
        usize::try_from((last - first).num_seconds() + 1)?,
        ticks.len(),
        "a gap between {first} and {last}: {ticks:?}"
    );

    // Who claimed what: every submitted tick once, by one process.
    let mut claimed_by: BTreeMap<String, String> = BTreeMap::new();
    for (worker, log) in &logs {
        for line in log.lines().filter(|l| l.contains("submitted a tick")) {
            let tick = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("tick="))
                .ok_or_else(|| format!("no tick in {line:?}"))?;
            if let Some(other) = claimed_by.insert(tick.to_owned(), worker.clone()) {
                return Err(format!("tick {tick} claimed by {other} and {worker}").into());
            }
        }
    }
    let claimed: BTreeSet<&String> = claimed_by.keys().collect();
    assert_eq!(claimed, distinct, "the logs and the table disagree");
    let mut per_worker: BTreeMap<&String, usize> = BTreeMap::new();
    for worker in claimed_by.values() {
        *per_worker.entry(worker).or_default() += 1;
    }
    eprintln!("{} ticks, claimed per worker: {per_worker:?}", ticks.len());
    Ok(())
}

/// A deployment that was down for three days comes back: the schedule that skips missed
/// ticks submits nothing for them and waits for its next tick; the one that runs them once
/// submits one task, due at the latest missed tick. In a schema of their own.
#[tokio::test]
async fn missed_ticks_are_skipped_or_run_once_after_downtime() -> TestResult {
    let env = setup_with(|b| b.schema("jobs")).await?;
    register_job(&env.tasks)?;
    // Daily, at an hour about twelve hours ago: long missed, whenever the test runs.
    let hour = (Utc::now() + chrono::Duration::hours(12)).hour();
    let daily = format!("0 {hour} * * *");
    let client = raw(&env.db).await?;
    client
        .batch_execute(
            "INSERT INTO jobs.tasklib_schedules (name, task, cron, last_tick)
             VALUES ('skipper', 'job', '-', now() - interval '3 days'),
                    ('catcher', 'job', '-', now() - interval '3 days')",
        )
        .await?;
    env.tasks
        .schedule(Schedule::new("skipper", &daily)?.args(job("skipped")))?;
    env.tasks.schedule(
        Schedule::new("catcher", &daily)?
            .args(job("caught up"))
            .missed(MissedTicks::RunOnce),
    )?;
    let pool = env.tasks.spawn_workers(2)?;
    let mut events = pool.subscribe();
    let mut seen = BTreeMap::new();
    while seen.len() < 2 {
        let (name, tick, task) = next_tick(&mut events).await?;
        assert!(seen.insert(name, (tick, task)).is_none(), "a tick twice");
    }
    let (skipped_tick, skipped_task) = seen.get("skipper").copied().ok_or("no skipper tick")?;
    let (caught_tick, caught_task) = seen.get("catcher").copied().ok_or("no catcher tick")?;
    assert_eq!(skipped_task, None, "skip submits nothing");
    assert_eq!(skipped_tick, caught_tick, "the same latest missed tick");
    assert!(Utc::now() - caught_tick > chrono::Duration::hours(10));
    let id = caught_task.ok_or("run_once submitted nothing")?;

    let result = env.tasks.wait_result(id, PATIENCE).await?;
    assert_eq!(result.value_as::<String>()?, "caught up");
    let task = env.tasks.get_task(id).await?.ok_or("task gone")?;
    assert_eq!(task.scheduled_at, caught_tick, "due at its tick");
    assert_eq!(
        task.tags,
        json!({
            "schedule": "catcher",
            "tick": caught_tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    );
    pool.shutdown().await?;

    assert_eq!(env.tasks.count_tasks().await?.total(), 1, "one task in all");
    let listed = env.tasks.list_schedules().await?;
    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["catcher", "skipper"]);
    for schedule in &listed {
        assert_eq!(schedule.last_tick, Some(caught_tick), "{schedule:?}");
        assert_eq!(schedule.cron, daily, "the definition is written at start");
        assert_eq!(schedule.task, "job");
        assert!(schedule.next_run.is_some_and(|next| next > Utc::now()));
    }
    assert_eq!(listed[0].missed, MissedTicks::RunOnce);
    assert_eq!(listed[0].last_task_id, Some(id));
    assert_eq!(listed[1].missed, MissedTicks::Skip);
    assert_eq!(listed[1].last_task_id, None);
    Ok(())
}

/// Behind PgBouncer in transaction mode, with tasklib in a schema of its own: every step of a
/// schedule is one statement in a transaction of its own, so ticks come and run there too.
#[tokio::test]
async fn schedules_run_through_a_transaction_pooler_in_a_schema_of_their_own() -> TestResult {
    let db = TestDatabase::empty().await?;
    let bouncer = TestPgBouncer::start(db.url(), 2)?;
    let config = Config::builder(bouncer.url())
        .transaction_pooler(true)
        .schema("pooled")
        .listen_url(db.url())
        .max_connections(6)
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;
    register_job(&tasks)?;
    tasks.schedule(
        Schedule::new("pooled-every-second", EVERY_SECOND)?
            .time_zone("Asia/Kolkata")?
            .args(job("pooled"))
            .options(SubmitOptions::new().priority(3).tag("team", "ops")),
    )?;
    let pool = tasks.spawn_workers(2)?;
    let mut events = pool.subscribe();
    let mut ids = Vec::new();
    while ids.len() < 2 {
        if let (_, _, Some(id)) = next_tick(&mut events).await? {
            ids.push(id);
        }
    }
    for id in &ids {
        let result = tasks.wait_result(*id, PATIENCE).await?;
        assert_eq!(result.value_as::<String>()?, "pooled");
        let task = tasks.get_task(*id).await?.ok_or("task gone")?;
        assert_eq!(task.priority, 3);
        assert_eq!(task.tags["team"], "ops");
    }
    pool.shutdown().await?;

    let client = raw(&db).await?;
    let row = client
        .query_one(
            "SELECT (SELECT time_zone FROM pooled.tasklib_schedules),
                    to_regclass('public.tasklib_schedules') IS NULL",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, String>(0), "Asia/Kolkata");
    assert!(row.get::<_, bool>(1), "nothing may be created in public");
    Ok(())
}

/// What `TaskLib::schedule` refuses, each with its own error, before any pool runs.
#[tokio::test]
async fn registering_a_schedule_checks_it_first() -> TestResult {
    let env = setup().await?;
    register_job(&env.tasks)?;
    let every_minute = || Schedule::new("s", "* * * * *");

    let refused = env.tasks.schedule(every_minute()?);
    assert!(
        matches!(refused, Err(Error::InvalidOption { option: "args", .. })),
        "{refused:?}"
    );
    let refused = env.tasks.schedule(every_minute()?.args(SendEmail {
        to: "not an address".into(),
        subject: "x".into(),
    }));
    assert!(
        matches!(&refused, Err(Error::InvalidArgs { task, .. }) if task == "send_email"),
        "{refused:?}"
    );
    let refused = env.tasks.schedule(
        every_minute()?
            .args(job("late"))
            .options(SubmitOptions::new().delay(std::time::Duration::from_secs(5))),
    );
    assert!(
        matches!(
            refused,
            Err(Error::InvalidOption {
                option: "delay",
                ..
            })
        ),
        "{refused:?}"
    );
    // A unique key would be ignored by the tick's insert: refused.
    let refused = env.tasks.schedule(
        every_minute()?
            .args(job("nightly"))
            .options(SubmitOptions::new().unique_key("nightly")),
    );
    assert!(
        matches!(
            refused,
            Err(Error::InvalidOption {
                option: "unique_key",
                ..
            })
        ),
        "{refused:?}"
    );
    let bad_cron = Schedule::new("s", "every day at noon").err();
    assert!(
        bad_cron
            .as_ref()
            .is_some_and(|e| matches!(e, Error::InvalidCron { .. }) && e.is_invalid_input()),
        "{bad_cron:?}"
    );
    let message = bad_cron.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("`every day at noon`"), "{message}");
    assert!(message.contains("such as `0 3 * * *`"), "{message}");
    let bad_zone = every_minute()?.time_zone("Europe/Atlantis").err();
    assert!(
        matches!(&bad_zone, Some(Error::UnknownTimeZone { zone }) if zone == "Europe/Atlantis"),
        "{bad_zone:?}"
    );

    env.tasks.schedule(every_minute()?.args(job("ok")))?;
    let refused = env.tasks.schedule(every_minute()?.args(job("again")));
    assert!(
        matches!(&refused, Err(Error::DuplicateSchedule { name }) if name == "s"),
        "{refused:?}"
    );
    let pool = env.tasks.spawn_workers(1)?;
    let refused = env
        .tasks
        .schedule(Schedule::new("later", "* * * * *")?.args(job("later")));
    assert!(
        matches!(&refused, Err(Error::ScheduledWhileRunning { name }) if name == "later"),
        "{refused:?}"
    );
    pool.shutdown().await?;
    Ok(())
}
