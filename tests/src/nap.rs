//! What the process tests of the Celery and Temporal engines share with their worker
//! binaries (`celery_worker`, `temporal_worker`).

use serde::{Deserialize, Serialize};
use tasklib::Task;
use validator::Validate;

/// Sleeps `ms` milliseconds, then returns `n`.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
pub struct Nap {
    /// Returned.
    pub n: i64,
    /// How long the handler sleeps.
    pub ms: u64,
}

impl Task for Nap {
    const NAME: &'static str = "nap";
    type Output = i64;
}
