//! What the Celery tests share with the `celery_worker` binary.

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
