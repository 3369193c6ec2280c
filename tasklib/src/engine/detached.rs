//! An engine that is not connected to anything: a [`TaskLib`](crate::TaskLib) on it only
//! registers task types and schedules, so that a worker command can list them in its
//! `--help` without a database. Every operation is refused with [`Error::BackendUnsupported`].

use std::time::Duration;

use futures::future::BoxFuture;
use uuid::Uuid;

use super::Engine;
use crate::backend::{BackendType, Capabilities, Capability};
use crate::chain::{ChainIds, NewChain};
use crate::control::CancelOutcome;
use crate::registry::Registry;
use crate::result::TaskResult;
use crate::submit::NewTask;
use crate::worker::{RunningPool, WorkerPlan};
use crate::{Error, Result};

#[derive(Debug)]
pub(crate) struct Detached {
    pub(crate) backend: BackendType,
}

impl Detached {
    fn refused(&self) -> Error {
        Error::BackendUnsupported {
            backend: self.backend,
            reason: "not connected: this TaskLib only lists task types".to_owned(),
        }
    }
}

impl Engine for Detached {
    fn backend(&self) -> BackendType {
        self.backend
    }

    /// Registering a schedule only checks it: allowed, so that the worker command's
    /// registration code runs unchanged for `--help`.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with(Capability::Schedules)
    }

    fn submit(&self, _: Vec<NewTask>) -> BoxFuture<'_, Result<Vec<crate::Submitted>>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn submit_chain(&self, _: NewChain) -> BoxFuture<'_, Result<ChainIds>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn result(&self, _: Uuid) -> BoxFuture<'_, Result<Option<TaskResult>>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn wait_result(&self, _: Uuid, _: Duration) -> BoxFuture<'_, Result<TaskResult>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn cancel(&self, _: Uuid) -> BoxFuture<'_, Result<CancelOutcome>> {
        Box::pin(async { Err(self.refused()) })
    }

    fn spawn_workers(&self, _: Registry, _: WorkerPlan) -> Result<Box<dyn RunningPool>> {
        Err(self.refused())
    }
}
