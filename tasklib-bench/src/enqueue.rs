//! `enqueue`: single submits from 1 and from 10 concurrent submitters, and one bulk submit.

use std::time::Instant;

use tasklib::SubmitOptions;

use crate::Settings;
use crate::db::{BenchDb, BenchResult, Noop};
use crate::probe::{self, CpuMeter, ServerCpu};
use crate::report::Row;

/// Submitters of the concurrent single-submit run.
pub(crate) const SUBMITTERS: usize = 10;

pub(crate) async fn enqueue(s: &Settings) -> BenchResult<Vec<Row>> {
    let db = BenchDb::new().await?;
    // Default configuration: a pool of 10 connections, one per submitter of the busy run.
    let tasks = db.tasklib().await?;
    let server = ServerCpu::locate(&db.raw().await?).await;
    let mut rows = Vec::new();
    // Opens the pool's connections first, as a running application would have them.
    warm_up(&tasks).await?;
    for submitters in [1usize, SUBMITTERS] {
        let per = (s.single_tasks / submitters).max(1);
        let total = per * submitters;
        let cpu = CpuMeter::start(server.clone());
        let watch = probe::CompilerWatch::start();
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
        let seconds = started.elapsed().as_secs_f64();
        let row = Row::throughput(
            format!("enqueue_single_{submitters}"),
            total,
            submitters,
            seconds,
        )
        .with("foreign_compilers", watch.most());
        rows.push(cpu.stop().annotate(row, total, seconds));
    }
    // The memory a bulk submit takes: the peak while it runs, over the resident size before.
    let rss_before = probe::rss_mb();
    let rss_reset = probe::reset_peak_rss();
    let cpu = CpuMeter::start(server);
    let watch = probe::CompilerWatch::start();
    let started = Instant::now();
    tasks
        .submit_many(
            (0..s.tasks as u64).map(|n| Noop { n }),
            SubmitOptions::new(),
        )
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let row = Row::throughput("enqueue_bulk", s.tasks, 1, seconds)
        .with("foreign_compilers", watch.most())
        .with(
            "rss_growth_mb",
            probe::peak_rss_mb()
                .zip(rss_before)
                .filter(|_| rss_reset)
                .map(|(peak, before)| peak - before),
        );
    rows.push(cpu.stop().annotate(row, s.tasks, seconds));
    Ok(rows)
}

async fn warm_up(tasks: &tasklib::TaskLib) -> BenchResult<()> {
    let runs = (0..SUBMITTERS).map(|n| {
        let tasks = tasks.clone();
        tokio::spawn(async move { tasks.submit(Noop { n: n as u64 }).await })
    });
    for run in futures::future::join_all(runs).await {
        run??;
    }
    Ok(())
}
