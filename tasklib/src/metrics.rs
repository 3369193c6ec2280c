//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (cargo feature `metrics`):
//! what tasklib records, for whatever recorder the application installs (Prometheus through
//! `metrics-exporter-prometheus`, for one: the worker command's `--metrics-listen`, feature
//! `prometheus`). Without the feature every function here is empty and costs nothing.
//!
//! The metrics, their labels and meaning: `docs/monitoring.md`, "Prometheus metrics".

use crate::worker::TaskOutcome;

/// The `(queue, name)` of the rows of a submit, kept while the engine writes them.
#[derive(Debug, Default)]
pub(crate) struct Submitting {
    #[cfg(feature = "metrics")]
    labels: Vec<(String, String)>,
}

impl Submitting {
    /// Remembers the labels of `rows`.
    pub(crate) fn of(rows: &[crate::submit::NewTask]) -> Submitting {
        #[cfg(feature = "metrics")]
        {
            Submitting {
                labels: rows
                    .iter()
                    .map(|row| (row.queue.clone(), row.name.clone()))
                    .collect(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = rows;
            Submitting {}
        }
    }

    /// Counts the rows written (not the duplicates).
    pub(crate) fn done(self, submitted: &[crate::Submitted]) {
        #[cfg(feature = "metrics")]
        for ((queue, name), s) in self.labels.into_iter().zip(submitted) {
            if !s.duplicate {
                metrics::counter!("tasklib_tasks_submitted_total", "queue" => queue, "name" => name)
                    .increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = submitted;
    }
}

/// An attempt of task `name` in `queue` ended with `outcome` after running `run`.
pub(crate) fn finished(queue: &str, name: &str, outcome: &TaskOutcome, run: std::time::Duration) {
    #[cfg(feature = "metrics")]
    {
        let counter = match outcome {
            TaskOutcome::Completed => "tasklib_tasks_completed_total",
            TaskOutcome::Retrying { .. } => "tasklib_tasks_retried_total",
            TaskOutcome::Failed => "tasklib_tasks_failed_total",
            TaskOutcome::Cancelled => "tasklib_tasks_cancelled_total",
            TaskOutcome::Snoozed { .. } => "tasklib_tasks_snoozed_total",
            // Another worker (or the rescue) wrote what happened.
            TaskOutcome::Lost => return,
        };
        let labels = [("queue", queue.to_owned()), ("name", name.to_owned())];
        metrics::counter!(counter, &labels).increment(1);
        metrics::histogram!("tasklib_task_run_seconds", &labels).record(run.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (queue, name, outcome, run);
}

/// A task of `name` in `queue` was claimed `waited` seconds after it was due.
pub(crate) fn claimed(queue: &str, name: &str, waited: f64) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("tasklib_task_wait_seconds", "queue" => queue.to_owned(), "name" => name.to_owned())
        .record(waited.max(0.0));
    #[cfg(not(feature = "metrics"))]
    let _ = (queue, name, waited);
}

/// A task of `name` in `queue` was rescued from a worker that stopped heartbeating.
pub(crate) fn rescued(queue: &str, name: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tasklib_tasks_rescued_total", "queue" => queue.to_owned(), "name" => name.to_owned())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (queue, name);
}

/// `queue` has `pending` tasks due and `running` tasks running.
pub(crate) fn depth(queue: &str, pending: i64, running: i64) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!("tasklib_queue_pending", "queue" => queue.to_owned()).set(pending as f64);
        metrics::gauge!("tasklib_queue_running", "queue" => queue.to_owned()).set(running as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (queue, pending, running);
}

/// Whether the queue depths are worth sampling (the feature is on).
pub(crate) const SAMPLES_DEPTH: bool = cfg!(feature = "metrics");

/// Bounds of the wait and run histograms, in seconds: from a millisecond to an hour.
#[cfg(feature = "prometheus")]
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
    3600.0,
];

/// A Prometheus recorder's builder with tasklib's histogram buckets (a millisecond to an
/// hour) for the `tasklib_task_*_seconds` histograms: install it (or add a listener) as the
/// application's recorder. Feature `prometheus`.
#[cfg(feature = "prometheus")]
pub fn prometheus_builder() -> metrics_exporter_prometheus::PrometheusBuilder {
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    // Only an empty bucket list is refused, and BUCKETS is not empty.
    match builder.set_buckets_for_metric(
        metrics_exporter_prometheus::Matcher::Prefix("tasklib_task_".to_owned()),
        &BUCKETS,
    ) {
        Ok(builder) => builder,
        Err(_) => metrics_exporter_prometheus::PrometheusBuilder::new(),
    }
}

/// Installs a Prometheus recorder for this process and serves it over HTTP on `addr` (any
/// path; `/metrics` by convention): the worker command's `--metrics-listen`.
#[cfg(all(feature = "prometheus", feature = "cli"))]
pub(crate) fn serve_prometheus(addr: std::net::SocketAddr) -> crate::Result<()> {
    let invalid = |error: metrics_exporter_prometheus::BuildError| crate::Error::InvalidConfig {
        field: "metrics_listen",
        reason: format!("cannot serve metrics on {addr}: {error}"),
    };
    prometheus_builder()
        .with_http_listener(addr)
        .install()
        .map_err(invalid)
}
