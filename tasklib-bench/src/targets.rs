//! The targets of issue 5, issue 12 (the Rust worker drains Celery's queue faster than a
//! Python Celery worker) and issue 17 (the same workloads on a durable server, higher bars),
//! checked against the figures of a run (or their medians).

use serde_json::Value;

use crate::report::Row;

/// A bound on one field of one measurement.
#[derive(Debug)]
struct Target {
    scenario: &'static str,
    field: &'static str,
    at_least: bool,
    bound: f64,
}

const TARGETS: &[Target] = &[
    Target {
        scenario: "drain",
        field: "tasks_per_sec",
        at_least: true,
        bound: 8_000.0,
    },
    Target {
        scenario: "drain",
        field: "floor_ratio",
        at_least: true,
        bound: 0.6,
    },
    Target {
        scenario: "latency",
        field: "p50_ms",
        at_least: false,
        bound: 2.0,
    },
    Target {
        scenario: "latency",
        field: "p99_ms",
        at_least: false,
        bound: 10.0,
    },
    Target {
        scenario: "enqueue_bulk",
        field: "tasks_per_sec",
        at_least: true,
        bound: 60_000.0,
    },
    Target {
        scenario: "enqueue_single_10",
        field: "tasks_per_sec",
        at_least: true,
        bound: 3_000.0,
    },
    Target {
        scenario: "scale_drain_ratio",
        field: "ratio",
        at_least: true,
        bound: 0.8,
    },
    Target {
        scenario: "scale_latency_p50_ratio",
        field: "ratio",
        at_least: false,
        bound: 1.2,
    },
    Target {
        scenario: "scale_latency_p99_ratio",
        field: "ratio",
        at_least: false,
        bound: 1.2,
    },
    Target {
        scenario: "drain",
        field: "process_peak_rss_mb",
        at_least: false,
        bound: 50.0,
    },
    // Issue 17, on a durable server: `headline` measures these three.
    Target {
        scenario: "enqueue_bulk_chunked",
        field: "tasks_per_sec",
        at_least: true,
        bound: 80_000.0,
    },
    Target {
        scenario: "drain",
        field: "tasks_per_sec",
        at_least: true,
        bound: 12_000.0,
    },
    Target {
        scenario: "latency",
        field: "pickup_p50_ms",
        at_least: false,
        bound: 1.5,
    },
    Target {
        scenario: "latency",
        field: "pickup_p99_ms",
        at_least: false,
        bound: 3.0,
    },
    Target {
        scenario: "celery_rust_vs_python",
        field: "ratio",
        at_least: true,
        bound: 1.0,
    },
];

/// One `target` row per target whose measurement is among `rows`.
pub(crate) fn check(rows: &[Row]) -> Vec<Row> {
    TARGETS
        .iter()
        .filter_map(|t| {
            let value = rows
                .iter()
                .find(|r| r.scenario == t.scenario)?
                .get(t.field)?;
            let met = if t.at_least {
                value >= t.bound
            } else {
                value <= t.bound
            };
            let sign = if t.at_least { ">=" } else { "<=" };
            Some(
                Row::new("target")
                    .with(
                        "target",
                        format!("{}.{} {sign} {}", t.scenario, t.field, t.bound),
                    )
                    .with("value", value)
                    .with("met", Value::Bool(met)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_only_what_was_measured() {
        // 10,000 tasks/s: above issue 5's 8,000, below issue 17's 12,000.
        let rows = [Row::throughput("drain", 100, 10, 0.01).with("floor_ratio", 0.5)];
        let checked = check(&rows);
        let met: Vec<_> = checked.iter().map(|r| r.fields.get("met")).collect();
        assert_eq!(
            met,
            [
                Some(&Value::Bool(true)),
                Some(&Value::Bool(false)),
                Some(&Value::Bool(false))
            ]
        );
    }
}
