//! `drain` (a pool works a full queue) and `floor` (the same lifecycle in plain SQL).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tasklib::{Task, TaskContext, TaskError};
use uuid::Uuid;

use crate::Settings;
use crate::db::{self, BenchDb, BenchResult, Noop};
use crate::probe::{self, Counters, CpuMeter, ServerCpu};
use crate::report::Row;

/// `drain` on a fresh database.
pub(crate) async fn drain(s: &Settings) -> BenchResult<Row> {
    let db = BenchDb::new().await?;
    drain_on(&db, s, "drain", 0).await
}

/// What cluster-wide limits cost when set but not binding: `drain` three times, each on a
/// fresh database: without limits, with a concurrency limit of the pool's slots, and with a
/// rate limit far above the drain's pace. Each limited row carries its ratio to the first.
pub(crate) async fn limits(s: &Settings) -> BenchResult<Vec<Row>> {
    let plain = drain(s).await?;
    let mut rows = vec![plain.clone()];
    let slots = u32::try_from(s.concurrency * s.pools.max(1)).unwrap_or(u32::MAX);
    for (name, limits) in [
        (
            "drain_concurrency_limited",
            tasklib::QueueLimits::new().concurrency(slots),
        ),
        (
            "drain_rate_limited",
            tasklib::QueueLimits::new()
                .rate(tasklib::RateLimit::new(1_000_000, Duration::from_secs(1))),
        ),
    ] {
        let db = BenchDb::new().await?;
        db.tasklib()
            .await?
            .set_queue_limits(tasklib::DEFAULT_QUEUE, limits)
            .await?;
        let row = drain_on(&db, s, name, 0).await?;
        let ratio = row.rate_ratio(&plain);
        rows.push(row.with("ratio_to_unlimited", ratio));
    }
    Ok(rows)
}

