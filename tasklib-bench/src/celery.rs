//! `celery` (issue 12): the Celery engine's Rust worker and a real Python Celery worker drain
//! the same number of no-op tasks from one Redis, one after the other in one run.
//!
//! Each run starts a fresh `redis-server` (broker on database 0, results on 1). One `TaskLib`
//! on the Celery engine is the producer for both workers: it `submit_many`s the tasks in
//! chunks while the worker drains. First a tasklib worker pool (`--concurrency` slots) drains
//! queue [`RUST_QUEUE`]; it is shut down, then a Python Celery worker (prefork,
//! `--concurrency` processes, Celery's defaults otherwise) drains [`PYTHON_QUEUE`], where its
//! own `noop` task has the same name. Each worker first runs [`WARMUP`] tasks, untimed.
//!
//! The clock starts at the first submit and stops at the last result's `date_done` (the
//! worker's own time of completion, as the result backend keeps it), once every result has
//! been read back as `SUCCESS`: the time the benchmark spends confirming is not counted
//! (it is `observed_seconds`), but nothing counts as drained until its result says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use tasklib::{BackendType, Config, SubmitOptions, TaskContext, TaskError, TaskLib, TaskWorker};
use tasklib_test_utils::{CeleryVenv, CeleryWorker, PythonApp, TestRedis};
use uuid::Uuid;

use crate::Settings;
use crate::db::{BenchResult, Noop};
use crate::probe::{self, CompilerWatch};
use crate::report::Row;

/// The queue the Rust worker drains.
const RUST_QUEUE: &str = "bench_rust";
/// The queue the Python worker drains.
const PYTHON_QUEUE: &str = "bench_python";
/// Tasks of one `submit_many` (one `MULTI` of `LPUSH`es).
const SUBMIT_CHUNK: usize = 1_000;
/// Results read by one `MGET` when confirming.
const READ_CHUNK: usize = 1_000;
/// Tasks each worker runs before its clock starts.
const WARMUP: usize = 50;
/// How long a drain may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(600);
/// Celery's prefix of a result's key in the result backend.
const META_PREFIX: &str = "celery-task-meta-";

/// The Python side: a Celery app reading its URLs from the environment, with the no-op task
/// under the Rust task's name. Celery logs two INFO lines per task (received, succeeded) where
/// the Rust worker logs none: those two loggers are quieted so that both sides do the same
/// work; the worker's " ready." line, which `CeleryWorker` waits for, stays.
const TASKS_PY: &str = r#"
import logging
import os

from celery import Celery

app = Celery("bench", broker=os.environ["BROKER"], backend=os.environ["BACKEND"])
app.conf.update(broker_connection_retry_on_startup=True)

for name in ("celery.app.trace", "celery.worker.strategy"):
    logging.getLogger(name).setLevel(logging.WARNING)


@app.task(name="noop")
def noop(n):
    return None
"#;

/// One run: both drains on a fresh Redis, and their ratio.
pub(crate) async fn celery(s: &Settings) -> BenchResult<Vec<Row>> {
    let redis = TestRedis::start()?;
    let venv = tokio::task::spawn_blocking(CeleryVenv::get).await??;
    let app = PythonApp::new(&[("tasks.py", TASKS_PY)])?;
    let config = Config::for_backend(BackendType::Celery)
        .celery_broker_url(redis.url(0))
        .celery_result_backend(redis.url(1))
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;
    tasks.register(|_: Noop, _: TaskContext| async { Ok::<_, TaskError>(()) })?;
    let results = redis::Client::open(redis.url(1))?
        .get_multiplexed_async_connection()
        .await?;
    let bench = Bench {
        tasks,
        results,
        redis_port: redis.port(),
        app_dir: app.dir().to_owned(),
    };

    let pool = TaskWorker::new(&bench.tasks)
        .queue(RUST_QUEUE, s.concurrency)
        .spawn()?;
    bench.run(RUST_QUEUE, WARMUP).await?;
    let rust = bench.measure("celery_rust_worker", RUST_QUEUE, s).await?;
    pool.shutdown().await?;

    let envs = [("BROKER", redis.url(0)), ("BACKEND", redis.url(1))];
    let dir = bench.app_dir.clone();
    let concurrency = s.concurrency;
    let python = tokio::task::spawn_blocking(move || {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        CeleryWorker::start(&venv, &dir, "tasks", &[PYTHON_QUEUE], concurrency, &envs)
    })
    .await??;
    bench.run(PYTHON_QUEUE, WARMUP).await?;
    let python_row = bench
        .measure("celery_python_worker", PYTHON_QUEUE, s)
        .await?;
    drop(python);

    let ratio = rust.rate_ratio(&python_row).unwrap_or(0.0);
    Ok(vec![
        rust,
        python_row,
        Row::ratio("celery_rust_vs_python", ratio),
    ])
}

