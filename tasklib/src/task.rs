//! Task types: the [`Task`] trait for arguments, the [`TaskContext`] a handler receives, and
//! the [`TaskError`] outcomes it can return.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use uuid::Uuid;
use validator::Validate;

use crate::config::DEFAULT_QUEUE;
use crate::progress::Progress;
use crate::unique::UniqueScope;

/// A boxed error, as handlers return them.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The arguments of one kind of task: the data that is stored in the `args` column, with a
/// stable name that says which handler runs it.
///
/// The type is the contract between the code that submits and the code that runs: it is
/// checked by `validator` at submit time (invalid arguments are rejected before anything is
/// written) and deserialized again by the worker. The handler that runs it is separate (see
/// [`Handler`](crate::Handler)), so it can own state such as a connection pool or an HTTP
/// client, and so a web process can submit a task without linking its handler.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use validator::Validate;
///
/// #[derive(Debug, Serialize, Deserialize, Validate)]
/// struct SendEmail {
///     #[validate(email)]
///     to: String,
///     #[validate(length(min = 1, max = 200))]
///     subject: String,
/// }
///
/// impl tasklib::Task for SendEmail {
///     const NAME: &'static str = "send_email";
///     const QUEUE: &'static str = "email";
///     const MAX_RETRIES: Option<u32> = Some(5);
///     type Output = bool;
/// }
/// ```
pub trait Task: Serialize + DeserializeOwned + Validate + Send + 'static {
    /// The stable name stored with each task. Renaming it orphans tasks already submitted
    /// under the old name.
    const NAME: &'static str;
    /// The queue tasks of this type go to unless a submit says otherwise.
    /// Defaults to [`DEFAULT_QUEUE`].
    const QUEUE: &'static str = DEFAULT_QUEUE;
    /// Retries for this type; `None` uses [`Config::max_retries`](crate::Config::max_retries).
    const MAX_RETRIES: Option<u32> = None;
    /// Time limit of one attempt; `None` uses
    /// [`Config::default_task_timeout`](crate::Config::default_task_timeout).
    const TIMEOUT: Option<Duration> = None;
    /// Priority for this type (higher runs first). Defaults to 0.
    const PRIORITY: i32 = 0;
    /// How long the key of [`unique_key`](Self::unique_key) keeps duplicates out:
    /// [`UniqueScope::Unfinished`] unless set. A submit's
    /// [`SubmitOptions::unique_scope`](crate::SubmitOptions::unique_scope) wins.
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::Unfinished;
    /// The unique key of these arguments, or `None` (the default) for no uniqueness: two
    /// submits of the same type with the same key make one task (see
    /// [`SubmitOptions::unique_key`](crate::SubmitOptions::unique_key), which wins over this).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use validator::Validate;
    /// #[derive(Debug, Serialize, Deserialize, Validate)]
    /// struct SyncAccount { account_id: i64 }
    ///
    /// impl tasklib::Task for SyncAccount {
    ///     const NAME: &'static str = "sync_account";
    ///     type Output = ();
    ///     // One sync per account at a time: submitting again while one is pending or
    ///     // running returns that one.
    ///     fn unique_key(&self) -> Option<String> {
    ///         Some(self.account_id.to_string())
    ///     }
    /// }
    /// ```
    fn unique_key(&self) -> Option<String> {
        None
    }
    /// What a successful run returns; stored as `{"value": …}` in the `result` column.
    type Output: Serialize + Send + 'static;
}

/// What a handler knows about the attempt it is running.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) queue: String,
    pub(crate) attempt: u32,
    pub(crate) retry_count: u32,
    pub(crate) max_retries: u32,
    pub(crate) worker_id: String,
    pub(crate) tags: serde_json::Value,
    pub(crate) cancelled: watch::Receiver<bool>,
    pub(crate) progress: Progress,
}

impl TaskContext {
    /// A context for calling a handler directly in a unit test: attempt 1, no retries
    /// used, never cancelled.
    pub fn for_test(name: impl Into<String>) -> TaskContext {
        let (_, cancelled) = watch::channel(false);
        TaskContext {
            id: Uuid::now_v7(),
            name: name.into(),
            queue: DEFAULT_QUEUE.to_owned(),
            attempt: 1,
            retry_count: 0,
            max_retries: 0,
            worker_id: "test".to_owned(),
            tags: serde_json::Value::Object(Default::default()),
            cancelled,
            progress: Progress::Local(Default::default()),
        }
    }

