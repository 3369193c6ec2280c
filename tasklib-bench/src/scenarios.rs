//! The scenarios. Each makes its own database so runs do not disturb each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tasklib::{Config, SubmitOptions, Task, TaskContext, TaskError, TaskLib, TaskWorker};
use tasklib_test_utils::TestDatabase;
use tokio_postgres::NoTls;
use uuid::Uuid;
use validator::Validate;

use crate::report::{Report, Throughput};

pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Sizes of the runs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) tasks: usize,
    pub(crate) concurrency: usize,
    pub(crate) latency_tasks: usize,
    pub(crate) latency_gap: Duration,
    pub(crate) scale_rows: usize,
}

/// A task that does nothing: what is measured is the queue.
#[derive(Debug, Serialize, Deserialize, Validate)]
struct Noop {
    n: u64,
}

impl Task for Noop {
    const NAME: &'static str = "noop";
    type Output = ();
}

async fn connect(db: &TestDatabase, connections: u32) -> BenchResult<TaskLib> {
    let config = Config::builder(db.url())
        .max_connections(connections)
        .build()?;
    Ok(TaskLib::connect_with(config).await?)
}

async fn raw(db: &TestDatabase) -> BenchResult<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `enqueue`: single submits from 1 and 10 submitters, and one bulk submit.
pub(crate) async fn enqueue(s: &Settings, out: &mut Report) -> BenchResult<()> {
    let db = TestDatabase::new().await?;
    let tasks = connect(&db, 12).await?;
    for submitters in [1usize, 10] {
        // A tenth of --tasks in all, split between the submitters.
        let per = ((s.tasks / 10) / submitters).max(1);
        let total = per * submitters;
        let started = Instant::now();
        let runs = (0..submitters).map(|w| {
            let tasks = tasks.clone();
            tokio::spawn(async move {
                for n in 0..per {
                    tasks
                        .submit(Noop {
                            n: (w * per + n) as u64,
                        })
                        .await?;
                }
                Ok::<_, tasklib::Error>(())
            })
        });
        for run in futures::future::join_all(runs).await {
            run??;
        }
        out.throughput(Throughput {
            scenario: if submitters == 1 {
                "enqueue_single_1"
            } else {
                "enqueue_single_10"
            },
            tasks: total,
            concurrency: submitters,
            seconds: started.elapsed().as_secs_f64(),
            extra: json!({}),
        });
    }
    let started = Instant::now();
    tasks
        .submit_many(
            (0..s.tasks).map(|n| Noop { n: n as u64 }),
            SubmitOptions::new(),
        )
        .await?;
    out.throughput(Throughput {
        scenario: "enqueue_bulk",
        tasks: s.tasks,
        concurrency: 1,
        seconds: started.elapsed().as_secs_f64(),
        extra: json!({}),
    });
    Ok(())
}

/// Preloads `rows` completed tasks, as a long-running queue would have.
async fn preload_completed(db: &TestDatabase, rows: usize) -> BenchResult<()> {
    if rows == 0 {
        return Ok(());
    }
    let client = raw(db).await?;
    client
        .execute(
            "INSERT INTO tasks (name, args, state, result, attempt, started_at, completed_at, worker_id)
             SELECT 'noop', jsonb_build_object('n', g), 'completed', '{\"value\": null}', 1,
                    now() - interval '1 hour', now() - interval '1 hour', 'preload'
             FROM generate_series(1, $1::int) AS g",
            &[&(i32::try_from(rows)?)],
        )
        .await?;
    client.batch_execute("VACUUM ANALYZE tasks").await?;
    Ok(())
}

/// Waits until no task is pending or running (counted through the `(state, queue)` index,
/// so a million finished rows cost nothing here).
async fn wait_drained(client: &tokio_postgres::Client, limit: Duration) -> BenchResult<()> {
    let deadline = Instant::now() + limit;
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM tasks WHERE state IN ('pending', 'running')",
                &[],
            )
            .await?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{left} tasks left after {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Peak resident memory of this process so far, in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Counts commits on the database, to report statements and commits per task.
async fn commits(client: &tokio_postgres::Client) -> BenchResult<i64> {
    Ok(client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0))
}

