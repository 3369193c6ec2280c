//! Retention: deleting finished tasks older than an age, in small batches.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::{Error, Result, TaskState};

/// Rows deleted per statement: small enough that no batch holds many row locks or runs long.
pub const PRUNE_BATCH: u32 = 1_000;
/// How often a pool with a [`RetentionPolicy`] prunes.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// One batch: the oldest finished rows of the given states, skipping any a concurrent pruner
/// holds. Uses `tasks_finished_idx` (finished rows by `completed_at`).
const PRUNE: &str = r#"
WITH doomed AS (
    SELECT id FROM tasks
    WHERE completed_at IS NOT NULL
      AND completed_at < now() - make_interval(secs => $2)
      AND state = ANY($1::text[])
    ORDER BY completed_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
DELETE FROM tasks AS t USING doomed WHERE t.id = doomed.id
"#;

/// Deletes tasks in `states` (terminal states only) whose `completed_at` is older than
/// `older_than`, batch by batch, and returns how many it deleted.
pub(crate) async fn prune<C: ConnectionTrait>(
    conn: &C,
    states: &[TaskState],
    older_than: Duration,
) -> Result<u64> {
    if states.is_empty() {
        return Ok(0);
    }
    if let Some(state) = states
        .iter()
        .find(|s| matches!(s, TaskState::Pending | TaskState::Running))
    {
        return Err(Error::InvalidOption {
            option: "states",
            reason: format!("only finished tasks can be pruned, not {state} ones"),
        });
    }
    let names: Vec<String> = states.iter().map(|s| s.as_str().to_owned()).collect();
    let mut total = 0;
    loop {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            PRUNE,
            [
                names.clone().into(),
                older_than.as_secs_f64().into(),
                i64::from(PRUNE_BATCH).into(),
            ],
        );
        let deleted = conn.execute_raw(statement).await?.rows_affected();
        total += deleted;
        if deleted < u64::from(PRUNE_BATCH) {
            return Ok(total);
        }
        // Let other work on this runtime (and this connection pool) through between batches.
        tokio::task::yield_now().await;
    }
}

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
