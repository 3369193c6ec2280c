//! The queues page: each queue's open tasks, lag, throughput of the last minutes, pause and
//! limits.

use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use tasklib::{MinuteCounts, QueueOverview};

use crate::layout::{self, Nav, PageError};
use crate::state::{Base, Shared};

/// Minutes of throughput shown.
pub(crate) const MINUTES: u32 = 15;

#[derive(Debug, Deserialize)]
pub(crate) struct Params {
    done: Option<String>,
}

pub(crate) async fn page(
    State(state): State<Shared>,
    base: Base,
    Query(params): Query<Params>,
) -> Result<Markup, PageError> {
    let queues = state.tasks.queue_overview(MINUTES).await?;
    let body = html! {
        h1 { "Queues" }
        (layout::notice(params.done.as_deref()))
        @if queues.is_empty() {
            p.muted { "No queue has open tasks, recent ones, a pause or limits." }
        } @else {
            table #queues {
                thead { tr {
                    th { "Queue" } th class="n" { "Due" } th class="n" { "Later" }
                    th class="n" { "Running" } th class="n" { "Retrying" } th class="n" { "Failed" }
                    th class="n" { "Cancelled" } th { "Oldest due" }
                    th { "Finished, last " (MINUTES) " min" } th { "Limits" } th { "" }
                } }
                tbody {
                    @for q in &queues { (row(&state, &base, q)) }
                }
            }
        }
    };
    Ok(layout::page(&base, &state, Nav::Queues, "Queues", body))
}

fn row(state: &Shared, base: &Base, q: &QueueOverview) -> Markup {
    let finished: u64 = q.finished.iter().map(|m| m.completed + m.failed).sum();
    let per_minute = finished as f64 / f64::from(MINUTES);
    let tasks_of = |state: &str| {
        base.to(&format!(
            "/tasks?queue={}&state={state}",
            urlencode(&q.queue)
        ))
    };
    html! {
        tr data-queue=(q.queue) {
            td {
                a href=(base.to(&format!("/tasks?queue={}", urlencode(&q.queue)))) { (q.queue) }
                @if q.paused { " " span class="badge b-paused" { "paused" } }
            }
            td class="n" { a href=(tasks_of("pending")) { (q.due) } }
            td class="n" { (q.scheduled) }
            td class="n" { a href=(tasks_of("running")) { (q.running) } }
            td class="n" { (q.retrying) }
            td class="n" { a href=(tasks_of("failed")) { (q.failed) } }
            td class="n" { a href=(tasks_of("cancelled")) { (q.cancelled) } }
            td { (q.oldest_due_age.map_or_else(|| "—".to_owned(), layout::duration)) }
            td {
                (spark(&q.finished))
                span.muted { " " (format!("{per_minute:.1}")) "/min" }
            }
            td {
                @if let Some(n) = q.limits.concurrency { "≤ " (n) " running " }
                @if let Some(rate) = q.limits.rate {
                    "≤ " (rate.starts) " starts / " (layout::duration(rate.period))
                }
            }
            td {
                @if state.actions_on() {
                    @let (verb, label) = if q.paused { ("resume", "Resume") } else { ("pause", "Pause") };
                    form.inline method="post"
                        action=(base.to(&format!("/queues/{}/{verb}", urlencode(&q.queue)))) {
                        (layout::csrf_field(state))
                        button type="submit" name="do" value=(verb) { (label) }
                    }
                }
            }
        }
    }
}

/// Bars of completed (green) and failed (red) tasks per minute.
fn spark(minutes: &[MinuteCounts]) -> Markup {
    let peak = minutes
        .iter()
        .map(|m| m.completed + m.failed)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let width = minutes.len() * 6;
    let height = 24.0;
    html! {
        svg.spark width=(width) height="24" viewBox={ "0 0 " (width) " 24" } role="img"
            aria-label="tasks finished per minute" {
            @for (i, m) in minutes.iter().enumerate() {
                @let done = m.completed as f64 / peak * height;
                @let failed = m.failed as f64 / peak * height;
                rect.c x=(i * 6) y=(format!("{:.1}", height - done)) width="5" height=(format!("{done:.1}")) {
                    title { (layout::time(m.minute)) ": " (m.completed) " completed, " (m.failed) " failed" }
                }
                rect.f x=(i * 6) y=(format!("{:.1}", height - done - failed)) width="5" height=(format!("{failed:.1}")) {}
            }
        }
    }
}

/// Percent-encodes a query or path component.
pub(crate) fn urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
