//! Integration tests live in `integration/`. This library holds what they share with the
//! helper binaries in `src/bin/`, which the fault suite (and, with `--features celery` or
//! `--features temporal`, the engines' process tests) run as separate processes.

pub mod fault;
#[cfg(any(feature = "celery", feature = "temporal"))]
pub mod nap;

/// The Celery tests' name for [`nap`].
#[cfg(feature = "celery")]
pub mod celery {
    pub use crate::nap::Nap;
}

/// The Rust example of `docs/monitoring.md` ("Traces"), compiled as a doctest with the
/// feature `otel` so that it stays true.
#[cfg(all(doctest, feature = "otel"))]
#[doc = include_str!("../../docs/monitoring.md")]
struct MonitoringGuide;
