//! `/metrics` on the dashboard's router (feature `prometheus`): the counters a submitting and
//! working process records, and the queue gauges set at each scrape. One recorder per
//! process, so this file holds one test.

#![cfg(feature = "prometheus")]

mod support;

use support::{Greet, PATIENCE, Scene, TestResult, serve_nested};
use tasklib_web::Dashboard;

/// The value of the sample `name{labels}` in a Prometheus text page.
fn sample(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_what_this_process_submitted_and_ran_and_sample_the_queues() -> TestResult {
    let handle = tasklib::prometheus_builder().install_recorder()?;
    let scene = Scene::new().await?;
    // Scene submitted 3 greetings and 1 explosion to `default` and ran them, and 60
    // greetings to the paused `reports`; two more now.
    for name in ["x", "y"] {
        let id = scene.tasks.submit(Greet { name: name.into() }).await?;
        scene.tasks.wait_result(id, PATIENCE).await?;
    }
    let base = serve_nested(Dashboard::new(scene.tasks.clone()).prometheus(handle)).await?;
    let page = reqwest::get(format!("{base}/metrics")).await?;
    assert_eq!(
        page.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4")
    );
    let page = page.text().await?;
    let get = |key: &str| sample(&page, key).ok_or_else(|| format!("no {key} in:\n{page}"));
    assert_eq!(
        get(r#"tasklib_tasks_submitted_total{queue="default",name="greet"}"#)?,
        5.0
    );
    assert_eq!(
        get(r#"tasklib_tasks_submitted_total{queue="reports",name="greet"}"#)?,
        60.0
    );
    assert_eq!(
        get(r#"tasklib_tasks_completed_total{queue="default",name="greet"}"#)?,
        5.0
    );
    assert_eq!(
        get(r#"tasklib_tasks_failed_total{queue="default",name="explode"}"#)?,
        1.0
    );
    assert_eq!(get(r#"tasklib_queue_pending{queue="reports"}"#)?, 60.0);
    assert_eq!(get(r#"tasklib_queue_running{queue="reports"}"#)?, 0.0);
    assert!(get(r#"tasklib_task_run_seconds_count{queue="default",name="greet"}"#)? >= 5.0);
    scene.pool.shutdown().await?;
    Ok(())
}
