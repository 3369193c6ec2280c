//! Submitting tasks: per-call options, and the checks that run before anything is written
//! (whatever the engine; the engine then writes the checked rows).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::backend::{BackendType, Capabilities, Capability};
use crate::config::Config;
use crate::task::Task;
use crate::unique::{UniqueKey, UniqueScope};
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
    unique_key: Option<String>,
    unique_scope: Option<UniqueScope>,
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

    /// Makes the task unique by `key` among tasks of its name, for the
    /// [scope](Self::unique_scope) (by default while one is unfinished): a submit that finds
    /// such a task writes nothing and returns that task's id
    /// ([`TaskLib::submit_unique`](crate::TaskLib::submit_unique) also says it was a
    /// duplicate). Enforced by a unique index, so concurrent submitters make one task.
    /// Replaces the type's [`Task::unique_key`](crate::Task::unique_key). At most
    /// [`MAX_UNIQUE_KEY_BYTES`](crate::MAX_UNIQUE_KEY_BYTES) bytes; PostgreSQL only.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tasklib::{SubmitOptions, UniqueScope};
    ///
    /// // At most one digest per user and hour, whatever becomes of it.
    /// let options = SubmitOptions::new()
    ///     .unique_key("digest:user-42")
    ///     .unique_scope(UniqueScope::Period(Duration::from_secs(3600)));
    /// ```
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// How long the unique key keeps duplicates out. Defaults to
    /// [`Task::UNIQUE_SCOPE`](crate::Task::UNIQUE_SCOPE), which defaults to
    /// [`UniqueScope::Unfinished`]. Has no effect without a key.
    pub fn unique_scope(mut self, scope: UniqueScope) -> Self {
        self.unique_scope = Some(scope);
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
    pub(crate) unique_scope: UniqueScope,
}

/// [`TypeDefaults`] that own their queue name: a chain step's, kept until submit.
#[derive(Debug, Clone)]
pub(crate) struct OwnedDefaults {
    pub(crate) queue: String,
    pub(crate) max_retries: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) priority: i32,
    pub(crate) unique_scope: UniqueScope,
}

impl OwnedDefaults {
    pub(crate) fn of<T: Task>() -> OwnedDefaults {
        OwnedDefaults {
            queue: T::QUEUE.to_owned(),
            max_retries: T::MAX_RETRIES,
            timeout: T::TIMEOUT,
            priority: T::PRIORITY,
            unique_scope: T::UNIQUE_SCOPE,
        }
    }

    pub(crate) fn of_info(info: &crate::TaskInfo) -> OwnedDefaults {
        OwnedDefaults {
            queue: info.queue.clone(),
            max_retries: info.max_retries,
            timeout: info.timeout,
            priority: info.priority,
            unique_scope: info.unique_scope,
        }
    }

    pub(crate) fn borrowed(&self) -> TypeDefaults<'_> {
        TypeDefaults {
            queue: &self.queue,
            max_retries: self.max_retries,
            timeout: self.timeout,
            priority: self.priority,
            unique_scope: self.unique_scope,
        }
    }
}

impl<'a> TypeDefaults<'a> {
    pub(crate) fn of<T: Task>() -> TypeDefaults<'static> {
        TypeDefaults {
            queue: T::QUEUE,
            max_retries: T::MAX_RETRIES,
            timeout: T::TIMEOUT,
            priority: T::PRIORITY,
            unique_scope: T::UNIQUE_SCOPE,
        }
    }

    /// For a task type nobody registered here: the library's defaults only.
    pub(crate) fn untyped() -> TypeDefaults<'static> {
        TypeDefaults {
            queue: crate::DEFAULT_QUEUE,
            max_retries: None,
            timeout: None,
            priority: 0,
            unique_scope: UniqueScope::Unfinished,
        }
    }

    pub(crate) fn of_info(info: &'a crate::TaskInfo) -> TypeDefaults<'a> {
        TypeDefaults {
            queue: &info.queue,
            max_retries: info.max_retries,
            timeout: info.timeout,
            priority: info.priority,
            unique_scope: info.unique_scope,
        }
    }
}

/// A checked row, ready for an engine to write.
#[derive(Debug, Clone)]
pub(crate) struct NewTask {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) queue: String,
    pub(crate) args: Value,
    pub(crate) priority: i32,
    pub(crate) max_retries: i32,
    pub(crate) timeout_seconds: Option<f64>,
    pub(crate) scheduled_at: Option<DateTime<Utc>>,
    /// Seconds after the engine's clock (the database's `now()`) when `scheduled_at` is unset
    /// (0: due now).
    pub(crate) delay_seconds: f64,
    pub(crate) tags: Value,
    /// The unique key and its scope, when the submit or the type asked for one.
    pub(crate) unique: Option<UniqueKey>,
    /// The W3C `traceparent` of the submitter's span (feature `otel`; see `trace.rs`).
    pub(crate) trace_context: Option<String>,
}

