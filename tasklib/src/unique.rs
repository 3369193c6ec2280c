//! Unique tasks: a key that makes a second submit return the first task instead of adding
//! one, for as long as its [`UniqueScope`] says.

use std::time::Duration;

use uuid::Uuid;

use crate::{Error, Result};

/// The longest unique key accepted, in bytes: keys live in a B-tree index, whose entries
/// must stay well under a page.
pub const MAX_UNIQUE_KEY_BYTES: usize = 512;

/// How long a unique key keeps duplicates out. Keys are per task name: the same key under
/// two names makes two tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UniqueScope {
    /// While a task with the key is unfinished: pending (delayed included), running, or
    /// failed and waiting for a retry. Once it completed, failed for good or was cancelled,
    /// the key is free again.
    #[default]
    Unfinished,
    /// One task per key per window of this length, whatever becomes of it. Windows are
    /// aligned on the Unix epoch in UTC (a period of a day runs from midnight UTC), and the
    /// window is the one the database clock is in at submit time, not the task's run time.
    Period(Duration),
}

impl UniqueScope {
    /// The period in seconds, or 0 for [`UniqueScope::Unfinished`] (the engines' encoding).
    pub(crate) fn period_seconds(self) -> f64 {
        match self {
            UniqueScope::Unfinished => 0.0,
            UniqueScope::Period(period) => period.as_secs_f64(),
        }
    }
}

/// What a submit did: the task's id, and whether it was a duplicate of an existing task
/// (same name and unique key, in scope), whose id it then is. Nothing was written for a
/// duplicate, whatever its options asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Submitted {
    /// The new task's id, or the existing task's for a duplicate.
    pub id: Uuid,
    /// True when a task with the same name and unique key already existed in scope.
    pub duplicate: bool,
}

impl Submitted {
    pub(crate) fn new(id: Uuid) -> Submitted {
        Submitted {
            id,
            duplicate: false,
        }
    }

    pub(crate) fn duplicate_of(id: Uuid) -> Submitted {
        Submitted {
            id,
            duplicate: true,
        }
    }
}

/// A checked unique key and its scope, as an engine writes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UniqueKey {
    pub(crate) key: String,
    pub(crate) scope: UniqueScope,
}

impl UniqueKey {
    /// Checks `key` and `scope`: a key must be non-empty, at most
    /// [`MAX_UNIQUE_KEY_BYTES`] and free of NUL; a period must be at least a second.
    pub(crate) fn new(key: String, scope: UniqueScope) -> Result<UniqueKey> {
        let invalid = |reason: String| Error::InvalidOption {
            option: "unique_key",
            reason,
        };
        if key.is_empty() {
            return Err(invalid("must not be empty".to_owned()));
        }
        if key.len() > MAX_UNIQUE_KEY_BYTES {
            return Err(invalid(format!(
                "is {} bytes, more than {MAX_UNIQUE_KEY_BYTES}: hash a long key first",
                key.len()
            )));
        }
        if key.contains('\0') {
            return Err(invalid(
                "must not contain the NUL character (U+0000)".to_owned(),
            ));
        }
        if let UniqueScope::Period(period) = scope
            && period < Duration::from_secs(1)
        {
            return Err(Error::InvalidOption {
                option: "unique_scope",
                reason: format!("a period must be at least one second, got {period:?}"),
            });
        }
        Ok(UniqueKey { key, scope })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        let ok = UniqueKey::new("account-42".into(), UniqueScope::Unfinished);
        assert!(ok.is_ok());
        for (key, scope) in [
            (String::new(), UniqueScope::Unfinished),
            (
                "a".repeat(MAX_UNIQUE_KEY_BYTES + 1),
                UniqueScope::Unfinished,
            ),
            ("a\0b".to_owned(), UniqueScope::Unfinished),
            (
                "k".to_owned(),
                UniqueScope::Period(Duration::from_millis(500)),
            ),
        ] {
            assert!(
                matches!(UniqueKey::new(key, scope), Err(Error::InvalidOption { .. })),
                "{scope:?}"
            );
        }
        assert_eq!(
            UniqueScope::Period(Duration::from_secs(60)).period_seconds(),
            60.0
        );
        assert_eq!(UniqueScope::Unfinished.period_seconds(), 0.0);
    }
}
