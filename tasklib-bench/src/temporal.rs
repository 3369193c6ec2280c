//! `temporal` (issue 13): the drain of `--tasks` no-op tasks at `--concurrency` through the
//! Temporal engine, and the same drain on the PostgreSQL engine for the ratio.
//!
//! Each run starts a fresh dev server (`temporal server start-dev`, SQLite in a temporary
//! file, from `tasklib-test-utils`) with its Prometheus endpoint on a known port. One
//! `TaskLib` on the Temporal engine does everything through the public API:
//!
//! 1. a warm-up: a pool on its own queue runs [`WARMUP`] tasks, untimed, and is shut down;
//! 2. the submit phase, timed: [`SUBMITTERS`] concurrent callers `submit_many` the tasks in
//!    chunks of [`SUBMIT_CHUNK`] (the engine starts one workflow per task: Temporal has no
//!    batch start), with no worker polling;
//! 3. the drain, timed: a pool of `--concurrency` slots starts, and the clock runs until
//!    every workflow is closed. The handler counts its calls, so the benchmark sleeps until
//!    the last one has run; then it asks the server's visibility how many workflows still
//!    run, until none do (each workflow closes in one more workflow task after its
//!    activity). The drain's end is the latest `closeTime` the server recorded (so the
//!    confirming is not counted: that is `observed_seconds`), and the run fails unless every
//!    workflow is `Completed` and a sample of tasks reads `completed` through `get_result`.
//!
//! Where the time goes: CPU of this process (the client and the SDK's worker) and of the
//! dev server's process group, per task; the frontend's gRPC requests per task by method
//! and the persistence requests per task (from the server's own metrics); and the events
//! of one workflow's history (workflow tasks and activity tasks per task).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tasklib::{BackendType, Config, SubmitOptions, TaskContext, TaskError, TaskLib, TaskWorker};
use tasklib_test_utils::TestTemporal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use uuid::Uuid;

use crate::Settings;
use crate::db::{BenchResult, Noop};
use crate::drain;
use crate::probe::{self, CompilerWatch};
use crate::report::Row;

/// The queue of the warm-up; the measured tasks go to tasklib's default queue.
const WARMUP_QUEUE: &str = "bench_warmup";
/// Tasks run before anything is timed, on [`WARMUP_QUEUE`].
const WARMUP: usize = 50;
/// Callers submitting at once in the submit phase.
const SUBMITTERS: usize = 10;
/// Tasks of one `submit_many`.
const SUBMIT_CHUNK: usize = 100;
/// How long the submit phase or the drain may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(1800);
/// How often the server's visibility is asked how many workflows still run, once every
/// handler has returned.
const CONFIRM_POLL: Duration = Duration::from_millis(50);
/// How long the idle server's CPU is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(5);
/// The pause between two readings of the server's metrics when waiting for them to settle.
const SETTLE: Duration = Duration::from_millis(1500);
/// Tasks whose result is read through `get_result` at the end (first, middle, last).
const SAMPLES: usize = 3;
/// Frontend methods reported one by one (per task); the others are summed.
const METHODS: [&str; 6] = [
    "StartWorkflowExecution",
    "PollWorkflowTaskQueue",
    "RespondWorkflowTaskCompleted",
    "PollActivityTaskQueue",
    "RespondActivityTaskCompleted",
    "RecordActivityTaskHeartbeat",
];

/// Where the figures come from: the machine, the PostgreSQL server of the comparison, and
/// the Temporal CLI and server.
pub(crate) async fn setup() -> BenchResult<Row> {
    let row = crate::setup().await?;
    let server = tokio::task::spawn_blocking(TestTemporal::start).await??;
    let output = server.cli(&["operator", "cluster", "system", "--output", "json"])?;
    let system: Value = serde_json::from_slice(&output.stdout)?;
    Ok(row
        .with("temporal_server", system.get("serverVersion").cloned())
        .with(
            "temporal_persistence",
            "SQLite file (start-dev --db-filename)",
        ))
}

