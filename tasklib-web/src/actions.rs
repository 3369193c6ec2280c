//! The action endpoints: `POST` forms only, each carrying the dashboard's token, refused
//! from other sites, then put to the app's authorisation hook.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Redirect;
use serde::Deserialize;
use uuid::Uuid;

use crate::Action;
use crate::layout::PageError;
use crate::queues::urlencode;
use crate::state::{Base, Shared};

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
}

/// Refuses what is not allowed: a read-only dashboard, a request from another site or
/// without the token, and what the hook says no to.
fn check(
    state: &Shared,
    parts: &Parts,
    form: &ActionForm,
    action: &Action,
) -> Result<(), PageError> {
    let forbidden = |why: &str| Err(PageError::new(StatusCode::FORBIDDEN, why.to_owned()));
    if state.read_only {
        return forbidden("this dashboard is read-only");
    }
    // Browsers say where a request comes from; a form posted by another site is refused
    // even before its token is looked at.
    if parts
        .headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site")
    {
        return forbidden("refused: the request came from another site");
    }
    if !same_token(form.csrf.as_bytes(), state.csrf.as_bytes()) {
        return forbidden(
            "refused: the form's token is missing or stale; reload the page and try again",
        );
    }
    if !state.may(parts, action) {
        return forbidden(&format!("not allowed to {action}"));
    }
    Ok(())
}

/// Compares in time independent of where the first difference is.
pub(crate) fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

pub(crate) async fn task_action(
    State(state): State<Shared>,
    base: Base,
    Path((id, verb)): Path<(String, String)>,
    parts: Parts,
    Form(form): Form<ActionForm>,
) -> Result<Redirect, PageError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| PageError::new(StatusCode::BAD_REQUEST, format!("{id:?} is not a task id")))?;
    let action = match verb.as_str() {
        "retry" => Action::Retry(id),
        "cancel" => Action::Cancel(id),
        "delete" => Action::Delete(id),
        other => {
            return Err(PageError::new(
                StatusCode::NOT_FOUND,
                format!("no task action {other:?}: use retry, cancel or delete"),
            ));
        }
    };
    check(&state, &parts, &form, &action)?;
    tracing::info!(%action, "dashboard action");
    match action {
        Action::Retry(id) => state.tasks.retry(id).await?,
        Action::Cancel(id) => {
            state.tasks.cancel(id).await?;
        }
        Action::Delete(id) => {
            if state.tasks.delete(id).await? == 0 {
                return Err(PageError::new(
                    StatusCode::NOT_FOUND,
                    format!("no task {id} to delete"),
                ));
            }
            return Ok(Redirect::to(&base.to("/tasks?done=delete")));
        }
        Action::Pause(_) | Action::Resume(_) => {}
    }
    Ok(Redirect::to(&base.to(&format!("/tasks/{id}?done={verb}"))))
}

pub(crate) async fn queue_action(
    State(state): State<Shared>,
    base: Base,
    Path((queue, verb)): Path<(String, String)>,
    parts: Parts,
    Form(form): Form<ActionForm>,
) -> Result<Redirect, PageError> {
    let action = match verb.as_str() {
        "pause" => Action::Pause(queue.clone()),
        "resume" => Action::Resume(queue.clone()),
        other => {
            return Err(PageError::new(
                StatusCode::NOT_FOUND,
                format!("no queue action {other:?}: use pause or resume"),
            ));
        }
    };
    check(&state, &parts, &form, &action)?;
    tracing::info!(%action, "dashboard action");
    if verb == "pause" {
        state.tasks.pause_queue(&queue).await?;
    } else {
        state.tasks.resume_queue(&queue).await?;
    }
    Ok(Redirect::to(
        &base.to(&format!("/?done={verb}&queue={}", urlencode(&queue))),
    ))
}