/// `drain`: `tasks` no-op tasks queued first, then one pool works them. Returns tasks/s.
pub(crate) async fn drain(s: &Settings, preload: usize, out: &mut Report) -> BenchResult<f64> {
    let db = TestDatabase::new().await?;
    preload_completed(&db, preload).await?;
    let tasks = connect(&db, u32::try_from(s.concurrency)? + 4).await?;
    tasks.register(|_: Noop, _: TaskContext| async { Ok::<_, TaskError>(()) })?;
    tasks
        .submit_many(
            (0..s.tasks).map(|n| Noop { n: n as u64 }),
            SubmitOptions::new(),
        )
        .await?;
    let client = raw(&db).await?;
    client.batch_execute("ANALYZE tasks").await?;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the stats collector settle
    let commits_before = commits(&client).await?;
    let started = Instant::now();
    let pool = TaskWorker::new(&tasks).concurrency(s.concurrency).spawn()?;
    wait_drained(&client, Duration::from_secs(600)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = pool.stats();
    pool.shutdown().await?;
    tokio::time::sleep(Duration::from_millis(600)).await; // stats are flushed every ~500 ms
    let commits_after = commits(&client).await?;
    let name = if preload == 0 {
        "drain".to_owned()
    } else {
        format!("drain_with_{preload}_completed")
    };
    Ok(out.throughput(Throughput {
        scenario: &name,
        tasks: s.tasks,
        concurrency: s.concurrency,
        seconds,
        extra: json!({
            "claim_queries": stats.claim_queries,
            "commits_per_task": (commits_after - commits_before) as f64 / s.tasks as f64,
            "peak_rss_mb": peak_rss_mb(),
        }),
    }))
}

/// The claim tasklib runs, issued directly.
const FLOOR_CLAIM: &str = "
WITH picked AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE queue = 'default'
      AND (state = 'pending' OR (state = 'failed' AND next_retry_at IS NOT NULL))
      AND COALESCE(next_retry_at, scheduled_at) <= now()
      AND name = ANY($1::text[])
    ORDER BY priority DESC, COALESCE(next_retry_at, scheduled_at), id
    LIMIT 10
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks AS t
SET state = 'running', worker_id = $2, started_at = now(),
    locked_until = now() + interval '10 minutes', attempt = t.attempt + 1, next_retry_at = NULL
FROM picked WHERE t.id = picked.id
RETURNING t.id, t.attempt";

const FLOOR_COMPLETE: &str = "
UPDATE tasks
SET state = 'completed', result = '{\"value\": null}', error = NULL, completed_at = now(),
    locked_until = NULL
WHERE id = ANY($1::uuid[]) AND worker_id = $2 AND state = 'running'";

/// `floor`: the same lifecycle through tokio-postgres, 10 at a time, `concurrency` loops.
pub(crate) async fn floor(s: &Settings, out: &mut Report) -> BenchResult<f64> {
    let db = TestDatabase::new().await?;
    let tasks = connect(&db, 2).await?;
    tasks
        .submit_many(
            (0..s.tasks).map(|n| Noop { n: n as u64 }),
            SubmitOptions::new(),
        )
        .await?;
    raw(&db).await?.batch_execute("ANALYZE tasks").await?;
    let started = Instant::now();
    let loops = (0..s.concurrency).map(|w| {
        let url = db.url().to_owned();
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
            tokio::spawn(connection);
            let claim = client.prepare(FLOOR_CLAIM).await?;
            let complete = client.prepare(FLOOR_COMPLETE).await?;
            let worker = format!("floor-{w}");
            let names = vec!["noop".to_owned()];
            loop {
                let rows = client.query(&claim, &[&names, &worker]).await?;
                if rows.is_empty() {
                    return Ok::<_, tokio_postgres::Error>(());
                }
                let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
                client.execute(&complete, &[&ids, &worker]).await?;
            }
        })
    });
    for run in futures::future::join_all(loops).await {
        run??;
    }
    Ok(out.throughput(Throughput {
        scenario: "floor",
        tasks: s.tasks,
        concurrency: s.concurrency,
        seconds: started.elapsed().as_secs_f64(),
        extra: json!({}),
    }))
}

/// `latency`: an idle pool; tasks submitted one at a time; the delay from each submit's
/// return (its commit) to its handler's start. Returns p50 in ms.
pub(crate) async fn latency(s: &Settings, preload: usize, out: &mut Report) -> BenchResult<f64> {
    let db = TestDatabase::new().await?;
    preload_completed(&db, preload).await?;
    let tasks = connect(&db, 8).await?;
    let starts: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let seen = Arc::clone(&starts);
    tasks.register(move |job: Noop, _: TaskContext| {
        let now = Instant::now();
        if let Ok(mut map) = seen.lock() {
            map.insert(job.n, now);
        }
        async { Ok::<_, TaskError>(()) }
    })?;
    let pool = TaskWorker::new(&tasks).concurrency(s.concurrency).spawn()?;
    let mut events = pool.subscribe();
    // Wait until the listener is up, as an app's idle pool would be.
    tokio::time::timeout(Duration::from_secs(30), async {
        while !matches!(
            events.recv().await,
            Ok(tasklib::WorkerEvent::ListenerConnected)
        ) {}
    })
    .await?;
    let mut submitted = HashMap::new();
    let started = Instant::now();
    for n in 0..s.latency_tasks as u64 {
        tasks.submit(Noop { n }).await?;
        submitted.insert(n, Instant::now());
        tokio::time::sleep(s.latency_gap).await;
    }
    wait_drained(&raw(&db).await?, Duration::from_secs(60)).await?;
    let seconds = started.elapsed().as_secs_f64();
    pool.shutdown().await?;
    let starts = starts.lock().map_err(|_| "poisoned")?.clone();
    let delays: Vec<f64> = submitted
        .iter()
        .filter_map(|(n, at)| {
            starts
                .get(n)
                .map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    let name = if preload == 0 {
        "latency".to_owned()
    } else {
        format!("latency_with_{preload}_completed")
    };
    Ok(out.latency(&name, delays.len(), seconds, delays, json!({})))
}

/// `scale`: drain and latency on an empty table and on one with `scale_rows` completed rows.
pub(crate) async fn scale(s: &Settings, out: &mut Report) -> BenchResult<()> {
    let drain_empty = drain(s, 0, out).await?;
    let drain_full = drain(s, s.scale_rows, out).await?;
    out.ratio("scale_drain_ratio", drain_full / drain_empty);
    let latency_empty = latency(s, 0, out).await?;
    let latency_full = latency(s, s.scale_rows, out).await?;
    out.ratio(
        "scale_latency_p50_ratio",
        latency_full / latency_empty.max(f64::EPSILON),
    );
    Ok(())
}
