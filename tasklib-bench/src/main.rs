//! `tasklib-bench`: measures tasklib on a real PostgreSQL (issue 5).
//!
//! ```text
//! cargo run --release -p tasklib-bench -- <scenario> [--json] [--runs 3] [--tasks N] [--tiny]
//! cargo run --release -p tasklib-bench --features celery -- celery [--runs 3] [--tasks N]
//! cargo run --release -p tasklib-bench --features temporal -- temporal [--runs 3] [--tasks N]
//! ```
//!
//! Scenarios: `enqueue` (`--chunk 1000` sends the bulk submit in calls of 1,000), `drain`
//! (with `--with-floor` for the ratio to the SQL floor),
//! `latency`, `floor`, `scale`, `all` (those five), and two that show where the time goes:
//! `explain` (plans of the claim and the completion) and `statements` (`pg_stat_statements`
//! per task, on a private cluster), and `limits` (the drain with cluster-wide limits set but
//! not binding, beside one without). `headline` runs the three workloads of the durable-server
//! targets (issue 17: bulk submit in calls of 1,000, drain, pickup from before `submit`);
//! run it against a durable server through `DATABASE_URL`. `dashboard` times the web dashboard's pages
//! (`tasklib-web`) on a table of `--rows` tasks (a million by default) and explains their
//! queries (issue 16). The database is a fresh one per measurement, on
//! `DATABASE_URL`'s server when set, else on a throwaway cluster from `tasklib-test-utils`.
//!
//! With `--features celery`, `celery` drains through the Celery engine instead: tasklib's
//! Rust worker, then a real Python Celery worker, from one fresh `redis-server` (issue 12).
//! With `--features temporal`, `temporal` drains through the Temporal engine on a fresh
//! `temporal server start-dev`, then the same drain on PostgreSQL for the ratio (issue 13).
//! See `docs/performance.md` for the method and the figures.

#[cfg(feature = "celery")]
mod celery;
mod dashboard;
mod db;
mod drain;
mod enqueue;
mod explain;
mod latency;
mod probe;
mod report;
mod scale;
mod sql;
mod statements;
mod targets;
#[cfg(feature = "temporal")]
mod temporal;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::Value;

use crate::db::{BenchDb, BenchResult};
use crate::report::{Printer, Row};