/// One run: the Temporal drain on a fresh dev server, the PostgreSQL drain on a fresh
/// database, and their ratio.
pub(crate) async fn temporal(s: &Settings) -> BenchResult<Vec<Row>> {
    let (submit, drained) = temporal_drain(s).await?;
    let postgres = drain::drain(s).await?;
    let ratio = drained.rate_ratio(&postgres).unwrap_or(0.0);
    Ok(vec![
        submit,
        drained,
        postgres,
        Row::ratio("temporal_vs_postgres_drain", ratio),
    ])
}

/// The Temporal side of one run: the submit phase's row and the drain's.
async fn temporal_drain(s: &Settings) -> BenchResult<(Row, Row)> {
    let metrics_port = free_port()?;
    let mut flags = vec!["--metrics-port".to_owned(), metrics_port.to_string()];
    flags.extend(s.temporal_flags.iter().cloned());
    let server = tokio::task::spawn_blocking(move || TestTemporal::start_with(&flags)).await??;
    let namespace = server.namespace()?;
    let config = Config::for_backend(BackendType::Temporal)
        .temporal_host(server.host())
        .temporal_namespace(namespace.clone())
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;
    let (ran, ran_rx) = watch::channel(0usize);
    tasks.register(move |_: Noop, _: TaskContext| {
        ran.send_modify(|n| *n += 1);
        async { Ok::<_, TaskError>(()) }
    })?;
    let bench = Bench {
        server,
        namespace,
        metrics_port,
        ran: ran_rx,
    };

    // Warm-up: the server's caches, the SDK's connections, the first workflow tasks.
    let warm = TaskWorker::new(&tasks)
        .queue(WARMUP_QUEUE, s.concurrency)
        .spawn()?;
    let warm_ids = submit(&tasks, WARMUP, WARMUP_QUEUE).await?;
    for id in &warm_ids {
        let result = tasks.wait_result(*id, PATIENCE).await?;
        if result.status != tasklib::TaskStatus::Completed {
            return Err(format!("warm-up task {id} ended {:?}", result.status).into());
        }
    }
    warm.shutdown().await?;
    let metrics = bench.settled_metrics().await?;
    // What the server burns with nothing to do (its housekeeping, for every namespace).
    let idle_cores = bench.idle_server_cores().await;

    // The submit phase: every workflow started before any worker polls the queue.
    let watch_submit = CompilerWatch::start();
    let cpu = bench.cpu();
    let started = Instant::now();
    let ids = submit(&tasks, s.tasks, tasklib::DEFAULT_QUEUE).await?;
    let submit_seconds = started.elapsed().as_secs_f64();
    let used = bench.cpu().since(cpu);
    let after_submit = bench.settled_metrics().await?;
    let submit_row = Row::throughput("temporal_submit", s.tasks, SUBMITTERS, submit_seconds)
        .with("submit_chunk", SUBMIT_CHUNK)
        .with("server_idle_cores", idle_cores)
        .with("foreign_compilers", watch_submit.most());
    let submit_row = used.annotate(submit_row, s.tasks, submit_seconds);
    let submit_row = after_submit.since(&metrics).annotate(submit_row, s.tasks);

    // The drain.
    let watch = CompilerWatch::start();
    let goal = WARMUP + s.tasks;
    let cpu = bench.cpu();
    let t0 = SystemTime::now();
    let started = Instant::now();
    let pool = TaskWorker::new(&tasks).concurrency(s.concurrency).spawn()?;
    let mut ran = bench.ran.clone();
    tokio::time::timeout(PATIENCE, ran.wait_for(|n| *n >= goal))
        .await
        .map_err(|_| format!("the handler ran fewer than {goal} times in {PATIENCE:?}"))??;
    let handlers_seconds = started.elapsed().as_secs_f64();
    bench.wait_none_running(started).await?;
    let observed = started.elapsed().as_secs_f64();
    let used = bench.cpu().since(cpu);
    let stats = pool.stats();
    pool.shutdown().await?;
    let requests = bench.settled_metrics().await?.since(&after_submit);

    let completed = bench.count("ExecutionStatus=\"Completed\"")?;
    if completed != goal as u64 {
        return Err(format!("{completed} workflows completed, of {goal}").into());
    }
    for id in sample(&ids) {
        let result = tasks.get_result(id).await?;
        if result.status != tasklib::TaskStatus::Completed {
            return Err(format!("task {id} reads {:?}, not completed", result.status).into());
        }
    }
    let last_close = bench.latest_close()?;
    let seconds = last_close
        .duration_since(t0)
        .map_err(|_| "the latest close time is before the drain started")?
        .as_secs_f64();
    let history = match ids.first() {
        Some(id) => bench.history(*id)?,
        None => History::default(),
    };
    let per_task = |n: f64| n / s.tasks.max(1) as f64;
    let row = Row::throughput("temporal_drain", s.tasks, s.concurrency, seconds)
        .with(
            "server_flags",
            (!s.temporal_flags.is_empty()).then(|| s.temporal_flags.join(" ")),
        )
        .with("observed_seconds", observed)
        .with("handlers_done_seconds", handlers_seconds)
        .with("activities_per_task", per_task(stats.tasks_claimed as f64))
        .with("server_idle_cores", idle_cores)
        .with("history_events_per_task", history.events)
        .with("workflow_tasks_per_task", history.workflow_tasks)
        .with("activity_tasks_per_task", history.activity_tasks)
        .with("foreign_compilers", watch.most());
    let busy_less_idle = used
        .server
        .map(|cpu| (cpu - idle_cores * observed) * 1e6 / s.tasks.max(1) as f64);
    let row = row.with("server_cpu_us_per_task_less_idle", busy_less_idle);
    let row = requests.annotate(used.annotate(row, s.tasks, observed), s.tasks);
    Ok((submit_row, row))
}