/// What an engine must honour for this submit: refuses, never drops, an option the engine
/// cannot honour. Type defaults count too (a type's priority is as much asked for as a
/// submit's).
pub(crate) fn check_capabilities(
    backend: BackendType,
    capabilities: Capabilities,
    defaults: TypeDefaults<'_>,
    options: &SubmitOptions,
    type_key: Option<&str>,
) -> Result<()> {
    let asked = [
        (
            Capability::Delay,
            options.delay.is_some_and(|d| !d.is_zero()) || options.scheduled_at.is_some(),
        ),
        (
            Capability::Priority,
            options.priority.is_some_and(|p| p != 0) || defaults.priority != 0,
        ),
        (Capability::Retries, options.max_retries.is_some()),
        (Capability::Timeout, options.timeout.is_some()),
        (Capability::Tags, !options.tags.is_empty()),
        (
            Capability::Queues,
            options.queue.is_some() || defaults.queue != crate::DEFAULT_QUEUE,
        ),
        (
            Capability::Unique,
            options.unique_key.is_some() || type_key.is_some(),
        ),
    ];
    for (capability, wanted) in asked {
        if wanted {
            capabilities.require(backend, capability)?;
        }
    }
    Ok(())
}

impl SubmitOptions {
    /// True when a delay or a time was set (chain steps after the first take none).
    pub(crate) fn is_delayed(&self) -> bool {
        self.delay.is_some() || self.scheduled_at.is_some()
    }
}

/// Checks a task's arguments and options and resolves its defaults. Nothing here touches the
/// database, so a rejected submit writes nothing.
pub(crate) fn prepare(
    config: &Config,
    name: &str,
    args: Value,
    defaults: TypeDefaults<'_>,
    options: &SubmitOptions,
    type_key: Option<String>,
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
    let unique = match options.unique_key.clone().or(type_key) {
        Some(key) => Some(UniqueKey::new(
            key,
            options.unique_scope.unwrap_or(defaults.unique_scope),
        )?),
        None => None,
    };
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
        unique,
        trace_context: crate::trace::current(),
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
    fn options_an_engine_lacks_are_refused() {
        let defaults = TypeDefaults {
            queue: crate::DEFAULT_QUEUE,
            max_retries: None,
            timeout: None,
            priority: 0,
            unique_scope: UniqueScope::Unfinished,
        };
        let none = Capabilities::none();
        let plain = SubmitOptions::new();
        assert!(check_capabilities(BackendType::Celery, none, defaults, &plain, None).is_ok());
        for (options, lacking) in [
            (
                SubmitOptions::new().delay(Duration::from_secs(1)),
                Capability::Delay,
            ),
            (SubmitOptions::new().priority(3), Capability::Priority),
            (SubmitOptions::new().max_retries(1), Capability::Retries),
            (
                SubmitOptions::new().timeout(Duration::from_secs(1)),
                Capability::Timeout,
            ),
            (SubmitOptions::new().tag("k", "v"), Capability::Tags),
            (SubmitOptions::new().queue("other"), Capability::Queues),
            (SubmitOptions::new().unique_key("k"), Capability::Unique),
        ] {
            match check_capabilities(BackendType::Celery, none, defaults, &options, None) {
                Err(Error::Unsupported { capability, .. }) => assert_eq!(capability, lacking),
                other => panic!("{options:?}: {other:?}"),
            }
            let with = none.with(lacking);
            assert!(
                check_capabilities(BackendType::Celery, with, defaults, &options, None).is_ok()
            );
        }
        let typed_priority = TypeDefaults {
            priority: 5,
            ..defaults
        };
        assert!(
            check_capabilities(BackendType::Celery, none, typed_priority, &plain, None).is_err()
        );
        // A type's own unique key is asked for as much as a submit's.
        assert!(
            check_capabilities(BackendType::Celery, none, defaults, &plain, Some("k")).is_err()
        );
    }

    #[test]
    fn serialized_len_matches_to_string() {
        let v = json!({"to": "a@b.c", "n": [1, 2, 3], "s": "é"});
        assert_eq!(serialized_len(&v), v.to_string().len());
    }
}
