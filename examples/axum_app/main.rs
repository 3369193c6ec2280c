//! An axum web app with tasklib: `POST /send-email` queues an email, `GET /tasks/{id}` shows
//! it; workers run in the same process. Ctrl-C or SIGTERM stops it gracefully.
//!
//! ```text
//! cargo run -p tasklib-examples --example axum_app
//! curl -s -XPOST localhost:3000/send-email -H 'content-type: application/json' \
//!      -d '{"to": "ada@example.com", "subject": "Hi"}'
//! curl -s localhost:3000/tasks/<id>
//! ```

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tasklib_examples::init_logging("info");
    let (url, _throwaway) = tasklib_examples::database_url().await?;
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    tasklib_examples::axum_app::serve(&url, listener, tasklib::shutdown_signal()).await
}