/// `count` no-op tasks to `queue`, from [`SUBMITTERS`] callers at once, in chunks of
/// [`SUBMIT_CHUNK`]; their ids in submit order.
async fn submit(tasks: &TaskLib, count: usize, queue: &str) -> BenchResult<Vec<Uuid>> {
    let share = count.div_ceil(SUBMITTERS);
    let callers = (0..SUBMITTERS).map(|caller| {
        let from = (caller * share).min(count);
        let to = ((caller + 1) * share).min(count);
        async move {
            let mut ids = Vec::with_capacity(to - from);
            let mut n = from;
            while n < to {
                let end = (n + SUBMIT_CHUNK).min(to);
                let chunk = (n..end).map(|n| Noop { n: n as u64 });
                let submitted = tasks
                    .submit_many(chunk, SubmitOptions::new().queue(queue))
                    .await?;
                ids.extend(submitted);
                n = end;
            }
            Ok::<_, tasklib::Error>(ids)
        }
    });
    let mut ids = Vec::with_capacity(count);
    for caller in futures::future::join_all(callers).await {
        ids.extend(caller?);
    }
    Ok(ids)
}

/// The first, middle and last of `ids`.
fn sample(ids: &[Uuid]) -> Vec<Uuid> {
    let mut picked: Vec<Uuid> = (0..SAMPLES)
        .filter_map(|i| ids.get(i * ids.len().saturating_sub(1) / (SAMPLES - 1).max(1)))
        .copied()
        .collect();
    picked.dedup();
    picked
}

fn free_port() -> BenchResult<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The dev server of one run, and the handler's count of calls.
struct Bench {
    server: TestTemporal,
    namespace: String,
    metrics_port: u16,
    ran: watch::Receiver<usize>,
}

impl Bench {
    fn cpu(&self) -> Cpu {
        let group = self.server.pid() as u64;
        Cpu {
            client: probe::client_cpu_secs().unwrap_or(0.0),
            server: probe::group_cpu_secs(group),
        }
    }

    /// Asks the server's visibility how many workflows run, until none do.
    async fn wait_none_running(&self, started: Instant) -> BenchResult<()> {
        loop {
            if self.count("ExecutionStatus=\"Running\"")? == 0 {
                return Ok(());
            }
            if started.elapsed() > PATIENCE {
                return Err(format!("workflows still running after {PATIENCE:?}").into());
            }
            tokio::time::sleep(CONFIRM_POLL).await;
        }
    }

    /// Workflows of the namespace matching a visibility query.
    fn count(&self, query: &str) -> BenchResult<u64> {
        Ok(self.server.workflow_count(&self.namespace, Some(query))?)
    }

