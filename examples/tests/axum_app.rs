//! The axum example, started on a loopback port and driven over real HTTP.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tasklib_test_utils::TestDatabase;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_emails_over_http_and_reports_their_state() -> TestResult {
    let db = TestDatabase::empty().await?; // the app migrates it at startup
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let url = db.url().to_owned();
    let server = tokio::spawn(async move {
        tasklib_examples::axum_app::serve(&url, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    let http = reqwest::Client::new();

    // The server connects and migrates before it accepts: retry the first request briefly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let accepted = loop {
        let sent = http
            .post(format!("{base}/send-email"))
            .json(&json!({"to": "ada@example.com", "subject": "Welcome"}))
            .send()
            .await;
        match sent {
            Ok(response) => break response,
            Err(_) if Instant::now() < deadline && !server.is_finished() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    assert_eq!(accepted.status(), 202);
    let id = accepted.json::<Value>().await?["id"]
        .as_str()
        .ok_or("no id")?
        .to_owned();

    // Poll the task over HTTP until the in-process worker completed it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let task = loop {
        let task: Value = http
            .get(format!("{base}/tasks/{id}"))
            .send()
            .await?
            .json()
            .await?;
        if task["state"] == "completed" || Instant::now() > deadline {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(task["state"], "completed", "{task}");
    assert_eq!(task["result"], "message 1 to ada@example.com");
    assert_eq!(task["error"], Value::Null);

    let invalid = http
        .post(format!("{base}/send-email"))
        .json(&json!({"to": "not-an-email", "subject": ""}))
        .send()
        .await?;
    assert_eq!(invalid.status(), 422);
    let body: Value = invalid.json().await?;
    assert!(body["errors"]["to"].is_array(), "{body}");
    assert!(body["errors"]["subject"].is_array(), "{body}");

    let missing = http
        .get(format!("{base}/tasks/{}", uuid::Uuid::now_v7()))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);

    // Graceful shutdown: the server and its workers stop, and serve() returns Ok.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server).await???;
    Ok(())
}
