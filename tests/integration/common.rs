//! Shared setup: an isolated database per test, a connected `TaskLib`, test task types, and
//! helpers that wait for worker events (with a generous limit that only guards a hang).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasklib::{ConfigBuilder, Task, TaskLib, WorkerEvent};
use tasklib_test_utils::TestDatabase;
use tokio::sync::broadcast;
use uuid::Uuid;
use validator::Validate;

pub(crate) type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Upper bound for anything a test waits for; reaching it means the test failed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

pub(crate) struct Env {
    pub(crate) tasks: TaskLib,
    pub(crate) db: TestDatabase,
}

/// A migrated database of its own and a `TaskLib` on it, with settings suited to tests.
pub(crate) async fn setup() -> TestResult<Env> {
    setup_with(|b| b).await
}

pub(crate) async fn setup_with(
    adjust: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> TestResult<Env> {
    let db = TestDatabase::new().await?;
    let builder = tasklib::Config::builder(db.url()).max_connections(5);
    let tasks = TaskLib::connect_with(adjust(builder).build()?).await?;
    Ok(Env { tasks, db })
}

/// A raw connection to the test database, for checks the API does not offer.
pub(crate) async fn raw(db: &TestDatabase) -> TestResult<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// An error and its causes on one line, as `tasklib::Error`'s `Debug` prints them.
pub(crate) fn one_line_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

pub(crate) async fn count_rows(db: &TestDatabase) -> TestResult<i64> {
    let client = raw(db).await?;
    Ok(client
        .query_one("SELECT count(*) FROM tasks", &[])
        .await?
        .get(0))
}

/// Waits for the first event matching `pick`, skipping others.
pub(crate) async fn wait_for<T>(
    events: &mut broadcast::Receiver<WorkerEvent>,
    mut pick: impl FnMut(&WorkerEvent) -> Option<T>,
) -> TestResult<T> {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return Ok(found);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    })
    .await??;
    Ok(found)
}

/// Waits until task `id` finished an attempt, and returns that outcome.
pub(crate) async fn finished(
    events: &mut broadcast::Receiver<WorkerEvent>,
    id: Uuid,
) -> TestResult<tasklib::TaskOutcome> {
    wait_for(events, |e| match e {
        WorkerEvent::TaskFinished {
            id: done, outcome, ..
        } if *done == id => Some(outcome.clone()),
        _ => None,
    })
    .await
}

/// Waits until each of `ids` finished an attempt, in any order; returns the outcomes in the
/// order of `ids`.
pub(crate) async fn finished_all(
    events: &mut broadcast::Receiver<WorkerEvent>,
    ids: &[Uuid],
) -> TestResult<Vec<tasklib::TaskOutcome>> {
    let mut outcomes: Vec<Option<tasklib::TaskOutcome>> = vec![None; ids.len()];
    while outcomes.iter().any(Option::is_none) {
        let (index, outcome) = wait_for(events, |e| match e {
            WorkerEvent::TaskFinished { id, outcome, .. } => ids
                .iter()
                .position(|x| x == id)
                .map(|i| (i, outcome.clone())),
            _ => None,
        })
        .await?;
        outcomes[index].get_or_insert(outcome);
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// Waits until task `id` started an attempt.
pub(crate) async fn started(events: &mut broadcast::Receiver<WorkerEvent>, id: Uuid) -> TestResult {
    wait_for(events, |e| {
        matches!(e, WorkerEvent::TaskStarted { id: s, .. } if *s == id).then_some(())
    })
    .await
}

/// Waits until the pool's notification listener is connected.
pub(crate) async fn listener_up(events: &mut broadcast::Receiver<WorkerEvent>) -> TestResult {
    wait_for(events, |e| {
        matches!(e, WorkerEvent::ListenerConnected).then_some(())
    })
    .await
}

/// A `Job` handler that waits for one permit of its gate per task, then returns the label:
/// the test decides when each task may finish.
pub(crate) struct Gated(pub(crate) std::sync::Arc<tokio::sync::Semaphore>);

impl tasklib::Handler<Job> for Gated {
    async fn run(&self, job: Job, _: tasklib::TaskContext) -> Result<String, tasklib::TaskError> {
        self.0.acquire().await.map(|permit| permit.forget())?;
        Ok(job.label)
    }
}

// ---- task types used across tests ----

#[derive(Debug, Clone, Serialize, Deserialize, Validate, PartialEq)]
pub(crate) struct SendEmail {
    #[validate(email)]
    pub(crate) to: String,
    #[validate(length(min = 1, max = 200))]
    pub(crate) subject: String,
}

impl Task for SendEmail {
    const NAME: &'static str = "send_email";
    type Output = bool;
}

pub(crate) fn email(n: usize) -> SendEmail {
    SendEmail {
        to: format!("user{n}@example.com"),
        subject: format!("Hello #{n}"),
    }
}

/// A task whose behaviour is chosen by its arguments.
#[derive(Debug, Clone, Serialize, Deserialize, Validate, PartialEq)]
pub(crate) struct Job {
    pub(crate) label: String,
}

impl Task for Job {
    const NAME: &'static str = "job";
    type Output = String;
}

pub(crate) fn job(label: &str) -> Job {
    Job {
        label: label.to_owned(),
    }
}

/// Makes `subscriber` the default on this thread until the guard drops, for tests on a
/// current-thread runtime (every task of the pool runs on the test's thread).
///
/// tracing caches, per call site, whether any subscriber wants its events. While a single
/// dispatcher is registered it asks only the current thread's default, so a call site first
/// reached on another test's thread (which has none) would be muted for every thread; a second
/// dispatcher alive for the whole process makes it ask all of them. Call sites reached before
/// this subscriber existed ask again ([`tracing::callsite::rebuild_interest_cache`]).
pub(crate) fn scoped_subscriber(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// Log lines captured by a [`scoped_subscriber`].
#[derive(Clone, Default)]
pub(crate) struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Captures events up to `level` on this thread until the guard is dropped.
    pub(crate) fn install(
        level: tracing::Level,
    ) -> (LogCapture, tracing::subscriber::DefaultGuard) {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let guard = scoped_subscriber(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(level)
                .with_writer(move || writer.clone())
                .finish(),
        );
        (capture, guard)
    }

    /// What was logged so far (a writer that panicked mid-line leaves what it wrote).
    pub(crate) fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
