//! The engine seam: what an engine does for the engine-neutral API of
//! [`TaskLib`](crate::TaskLib).
//!
//! [`Engine`] is the one trait. PostgreSQL ([`postgres`]) is the first implementation and
//! holds every SQL statement tasklib runs; the Celery and Temporal engines plug in beside it
//! behind cargo features. The trait stays crate-private until a second crate needs it.
//!
//! The split follows River's driver and Oban's engine: the client checks input, resolves
//! defaults and refuses options the engine cannot honour (from
//! [`capabilities`](Engine::capabilities)); the engine stores, reads and runs.

#[cfg(feature = "celery")]
pub(crate) mod celery;
#[cfg(feature = "cli")]
pub(crate) mod detached;
pub(crate) mod postgres;
#[cfg(feature = "temporal")]
pub(crate) mod temporal;

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::Result;
use crate::backend::{BackendType, Capabilities};
use crate::chain::{ChainIds, NewChain};
use crate::control::CancelOutcome;
use crate::registry::Registry;
use crate::result::TaskResult;
use crate::submit::NewTask;
use crate::unique::Submitted;
use crate::worker::{RunningPool, WorkerPlan};

/// What an engine does. Futures are boxed so that the client can hold any engine as
/// `Arc<dyn Engine>`; one allocation per call is nothing beside a network round trip.
pub(crate) trait Engine: Send + Sync + fmt::Debug {
    /// Which engine this is.
    fn backend(&self) -> BackendType;

    /// What it honours; the client refuses the rest before calling it.
    fn capabilities(&self) -> Capabilities;

    /// Writes checked tasks, all or nothing, and returns their ids in order. One task is a
    /// batch of one.
    fn submit(&self, tasks: Vec<NewTask>) -> BoxFuture<'_, Result<Vec<Submitted>>>;

    /// Writes a checked chain; every id is known when this returns.
    fn submit_chain(&self, chain: NewChain) -> BoxFuture<'_, Result<ChainIds>>;

    /// The result of a task or a chain; `None` when the id is unknown.
    fn result(&self, id: Uuid) -> BoxFuture<'_, Result<Option<TaskResult>>>;

    /// Waits until the task or chain is finished, or `timeout` passes.
    fn wait_result(&self, id: Uuid, timeout: Duration) -> BoxFuture<'_, Result<TaskResult>>;

    /// Cancels a task, or a chain from its first unfinished step on.
    fn cancel(&self, id: Uuid) -> BoxFuture<'_, Result<CancelOutcome>>;

    /// Starts workers that run `registry`'s handlers as `plan` says.
    fn spawn_workers(&self, registry: Registry, plan: WorkerPlan) -> Result<Box<dyn RunningPool>>;

    /// The PostgreSQL engine, for the operations only it has (transactional submit, listing,
    /// admin); `None` on the others.
    fn postgres(&self) -> Option<&postgres::PgEngine> {
        None
    }
}
