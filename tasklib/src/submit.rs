//! Submitting tasks: per-call options, the checks that run before anything is written, and
//! the one INSERT every submit path goes through.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::Config;
use crate::{Error, Result};

/// Options for one submit; anything left unset comes from the task type, then from
/// [`Config`].
///
/// ```
/// use std::time::Duration;
/// use tasklib::SubmitOptions;
///
/// let options = SubmitOptions::new()
///     .delay(Duration::from_secs(60))
///     .priority(10)
///     .queue("email")
///     .tag("batch", "weekly")
///     .max_retries(5)
///     .timeout(Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    delay: Option<Duration>,
    scheduled_at: Option<DateTime<Utc>>,
    priority: Option<i32>,
    tags: Map<String, Value>,
    tags_error: Option<String>,
    max_retries: Option<u32>,
    timeout: Option<Duration>,
    queue: Option<String>,
}

impl SubmitOptions {
    /// No options: everything from the task type and the configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the task no earlier than `delay` from now (measured by the database clock).
    /// Replaces an earlier [`scheduled_at`](Self::scheduled_at).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self.scheduled_at = None;
        self
    }

    /// Runs the task no earlier than `at`. Replaces an earlier [`delay`](Self::delay).
    pub fn scheduled_at(mut self, at: DateTime<Utc>) -> Self {
        self.scheduled_at = Some(at);
        self.delay = None;
        self
    }

    /// Higher runs first among due tasks of a queue. Defaults to [`Task::PRIORITY`](crate::Task::PRIORITY).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Adds one tag. Tags are a JSON object that [`TaskFilter::tags`](crate::TaskFilter::tags)
    /// matches by containment.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets all tags at once; must be a JSON object (checked at submit).
    pub fn tags(mut self, tags: Value) -> Self {
        match tags {
            Value::Object(map) => {
                self.tags = map;
                self.tags_error = None;
            }
            other => self.tags_error = Some(format!("tags must be a JSON object, got {other}")),
        }
        self
    }

    /// Retries for this task. Defaults to [`Task::MAX_RETRIES`](crate::Task::MAX_RETRIES), then
    /// [`Config::max_retries`].
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Time limit of one attempt. Defaults to [`Task::TIMEOUT`](crate::Task::TIMEOUT), then
    /// [`Config::default_task_timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The queue. Defaults to [`Task::QUEUE`](crate::Task::QUEUE).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
}

/// Per-type defaults that options fall back to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TypeDefaults<'a> {
    pub(crate) queue: &'a str,
    pub(crate) max_retries: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) priority: i32,
}

/// A checked row, ready to insert.
#[derive(Debug)]
pub(crate) struct NewTask {
    id: Uuid,
    name: String,
    queue: String,
    args: Value,
    priority: i32,
    max_retries: i32,
    timeout_seconds: Option<f64>,
    scheduled_at: Option<DateTime<Utc>>,
    /// Seconds after the database's `now()` when `scheduled_at` is unset (0: due now).
    delay_seconds: f64,
    tags: Value,
}

