//! `statements`: what tasklib asks of the server per task, from `pg_stat_statements` on a
//! private cluster that loads it: statements, their rows, planning and execution time, buffers.

use std::time::{Duration, Instant};

use tasklib::{SubmitOptions, TaskContext, TaskError, TaskLib, WorkerEvent};
use tokio_postgres::Client;

use crate::Settings;
use crate::db::{self, BenchDb, BenchResult, Noop};
use crate::report::Row;

/// One row per phase (single submits, bulk submit, drain, idle pool), each with its table of
/// statements.
pub(crate) async fn statements(s: &Settings) -> BenchResult<Vec<Row>> {
    let db = BenchDb::with_pg_stat_statements().await?;
    let client = db.raw().await?;
    let tasks = db.tasklib().await?;
    tasks.register(|_: Noop, _: TaskContext| async { Ok::<_, TaskError>(()) })?;
    let mut rows = Vec::new();

    reset(&client).await?;
    for n in 0..s.single_tasks as u64 {
        tasks.submit(Noop { n }).await?;
    }
    rows.push(report(&client, "statements_enqueue_single", s.single_tasks).await?);

    reset(&client).await?;
    tasks
        .submit_many(
            (0..s.tasks as u64).map(|n| Noop { n }),
            SubmitOptions::new(),
        )
        .await?;
    rows.push(report(&client, "statements_enqueue_bulk", s.tasks).await?);

    // The pool drains both: the single submits and the bulk.
    let queued = s.single_tasks + s.tasks;
    reset(&client).await?;
    let pool = s.worker(&tasks).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while (pool.stats().tasks_claimed as usize) < queued && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    db::wait_drained(&client, Duration::from_secs(60)).await?;
    rows.push(report(&client, "statements_drain", queued).await?);

    // The same pool, now idle: tasks one at a time, as in `latency`.
    let idle_tasks = s.latency_tasks.min(100);
    let mut events = pool.subscribe();
    reset(&client).await?;
    for n in 0..idle_tasks as u64 {
        tasks.submit(Noop { n }).await?;
        finished(&mut events).await?;
        tokio::time::sleep(s.latency_gap).await;
    }
    rows.push(report(&client, "statements_idle_pool", idle_tasks).await?);
    pool.shutdown().await?;
    close(tasks).await?;
    Ok(rows)
}

async fn close(tasks: TaskLib) -> BenchResult<()> {
    tasks.db()?.close_by_ref().await?;
    Ok(())
}

async fn finished(events: &mut tokio::sync::broadcast::Receiver<WorkerEvent>) -> BenchResult<()> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(WorkerEvent::TaskFinished { .. }) => return,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                _ => {}
            }
        }
    })
    .await?;
    Ok(())
}

async fn reset(client: &Client) -> BenchResult<()> {
    client
        .batch_execute("/* bench */ SELECT pg_stat_statements_reset()")
        .await?;
    Ok(())
}

/// Statements of this database since the last reset, the benchmark's own left out.
async fn report(client: &Client, phase: &str, tasks: usize) -> BenchResult<Row> {
    let found = client
        .query(
            "/* bench */
             SELECT query, toplevel, calls, rows, total_exec_time, total_plan_time, plans,
                    shared_blks_hit + shared_blks_read + shared_blks_dirtied
             FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%/* bench */%'
             ORDER BY total_exec_time + total_plan_time DESC",
            &[],
        )
        .await?;
    let per_task = |n: f64| n / tasks.max(1) as f64;
    let total_ms: f64 = found
        .iter()
        .filter(|r| r.get::<_, bool>(1))
        .map(|r| r.get::<_, f64>(4) + r.get::<_, f64>(5))
        .sum();
    let mut table = vec![format!(
        "  {:>9} {:>8} {:>9} {:>10} {:>9} {:>6} {:>9}  statement",
        "calls/task", "rows/call", "exec ms", "plans/call", "plan ms", "share", "bufs/call"
    )];
    let (mut statements, mut exec, mut plan) = (0.0, 0.0, 0.0);
    for r in &found {
        let (query, toplevel, calls): (String, bool, i64) = (r.get(0), r.get(1), r.get(2));
        let (rows, exec_ms, plan_ms, plans, bufs): (i64, f64, f64, i64, i64) =
            (r.get(3), r.get(4), r.get(5), r.get(6), r.get(7));
        if toplevel {
            statements += calls as f64;
            exec += exec_ms;
            plan += plan_ms;
        }
        let calls_f = calls.max(1) as f64;
        table.push(format!(
            "  {:>10.3} {:>8.1} {:>9.4} {:>10.2} {:>9.4} {:>5.1}% {:>9.1}  {}{}",
            per_task(calls as f64),
            rows as f64 / calls_f,
            exec_ms / calls_f,
            plans as f64 / calls_f,
            if plans > 0 {
                plan_ms / plans as f64
            } else {
                0.0
            },
            if toplevel {
                100.0 * (exec_ms + plan_ms) / total_ms.max(f64::EPSILON)
            } else {
                0.0
            },
            bufs as f64 / calls_f,
            if toplevel { "" } else { "(nested) " },
            one_line(&query, 90)
        ));
    }
    Ok(Row::new(phase)
        .with("tasks", tasks)
        .with("statements_per_task", per_task(statements))
        .with("server_exec_us_per_task", per_task(exec) * 1000.0)
        .with("server_plan_us_per_task", per_task(plan) * 1000.0)
        .with("table", table.join("\n")))
}

fn one_line(query: &str, max: usize) -> String {
    let flat: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}
