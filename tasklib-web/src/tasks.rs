//! The tasks page: newest first, filtered by state, name, queue and tag, paged by keyset.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};
use tasklib::{TaskFilter, TaskRecord, TaskState};
use uuid::Uuid;

use crate::layout::{self, Nav, PageError};
use crate::queues::urlencode;
use crate::state::{Base, Shared};

/// Rows per page.
pub(crate) const PAGE: u64 = 50;

const STATES: [&str; 5] = ["pending", "running", "completed", "failed", "cancelled"];

/// The filters, as the form sends them (empty fields are no filter).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    #[serde(default)]
    state: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    queue: String,
    /// `key=value`, or a JSON object.
    #[serde(default)]
    tag: String,
    before: Option<Uuid>,
    /// Set after an action that led here.
    done: Option<String>,
}

impl Params {
    fn filter(&self) -> Result<TaskFilter, PageError> {
        let mut filter = TaskFilter::new().limit(PAGE);
        if !self.state.is_empty() {
            let state: TaskState = self.state.parse().map_err(|_| {
                PageError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown state {:?}: use one of {}",
                        self.state,
                        STATES.join(", ")
                    ),
                )
            })?;
            filter = filter.state(state);
        }
        if !self.name.trim().is_empty() {
            filter = filter.name(self.name.trim());
        }
        if !self.queue.trim().is_empty() {
            filter = filter.queue(self.queue.trim());
        }
        if let Some(tags) = tag_filter(&self.tag)? {
            filter = filter.tags(tags);
        }
        if let Some(before) = self.before {
            filter = filter.before(before);
        }
        Ok(filter)
    }

    /// The query string of these filters, without the cursor.
    fn query(&self) -> String {
        [
            ("state", &self.state),
            ("name", &self.name),
            ("queue", &self.queue),
            ("tag", &self.tag),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// `key=value` as `{"key":"value"}`; a JSON object as it is.
fn tag_filter(tag: &str) -> Result<Option<Value>, PageError> {
    let tag = tag.trim();
    if tag.is_empty() {
        return Ok(None);
    }
    let bad = || {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("tag filter {tag:?}: write key=value, or a JSON object"),
        )
    };
    if tag.starts_with('{') {
        let value: Value = serde_json::from_str(tag).map_err(|_| bad())?;
        return if value.is_object() {
            Ok(Some(value))
        } else {
            Err(bad())
        };
    }
    let (key, value) = tag.split_once('=').ok_or_else(bad)?;
    let mut object = Map::new();
    object.insert(
        key.trim().to_owned(),
        Value::String(value.trim().to_owned()),
    );
    Ok(Some(Value::Object(object)))
}

pub(crate) async fn page(
    State(state): State<Shared>,
    base: Base,
    Query(params): Query<Params>,
) -> Result<Markup, PageError> {
    let filter = params.filter()?;
    let tasks = state.tasks.list_tasks(&filter).await?;
    let query = params.query();
    let next = (tasks.len() as u64 == PAGE)
        .then(|| tasks.last().map(|t| t.id))
        .flatten();
    let body = html! {
        h1 { "Tasks" }
        (layout::notice(params.done.as_deref()))
        form.filters method="get" action=(base.to("/tasks")) {
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for s in STATES { option value=(s) selected[params.state == s] { (s) } }
                }
            }
            label { "Name" input name="name" value=(params.name) placeholder="send_email"; }
            label { "Queue" input name="queue" value=(params.queue) placeholder="default"; }
            label { "Tag" input name="tag" value=(params.tag) placeholder="customer=42"; }
            button.act type="submit" { "Filter" }
            a href=(base.to("/tasks")) { "Clear" }
        }
        @if tasks.is_empty() {
            p.muted #no-tasks { "No task matches." }
        } @else {
            (table(&base, &tasks))
        }
        div.pager {
            @if params.before.is_some() {
                a href=(base.to(&format!("/tasks?{query}"))) { "← Newest" }
            }
            @if let Some(last) = next {
                @let sep = if query.is_empty() { "" } else { "&" };
                a #older href=(base.to(&format!("/tasks?{query}{sep}before={last}"))) { "Older →" }
            }
        }
    };
    Ok(layout::page(&base, &state, Nav::Tasks, "Tasks", body))
}

fn table(base: &Base, tasks: &[TaskRecord]) -> Markup {
    html! {
        table #tasks {
            thead { tr {
                th { "Id" } th { "Name" } th { "Queue" } th { "State" } th class="n" { "Attempt" }
                th { "Created" } th { "Ran" } th { "Last error" }
            } }
            tbody {
                @for t in tasks {
                    tr data-id=(t.id) data-state=(t.state) {
                        td.mono { a href=(base.to(&format!("/tasks/{}", t.id))) { (t.id) } }
                        td { (t.name) }
                        td { (t.queue) }
                        td { (layout::state_badge(t.state, t.is_retrying())) }
                        td class="n" { (t.attempt) }
                        td { (layout::time(t.created_at)) }
                        td { (layout::between(t.started_at, t.completed_at).map_or_else(|| "—".to_owned(), layout::duration)) }
                        td.err title=[t.error.as_deref()] { (t.error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}
