//! What the dashboard tests share: a database with tasks in every state, the dashboard
//! served on a loopback port, and a headless Chromium driven through chromedriver.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde::{Deserialize, Serialize};
use tasklib::{Config, SubmitOptions, TaskContext, TaskError, TaskLib, TaskWorker, WorkerPool};
use tasklib_test_utils::TestDatabase;
use tasklib_web::Dashboard;
use uuid::Uuid;
use validator::Validate;

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long anything awaited may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A task that greets.
#[derive(Debug, Serialize, Deserialize, Validate)]
pub struct Greet {
    #[validate(length(min = 1))]
    pub name: String,
}

impl tasklib::Task for Greet {
    const NAME: &'static str = "greet";
    type Output = String;
}

/// A task that always fails, for good.
#[derive(Debug, Serialize, Deserialize, Validate)]
pub struct Explode {
    pub reason: String,
}

impl tasklib::Task for Explode {
    const NAME: &'static str = "explode";
    const MAX_RETRIES: Option<u32> = Some(0);
    type Output = ();
}

/// A database with: 3 completed greetings and 1 failed explosion in `default` (run by a
/// pool that keeps running), and 60 greetings tagged `batch=weekly` waiting in the paused
/// queue `reports`.
pub struct Scene {
    pub db: TestDatabase,
    pub tasks: TaskLib,
    pub pool: WorkerPool,
    pub completed: Vec<Uuid>,
    pub failed: Uuid,
    pub waiting: Vec<Uuid>,
}

impl Scene {
    pub async fn new() -> TestResult<Scene> {
        let db = TestDatabase::new().await?;
        let tasks = TaskLib::connect_with(
            Config::builder(db.url())
                .worker_id("dashboard-test-worker")
                .max_connections(8)
                .build()?,
        )
        .await?;
        tasks.register(|greet: Greet, _ctx: TaskContext| async move {
            Ok::<_, TaskError>(format!("hello, {}", greet.name))
        })?;
        tasks.register(|explode: Explode, _ctx: TaskContext| async move {
            Err::<(), _>(TaskError::permanent(format!("boom: {}", explode.reason)))
        })?;
        tasks.pause_queue("reports").await?;
        let pool = TaskWorker::new(&tasks)
            .queue("default", 2)
            .queue("reports", 2)
            .spawn()?;
        let mut completed = Vec::new();
        for name in ["ada", "grace", "edsger"] {
            let id = tasks.submit(Greet { name: name.into() }).await?;
            tasks.wait_result(id, PATIENCE).await?;
            completed.push(id);
        }
        let failed = tasks
            .submit(Explode {
                reason: "the disk is full".into(),
            })
            .await?;
        tasks.wait_result(failed, PATIENCE).await?;
        let mut waiting = Vec::new();
        for i in 0..60 {
            let id = tasks
                .submit_with(
                    Greet {
                        name: format!("reader {i}"),
                    },
                    SubmitOptions::new()
                        .queue("reports")
                        .tags(serde_json::json!({ "batch": "weekly" })),
                )
                .await?;
            waiting.push(id);
        }
        Ok(Scene {
            db,
            tasks,
            pool,
            completed,
            failed,
            waiting,
        })
    }
}

/// Serves `dashboard` nested under `/admin/tasks` on a free loopback port; returns the
/// dashboard's base URL.
pub async fn serve_nested(dashboard: Dashboard) -> TestResult<String> {
    let app = axum::Router::new().nest("/admin/tasks", dashboard.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/admin/tasks"))
}

/// A headless Chromium session, with its chromedriver process.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session. Fails (does not skip) when
    /// Chromium or chromedriver is missing: `.ci/run` installs them.
    pub async fn start() -> TestResult<Browser> {
        let driver_path = find_binary("CHROMEDRIVER", &["chromedriver", "/usr/lib/chromium/chromedriver"])
            .ok_or("chromedriver not found: install Debian's chromium-driver (apt-get install chromium chromium-driver), or set CHROMEDRIVER")?;
        let chromium = find_binary(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .ok_or("chromium not found: install Debian's chromium, or set CHROMIUM")?;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let driver = tokio::process::Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        // Ready once it accepts connections.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                return Err("chromedriver did not start listening within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await?;
        Ok(Browser { client, driver })
    }

    /// Saves a PNG of what the browser shows under `target/tmp/dashboard/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> TestResult<PathBuf> {
        let png = self.client.screenshot().await?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    pub async fn close(mut self) -> TestResult {
        self.client.close().await?;
        let _ = self.driver.kill().await;
        Ok(())
    }
}

fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    for name in names {
        let candidate = PathBuf::from(name);
        if candidate.is_absolute() {
            if candidate.is_file() {
                return Some(candidate);
            }
            continue;
        }
        let path = std::env::var_os("PATH")?;
        for dir in std::env::split_paths(&path) {
            let full = dir.join(name);
            if full.is_file() {
                return Some(full);
            }
        }
    }
    None
}
