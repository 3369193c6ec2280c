//! tasklib's web dashboard: an [axum](https://docs.rs/axum) [`Router`] an application
//! mounts where it likes, and the standalone server behind `tasklib dashboard`
//! ([`serve`]).
//!
//! Pages (server-rendered HTML, a few lines of JavaScript, no build step):
//! - **Queues** (`/`): each queue's open tasks by state, its lag, what finished in each of
//!   the last 15 minutes, pause and limits;
//! - **Tasks** (`/tasks`): newest first, filtered by state, name, queue and tag, paged by
//!   keyset (`before=<id>`);
//! - **Task** (`/tasks/<id>`): arguments, result, the error of each attempt, timings, its
//!   chain;
//! - **Workers** (`/workers`): the pools running now, with their queues, slots and last
//!   heartbeat.
//!
//! Actions (retry, cancel, delete, pause, resume) are `POST` forms carrying a token the
//! dashboard generated, and are refused from other sites. They are off until the mounting
//! app says who may take them ([`Dashboard::authorize`]); [`Dashboard::read_only`] turns
//! them off for good. Guard the pages themselves with the app's own middleware.
//!
//! ```no_run
//! use axum::Router;
//! use tasklib::TaskLib;
//! use tasklib_web::Dashboard;
//!
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! let tasks = TaskLib::connect("postgres://localhost/app").await?;
//! let dashboard = Dashboard::new(tasks.clone())
//!     // The app's own middleware already checked the user: let every action through.
//!     .authorize(|_request, _action| true)
//!     .router();
//! let app: Router = Router::new().nest("/admin/tasks", dashboard);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Every page reads through indexes, so it stays fast on tables of millions of rows
//! (`docs/performance.md` has the page times on a million rows).

mod actions;
mod layout;
#[cfg(feature = "prometheus")]
mod metrics;
mod queues;
mod serve;
mod state;
mod task;
mod tasks;
mod workers;

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::http::request::Parts;
use axum::routing::{get, post};
use tasklib::TaskLib;
use uuid::Uuid;

pub use serve::{DASHBOARD_PASSWORD_ENV, DASHBOARD_USER_ENV, ServeOptions, serve};

/// Decides whether a request may take an action; see [`Dashboard::authorize`].
type AuthorizeFn = dyn Fn(&Parts, &Action) -> bool + Send + Sync;

/// An action the dashboard can take, as given to the [`Dashboard::authorize`] hook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Re-queue a task that failed for good or was cancelled.
    Retry(Uuid),
    /// Cancel a task.
    Cancel(Uuid),
    /// Delete a task.
    Delete(Uuid),
    /// Pause a queue.
    Pause(String),
    /// Resume a queue.
    Resume(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Retry(id) => write!(f, "retry task {id}"),
            Action::Cancel(id) => write!(f, "cancel task {id}"),
            Action::Delete(id) => write!(f, "delete task {id}"),
            Action::Pause(queue) => write!(f, "pause queue {queue:?}"),
            Action::Resume(queue) => write!(f, "resume queue {queue:?}"),
        }
    }
}

/// The dashboard, configured: call [`router`](Self::router) and mount the result.
pub struct Dashboard {
    tasks: TaskLib,
    read_only: bool,
    authorize: Option<Arc<AuthorizeFn>>,
    #[cfg(feature = "prometheus")]
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("read_only", &self.read_only)
            .field("authorize", &self.authorize.is_some())
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard over `tasks` (the PostgreSQL engine), with actions off until
    /// [`authorize`](Self::authorize) is called.
    pub fn new(tasks: TaskLib) -> Self {
        Dashboard {
            tasks,
            read_only: false,
            authorize: None,
            #[cfg(feature = "prometheus")]
            prometheus: None,
        }
    }

    /// No actions at all, whatever [`authorize`](Self::authorize) says: the pages show no
    /// buttons, and every `POST` is refused.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Who may take actions: `hook` sees each action's request (its headers and extensions,
    /// where the app's middleware may have put the user) and the action, and says yes or no.
    /// Without a hook actions are off, so that mounting the router never exposes them by
    /// accident; an app whose middleware already admits only operators passes
    /// `|_, _| true`.
    pub fn authorize(
        mut self,
        hook: impl Fn(&Parts, &Action) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Some(Arc::new(hook));
        self
    }

    /// Serves `/metrics` for Prometheus from `handle` (the app's installed recorder); each
    /// scrape first sets the `tasklib_queue_pending` and `tasklib_queue_running` gauges
    /// from the queue overview (an index read, not a count of the table). Feature
    /// `prometheus`.
    #[cfg(feature = "prometheus")]
    pub fn prometheus(mut self, handle: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// The router: mount it with [`Router::nest`] (links work under any prefix) or serve it
    /// as it is.
    pub fn router(self) -> Router {
        let state = state::Shared::new(self);
        let router = Router::new()
            .route("/", get(queues::page))
            .route("/tasks", get(tasks::page))
            .route("/tasks/{id}", get(task::page))
            .route("/workers", get(workers::page))
            .route("/tasks/{id}/{action}", post(actions::task_action))
            .route("/queues/{queue}/{action}", post(actions::queue_action));
        #[cfg(feature = "prometheus")]
        let router = router.route("/metrics", get(metrics::scrape));
        router.with_state(state)
    }
}

/// The Rust in `docs/dashboard.md` compiles.
#[cfg(doctest)]
#[doc = include_str!("../../docs/dashboard.md")]
mod dashboard_doc {}
