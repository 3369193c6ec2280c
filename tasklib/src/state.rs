//! The states a task moves through.

use std::fmt;
use std::str::FromStr;

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Where a task is in its life. Stored as text in the `state` column.
///
/// ```text
///   submit ──▶ pending ──claim──▶ running ──ok──────────────▶ completed
///                 ▲                  │
///                 │                  ├─error, retries left──▶ failed (next_retry_at set) ──due──▶ claimed again
///                 │                  ├─error, none left─────▶ failed (next_retry_at null: terminal)
///                 │                  └─lock expired─────────▶ claimable again
///   cancel ───────┴──────────────────────────────────────────▶ cancelled
/// ```
///
/// A `failed` task with `next_retry_at` set is waiting for its next attempt; one without is
/// terminal. See `docs/concepts.md` for the full state machine.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting to be claimed (possibly scheduled in the future).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Claimed by a worker and executing.
    #[sea_orm(string_value = "running")]
    Running,
    /// Finished successfully; `result` holds the output.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// The last attempt failed; retried when `next_retry_at` is set, terminal otherwise.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Cancelled before it completed; it will not run (again).
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl TaskState {
    /// Every state, in life-cycle order.
    pub const ALL: [TaskState; 5] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    /// The name stored in the database (`"pending"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a task state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state `{0}`: expected pending, running, completed, failed or cancelled")]
pub struct ParseTaskStateError(String);

impl FromStr for TaskState {
    type Err = ParseTaskStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseTaskStateError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            let json = serde_json::to_value(state).ok();
            assert_eq!(json, Some(serde_json::Value::from(state.as_str())));
        }
        assert!("done".parse::<TaskState>().is_err());
    }
}
