//! Cluster-wide limits of a queue: how many of its tasks may run at once, and how many may
//! start per period, across every worker process
//! ([`TaskLib::set_queue_limits`](crate::TaskLib::set_queue_limits)).

use std::time::Duration;

use serde::Serialize;

use crate::{Error, Result};

/// Limits on one queue across the cluster. The default is none.
///
/// ```
/// use std::time::Duration;
/// use tasklib::{QueueLimits, RateLimit};
///
/// // At most 5 exports at once, and at most 100 started per minute, in all.
/// let limits = QueueLimits::new()
///     .concurrency(5)
///     .rate(RateLimit::new(100, Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueLimits {
    /// At most this many tasks of the queue running at once, in all processes.
    pub concurrency: Option<u32>,
    /// At most so many starts per period, in all processes.
    pub rate: Option<RateLimit>,
}

impl QueueLimits {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `tasks` running at once across the cluster (at least 1).
    pub fn concurrency(mut self, tasks: u32) -> Self {
        self.concurrency = Some(tasks);
        self
    }

    /// At most `rate.starts` tasks started per `rate.period` across the cluster.
    pub fn rate(mut self, rate: RateLimit) -> Self {
        self.rate = Some(rate);
        self
    }

    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        self.concurrency.is_none() && self.rate.is_none()
    }

    /// Checks the values: counts of at least 1 that fit PostgreSQL's `integer`, a period of at
    /// least one second.
    pub(crate) fn check(&self) -> Result<()> {
        let invalid = |reason: String| Error::InvalidOption {
            option: "queue limits",
            reason,
        };
        if let Some(n) = self.concurrency
            && !(1..=i32::MAX as u32).contains(&n)
        {
            return Err(invalid(format!(
                "concurrency must be between 1 and {}, got {n}",
                i32::MAX
            )));
        }
        if let Some(rate) = self.rate {
            if !(1..=i32::MAX as u32).contains(&rate.starts) {
                return Err(invalid(format!(
                    "a rate must allow between 1 and {} starts, got {}",
                    i32::MAX,
                    rate.starts
                )));
            }
            if rate.period < Duration::from_secs(1) {
                return Err(invalid(format!(
                    "a rate's period must be at least one second, got {:?}",
                    rate.period
                )));
            }
        }
        Ok(())
    }
}

/// At most `starts` task starts per `period`. Periods are windows aligned on the Unix epoch
/// (a minute's run from second 0), counted on the database clock; a burst at the end of one
/// window and the start of the next can start up to twice `starts` within one period's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RateLimit {
    /// Starts allowed per window.
    pub starts: u32,
    /// The window's length (at least one second); in JSON, `period_seconds`.
    #[serde(rename = "period_seconds", serialize_with = "seconds")]
    pub period: Duration,
}

fn seconds<S: serde::Serializer>(period: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(period.as_secs_f64())
}

impl RateLimit {
    /// `starts` per `period`.
    pub fn new(starts: u32, period: Duration) -> Self {
        RateLimit { starts, period }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert!(QueueLimits::new().check().is_ok());
        assert!(QueueLimits::new().is_empty());
        let good = QueueLimits::new()
            .concurrency(3)
            .rate(RateLimit::new(10, Duration::from_secs(1)));
        assert!(good.check().is_ok());
        assert!(!good.is_empty());
        for bad in [
            QueueLimits::new().concurrency(0),
            QueueLimits::new().concurrency(u32::MAX),
            QueueLimits::new().rate(RateLimit::new(0, Duration::from_secs(1))),
            QueueLimits::new().rate(RateLimit::new(5, Duration::from_millis(999))),
        ] {
            assert!(
                matches!(bad.check(), Err(Error::InvalidOption { .. })),
                "{bad:?}"
            );
        }
    }
}
