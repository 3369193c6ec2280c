//! `scale`: `drain` and `latency` again with a large table of finished tasks.

use std::time::Instant;

use crate::Settings;
use crate::db::{BenchDb, BenchResult};
use crate::drain::{drain, drain_on};
use crate::latency::{latency, latency_on};
use crate::report::Row;

/// Runs `drain` and `latency` on a table already holding `scale_rows` completed tasks, and
/// reports their ratios to the empty-table figures: `empty`, when the caller has just
/// measured them in this run, else measured here first.
pub(crate) async fn scale(s: &Settings, empty: Option<(Row, Row)>) -> BenchResult<Vec<Row>> {
    let mut rows = Vec::new();
    let (drain_empty, latency_empty) = match empty {
        Some(baseline) => baseline,
        None => {
            let d = drain(s).await?;
            let l = latency(s).await?;
            rows.push(d.clone());
            rows.push(l.clone());
            (d, l)
        }
    };
    let db = BenchDb::new().await?;
    let started = Instant::now();
    db.preload_completed(s.scale_rows).await?;
    let preload_seconds = started.elapsed().as_secs_f64();
    let label = if s.scale_rows.is_multiple_of(1_000_000) {
        format!("{}M", s.scale_rows / 1_000_000)
    } else {
        s.scale_rows.to_string()
    };
    let drain_full = drain_on(
        &db,
        s,
        &format!("drain_with_{label}_completed"),
        s.scale_rows,
    )
    .await?
    .with("preload_seconds", preload_seconds);
    // The drain left 20,000 more finished rows and their dead versions; vacuum as autovacuum
    // would have by the time an idle pool sees its next task.
    db.raw()
        .await?
        .batch_execute("VACUUM ANALYZE tasks")
        .await?;
    let latency_full = latency_on(&db, s, &format!("latency_with_{label}_completed")).await?;
    let ratio = |full: &Row, empty: &Row, key: &str| {
        full.get(key)
            .zip(empty.get(key))
            .map_or(0.0, |(f, e)| f / e.max(f64::EPSILON))
    };
    rows.push(Row::ratio(
        "scale_drain_ratio",
        ratio(&drain_full, &drain_empty, "tasks_per_sec"),
    ));
    rows.push(Row::ratio(
        "scale_latency_p50_ratio",
        ratio(&latency_full, &latency_empty, "p50_ms"),
    ));
    rows.push(Row::ratio(
        "scale_latency_p99_ratio",
        ratio(&latency_full, &latency_empty, "p99_ms"),
    ));
    rows.insert(rows.len() - 3, drain_full);
    rows.insert(rows.len() - 3, latency_full);
    Ok(rows)
}
