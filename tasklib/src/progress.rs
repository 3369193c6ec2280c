//! Where a handler's progress reports go: the engine's store, or the test context's memory.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::backend::{BackendType, Capability};
use crate::engine::postgres::db::Db;
use crate::engine::postgres::worker::store::AttemptRef;
use crate::{Error, Result};

/// The destination of [`TaskContext::set_progress`](crate::TaskContext::set_progress).
#[derive(Debug, Clone)]
pub(crate) enum Progress {
    /// The task's row, fenced by this attempt.
    Postgres { db: Db, attempt: AttemptRef },
    /// An engine that keeps no progress: reports are refused, never dropped.
    #[cfg_attr(not(feature = "celery"), allow(dead_code))]
    Unsupported(BackendType),
    /// [`TaskContext::for_test`](crate::TaskContext::for_test): the last report, in memory.
    Local(Arc<Mutex<Option<Value>>>),
}

impl Progress {
    pub(crate) async fn record(&self, value: Value) -> Result<()> {
        match self {
            Progress::Postgres { db, attempt } => {
                let written =
                    crate::engine::postgres::worker::store::set_progress(db, attempt, value)
                        .await?;
                if !written {
                    // The attempt is no longer this worker's (its lock expired and it was
                    // rescued): its outcome will not be written either.
                    tracing::debug!("progress not written: this worker no longer holds the task");
                }
                Ok(())
            }
            Progress::Unsupported(backend) => Err(Error::Unsupported {
                backend: *backend,
                capability: Capability::Progress,
            }),
            Progress::Local(last) => {
                *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
                Ok(())
            }
        }
    }

    /// The last report, for a test context; `None` elsewhere.
    pub(crate) fn last(&self) -> Option<Value> {
        match self {
            Progress::Local(last) => last.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            _ => None,
        }
    }
}
