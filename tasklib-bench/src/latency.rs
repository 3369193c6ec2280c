//! `latency`: how long a task waits between its submit's commit and its handler's start, on
//! an idle pool; and its pickup, from just before the `submit` call (its commit included) to
//! the handler's start (`pickup_p50_ms`, `pickup_p99_ms`: issue 17's figure).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tasklib::{TaskContext, TaskError, TaskWorker, WorkerEvent};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::Settings;
use crate::db::{self, BenchDb, BenchResult, Noop};
use crate::report::{Percentiles, Row};

/// `latency` on a fresh database.
pub(crate) async fn latency(s: &Settings) -> BenchResult<Row> {
    let db = BenchDb::new().await?;
    latency_on(&db, s, "latency").await
}

/// An idle pool (listener connected, a few warm-up tasks run first, as in an application that
/// has been up a while); then tasks submitted one at a time, `latency_gap` apart. Each handler
/// notes the instant it starts; the submitter notes the instant its submit returned (the
/// commit). Beside the pool, a connection of the benchmark's own listens on `tasks_new`, which
/// splits the delay into notification delivery and what the pool does after it.
pub(crate) async fn latency_on(db: &BenchDb, s: &Settings, name: &str) -> BenchResult<Row> {
    let tasks = db.tasklib().await?;
    let starts: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let seen = Arc::clone(&starts);
    tasks.register(move |job: Noop, _: TaskContext| {
        let now = Instant::now();
        if let Ok(mut map) = seen.lock() {
            map.insert(job.n, now);
        }
        async { Ok::<_, TaskError>(()) }
    })?;
    let (_listening, mut arrivals) = listen(db.url()).await?;
    let pool = TaskWorker::new(&tasks).concurrency(s.concurrency).spawn()?;
    let mut events = pool.subscribe();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !matches!(events.recv().await, Ok(WorkerEvent::ListenerConnected)) {}
    })
    .await?;
    drop(events);

    let warmup = s.latency_warmup as u64;
    let total = warmup + s.latency_tasks as u64;
    let watch = crate::probe::CompilerWatch::start();
    let mut submits = Vec::with_capacity(s.latency_tasks);
    let mut started = Instant::now();
    for n in 0..total {
        if n == warmup {
            started = Instant::now();
        }
        let begin = Instant::now();
        tasks.submit(Noop { n }).await?;
        let end = Instant::now();
        if n >= warmup {
            submits.push((n, begin, end));
        }
        tokio::time::sleep(s.latency_gap).await;
    }
    wait_started(&starts, total as usize).await?;
    let seconds = started.elapsed().as_secs_f64();
    db::wait_drained(&db.raw().await?, Duration::from_secs(60)).await?;
    pool.shutdown().await?;

    let starts = starts.lock().map_err(|_| "a handler panicked")?.clone();
    let mut notes = Vec::new();
    while let Ok(at) = arrivals.try_recv() {
        notes.push(at);
    }
    let mut delays = Vec::new();
    let mut pickups = Vec::new();
    let mut notify = Vec::new();
    let mut after_notify = Vec::new();
    let mut submit_ms = Vec::new();
    for (i, (n, begin, end)) in submits.iter().enumerate() {
        let Some(start) = starts.get(n) else { continue };
        delays.push(ms(start.saturating_duration_since(*end)));
        pickups.push(ms(start.saturating_duration_since(*begin)));
        submit_ms.push(ms(end.duration_since(*begin)));
        // The notification of this submit is the first to arrive after it began and before
        // the next one began.
        let next = submits.get(i + 1).map(|(_, b, _)| *b);
        if let Some(at) = notes
            .iter()
            .find(|at| **at >= *begin && next.is_none_or(|next| **at < next))
        {
            notify.push(signed_ms(*at, *end));
            after_notify.push(ms(start.saturating_duration_since(*at)));
        }
    }
    let (pick, n, a, sub) = (
        Percentiles::of(&pickups),
        Percentiles::of(&notify),
        Percentiles::of(&after_notify),
        Percentiles::of(&submit_ms),
    );
    Ok(Row::latency(name, s.concurrency, seconds, &delays)
        .with("foreign_compilers", watch.most())
        .with("warmup_tasks", warmup)
        .with("pickup_p50_ms", pick.p50)
        .with("pickup_p99_ms", pick.p99)
        .with("submit_p50_ms", sub.p50)
        .with("submit_p99_ms", sub.p99)
        .with("notify_p50_ms", n.p50)
        .with("notify_p99_ms", n.p99)
        .with("after_notify_p50_ms", a.p50)
        .with("after_notify_p99_ms", a.p99)
        .with("notifications_matched", notify.len()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `a - b` in milliseconds, negative when `a` came first.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b { ms(a - b) } else { -ms(b - a) }
}

async fn wait_started(starts: &Mutex<HashMap<u64, Instant>>, total: usize) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = starts.lock().map_err(|_| "a handler panicked")?.len();
        if seen >= total {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {seen} of {total} tasks started after 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A connection of our own on `tasks_new`: the instant each notification arrives. Keep the
/// client: the connection closes when it drops.
async fn listen(
    url: &str,
) -> BenchResult<(tokio_postgres::Client, mpsc::UnboundedReceiver<Instant>)> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = stream.next().await {
            if let AsyncMessage::Notification(_) = message
                && tx.send(Instant::now()).is_err()
            {
                return;
            }
        }
    });
    client.batch_execute("LISTEN tasks_new").await?;
    Ok((client, rx))
}