    /// The latest close time of a completed workflow: visibility lists closed workflows
    /// newest close first; the latest of the first page is taken, in case of ties.
    fn latest_close(&self) -> BenchResult<SystemTime> {
        let output = self.server.cli(&[
            "workflow",
            "list",
            "--namespace",
            &self.namespace,
            "--query",
            "ExecutionStatus=\"Completed\"",
            "--limit",
            "20",
            "--output",
            "json",
        ])?;
        let listed = json_values(&String::from_utf8_lossy(&output.stdout))?;
        listed
            .iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            })
            .filter_map(|w| {
                let text = w.get("closeTime")?.as_str()?;
                chrono::DateTime::parse_from_rfc3339(text).ok()
            })
            .max()
            .map(SystemTime::from)
            .ok_or_else(|| "no close time among the completed workflows".into())
    }

    /// The events of one workflow's history, by kind.
    fn history(&self, id: Uuid) -> BenchResult<History> {
        let output = self.server.cli(&[
            "workflow",
            "show",
            "--namespace",
            &self.namespace,
            "--workflow-id",
            &id.to_string(),
            "--output",
            "json",
        ])?;
        let shown = json_values(&String::from_utf8_lossy(&output.stdout))?;
        let events: Vec<String> = shown
            .iter()
            .filter_map(|v| v.get("events")?.as_array().cloned())
            .flatten()
            .filter_map(|e| Some(event_kind(e.get("eventType")?.as_str()?)))
            .collect();
        let of = |kind: &str| events.iter().filter(|e| *e == kind).count() as f64;
        Ok(History {
            events: events.len() as f64,
            workflow_tasks: of("workflowtaskstarted"),
            activity_tasks: of("activitytaskstarted"),
        })
    }

    /// The server's CPU with nothing to do, in cores, over [`IDLE_WINDOW`].
    async fn idle_server_cores(&self) -> f64 {
        let before = self.cpu();
        tokio::time::sleep(IDLE_WINDOW).await;
        (self.cpu().server - before.server) / IDLE_WINDOW.as_secs_f64()
    }

    /// The server's counters once its frontend has published every request made so far: its
    /// metrics are exported every so often, so they are read until two readings
    /// [`SETTLE`] apart count the same frontend requests.
    async fn settled_metrics(&self) -> BenchResult<Metrics> {
        let requests = |m: &Metrics| m.frontend.values().map(|t| t.requests).sum::<f64>();
        let mut last = self.metrics().await?;
        for _ in 0..10 {
            tokio::time::sleep(SETTLE).await;
            let now = self.metrics().await?;
            if requests(&now) == requests(&last) {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    /// The server's counters now.
    async fn metrics(&self) -> BenchResult<Metrics> {
        let mut stream =
            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.metrics_port)).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        Ok(Metrics::parse(&body))
    }
}

/// `EVENT_TYPE_WORKFLOW_TASK_STARTED` and `WorkflowTaskStarted` alike, as
/// `workflowtaskstarted`.
fn event_kind(name: &str) -> String {
    name.trim_start_matches("EVENT_TYPE_")
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The CLI's `--output json`: one JSON document, or several one after the other.
fn json_values(text: &str) -> BenchResult<Vec<Value>> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map(|v| v.map_err(Into::into))
        .collect()
}

/// One workflow's history.
#[derive(Debug, Default)]
struct History {
    events: f64,
    workflow_tasks: f64,
    activity_tasks: f64,
}

/// CPU seconds so far of this process and of the dev server.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    client: f64,
    server: f64,
}

impl Cpu {
    fn since(self, before: Cpu) -> probe::CpuUsed {
        probe::CpuUsed {
            client: Some(self.client - before.client),
            server: Some(self.server - before.server),
            steal: None,
        }
    }
}

/// The server's counters the benchmark reads: the frontend's requests by method and the time
/// they took, and the persistence requests (every read and write of the SQLite store) and
/// the time they took.
#[derive(Debug, Default, PartialEq)]
struct Metrics {
    frontend: BTreeMap<String, Timed>,
    persistence: Timed,
}

/// Requests, and the seconds they took (the latency histogram's sum).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Timed {
    requests: f64,
    seconds: f64,
}

impl Timed {
    fn since(self, before: Timed) -> Timed {
        Timed {
            requests: self.requests - before.requests,
            seconds: self.seconds - before.seconds,
        }
    }
}

