//! Printing results: a readable line per measurement, or JSON lines.

use serde_json::{Value, json};

/// Collects and prints results.
#[derive(Debug)]
pub(crate) struct Report {
    json: bool,
}

/// One throughput measurement.
#[derive(Debug)]
pub(crate) struct Throughput<'a> {
    pub(crate) scenario: &'a str,
    pub(crate) tasks: usize,
    pub(crate) concurrency: usize,
    pub(crate) seconds: f64,
    pub(crate) extra: Value,
}

impl Report {
    pub(crate) fn new(json: bool) -> Self {
        if !json {
            println!(
                "{:<28} {:>9} {:>6} {:>9} {:>12}  details",
                "scenario", "tasks", "conc", "seconds", "tasks/s"
            );
        }
        Report { json }
    }

    pub(crate) fn throughput(&mut self, t: Throughput<'_>) -> f64 {
        let rate = if t.seconds > 0.0 {
            t.tasks as f64 / t.seconds
        } else {
            0.0
        };
        if self.json {
            let mut line = json!({
                "scenario": t.scenario,
                "tasks": t.tasks,
                "concurrency": t.concurrency,
                "seconds": t.seconds,
                "tasks_per_sec": rate,
            });
            merge(&mut line, t.extra);
            println!("{line}");
        } else {
            println!(
                "{:<28} {:>9} {:>6} {:>9.3} {:>12.0}  {}",
                t.scenario,
                t.tasks,
                t.concurrency,
                t.seconds,
                rate,
                details(&t.extra)
            );
        }
        rate
    }

    pub(crate) fn latency(
        &mut self,
        scenario: &str,
        tasks: usize,
        seconds: f64,
        mut delays_ms: Vec<f64>,
        extra: Value,
    ) -> f64 {
        delays_ms.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if delays_ms.is_empty() {
                return 0.0;
            }
            let rank = ((p / 100.0) * delays_ms.len() as f64).ceil() as usize;
            delays_ms[rank.clamp(1, delays_ms.len()) - 1]
        };
        let (p50, p95, p99, max) = (pct(50.0), pct(95.0), pct(99.0), pct(100.0));
        if self.json {
            let mut line = json!({
                "scenario": scenario, "tasks": tasks, "concurrency": 1, "seconds": seconds,
                "tasks_per_sec": tasks as f64 / seconds.max(f64::EPSILON),
                "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": max,
            });
            merge(&mut line, extra);
            println!("{line}");
        } else {
            println!(
                "{scenario:<28} {tasks:>9} {:>6} {seconds:>9.3} {:>12}  p50={p50:.2}ms p95={p95:.2}ms p99={p99:.2}ms max={max:.2}ms {}",
                1,
                "-",
                details(&extra)
            );
        }
        p50
    }

    pub(crate) fn ratio(&mut self, name: &str, value: f64) {
        if self.json {
            println!("{}", json!({ "scenario": name, "ratio": value }));
        } else {
            println!("{name:<28} {value:>9.3}");
        }
    }
}

fn merge(line: &mut Value, extra: Value) {
    if let (Value::Object(line), Value::Object(extra)) = (line, extra) {
        line.extend(extra);
    }
}

fn details(extra: &Value) -> String {
    match extra {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}
