//! The Celery engine (cargo feature `celery`): tasklib's tasks as Celery messages (protocol
//! v2) on a Redis broker, results in Celery's Redis result backend, so that Rust and Python
//! producers and workers share queues and results.
//!
//! - [`protocol`]: the message envelope, headers, body and priority buckets.
//! - [`meta`]: the stored results and how Celery's states map onto tasklib's.
//! - [`submit`]: submitting tasks and chains (`LPUSH`), a `PENDING` result per id.
//! - [`results`]: reading results (`GET`) and waiting for them (`SUBSCRIBE`, polling behind).
//! - [`worker`]: the worker pool (`BRPOP`, kombu's acks-late emulation, retries, chains).
//!
//! `docs/backends.md` has what this engine supports and its limits.

mod connection;
mod meta;
mod protocol;
mod results;
mod submit;
mod worker;

use std::time::Duration;

use futures::future::BoxFuture;
use uuid::Uuid;

use super::Engine;
use crate::Result;
use crate::backend::{BackendType, Capabilities, Capability};
use crate::chain::{ChainIds, NewChain};
use crate::config::Config;
use crate::control::CancelOutcome;
use crate::registry::Registry;
use crate::result::TaskResult;
use crate::submit::NewTask;
use crate::unique::Submitted;
use crate::worker::{RunningPool, WorkerPlan};
use crate::{Error, RedactedUrl};
use connection::Redis;

/// How long results are kept: Celery's `result_expires` default, one day.
pub(crate) const RESULT_EXPIRES: Duration = Duration::from_secs(24 * 60 * 60);

/// The Celery engine: the broker, the result backend, and the configuration.
#[derive(Debug)]
pub(crate) struct CeleryEngine {
    broker: Redis,
    results: Redis,
    config: Config,
}

impl CeleryEngine {
    /// Connects to the broker and the result backend (the broker's URL when none is set).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] without a broker URL, [`Error::Broker`] when a server
    /// cannot be reached.
    pub(crate) async fn connect(config: &Config) -> Result<CeleryEngine> {
        let broker_url = config
            .celery_broker_url()
            .ok_or_else(|| Error::InvalidConfig {
                field: "celery_broker_url",
                reason: "must be set for the celery backend (TASK_CELERY_BROKER_URL)".to_owned(),
            })?;
        let results_url: &RedactedUrl = config.celery_result_backend().unwrap_or(broker_url);
        let broker = Redis::connect(broker_url, "broker", config.connect_timeout()).await?;
        let results =
            Redis::connect(results_url, "result backend", config.connect_timeout()).await?;
        Ok(CeleryEngine {
            broker,
            results,
            config: config.clone(),
        })
    }

    fn result_expires_secs(&self) -> u64 {
        RESULT_EXPIRES.as_secs()
    }
}

impl Engine for CeleryEngine {
    fn backend(&self) -> BackendType {
        BackendType::Celery
    }

    /// No transactional submit, listing or admin (Celery keeps no queryable task table),
    /// no tags (nothing could filter by them), and no cancel: revoking needs Celery's
    /// broadcast control channel and every worker's revoked set, which this engine does not
    /// implement yet.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::Delay)
            .with(Capability::Priority)
            .with(Capability::Retries)
            .with(Capability::Timeout)
            .with(Capability::Queues)
            .with(Capability::Chains)
    }

    fn submit(&self, tasks: Vec<NewTask>) -> BoxFuture<'_, Result<Vec<Submitted>>> {
        Box::pin(self.submit_tasks(tasks))
    }

    fn submit_chain(&self, chain: NewChain) -> BoxFuture<'_, Result<ChainIds>> {
        Box::pin(CeleryEngine::submit_chain(self, chain))
    }

    fn result(&self, id: Uuid) -> BoxFuture<'_, Result<Option<TaskResult>>> {
        Box::pin(self.read_result(id))
    }

    fn wait_result(&self, id: Uuid, timeout: Duration) -> BoxFuture<'_, Result<TaskResult>> {
        Box::pin(self.wait(id, timeout))
    }

    fn cancel(&self, _id: Uuid) -> BoxFuture<'_, Result<CancelOutcome>> {
        Box::pin(async {
            Err(Error::Unsupported {
                backend: BackendType::Celery,
                capability: Capability::Cancel,
            })
        })
    }

    fn spawn_workers(&self, registry: Registry, plan: WorkerPlan) -> Result<Box<dyn RunningPool>> {
        worker::spawn(
            self.broker.clone(),
            self.results.clone(),
            &self.config,
            self.result_expires_secs(),
            registry,
            plan,
        )
    }
}
