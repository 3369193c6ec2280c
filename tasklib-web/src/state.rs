//! What every handler shares, and the mount prefix of a request.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use tasklib::TaskLib;

use crate::{Action, AuthorizeFn, Dashboard};

/// The dashboard's state, cloned into each handler.
#[derive(Clone)]
pub(crate) struct Shared(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) tasks: TaskLib,
    pub(crate) read_only: bool,
    authorize: Option<Arc<AuthorizeFn>>,
    /// The token every action form carries: random per dashboard, so another site cannot
    /// know it.
    pub(crate) csrf: String,
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl std::ops::Deref for Shared {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Shared {
    pub(crate) fn new(dashboard: Dashboard) -> Shared {
        let csrf = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Shared(Arc::new(Inner {
            tasks: dashboard.tasks,
            read_only: dashboard.read_only,
            authorize: dashboard.authorize,
            csrf,
            #[cfg(feature = "prometheus")]
            prometheus: dashboard.prometheus,
        }))
    }
}

impl Inner {
    /// Whether pages show action buttons at all.
    pub(crate) fn actions_on(&self) -> bool {
        !self.read_only && self.authorize.is_some()
    }

    /// Whether this request may take `action`.
    pub(crate) fn may(&self, parts: &Parts, action: &Action) -> bool {
        !self.read_only
            && self
                .authorize
                .as_ref()
                .is_some_and(|hook| hook(parts, action))
    }

    /// Why actions are off, for the page footer.
    pub(crate) fn actions_off_reason(&self) -> Option<&'static str> {
        if self.read_only {
            Some("read-only: actions are off")
        } else if self.authorize.is_none() {
            Some("actions are off: the app gave no authorisation hook")
        } else {
            None
        }
    }
}

/// Where the dashboard is mounted (`""` at the root, `/admin/tasks` when nested there): the
/// prefix of every link.
#[derive(Debug, Clone)]
pub(crate) struct Base(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let inner = parts.uri.path().to_owned();
        let outer = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| inner.clone(), |original| original.path().to_owned());
        let base = if inner == "/" {
            outer.trim_end_matches('/')
        } else {
            outer.strip_suffix(inner.as_str()).unwrap_or("")
        };
        Ok(Base(base.to_owned()))
    }
}

impl Base {
    /// The link to `path` (which starts with `/`) under the mount prefix. The queues page
    /// (`/`, maybe with a query) is the prefix itself when nested: a router nested at
    /// `/admin/tasks` answers `/admin/tasks`, not `/admin/tasks/`.
    pub(crate) fn to(&self, path: &str) -> String {
        match path.strip_prefix('/') {
            Some(rest) if !self.0.is_empty() && (rest.is_empty() || rest.starts_with('?')) => {
                format!("{}{rest}", self.0)
            }
            _ => format!("{}{path}", self.0),
        }
    }
}