/// `tasks` no-op tasks queued first, then one pool with `concurrency` slots works them (or
/// `pools` pools, each with its own connection pool and `concurrency` slots): the time from
/// the pools' start until the last task is completed (as the database recorded it).
/// `preloaded` is the number of completed rows already in the table.
pub(crate) async fn drain_on(
    db: &BenchDb,
    s: &Settings,
    name: &str,
    preloaded: usize,
) -> BenchResult<Row> {
    db.queue_noops(s.tasks).await?;
    // One `TaskLib` (connection pool) per worker pool, as separate worker processes would have.
    let mut libs = Vec::new();
    for _ in 0..s.pools.max(1) {
        let tasks = db.tasklib().await?;
        tasks.register(|_: Noop, _: TaskContext| async { Ok::<_, TaskError>(()) })?;
        libs.push(tasks);
    }

    // Measuring connection: opened after the setup's statistics are published; every query
    // it runs is counted, to take it out of the commit counts.
    let client = db.raw().await?;
    db.wait_for_other_sessions(&client).await?;
    let mut own_queries = 2; // the two readings below
    let before = Counters::read(&client).await?;
    let t0 = db::server_clock(&client).await?;
    let cpu = CpuMeter::start(ServerCpu::locate(&client).await);
    // The process's peak so far covers the setup (the bulk submit of the queue); reset it so
    // the drain's own peak is measured too.
    let setup_rss = probe::peak_rss_mb();
    let rss_reset = probe::reset_peak_rss();

    let watch = probe::CompilerWatch::start();
    let started = Instant::now();
    let pools = libs
        .iter()
        .map(|tasks| s.worker(tasks).spawn())
        .collect::<Result<Vec<_>, _>>()?;
    let claimed = |pools: &[tasklib::WorkerPool]| -> (usize, u64) {
        pools.iter().fold((0, 0), |(tasks, claims), p| {
            let stats = p.stats();
            (
                tasks + stats.tasks_claimed as usize,
                claims + stats.claim_queries,
            )
        })
    };
    // Progress from the pool's own counter (no queries while it works); the database is
    // asked only once everything has been claimed.
    let mut half_at = None;
    loop {
        let (claimed, _) = claimed(&pools);
        if half_at.is_none() && claimed * 2 >= s.tasks {
            half_at = Some(started.elapsed());
        }
        if claimed >= s.tasks {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {claimed} of {} tasks claimed after 600 s", s.tasks).into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    own_queries += db::wait_drained(&client, Duration::from_secs(60)).await?;
    let observed = started.elapsed().as_secs_f64();
    let used = cpu.stop();
    let drain_rss = probe::peak_rss_mb();
    let (tasks_claimed, claim_queries) = claimed(&pools);
    own_queries += 1;
    let seconds = db::last_completion(&client, t0).await?;
    for pool in pools {
        pool.shutdown().await?;
    }
    for tasks in libs {
        tasks.db()?.close_by_ref().await?;
    }
    drop(client);

    let reader = db.raw().await?;
    db.wait_for_other_sessions(&reader).await?;
    let after = Counters::read(&reader).await?;
    db::check_all_completed(&reader, s.tasks + preloaded).await?;

    let half: f64 = half_at.map_or(0.0, |d| d.as_secs_f64());
    let halves = s.tasks as f64 / 2.0;
    let row = Row::throughput(name, s.tasks, s.concurrency * s.pools.max(1), seconds)
        .with("observed_seconds", observed)
        .with("first_half_tasks_per_sec", halves / half.max(f64::EPSILON))
        .with(
            "second_half_tasks_per_sec",
            halves / (seconds - half).max(f64::EPSILON),
        )
        .with("foreign_compilers", watch.most())
        .with("pools", s.pools.max(1))
        .with("claims", claim_queries)
        .with(
            "tasks_per_claim",
            tasks_claimed as f64 / claim_queries.max(1) as f64,
        )
        .with(
            "process_peak_rss_mb",
            setup_rss.zip(drain_rss).map(|(a, b)| a.max(b)),
        )
        .with("drain_peak_rss_mb", drain_rss.filter(|_| rss_reset));
    let row = used.annotate(row, s.tasks, seconds);
    Ok(after.annotate_delta(before, own_queries, s.tasks, row))
}

/// tasklib's claim (`CLAIM` in `tasklib/src/engine/postgres/worker/sql.rs`: the same predicate, order,
/// lock clause and row changes) with the limit of 10 written in, returning what an executor
/// needs (id, attempt, args) rather than the whole row. `$1` queue, `$2` names, `$3` worker,
/// `$4` lock seconds, `$5` now (NULL).
pub(crate) const FLOOR_CLAIM: &str = r#"
WITH picked AS MATERIALIZED (
    SELECT id
    FROM tasks
    WHERE queue = $1
      AND (state = 'pending' OR (state = 'failed' AND next_retry_at IS NOT NULL))
      AND COALESCE(next_retry_at, scheduled_at) <= COALESCE($5::timestamptz, now())
      AND name = ANY($2::text[])
    ORDER BY priority DESC, COALESCE(next_retry_at, scheduled_at), id
    LIMIT 10
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks AS t
SET state = 'running',
    worker_id = $3,
    started_at = COALESCE($5::timestamptz, now()),
    locked_until = COALESCE($5::timestamptz, now()) + make_interval(secs => $4),
    attempt = t.attempt + 1,
    next_retry_at = NULL,
    completed_at = NULL
FROM picked
WHERE t.id = picked.id
RETURNING t.id, t.attempt, t.args
"#;

/// tasklib's fenced success write (`COMPLETE`) for a batch, with the batch as two arrays: one
/// statement, one commit per 10 tasks.
pub(crate) const FLOOR_COMPLETE: &str = r#"
UPDATE tasks AS t
SET state = 'completed', result = '{"value": null}', error = NULL,
    completed_at = now(), locked_until = NULL
FROM unnest($1::uuid[], $2::int[]) AS u(id, attempt)
WHERE t.id = u.id AND t.worker_id = $3 AND t.attempt = u.attempt AND t.state = 'running'
"#;

/// `floor`: the lifecycle of a drained task issued directly through tokio-postgres, on the same
/// table: `concurrency` loops, each with its own connection and prepared statements, claiming
/// 10 and completing those 10 in one statement, until the queue is empty.
pub(crate) async fn floor(s: &Settings) -> BenchResult<Row> {
    let db = BenchDb::new().await?;
    db.queue_noops(s.tasks).await?;
    let client = db.raw().await?;
    db.wait_for_other_sessions(&client).await?;
    let before = Counters::read(&client).await?;
    let t0 = db::server_clock(&client).await?;
    let cpu = CpuMeter::start(ServerCpu::locate(&client).await);
    let done = Arc::new(AtomicUsize::new(0));
    let watch = probe::CompilerWatch::start();
    let started = Instant::now();
    let loops = (0..s.concurrency).map(|w| {
        let url = db.url().to_owned();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let loop_client = db::connect_raw(&url).await?;
            let claim = loop_client.prepare(FLOOR_CLAIM).await?;
            let complete = loop_client.prepare(FLOOR_COMPLETE).await?;
            let worker = format!("floor-{w}");
            let names = vec![Noop::NAME.to_owned()];
            let lock_secs = 600.0f64;
            let now: Option<std::time::SystemTime> = None;
            loop {
                let rows = loop_client
                    .query(&claim, &[&"default", &names, &worker, &lock_secs, &now])
                    .await?;
                if rows.is_empty() {
                    return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(());
                }
                let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
                let attempts: Vec<i32> = rows.iter().map(|r| r.get(1)).collect();
                let written = loop_client
                    .execute(&complete, &[&ids, &attempts, &worker])
                    .await?;
                done.fetch_add(written as usize, Ordering::Relaxed);
            }
        })
    });
    for run in futures::future::join_all(loops).await {
        run??;
    }
    let observed = started.elapsed().as_secs_f64();
    let used = cpu.stop();
    let seconds = db::last_completion(&client, t0).await?;
    drop(client);
    let reader = db.raw().await?;
    db.wait_for_other_sessions(&reader).await?;
    let after = Counters::read(&reader).await?;
    db::check_all_completed(&reader, s.tasks).await?;
    let row = Row::throughput("floor", s.tasks, s.concurrency, seconds)
        .with("observed_seconds", observed)
        .with("completed", done.load(Ordering::Relaxed))
        .with("foreign_compilers", watch.most());
    let row = used.annotate(row, s.tasks, seconds);
    // The measuring connection ran three queries: two readings and the end time.
    Ok(after.annotate_delta(before, 3, s.tasks, row))
}
