//! The subcommands.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use serde_json::{Map, Value, json};
use tasklib::cli::EngineArgs;
use tasklib::{
    CancelOutcome, QueueLimits, RateLimit, SubmitOptions, TaskFilter, TaskLib, TaskRecord,
    TaskResult, TaskState, TaskStatus, UniqueScope,
};
use uuid::Uuid;

use crate::Command;
use crate::output::{age, table};

/// Why a command failed; displayed as one line.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The input was wrong (a bad id, a bad filter).
    Input(String),
    /// The command ran, and its answer is no: a task that did not complete, a command the
    /// engine has no means for.
    Outcome(String),
    /// tasklib (the database) said no.
    Tasklib(tasklib::Error),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(message) | CliError::Outcome(message) => f.write_str(message),
            CliError::Tasklib(error) => {
                let mut text = tasklib::cli::one_line(error);
                if text.contains("relation \"tasks\" does not exist")
                    || text.contains("relation \"tasklib_")
                {
                    text.push_str(" (run `tasklib migrate` first)");
                }
                f.write_str(&text)
            }
        }
    }
}

impl CliError {
    /// For a command that needs what the engine lacks (listing, the admin operations), says
    /// which command, rather than the library's "drop that option".
    fn for_command(self, command: Option<&str>) -> CliError {
        match (self, command) {
            (
                CliError::Tasklib(tasklib::Error::Unsupported {
                    backend,
                    capability,
                }),
                Some(command),
            ) => CliError::Outcome(format!(
                "`tasklib {command}` is not available on the `{backend}` backend: it has no \
                 {capability} (docs/backends.md lists what each backend supports)"
            )),
            (error, _) => error,
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
    /// Run the task again even if it completed.
    #[arg(long, conflicts_with = "failed")]
    force: bool,
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

/// `submit` options.
#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The task's name, as its worker registered it.
    #[arg(value_parser = parse_name)]
    name: String,
    /// The arguments: a JSON object, or a JSON array of positional arguments that the worker
    /// maps onto the fields of the task's type in order. Defaults to `{}`.
    #[arg(long, value_parser = parse_json_args, value_name = "JSON")]
    args: Option<Value>,
    /// The queue. Defaults to `default`, not the task type's own queue (this command has no
    /// task code to know it): name the queue its workers serve.
    #[arg(long)]
    queue: Option<String>,
    /// Run no earlier than this long from now, e.g. `10s`, `5m`.
    #[arg(long, value_parser = parse_delay, value_name = "DURATION")]
    delay: Option<Duration>,
    /// Higher runs first among the due tasks of a queue. Defaults to 0.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Make the task unique by this key among tasks of its name: while one with the key is
    /// unfinished, or within a window of `--unique-period`. A duplicate prints the existing
    /// task's id and says so on stderr. PostgreSQL only.
    #[arg(long, value_name = "KEY")]
    unique_key: Option<String>,
    /// With `--unique-key`: one task per key per window of this length (e.g. `1h`, aligned
    /// on the epoch in UTC), whatever became of it, instead of while it is unfinished.
    #[arg(long, value_parser = parse_period, value_name = "DURATION", requires = "unique_key")]
    unique_period: Option<Duration>,
}

impl SubmitArgs {
    fn options(&self) -> SubmitOptions {
        let mut options = SubmitOptions::new();
        if let Some(queue) = &self.queue {
            options = options.queue(queue.clone());
        }
        if let Some(delay) = self.delay {
            options = options.delay(delay);
        }
        if let Some(priority) = self.priority {
            options = options.priority(priority);
        }
        if let Some(key) = &self.unique_key {
            options = options.unique_key(key.clone());
        }
        if let Some(period) = self.unique_period {
            options = options.unique_scope(UniqueScope::Period(period));
        }
        options
    }
}

/// `limit` options.
#[derive(Debug, Args)]
pub(crate) struct LimitArgs {
    /// The queue.
    #[arg(value_parser = parse_name)]
    queue: String,
    /// At most this many of its tasks running at once, across every worker.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX)))]
    concurrency: Option<u32>,
    /// At most N starts per period across every worker, as `N/PERIOD`: `100/1m`, `5/1s`.
    #[arg(long, value_name = "N/PERIOD", value_parser = parse_rate)]
    rate: Option<RateLimit>,
}

impl LimitArgs {
    fn limits(&self) -> QueueLimits {
        let mut limits = QueueLimits::new();
        if let Some(n) = self.concurrency {
            limits = limits.concurrency(n);
        }
        if let Some(rate) = self.rate {
            limits = limits.rate(rate);
        }
        limits
    }
}

fn parse_rate(s: &str) -> std::result::Result<RateLimit, String> {
    let (starts, period) = s
        .split_once('/')
        .ok_or_else(|| format!("expected N/PERIOD (e.g. 100/1m), got `{s}`"))?;
    let starts: u32 = starts
        .trim()
        .parse()
        .map_err(|_| format!("`{starts}` is not a number of starts"))?;
    if starts == 0 {
        return Err("a rate must allow at least one start".to_owned());
    }
    let period = tasklib::parse_duration("--rate", period.trim()).map_err(|e| e.to_string())?;
    if period < Duration::from_secs(1) {
        return Err("a rate's period must be at least 1s".to_owned());
    }
    Ok(RateLimit::new(starts, period))
}

/// `concurrency 5, 100 per 60s`.
fn limits_text(limits: &QueueLimits) -> String {
    let mut parts = Vec::new();
    if let Some(n) = limits.concurrency {
        parts.push(format!("concurrency {n}"));
    }
    if let Some(rate) = limits.rate {
        parts.push(format!("{} per {:?}", rate.starts, rate.period));
    }
    parts.join(", ")
}

/// `result` options.
#[derive(Debug, Args)]
pub(crate) struct ResultArgs {
    /// The task's (or chain's) id.
    id: String,
    /// Wait up to this long for it to finish, e.g. `30s`.
    #[arg(long, value_parser = parse_wait, value_name = "DURATION")]
    wait: Option<Duration>,
    /// Print one JSON object (`id`, `status`, `value`, `error`) instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_name(s: &str) -> std::result::Result<String, String> {
    if s.trim().is_empty() {
        return Err("the task name must not be empty".to_owned());
    }
    Ok(s.to_owned())
}

fn parse_json_args(s: &str) -> std::result::Result<Value, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => Ok(value),
        Ok(other) => Err(format!("expected a JSON object or array, got {other}")),
        Err(error) => Err(format!("not JSON ({error})")),
    }
}

