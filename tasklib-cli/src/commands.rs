//! The subcommands.

use std::fmt;
use std::time::Duration;

use clap::Args;
use serde_json::{Map, Value, json};
use tasklib::{CancelOutcome, ConfigBuilder, TaskFilter, TaskLib, TaskRecord, TaskState};
use uuid::Uuid;

use crate::Command;
use crate::output::{age, table};

/// Why a command failed; displayed as one line.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The input was wrong (a bad id, a bad filter).
    Input(String),
    /// tasklib (the database) said no.
    Tasklib(tasklib::Error),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(message) => f.write_str(message),
            CliError::Tasklib(error) => {
                let mut text = tasklib::cli::one_line(error);
                if text.contains("relation \"tasks\" does not exist") {
                    text.push_str(" (run `tasklib migrate` first)");
                }
                f.write_str(&text)
            }
        }
    }
}

impl From<tasklib::Error> for CliError {
    fn from(error: tasklib::Error) -> Self {
        CliError::Tasklib(error)
    }
}

type Result<T> = std::result::Result<T, CliError>;

/// `list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only tasks in this state (pending, running, completed, failed, cancelled); repeatable.
    #[arg(long, value_parser = parse_state)]
    state: Vec<TaskState>,
    /// Only tasks of this name.
    #[arg(long)]
    name: Option<String>,
    /// Only tasks of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only tasks tagged KEY=VALUE (VALUE is read as JSON when it parses, else as text);
    /// repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    tag: Vec<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u64,
    /// Print a JSON array of tasks instead of a table.
    #[arg(long)]
    json: bool,
}

/// `retry` options.
#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    /// The task to re-queue.
    #[arg(required_unless_present = "failed", conflicts_with = "failed")]
    id: Option<String>,
    /// Re-queue every task that failed for good (the dead letters).
    #[arg(long)]
    failed: bool,
    /// With --failed: only tasks of this name.
    #[arg(long, requires = "failed")]
    name: Option<String>,
    /// With --failed: only tasks of this queue.
    #[arg(long, requires = "failed")]
    queue: Option<String>,
}

/// `prune` options.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// States to delete: completed, failed (for good), cancelled; comma-separated or repeated.
    #[arg(long, required = true, value_delimiter = ',', value_parser = parse_state)]
    state: Vec<TaskState>,
    /// Age since the task finished, e.g. `7d`, `12h`.
    #[arg(long, value_parser = parse_age)]
    older_than: Duration,
}

fn parse_state(s: &str) -> std::result::Result<TaskState, String> {
    s.parse::<TaskState>().map_err(|e| e.to_string())
}

fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    tasklib::parse_duration("--older-than", s).map_err(|e| e.to_string())
}

fn parse_id(s: &str) -> Result<Uuid> {
    s.trim().parse().map_err(|_| {
        CliError::Input(format!(
            "`{s}` is not a task id (expected a UUID like 0193b2c4-5d6e-7f80-9a1b-2c3d4e5f6a7b)"
        ))
    })
}

async fn connect(url: Option<String>, migrate: bool) -> Result<TaskLib> {
    let url = url.ok_or_else(|| {
        CliError::Input("no database: pass --database-url or set DATABASE_URL".to_owned())
    })?;
    let config = ConfigBuilder::from_vars(|name| {
        if name == "DATABASE_URL" {
            Some(url.clone())
        } else {
            std::env::var(name).ok()
        }
    })?
    .run_migrations(migrate)
    .max_connections(2)
    .build()?;
    Ok(TaskLib::connect_with(config).await?)
}

pub(crate) async fn run(url: Option<String>, command: Command) -> Result<()> {
    match command {
        Command::Migrate => {
            connect(url, true).await?;
            println!("migrations applied");
        }
        Command::Status { json } => status(&connect(url, false).await?, json).await?,
        Command::List(args) => list(&connect(url, false).await?, args).await?,
        Command::Show { id, json } => {
            let id = parse_id(&id)?;
            let tasks = connect(url, false).await?;
            let task = tasks
                .get_task(id)
                .await?
                .ok_or(CliError::Tasklib(tasklib::Error::NotFound { id }))?;
            show(&task, json);
        }
        Command::Retry(args) => {
            if args.failed {
                let tasks = connect(url, false).await?;
                let n = tasks
                    .retry_failed(args.name.as_deref(), args.queue.as_deref())
                    .await?;
                println!("re-queued {n} task{}", if n == 1 { "" } else { "s" });
            } else {
                let id = parse_id(args.id.as_deref().unwrap_or_default())?;
                connect(url, false).await?.retry(id).await?;
                println!("re-queued {id}");
            }
        }
        Command::Cancel { id } => {
            let id = parse_id(&id)?;
            match connect(url, false).await?.cancel(id).await? {
                CancelOutcome::Cancelled => println!("cancelled {id}"),
                CancelOutcome::Requested => println!("{id} is running: cancellation requested"),
                _ => println!("{id}: cancel recorded"),
            }
        }
        Command::Prune(args) => {
            let n = connect(url, false)
                .await?
                .prune(&args.state, args.older_than)
                .await?;
            println!("deleted {n} task{}", if n == 1 { "" } else { "s" });
        }
    }
    Ok(())
}

