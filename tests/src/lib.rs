//! Integration tests live in `integration/`. This library holds what they share with the
//! helper binaries in `src/bin/`, which the fault suite (and, with `--features celery`, the
//! Celery tests) run as separate processes.

#[cfg(feature = "celery")]
pub mod celery;
pub mod fault;

/// The Rust example of `docs/monitoring.md` ("Traces"), compiled as a doctest with the
/// feature `otel` so that it stays true.
#[cfg(all(doctest, feature = "otel"))]
#[doc = include_str!("../../docs/monitoring.md")]
struct MonitoringGuide;