fn parse_delay(s: &str) -> std::result::Result<Duration, String> {
    tasklib::parse_duration("--delay", s).map_err(|e| e.to_string())
}

fn parse_period(s: &str) -> std::result::Result<Duration, String> {
    tasklib::parse_duration("--unique-period", s).map_err(|e| e.to_string())
}

fn parse_wait(s: &str) -> std::result::Result<Duration, String> {
    tasklib::parse_duration("--wait", s).map_err(|e| e.to_string())
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

/// Connects to the engine the flags and the environment choose, without migrating (`migrate`
/// does that itself).
async fn connect(engine: &EngineArgs) -> Result<TaskLib> {
    if engine.lacks_database_url() {
        return Err(CliError::Input(
            "no database: pass --database-url or set DATABASE_URL".to_owned(),
        ));
    }
    let config = engine
        .config_builder()?
        .run_migrations(false)
        .max_connections(2)
        .build()?;
    Ok(TaskLib::connect_with(config).await?)
}

impl Command {
    /// The command's name when it needs more than every engine has (PostgreSQL's listing and
    /// admin operations, cancelling); `None` for `submit` and `result`, whose failures are
    /// about their options.
    fn engine_specific(&self) -> Option<&'static str> {
        match self {
            Command::Migrate => Some("migrate"),
            Command::Status { .. } => Some("status"),
            Command::List(_) => Some("list"),
            Command::Show { .. } => Some("show"),
            Command::Retry(_) => Some("retry"),
            Command::Cancel { .. } => Some("cancel"),
            Command::Delete { .. } => Some("delete"),
            Command::Pause { .. } => Some("pause"),
            Command::Resume { .. } => Some("resume"),
            Command::Limit(_) => Some("limit"),
            Command::Prune(_) => Some("prune"),
            Command::Schedules { .. } => Some("schedules"),
            Command::Workers { .. } => Some("workers"),
            Command::Dashboard(_) => Some("dashboard"),
            Command::Submit(_) | Command::Result(_) => None,
        }
    }
}

