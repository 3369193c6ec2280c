//! The workers page: the pools running now.

use axum::extract::State;
use chrono::Utc;
use maud::{Markup, html};

use crate::layout::{self, Nav, PageError};
use crate::state::{Base, Shared};

pub(crate) async fn page(State(state): State<Shared>, base: Base) -> Result<Markup, PageError> {
    let workers = state.tasks.workers().await?;
    let now = Utc::now();
    let body = html! {
        h1 { "Workers" }
        @if workers.is_empty() {
            p.muted #no-workers { "No worker pool is running." }
        } @else {
            table #workers {
                thead { tr {
                    th { "Worker" } th { "Host" } th class="n" { "PID" } th { "Queues (slots)" }
                    th class="n" { "Running" } th { "Started" } th { "Last heartbeat" }
                } }
                tbody {
                    @for w in &workers {
                        tr data-worker=(w.worker_id) {
                            td.mono { (w.worker_id) }
                            td { (w.host) }
                            td class="n" { (w.pid) }
                            td {
                                @for (i, group) in w.queues.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (group.queues.join(" + ")) " (" (group.slots) ")"
                                }
                            }
                            td class="n" { (w.running) " / " (w.slots) }
                            td { (layout::time(w.started_at)) }
                            td { (layout::duration((now - w.heartbeat_at).to_std().unwrap_or_default())) " ago" }
                        }
                    }
                }
            }
            p.muted { "A pool drops off this list when it stops, or once its lock timeout passes without a heartbeat." }
        }
    };
    Ok(layout::page(&base, &state, Nav::Workers, "Workers", body))
}