/// Checks a task's arguments and options and resolves its defaults. Nothing here touches the
/// database, so a rejected submit writes nothing.
pub(crate) fn prepare(
    config: &Config,
    name: &str,
    args: Value,
    defaults: TypeDefaults<'_>,
    options: &SubmitOptions,
) -> Result<NewTask> {
    if let Some(reason) = &options.tags_error {
        return Err(Error::InvalidOption {
            option: "tags",
            reason: reason.clone(),
        });
    }
    let queue = options.queue.as_deref().unwrap_or(defaults.queue);
    if queue.trim().is_empty() {
        return Err(Error::InvalidOption {
            option: "queue",
            reason: "must not be empty".to_owned(),
        });
    }
    for (option, text) in [("name", name), ("queue", queue)] {
        if text.contains('\0') {
            return Err(Error::InvalidOption {
                option,
                reason: "must not contain the NUL character (U+0000)".to_owned(),
            });
        }
    }
    let size = serialized_len(&args);
    if size > config.max_args_bytes() {
        return Err(Error::ArgsTooLarge {
            task: name.to_owned(),
            size,
            limit: config.max_args_bytes(),
        });
    }
    if let Some(path) = find_nul(&args, &mut String::new()) {
        return Err(Error::NulCharacter {
            task: name.to_owned(),
            path,
        });
    }
    let tags = Value::Object(options.tags.clone());
    if let Some(path) = find_nul(&tags, &mut String::new()) {
        return Err(Error::InvalidOption {
            option: "tags",
            reason: format!("the NUL character (U+0000) at `{path}` cannot be stored"),
        });
    }
    let max_retries = options
        .max_retries
        .or(defaults.max_retries)
        .unwrap_or(config.max_retries());
    let max_retries = i32::try_from(max_retries).map_err(|_| Error::InvalidOption {
        option: "max_retries",
        reason: format!("{max_retries} is more than {}", i32::MAX),
    })?;
    let timeout = options.timeout.or(defaults.timeout);
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(Error::InvalidOption {
            option: "timeout",
            reason: "must be greater than zero".to_owned(),
        });
    }
    Ok(NewTask {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        queue: queue.to_owned(),
        args,
        priority: options.priority.unwrap_or(defaults.priority),
        max_retries,
        timeout_seconds: timeout.map(|t| t.as_secs_f64()),
        scheduled_at: options.scheduled_at,
        delay_seconds: options.delay.map_or(0.0, |d| d.as_secs_f64()),
        tags,
    })
}