pub(crate) async fn run(engine: &EngineArgs, command: Command) -> Result<()> {
    let name = command.engine_specific();
    execute(engine, command)
        .await
        .map_err(|error| error.for_command(name))
}

async fn execute(engine: &EngineArgs, command: Command) -> Result<()> {
    match command {
        Command::Migrate => {
            let tasks = connect(engine).await?;
            let pending = tasks.migrate().await?;
            if pending.is_empty() {
                println!("no migrations pending: the schema is up to date");
            } else {
                println!(
                    "applied {} migration(s): {}",
                    pending.len(),
                    pending.join(", ")
                );
            }
        }
        Command::Workers { json } => workers(&connect(engine).await?, json).await?,
        Command::Dashboard(args) => dashboard(engine, args).await?,
        Command::Submit(args) => {
            let tasks = connect(engine).await?;
            let json_args = args.args.clone().unwrap_or_else(|| json!({}));
            let submitted = tasks
                .submit_by_name_unique(&args.name, json_args, args.options())
                .await?;
            println!("{}", submitted.id);
            if submitted.duplicate {
                eprintln!(
                    "duplicate: task {} holds this unique key; nothing was submitted",
                    submitted.id
                );
            }
        }
        Command::Result(args) => {
            let id = parse_id(&args.id)?;
            result(&connect(engine).await?, id, args.wait, args.json).await?;
        }
        Command::Status { json } => status(&connect(engine).await?, json).await?,
        Command::List(args) => list(&connect(engine).await?, args).await?,
        Command::Show { id, json } => {
            let id = parse_id(&id)?;
            let tasks = connect(engine).await?;
            let task = tasks
                .get_task(id)
                .await?
                .ok_or(CliError::Tasklib(tasklib::Error::NotFound { id }))?;
            show(&task, json);
        }
        Command::Retry(args) => {
            if args.failed {
                let tasks = connect(engine).await?;
                let n = tasks
                    .retry_failed(args.name.as_deref(), args.queue.as_deref())
                    .await?;
                println!("re-queued {n} task{}", if n == 1 { "" } else { "s" });
            } else if args.force {
                let id = parse_id(args.id.as_deref().unwrap_or_default())?;
                connect(engine).await?.rerun(id).await?;
                println!("re-queued {id} to run again");
            } else {
                let id = parse_id(args.id.as_deref().unwrap_or_default())?;
                connect(engine).await?.retry(id).await?;
                println!("re-queued {id}");
            }
        }
        Command::Cancel { id } => {
            let id = parse_id(&id)?;
            match connect(engine).await?.cancel(id).await? {
                CancelOutcome::Cancelled => println!("cancelled {id}"),
                CancelOutcome::Requested => println!("{id} is running: cancellation requested"),
                _ => println!("{id}: cancel recorded"),
            }
        }
        Command::Pause { queue } => {
            connect(engine).await?.pause_queue(&queue).await?;
            println!("paused queue {queue}: it takes submits and runs nothing until resumed");
        }
        Command::Resume { queue } => {
            connect(engine).await?.resume_queue(&queue).await?;
            println!("resumed queue {queue}");
        }
        Command::Limit(args) => {
            let limits = args.limits();
            connect(engine)
                .await?
                .set_queue_limits(&args.queue, limits)
                .await?;
            if limits.is_empty() {
                println!("queue {}: no limits", args.queue);
            } else {
                println!("queue {}: {}", args.queue, limits_text(&limits));
            }
        }
        Command::Delete { id } => {
            let id = parse_id(&id)?;
            let n = connect(engine).await?.delete(id).await?;
            println!("deleted {id} ({n} row{})", if n == 1 { "" } else { "s" });
        }
        Command::Schedules { json } => schedules(&connect(engine).await?, json).await?,
        Command::Prune(args) => {
            let n = connect(engine)
                .await?
                .prune(&args.state, args.older_than)
                .await?;
            println!("deleted {n} task{}", if n == 1 { "" } else { "s" });
        }
    }
    Ok(())
}

