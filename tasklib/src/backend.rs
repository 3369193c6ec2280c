//! Which engine runs the tasks, and what each engine can honour.
//!
//! The task API ([`TaskLib`](crate::TaskLib), [`Task`](crate::Task), handlers, results and
//! chains) is the same on every engine; the engine is chosen by configuration
//! ([`ConfigBuilder::backend`](crate::ConfigBuilder::backend), or `TASK_BACKEND_TYPE`).
//! `docs/backends.md` compares them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::{Error, Result};

/// An engine that can run tasklib's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackendType {
    /// tasklib's own queue on PostgreSQL: the default, always compiled in.
    #[default]
    Postgres,
    /// Celery's message protocol over Redis (cargo feature `celery`).
    Celery,
    /// Temporal activities and workflows (cargo feature `temporal`).
    Temporal,
    /// Hatchet: not supported yet (`docs/backends.md` says why).
    Hatchet,
}

impl BackendType {
    /// Every backend name, as `TASK_BACKEND_TYPE` spells it.
    pub const NAMES: [&'static str; 4] = ["postgres", "celery", "temporal", "hatchet"];

    /// The name `TASK_BACKEND_TYPE` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::Postgres => "postgres",
            BackendType::Celery => "celery",
            BackendType::Temporal => "temporal",
            BackendType::Hatchet => "hatchet",
        }
    }

    /// The cargo feature of `tasklib` that compiles this engine in; `None` for PostgreSQL
    /// (always there) and Hatchet (no implementation yet).
    pub fn cargo_feature(self) -> Option<&'static str> {
        match self {
            BackendType::Celery => Some("celery"),
            BackendType::Temporal => Some("temporal"),
            BackendType::Postgres | BackendType::Hatchet => None,
        }
    }

    /// Checks that this build can run the engine.
    ///
    /// # Errors
    /// [`Error::BackendNotCompiled`] for an engine whose cargo feature is off,
    /// [`Error::BackendUnsupported`] for Hatchet.
    pub fn ensure_available(self) -> Result<()> {
        match self {
            BackendType::Postgres => Ok(()),
            BackendType::Celery if cfg!(feature = "celery") => Ok(()),
            BackendType::Temporal if cfg!(feature = "temporal") => Ok(()),
            BackendType::Hatchet => Err(Error::BackendUnsupported {
                backend: self,
                reason: "not supported yet: its engine ships only as Docker images or a \
                         downloaded binary, and it has no Rust SDK of its own; see \
                         docs/backends.md"
                    .to_owned(),
            }),
            BackendType::Celery | BackendType::Temporal => Err(Error::BackendNotCompiled {
                backend: self,
                feature: self.cargo_feature().unwrap_or_default(),
            }),
        }
    }
}

impl fmt::Display for BackendType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(BackendType::Postgres),
            "celery" => Ok(BackendType::Celery),
            "temporal" => Ok(BackendType::Temporal),
            "hatchet" => Ok(BackendType::Hatchet),
            _ => Err(Error::InvalidConfig {
                field: "TASK_BACKEND_TYPE",
                reason: format!(
                    "unknown backend `{s}`: expected one of {}",
                    BackendType::NAMES.join(", ")
                ),
            }),
        }
    }
}

/// The engine in use and its settings, every secret redacted (passwords in URLs become
/// `***`): what [`TaskLib::backend_config`](crate::TaskLib::backend_config) returns, safe to
/// log or show.
///
/// ```
/// use tasklib::Config;
///
/// let config = Config::builder("postgres://app:secret@db/app").build()?;
/// let shown = config.backend_config().to_string();
/// assert_eq!(shown, "postgres (database_url=postgres://app:***@db/app)");
/// # Ok::<(), tasklib::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackendConfig {
    /// The engine.
    pub backend: BackendType,
    /// Its settings by name, in a stable order, secrets redacted.
    pub settings: Vec<(&'static str, String)>,
}

impl BackendConfig {
    pub(crate) fn new(backend: BackendType, settings: Vec<(&'static str, String)>) -> Self {
        BackendConfig { backend, settings }
    }

    /// The value of one setting.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.backend)?;
        if !self.settings.is_empty() {
            let settings: Vec<String> = self
                .settings
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            write!(f, " ({})", settings.join(", "))?;
        }
        Ok(())
    }
}

