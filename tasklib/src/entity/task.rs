//! The `tasks` table.

use sea_orm::entity::prelude::*;

use crate::TaskState;

/// One row of `tasks`: every fact about one task.
///
/// Most code reads [`TaskRecord`](crate::TaskRecord) instead, which adds predicates and
/// unwraps the stored result; this model is for SeaORM queries of your own.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    /// Time-ordered (v7) id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The task type's stable name.
    pub name: String,
    /// The queue it runs on.
    pub queue: String,
    /// The arguments, as JSON.
    pub args: Json,
    /// Life-cycle state.
    pub state: TaskState,
    /// The output of a completed task, as `{"value": …}`.
    pub result: Option<Json>,
    /// The last attempt's error, with its chain of causes.
    pub error: Option<String>,
    /// Retries started so far (a retry counts when claimed); at least `max_retries` once the
    /// task failed for good.
    pub retry_count: i32,
    /// Retries allowed before the task fails for good.
    pub max_retries: i32,
    /// Attempts started; the fencing token of the current attempt.
    pub attempt: i32,
    /// When the task becomes runnable.
    pub scheduled_at: DateTimeWithTimeZone,
    /// When the current or last attempt started.
    pub started_at: Option<DateTimeWithTimeZone>,
    /// When the task reached a final state.
    pub completed_at: Option<DateTimeWithTimeZone>,
    /// When it was submitted.
    pub created_at: DateTimeWithTimeZone,
    /// When a failed task with retries left runs again.
    pub next_retry_at: Option<DateTimeWithTimeZone>,
    /// The worker holding (or last holding) the task.
    pub worker_id: Option<String>,
    /// Until when that worker's claim holds.
    pub locked_until: Option<DateTimeWithTimeZone>,
    /// Time limit of one attempt, in seconds.
    pub timeout_seconds: Option<f64>,
    /// Higher runs first.
    pub priority: i32,
    /// Free-form labels, a JSON object.
    pub tags: Json,
    /// When cancellation of a running task was asked for.
    pub cancel_requested_at: Option<DateTimeWithTimeZone>,
    /// The chain this task is a step of.
    pub chain_id: Option<Uuid>,
    /// Its position in that chain, from 0.
    pub chain_step: Option<i32>,
    /// Someone waits for this task's result: finishing it sends a `tasks_done` notification.
    pub notify_done: bool,
    /// What the handler last reported (`TaskContext::set_progress`), as JSON.
    pub progress: Option<Json>,
    /// The failed attempts, oldest first, at most the last 20: a JSON array of
    /// `{"attempt", "error", "worker", "at"}`.
    pub errors: Json,
    /// The unique key (`SubmitOptions::unique_key`, `Task::unique_key`), if any.
    pub unique_key: Option<String>,
    /// For a key unique per period: the start of the window it holds; NULL for a key unique
    /// while the task is unfinished.
    pub unique_window: Option<DateTimeWithTimeZone>,
    /// The W3C `traceparent` of the span that submitted the task, which the worker's span
    /// continues (cargo feature `otel`); NULL when none was kept.
    pub trace_context: Option<String>,
}

/// `tasks` has no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