/// Prints a result, then fails unless it completed: on stdout where the task stands, on stderr
/// why that is not success.
async fn result(tasks: &TaskLib, id: Uuid, wait: Option<Duration>, json: bool) -> Result<()> {
    let outcome = match wait {
        None => tasks.get_result(id).await?,
        Some(timeout) => match tasks.wait_result(id, timeout).await {
            Ok(outcome) => outcome,
            Err(error) if error.is_timeout() => {
                show_result(&tasks.get_result(id).await?, json)?;
                return Err(error.into());
            }
            Err(error) => return Err(error.into()),
        },
    };
    show_result(&outcome, json)?;
    match not_completed(&outcome) {
        None => Ok(()),
        Some(why) => Err(CliError::Outcome(why)),
    }
}

/// Why a result is not a success, on one line; `None` when it completed.
fn not_completed(outcome: &TaskResult) -> Option<String> {
    let id = outcome.id;
    let error = outcome.error.as_deref().map(|e| e.replace('\n', " "));
    match (outcome.status, error) {
        (TaskStatus::Completed, _) => None,
        (TaskStatus::Failed, Some(error)) => Some(format!("task {id} failed: {error}")),
        (TaskStatus::Cancelled, Some(error)) => Some(format!("task {id} was cancelled ({error})")),
        (status, _) if status.is_terminal() => Some(format!("task {id} is {status}")),
        (status, Some(error)) => Some(format!(
            "task {id} has not finished: it is {status} (its last attempt failed: {error})"
        )),
        (status, None) => Some(format!("task {id} has not finished: it is {status}")),
    }
}

