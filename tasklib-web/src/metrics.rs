//! `/metrics` (feature `prometheus`): the installed recorder's metrics, with the queue
//! gauges set from the overview first.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::Shared;

pub(crate) async fn scrape(State(state): State<Shared>) -> Response {
    let Some(handle) = &state.prometheus else {
        return (
            StatusCode::NOT_FOUND,
            "no metrics: the app gave the dashboard no Prometheus handle\n",
        )
            .into_response();
    };
    match state.tasks.queue_overview(1).await {
        Ok(queues) => {
            for q in queues {
                metrics::gauge!("tasklib_queue_pending", "queue" => q.queue.clone())
                    .set(q.due as f64);
                metrics::gauge!("tasklib_queue_running", "queue" => q.queue).set(q.running as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "sampling the queue gauges for /metrics failed"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
