//! One task: arguments, result, the error of each attempt, timings, its chain, actions.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use tasklib::{TaskFilter, TaskRecord, TaskState};
use uuid::Uuid;

use crate::layout::{self, Nav, PageError};
use crate::state::{Base, Inner, Shared};

/// The most chain steps shown.
const MAX_STEPS: u64 = 1_000;

#[derive(Debug, Deserialize)]
pub(crate) struct Params {
    done: Option<String>,
}

pub(crate) async fn page(
    State(state): State<Shared>,
    base: Base,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Markup, PageError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| PageError::new(StatusCode::BAD_REQUEST, format!("{id:?} is not a task id")))?;
    let Some(task) = state.tasks.get_task(id).await? else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("no task {id}: it never existed, or it was deleted or pruned"),
        ));
    };
    let chain = match task.chain_id {
        Some(chain) => {
            let mut steps = state
                .tasks
                .list_tasks(&TaskFilter::new().chain(chain).limit(MAX_STEPS))
                .await?;
            steps.sort_by_key(|s| s.chain_step);
            steps
        }
        None => Vec::new(),
    };
    let title = format!("{} {}", task.name, task.id);
    let body = html! {
        h1 { (task.name) " " span.mono.muted { (task.id) } " " (layout::state_badge(task.state, task.is_retrying())) }
        (layout::notice(params.done.as_deref()))
        (actions(&state, &base, &task))
        h2 { "Facts" }
        (facts(&task))
        h2 { "Arguments" }
        pre #args { (pretty(&task.args)) }
        @if let Some(result) = &task.result {
            h2 { "Result" }
            pre #result { (pretty(result)) }
        }
        @if let Some(progress) = &task.progress {
            h2 { "Progress" }
            pre { (pretty(progress)) }
        }
        h2 { "Errors" }
        @if task.errors.is_empty() && task.error.is_none() {
            p.muted { "None." }
        } @else if task.errors.is_empty() {
            pre #error { (task.error.as_deref().unwrap_or("")) }
        } @else {
            table #errors {
                thead { tr { th class="n" { "Attempt" } th { "At" } th { "Worker" } th { "Error" } } }
                tbody {
                    @for e in &task.errors {
                        tr {
                            td class="n" { (e.attempt) }
                            td { (layout::time(e.at)) }
                            td.mono { (e.worker.as_deref().unwrap_or("—")) }
                            td { pre { (e.error) } }
                        }
                    }
                }
            }
        }
        @if !chain.is_empty() {
            h2 { "Chain " span.mono.muted { (task.chain_id.map(|c| c.to_string()).unwrap_or_default()) } }
            table #chain {
                thead { tr { th class="n" { "Step" } th { "Id" } th { "Name" } th { "State" } } }
                tbody {
                    @for step in &chain {
                        tr {
                            td class="n" { (step.chain_step.map(|s| s.to_string()).unwrap_or_default()) }
                            td.mono {
                                @if step.id == task.id { (step.id) " (this task)" }
                                @else { a href=(base.to(&format!("/tasks/{}", step.id))) { (step.id) } }
                            }
                            td { (step.name) }
                            td { (layout::state_badge(step.state, step.is_retrying())) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&base, &state, Nav::Tasks, &title, body))
}

fn facts(t: &TaskRecord) -> Markup {
    let wait = layout::between(Some(t.scheduled_at), t.started_at);
    let run = layout::between(t.started_at, t.completed_at);
    let dash = || "—".to_owned();
    html! {
        div.grid #facts {
            div { "Queue" } div { (t.queue) }
            div { "Attempt" } div { (t.attempt) " (up to " (t.max_retries) " retries)" }
            div { "Priority" } div { (t.priority) }
            div { "Tags" } div.mono { (t.tags) }
            div { "Created" } div { (layout::time(t.created_at)) }
            div { "Due" } div { (layout::time(t.scheduled_at)) }
            div { "Started" } div { (layout::time_opt(t.started_at)) }
            div { "Finished" } div { (layout::time_opt(t.completed_at)) }
            div { "Waited" } div { (wait.map_or_else(dash, layout::duration)) }
            div { "Ran" } div { (run.map_or_else(dash, layout::duration)) }
            @if let Some(at) = t.next_retry_at { div { "Next retry" } div { (layout::time(at)) } }
            div { "Timeout" } div { (t.timeout_seconds.map_or_else(dash, |s| format!("{s} s"))) }
            div { "Worker" } div.mono { (t.worker_id.as_deref().unwrap_or("—")) }
            @if let Some(until) = t.locked_until { div { "Locked until" } div { (layout::time(until)) } }
            @if let Some(key) = &t.unique_key { div { "Unique key" } div.mono { (key) } }
            @if let Some(trace) = &t.trace_context { div { "Trace (traceparent)" } div.mono { (trace) } }
            @if let Some(at) = t.cancel_requested_at { div { "Cancel requested" } div { (layout::time(at)) } }
        }
    }
}

fn actions(state: &Inner, base: &Base, t: &TaskRecord) -> Markup {
    if !state.actions_on() {
        return html! {};
    }
    let retryable = t.state == TaskState::Cancelled || (t.is_failed() && !t.is_retrying());
    let cancellable = !t.is_terminal() && t.cancel_requested_at.is_none();
    let form = |verb: &str, label: &str, class: &str, confirm: Option<&str>| {
        html! {
            form.inline method="post" action=(base.to(&format!("/tasks/{}/{verb}", t.id)))
                data-confirm=[confirm] {
                (layout::csrf_field(state))
                button type="submit" class=(class) id={ "do-" (verb) } { (label) }
            }
            " "
        }
    };
    html! {
        p #actions {
            @if retryable { (form("retry", "Retry", "act", None)) }
            @if cancellable { (form("cancel", "Cancel", "act", Some("Cancel this task?"))) }
            (form("delete", "Delete", "danger", Some("Delete this task for good?")))
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
