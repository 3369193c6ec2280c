//! Results: one [`Row`] per measurement, printed as a readable line or as one JSON object per
//! line, and the median of several runs.

use serde_json::{Map, Value};

/// One measurement: a scenario name and its fields (`tasks`, `concurrency`, `seconds`,
/// `tasks_per_sec`, the latency percentiles, and whatever else the scenario measured).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) fields: Map<String, Value>,
}

impl Row {
    /// `tasks` done by `concurrency` workers (or submitters) in `seconds`.
    pub(crate) fn throughput(
        scenario: impl Into<String>,
        tasks: usize,
        concurrency: usize,
        seconds: f64,
    ) -> Row {
        let rate = if seconds > 0.0 {
            tasks as f64 / seconds
        } else {
            0.0
        };
        Row::new(scenario)
            .with("tasks", tasks)
            .with("concurrency", concurrency)
            .with("seconds", seconds)
            .with("tasks_per_sec", rate)
    }

    /// Delays in milliseconds, summarised as percentiles.
    pub(crate) fn latency(
        scenario: impl Into<String>,
        concurrency: usize,
        seconds: f64,
        delays_ms: &[f64],
    ) -> Row {
        let p = Percentiles::of(delays_ms);
        Row::throughput(scenario, delays_ms.len(), concurrency, seconds)
            .with("p50_ms", p.p50)
            .with("p95_ms", p.p95)
            .with("p99_ms", p.p99)
            .with("max_ms", p.max)
    }

    /// A ratio between two measurements.
    pub(crate) fn ratio(scenario: impl Into<String>, value: f64) -> Row {
        Row::new(scenario).with("ratio", value)
    }

    pub(crate) fn new(scenario: impl Into<String>) -> Row {
        Row {
            scenario: scenario.into(),
            fields: Map::new(),
        }
    }

    /// Adds a field; a `None` is left out.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Row {
        let value = value.into();
        if !value.is_null() {
            self.fields.insert(key.to_owned(), value);
        }
        self
    }

    pub(crate) fn get(&self, key: &str) -> Option<f64> {
        self.fields.get(key).and_then(Value::as_f64)
    }

    /// This row's `tasks_per_sec` over `other`'s, when both have one.
    pub(crate) fn rate_ratio(&self, other: &Row) -> Option<f64> {
        let rate = |row: &Row| row.get("tasks_per_sec");
        rate(self)
            .zip(rate(other))
            .map(|(a, b)| a / b.max(f64::EPSILON))
    }
}

/// Nearest-rank percentiles of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    pub(crate) fn of(sample: &[f64]) -> Percentiles {
        let mut sorted = sample.to_vec();
        sorted.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        };
        Percentiles {
            p50: pct(50.0),
            p95: pct(95.0),
            p99: pct(99.0),
            max: pct(100.0),
        }
    }
}

/// Prints rows as they come.
#[derive(Debug)]
pub(crate) struct Printer {
    json: bool,
}

impl Printer {
    pub(crate) fn new(json: bool) -> Printer {
        Printer { json }
    }

    /// A heading line (the table only; JSON output stays one object per line).
    pub(crate) fn heading(&self, text: &str) {
        if !self.json {
            println!("\n== {text}");
            println!(
                "{:<34} {:>8} {:>5} {:>8} {:>10}  details",
                "scenario", "tasks", "conc", "seconds", "tasks/s"
            );
        }
    }

    pub(crate) fn row(&self, row: &Row, run: &Value) {
        if self.json {
            let mut line = Map::new();
            line.insert("scenario".to_owned(), Value::from(row.scenario.clone()));
            line.extend(row.fields.clone());
            line.insert("run".to_owned(), run.clone());
            println!("{}", Value::Object(line));
            return;
        }
        let num = |key: &str| row.get(key);
        let mut details: Vec<String> = Vec::new();
        let mut blocks: Vec<&str> = Vec::new();
        for (key, value) in &row.fields {
            if let Value::String(text) = value
                && text.contains('\n')
            {
                blocks.push(text);
                continue;
            }
            if matches!(
                key.as_str(),
                "tasks" | "concurrency" | "seconds" | "tasks_per_sec"
            ) {
                continue;
            }
            details.push(match value {
                Value::Number(n) => match n.as_f64() {
                    Some(f) if n.is_f64() => format!("{key}={}", short(f)),
                    _ => format!("{key}={n}"),
                },
                Value::String(s) => format!("{key}={s}"),
                other => format!("{key}={other}"),
            });
        }
        let cell = |v: Option<f64>, digits: usize| match v {
            Some(v) => format!("{v:.digits$}"),
            None => String::new(),
        };
        let run = match run {
            Value::String(s) => format!("[{s}] "),
            Value::Number(n) => format!("[run {n}] "),
            _ => String::new(),
        };
        println!(
            "{:<34} {:>8} {:>5} {:>8} {:>10}  {run}{}",
            row.scenario,
            cell(num("tasks"), 0),
            cell(num("concurrency"), 0),
            cell(num("seconds"), 3),
            cell(num("tasks_per_sec"), 0),
            details.join(" ")
        );
        for block in blocks {
            println!("{block}");
        }
    }
}

/// Three significant digits or so, for the details column.
fn short(f: f64) -> String {
    if f.abs() >= 100.0 {
        format!("{f:.0}")
    } else if f.abs() >= 10.0 {
        format!("{f:.1}")
    } else if f.abs() >= 1.0 {
        format!("{f:.2}")
    } else {
        format!("{f:.3}")
    }
}

/// The median of each measurement over several runs: rows are matched by scenario name, and
/// every numeric field is replaced by its median (mean of the middle two for an even count).
pub(crate) fn medians(runs: &[Vec<Row>]) -> Vec<Row> {
    let mut order: Vec<String> = Vec::new();
    for row in runs.iter().flatten() {
        if !order.contains(&row.scenario) {
            order.push(row.scenario.clone());
        }
    }
    order
        .into_iter()
        .filter_map(|name| {
            let rows: Vec<&Row> = runs
                .iter()
                .flatten()
                .filter(|r| r.scenario == name)
                .collect();
            let first = *rows.first()?;
            let mut out = first.clone();
            for (key, value) in &first.fields {
                if !value.is_number() {
                    continue;
                }
                let mut values: Vec<f64> = rows.iter().filter_map(|r| r.get(key)).collect();
                values.sort_by(f64::total_cmp);
                let n = values.len();
                // Disturbances are reported at their worst, not their median.
                let median = if key.starts_with("foreign_") {
                    values.last().copied().unwrap_or(0.0)
                } else if n % 2 == 1 {
                    values[n / 2]
                } else {
                    (values[n / 2 - 1] + values[n / 2]) / 2.0
                };
                let keep_integer = value.is_u64() || value.is_i64();
                out.fields.insert(
                    key.clone(),
                    if keep_integer && median.fract() == 0.0 {
                        Value::from(median as i64)
                    } else {
                        Value::from(median)
                    },
                );
            }
            out.fields
                .insert("runs".to_owned(), Value::from(rows.len()));
            Some(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sample: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&sample);
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&[]).max, 0.0);
    }

    #[test]
    fn medians_match_rows_by_name() {
        let run = |s: f64| vec![Row::throughput("drain", 10, 1, s), Row::ratio("r", s)];
        let m = medians(&[run(1.0), run(3.0), run(2.0)]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].get("seconds"), Some(2.0));
        assert_eq!(m[0].get("tasks"), Some(10.0));
        assert_eq!(m[1].get("ratio"), Some(2.0));
        assert_eq!(m[1].get("runs"), Some(3.0));
    }
}
