//! The PostgreSQL engine: tasklib's own queue. Every SQL statement tasklib runs is in this
//! module tree: writing tasks ([`insert`]), reading them ([`read`]), changing them from
//! outside a worker ([`admin`]), waiting for results ([`wait`]), the migrations
//! ([`migrate`]), the schedules' table ([`schedules`]) and the worker pool ([`worker`]).

pub(crate) mod admin;
pub(crate) mod channels;
mod connect;
pub(crate) mod db;
pub(crate) mod insert;
pub(crate) mod migrate;
pub(crate) mod overview;
pub(crate) mod read;
pub(crate) mod schedules;
pub(crate) mod tls;
pub(crate) mod wait;
pub(crate) mod worker;

use std::time::Duration;

use futures::future::BoxFuture;
use uuid::Uuid;

use super::Engine;
use crate::Result;
use crate::backend::{BackendType, Capabilities};
use crate::chain::{ChainIds, NewChain};
use crate::config::Config;
use crate::control::CancelOutcome;
use crate::registry::Registry;
use crate::result::TaskResult;
use crate::submit::NewTask;
use crate::unique::Submitted;
use crate::worker::{RunningPool, WorkerPlan};

/// The PostgreSQL engine: a connection pool, the configuration, and the result waiters.
#[derive(Debug)]
pub(crate) struct PgEngine {
    db: db::Db,
    config: Config,
    waits: wait::Waits,
    inserts: insert::Inserts,
}

impl PgEngine {
    /// Connects (and migrates, unless the configuration says not to).
    pub(crate) async fn connect(config: &Config) -> Result<PgEngine> {
        let db = connect::connect(config).await?;
        Ok(PgEngine {
            db,
            config: config.clone(),
            waits: wait::Waits::new(
                config.notification_url().cloned(),
                config.poll_interval(),
                channels::Channels::of(config.schema()).done,
            ),
            inserts: insert::Inserts::new(config.schema()),
        })
    }

    /// The connection pool, and how tasklib's statements go through it.
    pub(crate) fn db(&self) -> &db::Db {
        &self.db
    }

    /// The insert statements, naming tasklib's schema.
    pub(crate) fn inserts(&self) -> &insert::Inserts {
        &self.inserts
    }
}

impl Engine for PgEngine {
    fn backend(&self) -> BackendType {
        BackendType::Postgres
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    fn submit(&self, tasks: Vec<NewTask>) -> BoxFuture<'_, Result<Vec<Submitted>>> {
        Box::pin(insert::insert(&self.db, &self.inserts, tasks))
    }

    fn submit_chain(&self, chain: NewChain) -> BoxFuture<'_, Result<ChainIds>> {
        Box::pin(insert::insert_chain(&self.db, &self.inserts, chain))
    }

    fn result(&self, id: Uuid) -> BoxFuture<'_, Result<Option<TaskResult>>> {
        Box::pin(read::result(&self.db, id))
    }

    fn wait_result(&self, id: Uuid, timeout: Duration) -> BoxFuture<'_, Result<TaskResult>> {
        Box::pin(self.waits.wait(&self.db, id, timeout))
    }

    fn cancel(&self, id: Uuid) -> BoxFuture<'_, Result<CancelOutcome>> {
        Box::pin(admin::cancel(&self.db, id))
    }

    fn spawn_workers(&self, registry: Registry, plan: WorkerPlan) -> Result<Box<dyn RunningPool>> {
        worker::spawn(self.db.clone(), &self.config, registry, plan)
    }

    fn postgres(&self) -> Option<&PgEngine> {
        Some(self)
    }
}