async fn status(tasks: &TaskLib, json: bool) -> Result<()> {
    let queues = tasks.queue_status().await?;
    if json {
        let list: Vec<Value> = queues
            .iter()
            .map(|q| {
                json!({
                    "queue": q.queue,
                    "counts": q.counts,
                    "oldest_pending_age_seconds": q.oldest_pending_age.map(|d| d.as_secs_f64()),
                })
            })
            .collect();
        println!("{}", json!({ "queues": list }));
        return Ok(());
    }
    if queues.is_empty() {
        println!("no tasks");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            let c = &q.counts;
            vec![
                q.queue.clone(),
                c.pending.to_string(),
                c.running.to_string(),
                c.completed.to_string(),
                c.failed_retrying.to_string(),
                c.failed_permanent.to_string(),
                c.cancelled.to_string(),
                q.oldest_pending_age.map(age).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "QUEUE",
            "PENDING",
            "RUNNING",
            "COMPLETED",
            "RETRYING",
            "FAILED",
            "CANCELLED",
            "OLDEST DUE",
        ],
        &rows,
    );
    Ok(())
}

async fn list(tasks: &TaskLib, args: ListArgs) -> Result<()> {
    let mut filter = TaskFilter::new().limit(args.limit);
    for state in args.state {
        filter = filter.state(state);
    }
    if let Some(name) = args.name {
        filter = filter.name(name);
    }
    if let Some(queue) = args.queue {
        filter = filter.queue(queue);
    }
    if !args.tag.is_empty() {
        let mut tags = Map::new();
        for tag in &args.tag {
            let (key, value) = tag
                .split_once('=')
                .ok_or_else(|| CliError::Input(format!("--tag `{tag}` is not KEY=VALUE")))?;
            let value =
                serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
            tags.insert(key.to_owned(), value);
        }
        filter = filter.tags(Value::Object(tags));
    }
    let found = tasks.list_tasks(&filter).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&found).map_err(|e| CliError::Input(e.to_string()))?
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|t| {
            let error: String = t.error.as_deref().unwrap_or("").chars().take(60).collect();
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.queue.clone(),
                status_of(t),
                t.attempt.to_string(),
                t.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                error.replace('\n', " "),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "QUEUE",
            "STATE",
            "ATTEMPTS",
            "CREATED (UTC)",
            "ERROR",
        ],
        &rows,
    );
    Ok(())
}

fn status_of(t: &TaskRecord) -> String {
    if t.is_retrying() {
        "failed (retrying)".into()
    } else {
        t.state.to_string()
    }
}

fn show(t: &TaskRecord, json: bool) {
    if json {
        println!("{}", serde_json::to_value(t).unwrap_or(Value::Null));
        return;
    }
    let time = |v: Option<chrono::DateTime<chrono::Utc>>| {
        v.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
    };
    let fields: Vec<(&str, String)> = vec![
        ("id", t.id.to_string()),
        ("name", t.name.clone()),
        ("queue", t.queue.clone()),
        ("state", status_of(t)),
        ("priority", t.priority.to_string()),
        ("attempts", t.attempt.to_string()),
        ("retries", format!("{} of {}", t.retry_count, t.max_retries)),
        ("created_at", t.created_at.to_rfc3339()),
        ("scheduled_at", t.scheduled_at.to_rfc3339()),
        ("started_at", time(t.started_at)),
        ("completed_at", time(t.completed_at)),
        ("next_retry_at", time(t.next_retry_at)),
        (
            "worker_id",
            t.worker_id.clone().unwrap_or_else(|| "-".into()),
        ),
        ("locked_until", time(t.locked_until)),
        (
            "timeout",
            t.timeout_seconds
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "-".into()),
        ),
        ("tags", t.tags.to_string()),
        ("args", t.args.to_string()),
        (
            "result",
            t.result
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_else(|| "-".into()),
        ),
    ];
    for (key, value) in fields {
        println!("{key:<14}{value}");
    }
    match &t.error {
        Some(error) => println!("error:\n{error}"),
        None => println!("{:<14}-", "error"),
    }
}