/// Benchmarks for tasklib.
#[derive(Debug, Parser)]
#[command(about, long_about = None)]
struct Args {
    /// What to measure.
    scenario: Scenario,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Runs of the scenario; with more than one, the median of each figure is printed last.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Tasks drained (drain, floor, scale, temporal, and by each worker in celery) and
    /// bulk-submitted (enqueue).
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Tasks per `submit_many` call of the bulk submit, each call its own transaction, one
    /// after the other (`enqueue`; `headline` defaults to 1,000). Without it, `enqueue` sends
    /// all `--tasks` in one call.
    #[arg(long)]
    chunk: Option<usize>,
    /// Tasks of each single-submit run of `enqueue` (split between the submitters).
    #[arg(long, default_value_t = 2_000)]
    single_tasks: usize,
    /// Slots of the worker pool (in `celery`, also the Python worker's processes), and loops
    /// of `floor`.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Worker pools in `drain`, each with its own `TaskLib` and `--concurrency` slots (a
    /// diagnostic: the issue's figure is one pool).
    #[arg(long, default_value_t = 1)]
    pools: usize,
    /// How far the pools of `drain` and `statements` claim ahead of their free slots:
    /// `measured`, `off` or a number (a diagnostic); without it, the library's default.
    #[arg(long, value_parser = parse_claim_ahead)]
    claim_ahead: Option<tasklib::ClaimAhead>,
    /// Tasks submitted one at a time in `latency`.
    #[arg(long, default_value_t = 500)]
    latency_tasks: usize,
    /// Pause between those submits, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_gap_ms: u64,
    /// Tasks run before the measured ones in `latency`, and not counted.
    #[arg(long, default_value_t = 20)]
    latency_warmup: usize,
    /// Completed rows already in the table for `scale`.
    #[arg(long, default_value_t = 1_000_000)]
    scale_rows: usize,
    /// Rows in the table for `dashboard`, in the mix of a busy week.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// With `drain`: also run `floor` and report `floor_ratio`.
    #[arg(long)]
    with_floor: bool,
    /// SQL run on each fresh database after migrating, before anything is measured: to try a
    /// schema or setting change, e.g. `DROP INDEX tasks_name_idx`, or `DO $$ BEGIN EXECUTE
    /// format('ALTER DATABASE %I SET plan_cache_mode = force_generic_plan',
    /// current_database()); END $$`.
    #[arg(long)]
    setup_sql: Option<String>,
    /// With `temporal`: a flag of `temporal server start-dev` (repeat for more), e.g.
    /// `--temporal-flag=--sqlite-pragma --temporal-flag=synchronous=off`.
    #[arg(long, allow_hyphen_values = true)]
    temporal_flag: Vec<String>,
    /// A run of seconds, to prove the program works (CI): 200 tasks, 100 single submits, 20
    /// latency tasks 5 ms apart, 5,000 preloaded rows, 2,000 rows for `dashboard`. Overrides the sizes above.
    #[arg(long)]
    tiny: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Enqueue,
    Drain,
    Latency,
    Floor,
    Scale,
    All,
    Explain,
    Statements,
    /// `drain` without limits, then with a concurrency limit and a rate limit that do not
    /// bind: what cluster-wide limits cost when set.
    Limits,
    /// The Celery engine's Rust worker, then a Python Celery worker, draining the same number
    /// of tasks from one Redis (needs `--features celery`).
    Celery,
    /// The web dashboard's pages on a table of `--rows` tasks: each page's time, and the plans
    /// of its queries (not part of `all`).
    Dashboard,
    /// The three workloads of the durable-server targets (issue 17), each on a fresh
    /// database: a bulk submit of `--tasks` in calls of `--chunk` (1,000 by default), the
    /// drain, and pickup latency measured from just before each `submit`.
    Headline,
    /// The drain through the Temporal engine on a fresh dev server (its submit phase timed
    /// apart), then the same drain on PostgreSQL (needs `--features temporal`).
    Temporal,
}

/// The sizes of one invocation.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) tasks: usize,
    /// Tasks per bulk-submit call; `None`: all in one.
    pub(crate) chunk: Option<usize>,
    pub(crate) single_tasks: usize,
    pub(crate) concurrency: usize,
    pub(crate) pools: usize,
    pub(crate) claim_ahead: Option<tasklib::ClaimAhead>,
    pub(crate) latency_tasks: usize,
    pub(crate) latency_gap: Duration,
    pub(crate) latency_warmup: usize,
    pub(crate) scale_rows: usize,
    pub(crate) rows: usize,
    /// Read by the `temporal` scenario only, which exists with the feature `temporal`.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) temporal_flags: Vec<String>,
}

impl Settings {
    fn from_args(args: &Args) -> Settings {
        if args.tiny {
            return Settings {
                tasks: 200,
                chunk: args.chunk.map(|c| c.min(50)),
                single_tasks: 100,
                concurrency: args.concurrency,
                pools: args.pools,
                claim_ahead: args.claim_ahead,
                latency_tasks: 20,
                latency_gap: Duration::from_millis(5),
                latency_warmup: 3,
                scale_rows: 5_000,
                rows: 2_000,
                temporal_flags: args.temporal_flag.clone(),
            };
        }
        Settings {
            tasks: args.tasks,
            chunk: args.chunk,
            single_tasks: args.single_tasks,
            concurrency: args.concurrency,
            pools: args.pools,
            claim_ahead: args.claim_ahead,
            latency_tasks: args.latency_tasks,
            latency_gap: Duration::from_millis(args.latency_gap_ms),
            latency_warmup: args.latency_warmup,
            scale_rows: args.scale_rows,
            rows: args.rows,
            temporal_flags: args.temporal_flag.clone(),
        }
    }
}

