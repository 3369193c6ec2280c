//! What cancelling a task did.

/// What [`TaskLib::cancel`](crate::TaskLib::cancel) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The task was waiting (pending, or failed with a retry scheduled): it is now
    /// `cancelled` and will never run.
    Cancelled,
    /// The task is running: the request is recorded (`cancel_requested_at`) and its handler
    /// is told through [`TaskContext::is_cancelled`](crate::TaskContext::is_cancelled). It
    /// ends `cancelled` if the handler stops with an error or
    /// [`TaskError::cancel`](crate::TaskError::cancel), `completed` if it finishes anyway. A
    /// task claimed but not yet started (claimed ahead of a free slot) never starts: it ends
    /// `cancelled` too.
    Requested,
}