/// The JSON length of a value, without building the string.
fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// Finds the first string or key holding U+0000 (which `jsonb` rejects) and returns its JSON
/// pointer.
fn find_nul(value: &Value, path: &mut String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(pointer_or_root(path)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("/{i}"));
            let found = find_nul(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let len = path.len();
            path.push('/');
            path.push_str(
                &key.replace('~', "~0")
                    .replace('/', "~1")
                    .replace('\0', "\\u0000"),
            );
            let found = if key.contains('\0') {
                Some(pointer_or_root(path))
            } else {
                find_nul(item, path)
            };
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

fn pointer_or_root(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

/// Inserts all rows in one statement: each column is one typed array parameter, zipped back
/// into rows by `unnest`. One statement means a bulk submit is all-or-nothing and, through the
/// statement-level trigger, sends one `NOTIFY` per queue. Delays are added to the database's
/// `now()`, so the worker's clock and the submitter's agree.
///
/// Typed arrays travel in PostgreSQL's binary format and need no parsing on either side, unlike
/// one JSON document of rows (measured: `docs/performance.md`). Array elements cannot be NULL
/// through the driver, so absent values are encoded: a timeout of 0 (never valid) is none, and
/// `$9` says which rows have an explicit `scheduled_at`.
const INSERT_TASKS: &str = r#"
INSERT INTO tasks (id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at, tags)
SELECT r.id, r.name, r.queue, r.args, r.priority, r.max_retries, NULLIF(r.timeout_seconds, 0),
       CASE WHEN r.has_scheduled_at THEN r.scheduled_at
            ELSE now() + make_interval(secs => r.delay_seconds) END,
       r.tags
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int4[], $6::int4[],
            $7::float8[], $8::timestamptz[], $9::bool[], $10::float8[], $11::jsonb[])
     AS r(id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at,
          has_scheduled_at, delay_seconds, tags)
"#;

/// One row, as plain parameters: cheaper to plan than [`INSERT_TASKS`] for a single submit
/// (measured: `docs/performance.md`). Same columns and defaults.
const INSERT_TASK: &str = r#"
INSERT INTO tasks (id, name, queue, args, priority, max_retries, timeout_seconds, scheduled_at, tags)
VALUES ($1, $2, $3, $4, $5, $6, $7,
        COALESCE($8::timestamptz, now() + make_interval(secs => $9::float8)), $10)
"#;

/// The rows of a batch as one array per column, in [`INSERT_TASKS`]'s parameter order. Takes
/// the rows by value so their arguments are moved, not copied, into the statement.
fn columns(rows: Vec<NewTask>) -> Vec<sea_orm::Value> {
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut name = Vec::with_capacity(n);
    let mut queue = Vec::with_capacity(n);
    let mut args = Vec::with_capacity(n);
    let mut priority = Vec::with_capacity(n);
    let mut max_retries = Vec::with_capacity(n);
    let mut timeout = Vec::with_capacity(n);
    let mut scheduled_at = Vec::with_capacity(n);
    let mut has_scheduled_at = Vec::with_capacity(n);
    let mut delay = Vec::with_capacity(n);
    let mut tags = Vec::with_capacity(n);
    for row in rows {
        id.push(row.id);
        name.push(row.name);
        queue.push(row.queue);
        args.push(row.args);
        priority.push(row.priority);
        max_retries.push(row.max_retries);
        timeout.push(row.timeout_seconds.unwrap_or(0.0));
        scheduled_at.push(row.scheduled_at.unwrap_or(DateTime::UNIX_EPOCH));
        has_scheduled_at.push(row.scheduled_at.is_some());
        delay.push(row.delay_seconds);
        tags.push(row.tags);
    }
    vec![
        id.into(),
        name.into(),
        queue.into(),
        args.into(),
        priority.into(),
        max_retries.into(),
        timeout.into(),
        scheduled_at.into(),
        has_scheduled_at.into(),
        delay.into(),
        tags.into(),
    ]
}

/// Writes one checked row through any SeaORM connection (the pool, or the caller's
/// transaction) and returns its id.
pub(crate) async fn insert_one<C: ConnectionTrait>(conn: &C, row: NewTask) -> Result<Uuid> {
    let id = row.id;
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        INSERT_TASK,
        [
            row.id.into(),
            row.name.into(),
            row.queue.into(),
            row.args.into(),
            row.priority.into(),
            row.max_retries.into(),
            row.timeout_seconds.into(),
            row.scheduled_at.into(),
            row.delay_seconds.into(),
            row.tags.into(),
        ],
    );
    conn.execute_raw(statement).await?;
    Ok(id)
}

/// Writes checked rows in one statement (one row goes through [`insert_one`]) and returns
/// their ids, in order.
pub(crate) async fn insert<C: ConnectionTrait>(
    conn: &C,
    mut rows: Vec<NewTask>,
) -> Result<Vec<Uuid>> {
    if rows.len() <= 1 {
        return match rows.pop() {
            Some(row) => Ok(vec![insert_one(conn, row).await?]),
            None => Ok(Vec::new()),
        };
    }
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let statement =
        Statement::from_sql_and_values(DbBackend::Postgres, INSERT_TASKS, columns(rows));
    let result = conn.execute_raw(statement).await?;
    debug_assert_eq!(result.rows_affected(), ids.len() as u64);
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_nul_characters_with_their_path() {
        assert_eq!(
            find_nul(
                &json!({"a": "ok", "b": ["x", "y\u{0}"]}),
                &mut String::new()
            ),
            Some("/b/1".into())
        );
        assert_eq!(
            find_nul(&json!({"k\u{0}": 1}), &mut String::new()),
            Some("/k\\u0000".into())
        );
        assert_eq!(
            find_nul(&json!("\u{0}"), &mut String::new()),
            Some("/".into())
        );
        assert_eq!(find_nul(&json!({"a": {"b": 1}}), &mut String::new()), None);
    }

    #[test]
    fn serialized_len_matches_to_string() {
        let v = json!({"to": "a@b.c", "n": [1, 2, 3], "s": "é"});
        assert_eq!(serialized_len(&v), v.to_string().len());
    }
}