/// Where the figures come from: the machine, Redis, Python and Celery.
pub(crate) async fn setup() -> BenchResult<Row> {
    let venv = tokio::task::spawn_blocking(CeleryVenv::get).await??;
    let versions = venv.run_script(
        &std::env::temp_dir(),
        "import sys, celery, kombu; print(sys.version.split()[0], celery.__version__, kombu.__version__)",
        &[],
    )?;
    let versions = String::from_utf8_lossy(&versions.stdout).into_owned();
    let mut versions = versions.split_whitespace().map(str::to_owned);
    let redis_server = Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    Ok(Row::new("setup")
        .with(
            "cpus",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )
        .with("cpu_model", crate::cpu_model())
        .with("redis_server", redis_server)
        .with("python", versions.next())
        .with("celery", versions.next())
        .with("kombu", versions.next()))
}

/// The producer, the result backend, and where to find the processes whose CPU is counted.
struct Bench {
    tasks: TaskLib,
    results: redis::aio::MultiplexedConnection,
    redis_port: u16,
    app_dir: PathBuf,
}

impl Bench {
    /// Submits `count` no-op tasks to `queue` and waits until every one has succeeded;
    /// returns the latest completion time the results record.
    async fn run(&self, queue: &str, count: usize) -> BenchResult<DateTime<Utc>> {
        let ids = self.submit(queue, count).await?;
        self.confirm(&ids).await
    }

    async fn submit(&self, queue: &str, count: usize) -> BenchResult<Vec<Uuid>> {
        let mut ids = Vec::with_capacity(count);
        let mut n = 0;
        while n < count {
            let end = (n + SUBMIT_CHUNK).min(count);
            let chunk = (n..end).map(|n| Noop { n: n as u64 });
            ids.extend(
                self.tasks
                    .submit_many(chunk, SubmitOptions::new().queue(queue))
                    .await?,
            );
            n = end;
        }
        Ok(ids)
    }

    /// The timed drain of `queue`, with the CPU each side used.
    async fn measure(&self, name: &str, queue: &str, s: &Settings) -> BenchResult<Row> {
        let watch = CompilerWatch::start();
        let cpu = [self.bench_cpu(), self.redis_cpu(), self.python_cpu()];
        let commands = self.redis_commands().await?;
        let t0 = Utc::now();
        let started = Instant::now();
        let ids = self.submit(queue, s.tasks).await?;
        let submit_seconds = started.elapsed().as_secs_f64();
        // The lists are FIFO: once the last task submitted is done, few others can be left.
        if let Some(last) = ids.last() {
            self.tasks.wait_result(*last, PATIENCE).await?;
        }
        let done = self.confirm(&ids).await?;
        let observed = started.elapsed().as_secs_f64();
        let commands = self.redis_commands().await? - commands;
        let used = [
            self.bench_cpu() - cpu[0],
            self.redis_cpu() - cpu[1],
            self.python_cpu() - cpu[2],
        ];
        let seconds = (done - t0).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        let per_task = |secs: f64| secs * 1e6 / s.tasks.max(1) as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let python = (queue == PYTHON_QUEUE).then(|| per_task(used[2]));
        Ok(Row::throughput(name, s.tasks, s.concurrency, seconds)
            .with("observed_seconds", observed)
            .with("submit_seconds", submit_seconds)
            .with("bench_cpu_us_per_task", per_task(used[0]))
            .with("redis_cpu_us_per_task", per_task(used[1]))
            .with("python_cpu_us_per_task", python)
            .with("cpu_busy", used.iter().sum::<f64>() / (observed * cores))
            .with(
                "redis_commands_per_task",
                commands as f64 / s.tasks.max(1) as f64,
            )
            .with("foreign_compilers", watch.most()))
    }

