//! The standalone dashboard server (`tasklib dashboard`): the router behind HTTP Basic
//! authentication, refusing to listen beyond the machine without it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tasklib::TaskLib;

use crate::Dashboard;

/// The user name the standalone server asks for (with [`DASHBOARD_PASSWORD_ENV`]).
pub const DASHBOARD_USER_ENV: &str = "TASKLIB_DASHBOARD_USER";
/// The password the standalone server asks for (with [`DASHBOARD_USER_ENV`]).
pub const DASHBOARD_PASSWORD_ENV: &str = "TASKLIB_DASHBOARD_PASSWORD";

/// How [`serve`] runs.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ServeOptions {
    /// A user and password every request must give (HTTP Basic). Required unless the
    /// listener is on a loopback address.
    pub credentials: Option<(String, String)>,
    /// No actions.
    pub read_only: bool,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl ServeOptions {
    /// Options with the user and password from [`DASHBOARD_USER_ENV`] and
    /// [`DASHBOARD_PASSWORD_ENV`], if set.
    ///
    /// # Errors
    /// [`tasklib::Error::InvalidConfig`] when only one of the two is set, or either is empty.
    pub fn from_env() -> tasklib::Result<ServeOptions> {
        let user = std::env::var(DASHBOARD_USER_ENV).ok();
        let password = std::env::var(DASHBOARD_PASSWORD_ENV).ok();
        let credentials = match (user, password) {
            (None, None) => None,
            (Some(user), Some(password)) if !user.is_empty() && !password.is_empty() => {
                Some((user, password))
            }
            _ => {
                return Err(tasklib::Error::InvalidConfig {
                    field: "dashboard credentials",
                    reason: format!(
                        "set both {DASHBOARD_USER_ENV} and {DASHBOARD_PASSWORD_ENV}, neither empty, or neither"
                    ),
                });
            }
        };
        Ok(ServeOptions {
            credentials,
            read_only: false,
        })
    }

    /// With a user and password.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Without actions.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}

/// Serves the dashboard of `tasks` on `listener` until `shutdown` resolves. With
/// credentials every request must give them, and every action is allowed to whoever does;
/// without, only a loopback listener is accepted. With the `prometheus` feature it also
/// installs a Prometheus recorder and serves `/metrics`.
///
/// # Errors
/// [`tasklib::Error::InvalidConfig`] with field `listen`: for a listener beyond loopback
/// without credentials (nothing is served), and for an I/O failure of the server.
pub async fn serve(
    tasks: TaskLib,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tasklib::Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|error| listen_error(None, &error))?;
    if options.credentials.is_none() && !addr.ip().is_loopback() {
        return Err(tasklib::Error::InvalidConfig {
            field: "listen",
            reason: format!(
                "refusing to serve the dashboard on {addr}, beyond this machine, without a user and password: set {DASHBOARD_USER_ENV} and {DASHBOARD_PASSWORD_ENV}, or listen on 127.0.0.1"
            ),
        });
    }
    let mut dashboard = Dashboard::new(tasks);
    if options.read_only {
        dashboard = dashboard.read_only();
    }
    // Behind Basic authentication (or on loopback only), whoever reaches a page may act.
    dashboard = dashboard.authorize(|_, _| true);
    #[cfg(feature = "prometheus")]
    {
        match tasklib::prometheus_builder().install_recorder() {
            Ok(handle) => dashboard = dashboard.prometheus(handle),
            Err(error) => {
                tracing::warn!(%error, "no /metrics: installing the Prometheus recorder failed")
            }
        }
    }
    let mut router = dashboard.router();
    if let Some((user, password)) = options.credentials {
        let expected: Arc<str> = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{password}"))
            .into();
        router = router.layer(middleware::from_fn_with_state(expected, basic_auth));
    }
    tracing::info!(%addr, read_only = options.read_only, "dashboard listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|error| listen_error(Some(addr), &error))
}

fn listen_error(addr: Option<SocketAddr>, error: &std::io::Error) -> tasklib::Error {
    tasklib::Error::InvalidConfig {
        field: "listen",
        reason: match addr {
            Some(addr) => format!("serving on {addr} failed: {error}"),
            None => format!("the listener has no address: {error}"),
        },
    }
}

/// Lets through requests whose `Authorization: Basic` matches; asks for it otherwise.
async fn basic_auth(State(expected): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .map(str::trim);
    let ok = given
        .is_some_and(|given| crate::actions::same_token(given.as_bytes(), expected.as_bytes()));
    if ok {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"tasklib\", charset=\"UTF-8\"",
            )],
            "the dashboard needs a user and password\n",
        )
            .into_response()
    }
}