impl Settings {
    /// A pool builder with `concurrency` slots, claiming ahead as `--claim-ahead` says (the
    /// library's default without it).
    pub(crate) fn worker(&self, tasks: &tasklib::TaskLib) -> tasklib::TaskWorker {
        let worker = tasklib::TaskWorker::new(tasks).concurrency(self.concurrency);
        match self.claim_ahead {
            Some(claim_ahead) => worker.claim_ahead(claim_ahead),
            None => worker,
        }
    }
}

fn parse_claim_ahead(value: &str) -> Result<tasklib::ClaimAhead, String> {
    match value {
        "measured" => Ok(tasklib::ClaimAhead::Measured),
        "off" => Ok(tasklib::ClaimAhead::Off),
        n => n
            .parse()
            .map(tasklib::ClaimAhead::Fixed)
            .map_err(|_| format!("`{n}`: expected measured, off or a number")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Quiet unless asked (`RUST_LOG=tasklib=debug`); logs go to stderr, figures to stdout.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = err.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: &Args) -> BenchResult<()> {
    let s = Settings::from_args(args);
    if let Some(sql) = &args.setup_sql {
        db::set_setup_sql(sql.clone());
    }
    let out = Printer::new(args.json);
    let setup = match args.scenario {
        Scenario::Celery => celery::setup().await?,
        Scenario::Temporal => temporal::setup().await?,
        _ => setup().await?,
    };
    out.heading("setup");
    out.row(&setup, &Value::Null);
    let total = args.runs.max(1);
    let mut runs = Vec::new();
    if args.scenario == Scenario::All {
        // Every run's drain first, while this process has done nothing else: its peak memory
        // is then the drain's, not what the allocator kept from an earlier bulk submit.
        let mut drains = Vec::new();
        for run in 1..=total {
            out.heading(&format!("All (drain and floor), run {run} of {total}"));
            let rows = drain_and_floor(&s, true).await?;
            for row in &rows {
                out.row(row, &Value::from(run));
            }
            drains.push(rows);
        }
        for (run, mut rows) in (1..=total).zip(drains) {
            out.heading(&format!("All (the rest), run {run} of {total}"));
            let rest = rest_of_all(&s, rows.first().cloned()).await?;
            for row in &rest {
                out.row(row, &Value::from(run));
            }
            rows.extend(rest);
            runs.push(rows);
        }
    } else {
        for run in 1..=total {
            out.heading(&format!("{:?}, run {run} of {total}", args.scenario));
            let rows = run_once(args.scenario, args.with_floor, &s).await?;
            for row in &rows {
                out.row(row, &Value::from(run));
            }
            runs.push(rows);
        }
    }
    let last = if runs.len() > 1 {
        let medians = report::medians(&runs);
        out.heading(&format!("median of {} runs", runs.len()));
        for row in &medians {
            out.row(row, &Value::from("median"));
        }
        medians
    } else {
        runs.pop().unwrap_or_default()
    };
    let checked = targets::check(&last);
    if !checked.is_empty() {
        out.heading("targets (issues 5, 12 and 17)");
        for row in &checked {
            out.row(row, &Value::Null);
        }
    }
    Ok(())
}

async fn run_once(scenario: Scenario, with_floor: bool, s: &Settings) -> BenchResult<Vec<Row>> {
    Ok(match scenario {
        Scenario::Enqueue => enqueue::enqueue(s).await?,
        Scenario::Drain => drain_and_floor(s, with_floor).await?,
        Scenario::Latency => vec![latency::latency(s).await?],
        Scenario::Floor => vec![drain::floor(s).await?],
        Scenario::Scale => scale::scale(s, None).await?,
        Scenario::Explain => explain::explain(s).await?,
        Scenario::Statements => statements::statements(s).await?,
        Scenario::Limits => drain::limits(s).await?,
        Scenario::Celery => celery::celery(s).await?,
        Scenario::Dashboard => dashboard::dashboard(s).await?,
        Scenario::Headline => headline(s).await?,
        Scenario::Temporal => temporal::temporal(s).await?,
        Scenario::All => {
            let mut rows = drain_and_floor(s, true).await?;
            rows.extend(rest_of_all(s, rows.first().cloned()).await?);
            rows
        }
    })
}

/// What a scenario of an engine left out of this build answers: how to build it in.
#[cfg(any(not(feature = "celery"), not(feature = "temporal")))]
fn needs_feature(feature: &str, engine: &str) -> Box<dyn std::error::Error + Send + Sync> {
    format!(
        "the `{feature}` scenario needs the {engine} engine: build with `--features {feature}` \
         (cargo run --release -p tasklib-bench --features {feature} -- {feature})"
    )
    .into()
}

/// The `celery` scenario in a build without the feature.
#[cfg(not(feature = "celery"))]
mod celery {
    use crate::Settings;
    use crate::db::BenchResult;
    use crate::report::Row;

    pub(crate) async fn setup() -> BenchResult<Row> {
        Err(crate::needs_feature("celery", "Celery"))
    }

    pub(crate) async fn celery(_: &Settings) -> BenchResult<Vec<Row>> {
        Err(crate::needs_feature("celery", "Celery"))
    }
}

/// The `temporal` scenario in a build without the feature.
#[cfg(not(feature = "temporal"))]
mod temporal {
    use crate::Settings;
    use crate::db::BenchResult;
    use crate::report::Row;

    pub(crate) async fn setup() -> BenchResult<Row> {
        Err(crate::needs_feature("temporal", "Temporal"))
    }

    pub(crate) async fn temporal(_: &Settings) -> BenchResult<Vec<Row>> {
        Err(crate::needs_feature("temporal", "Temporal"))
    }
}

/// The scenarios of `all` after the drain and floor; `drain` is this run's drain, the
/// baseline of `scale`.
async fn rest_of_all(s: &Settings, drain: Option<Row>) -> BenchResult<Vec<Row>> {
    let latency = latency::latency(s).await?;
    let baseline = drain.map(|d| (d, latency.clone()));
    let mut rows = vec![latency];
    rows.extend(enqueue::enqueue(s).await?);
    rows.extend(scale::scale(s, baseline).await?);
    Ok(rows)
}

/// The workloads of issue 17's targets: bulk submit in calls of 1,000 (unless `--chunk`
/// says otherwise), the drain, and pickup latency from before `submit`.
async fn headline(s: &Settings) -> BenchResult<Vec<Row>> {
    let chunked = Settings {
        chunk: Some(s.chunk.unwrap_or(1_000)),
        ..s.clone()
    };
    let mut rows = vec![enqueue::bulk(&chunked).await?];
    rows.push(drain::drain(s).await?);
    rows.push(latency::latency(s).await?);
    Ok(rows)
}

/// `drain`, and with `with_floor` also `floor` and their ratio, in this invocation.
async fn drain_and_floor(s: &Settings, with_floor: bool) -> BenchResult<Vec<Row>> {
    let drained = drain::drain(s).await?;
    if !with_floor {
        return Ok(vec![drained]);
    }
    let floor = drain::floor(s).await?;
    let ratio = drained.rate_ratio(&floor);
    Ok(vec![drained.with("floor_ratio", ratio), floor])
}

/// Where the figures come from: the machine, the server and its settings.
async fn setup() -> BenchResult<Row> {
    let db = BenchDb::new().await?;
    let client = db.raw().await?;
    let settings = [
        "server_version",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_buffers",
        "max_connections",
        "wal_level",
        "jit",
    ];
    let mut row = Row::new("setup")
        .with("setup_sql", db::setup_sql())
        .with(
            "database",
            if std::env::var_os("DATABASE_URL").is_some() {
                "DATABASE_URL"
            } else {
                "throwaway cluster (tasklib-test-utils)"
            },
        )
        .with(
            "cpus",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )
        .with("cpu_model", cpu_model())
        .with("tasklib_sql", sql::fingerprint());
    for name in settings {
        let value: String = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await?
            .get(0);
        row = row.with(name, value);
    }
    Ok(row)
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split(':').nth(1)?.trim().to_owned())
}