    /// Reads every result until all are `SUCCESS`; returns the latest `date_done`.
    ///
    /// # Errors
    /// When a task ended otherwise, or not all succeeded within [`PATIENCE`].
    async fn confirm(&self, ids: &[Uuid]) -> BenchResult<DateTime<Utc>> {
        let started = Instant::now();
        let mut left: Vec<String> = ids.iter().map(|id| format!("{META_PREFIX}{id}")).collect();
        let mut latest: Option<DateTime<Utc>> = None;
        let mut conn = self.results.clone();
        while !left.is_empty() {
            let mut unfinished = Vec::new();
            for keys in left.chunks(READ_CHUNK) {
                let metas: Vec<Option<String>> =
                    redis::cmd("MGET").arg(keys).query_async(&mut conn).await?;
                for (key, meta) in keys.iter().zip(metas) {
                    let meta: Meta = match meta {
                        Some(text) => serde_json::from_str(&text)?,
                        None => return Err(format!("{key}: no result stored").into()),
                    };
                    match meta.status.as_str() {
                        "SUCCESS" => {
                            let done = meta.done().ok_or_else(|| {
                                format!("{key}: SUCCESS without a readable date_done")
                            })?;
                            latest = latest.max(Some(done));
                        }
                        "PENDING" | "RECEIVED" | "STARTED" => unfinished.push(key.clone()),
                        other => return Err(format!("{key} ended {other}").into()),
                    }
                }
            }
            if !unfinished.is_empty() {
                if started.elapsed() > PATIENCE {
                    return Err(format!(
                        "{} of {} tasks unfinished after {PATIENCE:?}",
                        unfinished.len(),
                        ids.len()
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            left = unfinished;
        }
        latest.ok_or_else(|| "no task to confirm".into())
    }

    /// Commands Redis has run so far (`INFO commandstats`, every command summed): with the
    /// producer's and the confirming reads, the same for both workers, included.
    async fn redis_commands(&self) -> BenchResult<u64> {
        let mut conn = self.results.clone();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await?;
        Ok(command_calls(&info).map(|(_, calls)| calls).sum())
    }

    fn bench_cpu(&self) -> f64 {
        probe::client_cpu_secs().unwrap_or(0.0)
    }

    /// `redis-server` sets its title to `redis-server 127.0.0.1:<port>`.
    fn redis_cpu(&self) -> f64 {
        let title = format!(":{}", self.redis_port);
        probe::processes_cpu_secs(|proc| {
            std::fs::read_to_string(proc.join("cmdline"))
                .is_ok_and(|c| c.contains("redis-server") && c.contains(&title))
        })
    }

    /// The Celery worker and its pool processes: those running in the app's directory.
    fn python_cpu(&self) -> f64 {
        probe::processes_cpu_secs(|proc| {
            std::fs::read_link(proc.join("cwd")).is_ok_and(|cwd| same_dir(&cwd, &self.app_dir))
        })
    }
}

/// `(command, calls)` of each `cmdstat_<command>:calls=<n>,…` line.
fn command_calls(info: &str) -> impl Iterator<Item = (&str, u64)> {
    info.lines().filter_map(|line| {
        let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
        let calls = stats
            .strip_prefix("calls=")?
            .split(',')
            .next()?
            .parse()
            .ok()?;
        Some((name, calls))
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || std::fs::canonicalize(b).is_ok_and(|b| a == b)
}

/// The fields of a stored result the benchmark reads.
#[derive(Debug, Deserialize)]
struct Meta {
    status: String,
    #[serde(default)]
    date_done: Option<String>,
}

impl Meta {
    /// `date_done` as Celery writes it (ISO 8601; without an offset it is UTC, Celery's
    /// `enable_utc` default).
    fn done(&self) -> Option<DateTime<Utc>> {
        let text = self.date_done.as_deref()?;
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|t| t.and_utc())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_times_parse_with_or_without_an_offset() {
        let meta = |date: &str| Meta {
            status: "SUCCESS".into(),
            date_done: Some(date.into()),
        };
        let with = meta("2025-01-02T03:04:05.123456+00:00").done();
        let without = meta("2025-01-02T03:04:05.123456").done();
        assert!(with.is_some());
        assert_eq!(with, without);
        assert!(meta("yesterday").done().is_none());
    }

    #[test]
    fn command_counts_come_from_commandstats() {
        let info = "# Commandstats\r\ncmdstat_brpop:calls=7,usec=1,usec_per_call=0.1\r\n\
                    cmdstat_get:calls=3,usec=1,usec_per_call=0.3\r\n";
        let calls: Vec<_> = command_calls(info).collect();
        assert_eq!(calls, [("brpop", 7), ("get", 3)]);
    }
}
