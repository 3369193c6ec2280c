//! `tasklib-bench`: measures tasklib on a real PostgreSQL.
//!
//! ```text
//! cargo run --release -p tasklib-bench -- <scenario> [--json] [--tasks N] [--concurrency N]
//! ```
//!
//! Scenarios: `enqueue`, `drain` (with `--with-floor` for the ratio to the SQL floor),
//! `latency`, `floor`, `scale`, `all`. The database is `DATABASE_URL`'s server when set (a
//! fresh database per scenario), else a throwaway cluster from `tasklib-test-utils`.
//! See `docs/performance.md` for the method and the figures.

mod report;
mod scenarios;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Benchmarks for tasklib.
#[derive(Debug, Parser)]
#[command(about, long_about = None)]
struct Args {
    /// What to measure.
    scenario: Scenario,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Tasks for enqueue (bulk) and drain.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Worker slots (drain, floor, scale).
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Tasks submitted one by one in the latency scenario.
    #[arg(long, default_value_t = 500)]
    latency_tasks: usize,
    /// Pause between latency submits, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_gap_ms: u64,
    /// Completed rows preloaded by `scale`.
    #[arg(long, default_value_t = 1_000_000)]
    scale_rows: usize,
    /// With `drain`: also run `floor` and print the ratio.
    #[arg(long)]
    with_floor: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Enqueue,
    Drain,
    Latency,
    Floor,
    Scale,
    All,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut out = report::Report::new(args.json);
    match run(&args, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: &Args, out: &mut report::Report) -> scenarios::BenchResult<()> {
    let s = scenarios::Settings {
        tasks: args.tasks,
        concurrency: args.concurrency,
        latency_tasks: args.latency_tasks,
        latency_gap: std::time::Duration::from_millis(args.latency_gap_ms),
        scale_rows: args.scale_rows,
    };
    match args.scenario {
        Scenario::Enqueue => scenarios::enqueue(&s, out).await,
        Scenario::Drain => {
            let drain = scenarios::drain(&s, 0, out).await?;
            if args.with_floor {
                let floor = scenarios::floor(&s, out).await?;
                out.ratio("floor_ratio", drain / floor);
            }
            Ok(())
        }
        Scenario::Latency => scenarios::latency(&s, 0, out).await.map(|_| ()),
        Scenario::Floor => scenarios::floor(&s, out).await.map(|_| ()),
        Scenario::Scale => scenarios::scale(&s, out).await,
        Scenario::All => {
            scenarios::enqueue(&s, out).await?;
            let drain = scenarios::drain(&s, 0, out).await?;
            let floor = scenarios::floor(&s, out).await?;
            out.ratio("floor_ratio", drain / floor);
            scenarios::latency(&s, 0, out).await?;
            scenarios::scale(&s, out).await
        }
    }
}
