//! Handlers: the code that runs a task, with whatever state it needs.

use std::future::Future;

use crate::task::{Task, TaskContext, TaskError};

/// Runs tasks of type `T` on the async runtime.
///
/// Implement it on a struct that owns the handler's state (a connection pool, an HTTP
/// client); the registry keeps one instance and calls it for every task, from many workers at
/// once, so it takes `&self`. A closure `Fn(T, TaskContext) -> impl Future` is a handler too.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use validator::Validate;
/// # #[derive(Debug, Serialize, Deserialize, Validate)]
/// # struct SendEmail { to: String }
/// # impl tasklib::Task for SendEmail { const NAME: &'static str = "send_email"; type Output = bool; }
/// # #[derive(Clone)] struct SmtpClient;
/// # impl SmtpClient { async fn send(&self, _to: &str) -> std::io::Result<()> { Ok(()) } }
/// use tasklib::{Handler, TaskContext, TaskError};
///
/// struct Mailer {
///     smtp: SmtpClient,
/// }
///
/// impl Handler<SendEmail> for Mailer {
///     async fn run(&self, args: SendEmail, _ctx: TaskContext) -> Result<bool, TaskError> {
///         self.smtp.send(&args.to).await?; // an io::Error becomes a retry
///         Ok(true)
///     }
/// }
/// ```
pub trait Handler<T: Task>: Send + Sync + 'static {
    /// Runs one attempt. Return `Ok` with the output, or a [`TaskError`] saying whether to
    /// retry, fail for good or cancel.
    fn run(
        &self,
        args: T,
        ctx: TaskContext,
    ) -> impl Future<Output = Result<T::Output, TaskError>> + Send;
}

impl<T, F, Fut> Handler<T> for F
where
    T: Task,
    F: Fn(T, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T::Output, TaskError>> + Send,
{
    fn run(
        &self,
        args: T,
        ctx: TaskContext,
    ) -> impl Future<Output = Result<T::Output, TaskError>> + Send {
        self(args, ctx)
    }
}

/// Runs tasks of type `T` synchronously, on tokio's blocking thread pool: for CPU-heavy work
/// or blocking libraries. A closure `Fn(T, TaskContext) -> Result<…>` is one too.
///
/// A timeout cannot stop a blocking handler's thread: the attempt is recorded as timed out
/// and the thread finishes in the background.
pub trait BlockingHandler<T: Task>: Send + Sync + 'static {
    /// Runs one attempt.
    fn run(&self, args: T, ctx: TaskContext) -> Result<T::Output, TaskError>;
}

impl<T, F> BlockingHandler<T> for F
where
    T: Task,
    F: Fn(T, TaskContext) -> Result<T::Output, TaskError> + Send + Sync + 'static,
{
    fn run(&self, args: T, ctx: TaskContext) -> Result<T::Output, TaskError> {
        self(args, ctx)
    }
}