    /// Records how far the task has got (any JSON: a percentage, a count, a stage name...),
    /// replacing the last report. Stored with the task while it runs and kept after it
    /// finishes: [`TaskRecord::progress`](crate::TaskRecord::progress), `tasklib show ID`.
    /// One write per call; report at a human pace (every second or every few per cent), not
    /// per item of a tight loop.
    ///
    /// ```
    /// # use tasklib::{TaskContext, TaskError};
    /// # async fn handler(ctx: TaskContext) -> Result<(), TaskError> {
    /// let rows = 1_000;
    /// for done in (0..=rows).step_by(250) {
    ///     // ... import a chunk ...
    ///     ctx.set_progress(serde_json::json!({ "done": done, "of": rows })).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) on an engine that keeps no progress
    /// (Celery); [`Error::Serialize`](crate::Error::Serialize) when `progress` does not turn
    /// into JSON; [`Error::Database`](crate::Error::Database)
    /// when the write fails. A report from an attempt this worker no longer holds is dropped.
    pub async fn set_progress(&self, progress: impl Serialize) -> crate::Result<()> {
        let value = serde_json::to_value(progress).map_err(|source| crate::Error::Serialize {
            task: self.name.clone(),
            source,
        })?;
        self.progress.record(value).await
    }

    /// The last progress reported through a [`for_test`](Self::for_test) context (`None` on
    /// a worker's, whose reports go to the database).
    pub fn reported_progress(&self) -> Option<serde_json::Value> {
        self.progress.last()
    }

    /// The task's id.
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The queue it was claimed from.
    pub fn queue(&self) -> &str {
        &self.queue
    }
    /// Which attempt this is, from 1. Higher than `retry_count + 1` when an earlier attempt's
    /// worker died.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// Retries started, this attempt included when it is one: 0 on the first attempt, *n* on
    /// retry *n*.
    pub fn retry_count(&self) -> u32 {
        self.retry_count
    }
    /// Retries allowed in all.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }
    /// True when this is the last attempt the task gets if it fails.
    pub fn is_last_attempt(&self) -> bool {
        self.retry_count >= self.max_retries
    }
    /// The worker running it.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }
    /// The tags it was submitted with.
    pub fn tags(&self) -> &serde_json::Value {
        &self.tags
    }
    /// True once someone asked to cancel this task while it runs. A handler doing long work
    /// should check it between steps and return [`TaskError::cancel`].
    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }
    /// Resolves when cancellation is asked for (never, if it is not), for use in
    /// `tokio::select!` beside the handler's work.
    pub async fn cancelled(&self) {
        let mut rx = self.cancelled.clone();
        if rx.wait_for(|cancelled| *cancelled).await.is_err() {
            // The sender is gone: nobody can cancel any more.
            std::future::pending::<()>().await;
        }
    }
}

/// How a handler's failure is handled: the closed set of outcomes besides success.
///
/// | outcome | made by | what happens to the row |
/// |---|---|---|
/// | retry | `?` on any error, [`TaskError::retry`] | `failed`, `next_retry_at` = now + backoff, if retries are left; otherwise `failed` for good |
/// | retry after | [`TaskError::retry_after`] | as retry, but after exactly the given delay |
/// | permanent | [`TaskError::permanent`] | `failed` for good at once, retries left or not |
/// | cancel | [`TaskError::cancel`] | `cancelled`, the reason in `error` |
/// | snooze | [`TaskError::snooze`] | `pending` again, due after the delay; no retry used, no error recorded |
///
/// A timeout or a panic counts as a retry outcome. In every case `error` holds the message
/// with its chain of causes.
#[non_exhaustive]
pub enum TaskError {
    /// Retry with the configured exponential backoff (if retries are left).
    Retry(BoxError),
    /// Retry after the given delay (if retries are left).
    RetryAfter(Duration, BoxError),
    /// Fail now, without further retries.
    Permanent(BoxError),
    /// Stop and mark the task cancelled.
    Cancel(String),
    /// Run again after the delay, without using a retry: not a failure.
    Snooze(Duration),
}