fn show_result(outcome: &TaskResult, json: bool) -> Result<()> {
    if json {
        let text = serde_json::to_string(outcome).map_err(|e| CliError::Input(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    let value = outcome
        .value
        .as_ref()
        .map_or_else(|| "-".to_owned(), Value::to_string);
    println!("{:<8}{}", "id", outcome.id);
    println!("{:<8}{}", "status", outcome.status);
    println!("{:<8}{value}", "value");
    match &outcome.error {
        Some(error) if error.contains('\n') => println!("error:\n{error}"),
        Some(error) => println!("{:<8}{error}", "error"),
        None => println!("{:<8}-", "error"),
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
                    "paused": q.paused,
                    "limits": q.limits,
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
                if q.paused { "paused" } else { "running" }.to_owned(),
                if q.limits.is_empty() {
                    "-".to_owned()
                } else {
                    limits_text(&q.limits)
                },
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
            "STATE",
            "LIMITS",
        ],
        &rows,
    );
    Ok(())
}

async fn schedules(tasks: &TaskLib, json: bool) -> Result<()> {
    let schedules = tasks.list_schedules().await?;
    let time = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
    };
    if json {
        let list: Vec<Value> = schedules
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "task": s.task,
                    "cron": s.cron,
                    "time_zone": s.time_zone,
                    "missed": s.missed.as_str(),
                    "last_tick": s.last_tick.map(|t| time(Some(t))),
                    "last_task_id": s.last_task_id,
                    "next_run": s.next_run.map(|t| time(Some(t))),
                    "updated_at": time(Some(s.updated_at)),
                })
            })
            .collect();
        println!("{}", json!({ "schedules": list }));
        return Ok(());
    }
    if schedules.is_empty() {
        println!("no schedules: a worker pool writes its schedules here when it starts");
        return Ok(());
    }
    let now = Utc::now();
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.task.clone(),
                s.cron.clone(),
                s.time_zone.clone(),
                s.missed.as_str().to_owned(),
                time(s.last_tick),
                time(s.next_run),
                (now - s.updated_at)
                    .to_std()
                    .map_or_else(|_| "now".to_owned(), |d| format!("{} ago", age(d))),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "TASK",
            "CRON",
            "ZONE",
            "MISSED",
            "LAST TICK",
            "NEXT RUN",
            "UPDATED",
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
            let error = shorten(t.error.as_deref().unwrap_or(""), 60);
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
        (
            "unique_key",
            match (&t.unique_key, t.unique_window) {
                (Some(key), Some(window)) => format!("{key} (window from {})", window.to_rfc3339()),
                (Some(key), None) => format!("{key} (while unfinished)"),
                (None, _) => "-".into(),
            },
        ),
        (
            "trace",
            t.trace_context.clone().unwrap_or_else(|| "-".into()),
        ),
        ("args", t.args.to_string()),
        (
            "result",
            t.result
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "progress",
            t.progress
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
    if !t.errors.is_empty() {
        println!("failed attempts (oldest first):");
        for failed in &t.errors {
            println!(
                "  attempt {} at {} on {}: {}",
                failed.attempt,
                failed.at.to_rfc3339(),
                failed.worker.as_deref().unwrap_or("-"),
                failed.error
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasklib::{BackendType, Capability};

    #[test]
    fn an_engine_without_a_command_is_named_with_the_command() {
        let lacking = || {
            CliError::Tasklib(tasklib::Error::Unsupported {
                backend: BackendType::Celery,
                capability: Capability::List,
            })
        };
        let message = lacking().for_command(Some("status")).to_string();
        assert_eq!(
            message,
            "`tasklib status` is not available on the `celery` backend: it has no list \
             (docs/backends.md lists what each backend supports)"
        );
        // An option `submit` asked for stays the library's message, which names the option.
        let message = lacking().for_command(None).to_string();
        assert!(message.contains("does not support list"), "{message}");
    }

    #[test]
    fn json_arguments_are_an_object_or_an_array() {
        assert_eq!(parse_json_args("[15, 25]"), Ok(json!([15, 25])));
        assert_eq!(parse_json_args(r#"{"a": 1}"#), Ok(json!({"a": 1})));
        assert!(parse_json_args("42").is_err_and(|e| e.contains("object or array")));
        assert!(parse_json_args("[15").is_err_and(|e| e.contains("not JSON")));
    }
}

/// `text` on one line, cut to at most `max` characters with an ellipsis when it is longer
/// (`show ID` prints it whole).
fn shorten(text: &str, max: usize) -> String {
    let line = text.replace('\n', " ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod shorten_tests {
    use super::shorten;

    #[test]
    fn long_errors_end_with_an_ellipsis() {
        assert_eq!(shorten("short", 60), "short");
        let long = "x".repeat(100);
        let cut = shorten(&long, 60);
        assert_eq!(cut.chars().count(), 60);
        assert!(cut.ends_with('…'));
        assert_eq!(shorten("a\nb", 60), "a b");
    }
}

/// `dashboard` options.
#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// Where to listen. Beyond loopback it needs TASKLIB_DASHBOARD_USER and
    /// TASKLIB_DASHBOARD_PASSWORD (HTTP Basic authentication).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Show pages only: no retry, cancel, delete, pause or resume.
    #[arg(long)]
    read_only: bool,
}

async fn dashboard(engine: &EngineArgs, args: DashboardArgs) -> Result<()> {
    let options = tasklib_web::ServeOptions::from_env()?.read_only(args.read_only);
    let tasks = connect(engine).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| CliError::Input(format!("cannot listen on {}: {error}", args.listen)))?;
    let addr = listener.local_addr().map_or(args.listen, |a| a);
    // The line a script (or a test) waits for.
    println!("dashboard on http://{addr}/");
    tasklib_web::serve(tasks, listener, options, tasklib::shutdown_signal()).await?;
    Ok(())
}

async fn workers(tasks: &TaskLib, json: bool) -> Result<()> {
    let workers = tasks.workers().await?;
    if json {
        println!("{}", json!({ "workers": workers }));
        return Ok(());
    }
    if workers.is_empty() {
        println!("no worker pool is running");
        return Ok(());
    }
    let now = chrono::Utc::now();
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let queues: Vec<String> = w
                .queues
                .iter()
                .map(|g| format!("{} ({})", g.queues.join("+"), g.slots))
                .collect();
            vec![
                w.worker_id.clone(),
                w.host.clone(),
                w.pid.to_string(),
                queues.join(", "),
                format!("{}/{}", w.running, w.slots),
                age((now - w.heartbeat_at).to_std().unwrap_or_default()),
            ]
        })
        .collect();
    crate::output::table(
        &[
            "WORKER",
            "HOST",
            "PID",
            "QUEUES (SLOTS)",
            "RUNNING",
            "HEARTBEAT AGO",
        ],
        &rows,
    );
    Ok(())
}
