//! Retention: which finished tasks to delete, and how often.

use std::time::Duration;

use crate::TaskState;

/// Rows deleted per statement: small enough that no batch holds many row locks or runs long.
pub const PRUNE_BATCH: u32 = 1_000;
/// How often a pool with a [`RetentionPolicy`] prunes.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// What a worker pool deletes in the background, and how often. Nothing is pruned unless an
/// age is set.
///
/// ```
/// use std::time::Duration;
/// use tasklib::RetentionPolicy;
///
/// let week = Duration::from_secs(7 * 24 * 3600);
/// let policy = RetentionPolicy::new()
///     .completed_after(week)
///     .failed_after(4 * week);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub(crate) rules: Vec<(TaskState, Duration)>,
    pub(crate) every: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RetentionPolicy {
    /// Keeps everything; add ages with the methods below.
    pub fn new() -> Self {
        RetentionPolicy {
            rules: Vec::new(),
            every: DEFAULT_RETENTION_INTERVAL,
        }
    }
    /// Deletes completed tasks this long after they completed.
    pub fn completed_after(self, age: Duration) -> Self {
        self.rule(TaskState::Completed, age)
    }
    /// Deletes tasks that failed for good this long after their last attempt. Keep these
    /// longer than completed ones: they are your dead letters.
    pub fn failed_after(self, age: Duration) -> Self {
        self.rule(TaskState::Failed, age)
    }
    /// Deletes cancelled tasks this long after they were cancelled.
    pub fn cancelled_after(self, age: Duration) -> Self {
        self.rule(TaskState::Cancelled, age)
    }
    /// How often to prune. Defaults to [`DEFAULT_RETENTION_INTERVAL`].
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    fn rule(mut self, state: TaskState, age: Duration) -> Self {
        self.rules.retain(|(s, _)| *s != state);
        self.rules.push((state, age));
        self
    }

    /// True when it deletes nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}