impl TaskError {
    /// A failure to retry with backoff (what `?` produces).
    pub fn retry(error: impl Into<BoxError>) -> Self {
        TaskError::Retry(error.into())
    }
    /// A failure to retry after `delay` (a rate limit's `Retry-After`, say).
    pub fn retry_after(delay: Duration, error: impl Into<BoxError>) -> Self {
        TaskError::RetryAfter(delay, error.into())
    }
    /// A failure that retrying cannot fix (bad input, a deleted record).
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        TaskError::Permanent(error.into())
    }
    /// Stops the task and marks it cancelled.
    pub fn cancel(reason: impl Into<String>) -> Self {
        TaskError::Cancel(reason.into())
    }
    /// Not now: the task runs again after `delay` (a resource is busy, an upstream is not
    /// ready yet), and this attempt uses none of its retries. The attempt still counts in
    /// `attempt`. Snoozing has no limit of its own: a handler that may snooze for ever should
    /// look at [`TaskContext::attempt`] and give up with [`TaskError::permanent`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tasklib::{TaskContext, TaskError};
    /// # async fn handler(ctx: TaskContext) -> Result<(), TaskError> {
    /// let report_ready = false; // ... ask the upstream ...
    /// if !report_ready {
    ///     return Err(TaskError::snooze(Duration::from_secs(30)));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn snooze(delay: Duration) -> Self {
        TaskError::Snooze(delay)
    }

    /// The message with its chain of causes, `outer: inner: root`, as stored in `error`.
    pub fn message(&self) -> String {
        match self {
            TaskError::Retry(e) | TaskError::RetryAfter(_, e) | TaskError::Permanent(e) => {
                error_chain(e.as_ref())
            }
            TaskError::Cancel(reason) => format!("cancelled: {reason}"),
            TaskError::Snooze(delay) => format!("snoozed for {delay:?}"),
        }
    }
}

/// Formats an error and its sources as `outer: inner: root`, skipping a cause whose text the
/// outer message already contains.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = without_source_line(&cause.to_string());
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `text` without the server's own source location that the driver appends to a database
/// error (`relation "tasks" does not exist at line 1392`): the line is in PostgreSQL's C
/// code, and means nothing to the reader.
fn without_source_line(text: &str) -> String {
    const MARK: &str = " at line ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            out.push_str(&rest[..at + MARK.len()]);
        } else {
            out.push_str(&rest[..at]);
        }
        rest = &after[if digits == 0 { 0 } else { digits }..];
    }
    out.push_str(rest);
    out
}

/// Any error converts into a retry, so `?` works in handlers.
impl<E: Into<BoxError>> From<E> for TaskError {
    fn from(error: E) -> Self {
        TaskError::Retry(error.into())
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            TaskError::Retry(_) => "Retry",
            TaskError::RetryAfter(_, _) => "RetryAfter",
            TaskError::Permanent(_) => "Permanent",
            TaskError::Cancel(_) => "Cancel",
            TaskError::Snooze(_) => "Snooze",
        };
        write!(f, "TaskError::{kind}({:?})", self.message())
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("smtp send failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_servers_source_line_is_left_out() {
        assert_eq!(
            without_source_line("relation \"tasks\" does not exist at line 1392"),
            "relation \"tasks\" does not exist"
        );
        assert_eq!(without_source_line("x at line 3: y at line 44"), "x: y");
        assert_eq!(
            without_source_line("syntax error at line breaks"),
            "syntax error at line breaks"
        );
    }

    fn fails() -> Result<(), TaskError> {
        Err(Outer(std::io::Error::other("connection reset")))?;
        Ok(())
    }

    #[test]
    fn question_mark_gives_a_retry_with_the_chain() {
        let err = fails().err();
        assert!(matches!(err, Some(TaskError::Retry(_))));
        assert_eq!(
            err.map(|e| e.message()).as_deref(),
            Some("smtp send failed: connection reset")
        );
    }

    #[test]
    fn strings_convert_too() {
        let err: TaskError = "plain message".into();
        assert_eq!(err.message(), "plain message");
        let err = TaskError::permanent(format!("record {} gone", 7));
        assert!(matches!(err, TaskError::Permanent(_)));
    }

    #[test]
    fn test_context_is_first_attempt() {
        let ctx = TaskContext::for_test("x");
        assert_eq!(ctx.attempt(), 1);
        assert!(!ctx.is_cancelled());
        assert!(ctx.is_last_attempt());
    }
}