/// One thing an engine may or may not honour. An option that needs a capability the chosen
/// engine lacks is refused at submit ([`Error::Unsupported`]), never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Capability {
    /// Run no earlier than a delay or a time ([`SubmitOptions::delay`](crate::SubmitOptions::delay)).
    Delay,
    /// Priorities between tasks of a queue.
    Priority,
    /// Retries set per submit ([`SubmitOptions::max_retries`](crate::SubmitOptions::max_retries)).
    Retries,
    /// A time limit per submit ([`SubmitOptions::timeout`](crate::SubmitOptions::timeout)).
    Timeout,
    /// Tags stored with a task and filterable.
    Tags,
    /// Named queues with their own workers.
    Queues,
    /// Submitting inside the application's database transaction.
    TransactionalSubmit,
    /// Cancelling a task.
    Cancel,
    /// Listing, filtering and counting tasks, and reading a task's whole record.
    List,
    /// Re-queueing failed tasks and pruning old ones.
    Admin,
    /// Linear chains ([`Chain`](crate::Chain)).
    Chains,
    /// Progress reported by a running handler
    /// ([`TaskContext::set_progress`](crate::TaskContext::set_progress)).
    Progress,
    /// Unique tasks: a duplicate submit returns the existing task
    /// ([`SubmitOptions::unique_key`](crate::SubmitOptions::unique_key)).
    Unique,
    /// Recurring tasks on a cron expression ([`Schedule`](crate::Schedule)).
    Schedules,
}

impl Capability {
    /// Every capability, in a stable order.
    pub const ALL: [Capability; 14] = [
        Capability::Delay,
        Capability::Priority,
        Capability::Retries,
        Capability::Timeout,
        Capability::Tags,
        Capability::Queues,
        Capability::TransactionalSubmit,
        Capability::Cancel,
        Capability::List,
        Capability::Admin,
        Capability::Chains,
        Capability::Progress,
        Capability::Unique,
        Capability::Schedules,
    ];

    /// A short lowercase name (`transactional_submit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Delay => "delay",
            Capability::Priority => "priority",
            Capability::Retries => "retries",
            Capability::Timeout => "timeout",
            Capability::Tags => "tags",
            Capability::Queues => "queues",
            Capability::TransactionalSubmit => "transactional_submit",
            Capability::Cancel => "cancel",
            Capability::List => "list",
            Capability::Admin => "admin",
            Capability::Chains => "chains",
            Capability::Progress => "progress",
            Capability::Unique => "unique",
            Capability::Schedules => "schedules",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an engine honours: a set of [`Capability`].
///
/// ```
/// use tasklib::{Capabilities, Capability};
///
/// let some = Capabilities::none().with(Capability::Delay);
/// assert!(some.supports(Capability::Delay));
/// assert!(!some.supports(Capability::Chains));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    bits: u16,
}

impl Capabilities {
    /// Nothing at all.
    pub const fn none() -> Capabilities {
        Capabilities { bits: 0 }
    }

    /// Everything.
    pub fn all() -> Capabilities {
        Capability::ALL
            .into_iter()
            .fold(Capabilities::none(), Capabilities::with)
    }

    /// This set and `capability`.
    pub const fn with(self, capability: Capability) -> Capabilities {
        Capabilities {
            bits: self.bits | (1 << capability as u16),
        }
    }

    /// True when `capability` is honoured.
    pub const fn supports(self, capability: Capability) -> bool {
        self.bits & (1 << capability as u16) != 0
    }

    /// The capabilities in the set, in [`Capability::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.supports(*c))
    }

    /// `Ok` when `capability` is honoured.
    ///
    /// # Errors
    /// [`Error::Unsupported`] naming the backend and the capability.
    pub(crate) fn require(self, backend: BackendType, capability: Capability) -> Result<()> {
        if self.supports(capability) {
            Ok(())
        } else {
            Err(Error::Unsupported {
                backend,
                capability,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() -> Result<()> {
        for name in BackendType::NAMES {
            assert_eq!(name.parse::<BackendType>()?.as_str(), name);
        }
        assert!("rabbit".parse::<BackendType>().is_err());
        Ok(())
    }

    #[test]
    fn capability_sets() {
        let some = Capabilities::none().with(Capability::Delay);
        assert!(some.supports(Capability::Delay));
        assert!(!some.supports(Capability::Chains));
        assert_eq!(Capabilities::all().iter().count(), Capability::ALL.len());
        assert!(matches!(
            some.require(BackendType::Celery, Capability::Tags),
            Err(Error::Unsupported {
                capability: Capability::Tags,
                ..
            })
        ));
    }

    #[test]
    fn engines_not_compiled_in_name_their_feature() {
        let error = BackendType::Celery
            .ensure_available()
            .err()
            .map(|e| e.to_string());
        if cfg!(feature = "celery") {
            assert_eq!(error, None);
        } else {
            assert!(error.is_some_and(|e| e.contains("--features celery")));
        }
        let error = BackendType::Hatchet
            .ensure_available()
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("docs/backends.md")));
    }
}
