//! How a pool stops, and how one that stops on its own says why.
//!
//! Every engine's pool holds one [`Lifeline`]: the stop signal its parts watch, the first
//! [`PoolFailure`] (a part panicked or ended, or the database or broker stayed unreachable
//! past the limit), and the outage clock. A failure stops the pool the way a shutdown does,
//! and [`WorkerPool::failed`](super::WorkerPool::failed) resolves with it.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::watch;

/// How long a pool rides out a database (or broker) it cannot reach before it stops with
/// [`PoolFailure::Unreachable`]: two minutes, longer than a restart or a managed service's
/// failover usually takes. Change it with
/// [`TaskWorker::max_outage`](super::TaskWorker::max_outage).
pub const DEFAULT_MAX_OUTAGE: Duration = Duration::from_secs(120);

/// Why a worker pool stopped on its own (see [`Error::PoolFailed`](crate::Error::PoolFailed)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolFailure {
    /// The database (or the Celery broker) could not be reached for longer than the pool's
    /// outage limit.
    Unreachable {
        /// What: `database`, `broker`.
        service: String,
        /// How long it had been failing.
        for_: Duration,
        /// The limit ([`TaskWorker::max_outage`](super::TaskWorker::max_outage)).
        limit: Duration,
        /// The last error seen.
        last_error: String,
    },
    /// A part of the pool panicked: a bug in tasklib.
    Panicked {
        /// Which part (`listener`, `producer of queue "emails"`, ...).
        part: String,
        /// The panic's message.
        message: String,
    },
    /// A part of the pool ended while the pool was not stopping: a bug in tasklib.
    PartEnded {
        /// Which part.
        part: String,
    },
}

impl fmt::Display for PoolFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolFailure::Unreachable {
                service,
                for_,
                limit,
                last_error,
            } => write!(
                f,
                "the {service} could not be used for {} s (the limit is {} s): {last_error}",
                for_.as_secs(),
                limit.as_secs()
            ),
            PoolFailure::Panicked { part, message } => write!(
                f,
                "its {part} panicked: {message} (a bug in tasklib; please report it)"
            ),
            PoolFailure::PartEnded { part } => write!(
                f,
                "its {part} ended unexpectedly (a bug in tasklib; please report it)"
            ),
        }
    }
}

/// The stop signal, the first failure and the outage clock of one pool.
#[derive(Debug)]
pub(crate) struct Lifeline {
    stop: watch::Sender<bool>,
    failure: watch::Sender<Option<PoolFailure>>,
    /// Since when, and the last error, while the database keeps failing.
    outage: Mutex<Option<(Instant, String)>>,
    max_outage: Duration,
    /// What the outage clock is about: `database`, `broker`.
    service: &'static str,
}

impl Lifeline {
    pub(crate) fn new(max_outage: Duration, service: &'static str) -> Arc<Lifeline> {
        Arc::new(Lifeline {
            service,
            stop: watch::channel(false).0,
            failure: watch::channel(None).0,
            outage: Mutex::new(None),
            max_outage,
        })
    }

    /// Asks every part to stop (a shutdown, or after a failure).
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// The stop signal, for a part to watch.
    pub(crate) fn on_stop(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Records `failure` (only the first counts), logs it once, and stops the pool.
    pub(crate) fn fail(&self, failure: PoolFailure) {
        let first = self.failure.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(failure.clone());
            true
        });
        if first {
            tracing::error!("the worker pool is stopping: {failure}");
            self.stop();
        }
    }

    /// The failure, once there is one.
    pub(crate) fn failure(&self) -> watch::Receiver<Option<PoolFailure>> {
        self.failure.subscribe()
    }

    /// The database answered: an outage, if any, is over.
    pub(crate) fn reached(&self) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if outage.take().is_some() {
            tracing::info!("the {} answers again", self.service);
        }
    }

    /// The database failed with `error`: starts the outage clock, or fails the pool once it
    /// has run past the limit.
    pub(crate) fn unreachable(&self, error: &str) {
        let past_limit = {
            let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
            let (since, last) = outage.get_or_insert_with(|| (Instant::now(), String::new()));
            error.clone_into(last);
            let for_ = since.elapsed();
            (for_ > self.max_outage).then(|| (for_, last.clone()))
        };
        if let Some((for_, last_error)) = past_limit {
            self.fail(PoolFailure::Unreachable {
                service: self.service.to_owned(),
                for_,
                limit: self.max_outage,
                last_error,
            });
        }
    }

    /// Runs `work`, one part of the pool: a panic, or an end while the pool is not stopping,
    /// fails the pool.
    pub(crate) fn guard(
        self: &Arc<Self>,
        part: String,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let lifeline = Arc::clone(self);
        async move {
            match AssertUnwindSafe(work).catch_unwind().await {
                Ok(()) if lifeline.stopping() => {}
                Ok(()) => lifeline.fail(PoolFailure::PartEnded { part }),
                Err(panic) => lifeline.fail(PoolFailure::Panicked {
                    part,
                    message: crate::attempt::panic_message(panic.as_ref()),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure_of(lifeline: &Lifeline) -> Option<PoolFailure> {
        lifeline.failure().borrow().clone()
    }

    #[tokio::test]
    async fn a_panicking_part_fails_the_pool_and_stops_it() {
        let lifeline = Lifeline::new(DEFAULT_MAX_OUTAGE, "database");
        lifeline
            .guard("producer of queue \"q\"".to_owned(), async {
                panic!("boom");
            })
            .await;
        assert_eq!(
            failure_of(&lifeline),
            Some(PoolFailure::Panicked {
                part: "producer of queue \"q\"".to_owned(),
                message: "boom".to_owned()
            })
        );
        assert!(lifeline.stopping());
    }

    #[tokio::test]
    async fn a_part_that_ends_is_a_failure_unless_the_pool_is_stopping() {
        let lifeline = Lifeline::new(DEFAULT_MAX_OUTAGE, "database");
        lifeline.stop();
        lifeline.guard("listener".to_owned(), async {}).await;
        assert_eq!(failure_of(&lifeline), None);

        let lifeline = Lifeline::new(DEFAULT_MAX_OUTAGE, "database");
        lifeline.guard("listener".to_owned(), async {}).await;
        let failure = failure_of(&lifeline);
        assert_eq!(
            failure,
            Some(PoolFailure::PartEnded {
                part: "listener".to_owned()
            })
        );
        assert!(
            failure
                .map(|f| f.to_string())
                .unwrap_or_default()
                .contains("listener ended unexpectedly")
        );
    }

    #[tokio::test]
    async fn an_outage_fails_the_pool_only_past_the_limit_and_the_first_failure_stays() {
        let lifeline = Lifeline::new(Duration::from_millis(50), "database");
        lifeline.unreachable("connection refused");
        lifeline.reached();
        lifeline.unreachable("connection refused");
        assert_eq!(failure_of(&lifeline), None, "within the limit");
        tokio::time::sleep(Duration::from_millis(60)).await;
        lifeline.unreachable("still refused");
        let Some(PoolFailure::Unreachable { last_error, .. }) = failure_of(&lifeline) else {
            panic!("expected an outage failure");
        };
        assert_eq!(last_error, "still refused");
        assert!(lifeline.stopping());
        lifeline.fail(PoolFailure::PartEnded {
            part: "listener".to_owned(),
        });
        assert!(matches!(
            failure_of(&lifeline),
            Some(PoolFailure::Unreachable { .. })
        ));
    }
}
