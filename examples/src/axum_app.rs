//! The web-app integration a Rust developer copies: an axum app that migrates at startup,
//! registers its tasks, runs workers in-process, submits from request handlers and shuts down
//! gracefully.
//!
//! - `POST /send-email` `{"to": "...", "subject": "..."}`: validated; `202 {"id": ...}`, or
//!   `422 {"errors": {field: [...]}}` when invalid (nothing is queued then).
//! - `GET /tasks/{id}`: `{"id", "state", "result", "error"}`, or `404`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tasklib::{Handler, Task, TaskContext, TaskError, TaskLib};
use tokio::net::TcpListener;
use uuid::Uuid;
use validator::Validate;

/// The task's arguments, also the request body.
#[derive(Debug, Serialize, Deserialize, Validate)]
pub struct SendEmail {
    /// Recipient.
    #[validate(email)]
    pub to: String,
    /// Subject line.
    #[validate(length(min = 1, max = 200))]
    pub subject: String,
}

impl Task for SendEmail {
    const NAME: &'static str = "send_email";
    const QUEUE: &'static str = "email";
    type Output = String;
}

/// The handler, with state shared by every task it runs (a real app would hold an SMTP
/// client here).
#[derive(Debug, Default)]
pub struct Mailer {
    sent: AtomicU64,
}

impl Handler<SendEmail> for Mailer {
    async fn run(&self, email: SendEmail, _ctx: TaskContext) -> Result<String, TaskError> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(to = %email.to, "sending email");
        Ok(format!("message {n} to {}", email.to))
    }
}

/// The routes, over a connected [`TaskLib`].
pub fn router(tasks: TaskLib) -> Router {
    Router::new()
        .route("/send-email", post(send_email))
        .route("/tasks/{id}", get(get_task))
        .with_state(tasks)
}

async fn send_email(State(tasks): State<TaskLib>, Json(email): Json<SendEmail>) -> Response {
    match tasks.submit(email).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response(),
        Err(err) => error_response(&err),
    }
}

async fn get_task(State(tasks): State<TaskLib>, Path(id): Path<Uuid>) -> Response {
    match tasks.get_task(id).await {
        Ok(Some(task)) => Json(json!({
            "id": task.id,
            "state": task.state,
            "result": task.result,
            "error": task.error,
        }))
        .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such task" })),
        )
            .into_response(),
        Err(err) => error_response(&err),
    }
}

/// Input errors are the client's (422, with the field errors); the rest are ours (500, with
/// no detail leaked: it is logged instead).
fn error_response(err: &tasklib::Error) -> Response {
    if let Some(fields) = err.validation_errors() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "errors": fields })),
        )
            .into_response();
    }
    if err.is_invalid_input() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "errors": err.to_string() })),
        )
            .into_response();
    }
    tracing::error!(error = %tasklib::cli::one_line(err), "request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "internal error" })),
    )
        .into_response()
}

/// Runs the whole app on `listener` until `shutdown` resolves: connect (migrating), register,
/// start 4 workers, serve; then stop taking requests, and drain the workers.
///
/// # Errors
/// When connecting, registering or serving fails.
pub async fn serve(
    database_url: &str,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tasks = TaskLib::connect(database_url).await?;
    tasks.register(Mailer::default())?;
    let workers = tasks.spawn_workers(4)?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(listener, router(tasks))
        .with_graceful_shutdown(shutdown)
        .await?;
    workers.shutdown().await?;
    Ok(())
}
