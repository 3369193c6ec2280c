//! The Temporal engine (cargo feature `temporal`): tasklib's tasks as activities of one
//! generic workflow, on the official Rust SDK and client.
//!
//! - [`plan`]: what the workflow is given and records, the ids of chain steps, the mapping
//!   of options (priority, retries, timeouts).
//! - [`workflow`]: the workflow, which runs one step or a chain's steps in order.
//! - [`activity`]: every registered task as an activity named after it.
//! - [`worker`]: the worker pool (one Temporal worker per queue).
//! - [`calls`]: submit (start the workflow), results (describe it), wait, cancel.
//!
//! `docs/backends.md` has the mapping and the limits.

mod activity;
mod calls;
mod plan;
mod worker;
mod workflow;

use std::time::Duration;

use futures::future::BoxFuture;
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, Url,
};
use temporalio_sdk::Runtime;
use temporalio_sdk::runtime::RuntimeOptions;
use uuid::Uuid;

use super::Engine;
use crate::backend::{BackendType, Capabilities, Capability};
use crate::chain::{ChainIds, NewChain};
use crate::config::Config;
use crate::control::CancelOutcome;
use crate::registry::Registry;
use crate::result::TaskResult;
use crate::submit::NewTask;
use crate::unique::Submitted;
use crate::worker::{RunningPool, WorkerPlan};
use crate::{Error, RedactedUrl, Result};

/// The Temporal engine: a client of the frontend, the SDK's runtime, and the configuration.
pub(crate) struct TemporalEngine {
    client: Client,
    runtime: std::sync::Arc<Runtime>,
    config: Config,
}

impl std::fmt::Debug for TemporalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalEngine")
            .field("host", &self.config.temporal_host())
            .field("namespace", &self.config.temporal_namespace())
            .finish_non_exhaustive()
    }
}

impl TemporalEngine {
    /// Connects to the frontend at [`Config::temporal_host`], over TLS with a client
    /// certificate when one is configured.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a host that does not make a URL or certificate files that
    /// cannot be read; [`Error::Broker`] when the frontend cannot be reached.
    pub(crate) async fn connect(config: &Config) -> Result<TemporalEngine> {
        let host = config.temporal_host().trim();
        let tls = config.temporal_tls();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let address = if host.contains("://") {
            host.to_owned()
        } else {
            format!("{scheme}://{host}")
        };
        let url = Url::parse(&address).map_err(|e| Error::InvalidConfig {
            field: "temporal_host",
            reason: format!("`{host}` is not host:port ({e})"),
        })?;
        let tls_options = match tls {
            Some((cert, key)) => {
                let read = |path: &std::path::Path, field: &'static str| {
                    std::fs::read(path).map_err(|e| Error::InvalidConfig {
                        field,
                        reason: format!("cannot read {}: {e}", path.display()),
                    })
                };
                Some(
                    TlsOptions::builder()
                        .client_tls_options(
                            ClientTlsOptions::builder()
                                .client_cert(read(cert, "temporal_tls_cert_path")?)
                                .client_private_key(read(key, "temporal_tls_key_path")?)
                                .build(),
                        )
                        .build(),
                )
            }
            None => None,
        };
        let options = ConnectionOptions::new(url)
            .identity(config.worker_id().to_owned())
            .maybe_tls_options(tls_options)
            .connect_timeout(config.connect_timeout())
            .build();
        let unreachable = |source: Box<dyn std::error::Error + Send + Sync>| Error::Broker {
            backend: BackendType::Temporal,
            role: "frontend",
            url: RedactedUrl::new(host),
            source,
        };
        let connection =
            tokio::time::timeout(config.connect_timeout(), Connection::connect(options))
                .await
                .map_err(|e| unreachable(Box::new(e)))?
                .map_err(|e| unreachable(Box::new(e)))?;
        let client = Client::new(
            connection,
            ClientOptions::new(config.temporal_namespace().to_owned()).build(),
        )
        .map_err(|e| unreachable(Box::new(e)))?;
        let runtime =
            Runtime::from_current_tokio(RuntimeOptions::builder().build().map_err(|e| {
                Error::InvalidConfig {
                    field: "temporal",
                    reason: format!("the Temporal SDK's runtime: {e}"),
                }
            })?)
            .map_err(|e| Error::InvalidConfig {
                field: "temporal",
                reason: format!("the Temporal SDK needs a tokio runtime: {e}"),
            })?;
        let engine = TemporalEngine {
            client,
            runtime: std::sync::Arc::new(runtime),
            config: config.clone(),
        };
        engine.check_namespace().await?;
        Ok(engine)
    }
}

impl Engine for TemporalEngine {
    fn backend(&self) -> BackendType {
        BackendType::Temporal
    }

    /// Delays (`start_delay`), priorities (the priority key), retries and time limits (the
    /// activity's retry policy and start-to-close timeout), queues (task queues), chains
    /// (one workflow) and cancel. No tags, listing, admin, progress, unique keys or
    /// schedules: Temporal's own visibility and schedules are not mapped yet
    /// (docs/backends.md).
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::Delay)
            .with(Capability::Priority)
            .with(Capability::Retries)
            .with(Capability::Timeout)
            .with(Capability::Queues)
            .with(Capability::Chains)
            .with(Capability::Cancel)
    }

    fn submit(&self, tasks: Vec<NewTask>) -> BoxFuture<'_, Result<Vec<Submitted>>> {
        Box::pin(self.submit_tasks(tasks))
    }

    fn submit_chain(&self, chain: NewChain) -> BoxFuture<'_, Result<ChainIds>> {
        Box::pin(self.start_chain(chain))
    }

    fn result(&self, id: Uuid) -> BoxFuture<'_, Result<Option<TaskResult>>> {
        Box::pin(self.read_result(id))
    }

    fn wait_result(&self, id: Uuid, timeout: Duration) -> BoxFuture<'_, Result<TaskResult>> {
        Box::pin(self.wait(id, timeout))
    }

    fn cancel(&self, id: Uuid) -> BoxFuture<'_, Result<CancelOutcome>> {
        Box::pin(self.cancel_task(id))
    }

    fn spawn_workers(&self, registry: Registry, plan: WorkerPlan) -> Result<Box<dyn RunningPool>> {
        worker::spawn(&self.client, &self.runtime, &self.config, registry, plan)
    }
}