impl Metrics {
    /// From Prometheus' text format: `service_requests` and `service_latency_sum` with
    /// `service_name="frontend"` by `operation`, and `persistence_requests` and
    /// `persistence_latency_sum` summed.
    fn parse(text: &str) -> Metrics {
        let mut metrics = Metrics::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            match name {
                "persistence_requests" => metrics.persistence.requests += value,
                "persistence_latency_sum" => metrics.persistence.seconds += value,
                "service_requests" | "service_latency_sum"
                    if label(labels, "service_name") == Some("frontend") =>
                {
                    if let Some(op) = label(labels, "operation") {
                        let timed = metrics.frontend.entry(op.to_owned()).or_default();
                        if name == "service_requests" {
                            timed.requests += value;
                        } else {
                            timed.seconds += value;
                        }
                    }
                }
                _ => {}
            }
        }
        metrics
    }

    fn since(&self, before: &Metrics) -> Metrics {
        Metrics {
            frontend: self
                .frontend
                .iter()
                .map(|(op, t)| {
                    let was = before.frontend.get(op).copied().unwrap_or_default();
                    (op.clone(), t.since(was))
                })
                .filter(|(_, t)| t.requests > 0.0)
                .collect(),
            persistence: self.persistence.since(before.persistence),
        }
    }

    /// Adds the requests per task: the frontend's, those of [`METHODS`] one by one with
    /// their mean time in ms, and the persistence requests with the store's time per task.
    fn annotate(&self, mut row: Row, tasks: usize) -> Row {
        let per = |n: f64| n / tasks.max(1) as f64;
        let total: f64 = self.frontend.values().map(|t| t.requests).sum();
        let p = self.persistence;
        row = row
            .with("frontend_requests_per_task", per(total))
            .with("persistence_requests_per_task", per(p.requests))
            .with("persistence_ms_per_task", per(p.seconds * 1e3))
            .with(
                "persistence_mean_ms",
                (p.requests > 0.0).then(|| p.seconds * 1e3 / p.requests),
            );
        let mut others = 0.0;
        for (op, t) in &self.frontend {
            if METHODS.contains(&op.as_str()) {
                row = row.with(&format!("{op}_per_task"), per(t.requests)).with(
                    &format!("{op}_mean_ms"),
                    (t.requests > 0.0).then(|| t.seconds * 1e3 / t.requests),
                );
            } else {
                others += t.requests;
            }
        }
        row.with("other_frontend_requests_per_task", per(others))
    }
}

/// The value of `key="value"` in a Prometheus label set.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_read_alike_in_both_spellings() {
        assert_eq!(
            event_kind("EVENT_TYPE_WORKFLOW_TASK_STARTED"),
            "workflowtaskstarted"
        );
        assert_eq!(event_kind("WorkflowTaskStarted"), "workflowtaskstarted");
    }

    #[test]
    fn metrics_count_frontend_methods_and_persistence() {
        let text = "# TYPE service_requests counter\n\
            service_requests{namespace=\"a\",operation=\"StartWorkflowExecution\",service_name=\"frontend\"} 3\n\
            service_requests{namespace=\"b\",operation=\"StartWorkflowExecution\",service_name=\"frontend\"} 2\n\
            service_latency_sum{operation=\"StartWorkflowExecution\",service_name=\"frontend\"} 0.25\n\
            service_requests{operation=\"AddWorkflowTask\",service_name=\"matching\"} 9\n\
            persistence_requests{operation=\"CreateWorkflowExecution\"} 4\n\
            persistence_requests{operation=\"UpdateWorkflowExecution\"} 6\n";
        let m = Metrics::parse(text);
        let start = m.frontend.get("StartWorkflowExecution").copied();
        assert_eq!(start.map(|t| (t.requests, t.seconds)), Some((5.0, 0.25)));
        assert_eq!(m.frontend.len(), 1);
        assert_eq!(m.persistence.requests, 10.0);
    }

    #[test]
    fn samples_are_first_middle_and_last() {
        let ids: Vec<Uuid> = (0..5u128).map(Uuid::from_u128).collect();
        assert_eq!(sample(&ids), [ids[0], ids[2], ids[4]]);
        assert_eq!(sample(&ids[..1]), [ids[0]]);
        assert!(sample(&[]).is_empty());
    }
}
