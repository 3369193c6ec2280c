//! Reading results: `GET celery-task-meta-<id>`, a chain's from its steps' results, and
//! waiting for one: `SUBSCRIBE` to the result channels (Celery `PUBLISH`es every result
//! there), with a slow poll behind it in case a message is missed or the subscription drops.

use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use serde::Deserialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::CeleryEngine;
use super::meta::{Meta, chain_key, meta_key};
use crate::result::{TaskResult, TaskStatus};
use crate::{Error, Result};

/// The record of a chain: its steps' ids in order.
#[derive(Debug, Deserialize)]
struct ChainRecord {
    steps: Vec<String>,
}

/// What an id names.
enum Target {
    Task,
    Chain(Vec<String>),
}

impl CeleryEngine {
    /// The result of a task or chain; `None` when nothing is stored under the id (unknown,
    /// expired, or submitted by a Celery client and not started yet: Celery keeps nothing for
    /// a task before it runs).
    pub(crate) async fn read_result(&self, id: Uuid) -> Result<Option<TaskResult>> {
        Ok(match self.target(id).await? {
            Some((Target::Task, Some(meta))) => Some(meta.to_result(id)),
            Some((Target::Chain(steps), _)) => Some(self.chain_result(id, &steps).await?),
            _ => None,
        })
    }

    /// Finds what `id` names, with a task's stored result.
    async fn target(&self, id: Uuid) -> Result<Option<(Target, Option<Meta>)>> {
        let mut conn = self.results.conn();
        let (meta, chain): (Option<String>, Option<String>) = redis::pipe()
            .get(meta_key(&id.to_string()))
            .get(chain_key(id))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.results.error(e))?;
        if let Some(text) = meta {
            return Ok(Some((Target::Task, Some(parse_meta(id, &text)?))));
        }
        if let Some(text) = chain {
            let record: ChainRecord =
                serde_json::from_str(&text).map_err(|e| Error::CorruptRow {
                    id,
                    column: "tasklib-chain",
                    reason: e.to_string(),
                })?;
            return Ok(Some((Target::Chain(record.steps), None)));
        }
        Ok(None)
    }

    /// A chain's outcome from its steps, by the rule every engine follows: the first step
    /// that failed or was cancelled, else the last step's once all completed, else running
    /// or pending.
    async fn chain_result(&self, id: Uuid, steps: &[String]) -> Result<TaskResult> {
        let keys: Vec<String> = steps.iter().map(|s| meta_key(s)).collect();
        let mut conn = self.results.conn();
        let metas: Vec<Option<String>> =
            conn.mget(&keys).await.map_err(|e| self.results.error(e))?;
        let mut results = Vec::with_capacity(metas.len());
        for (step, meta) in steps.iter().zip(metas) {
            let step_id = Uuid::parse_str(step).unwrap_or(id);
            results.push(match meta {
                Some(text) => parse_meta(step_id, &text)?.to_result(id),
                // Expired: nothing to say but that it has not finished.
                None => TaskResult {
                    id,
                    status: TaskStatus::Pending,
                    value: None,
                    error: None,
                },
            });
        }
        crate::result::chain_outcome(id, results).ok_or(Error::NotFound { id })
    }

    /// Waits until `id` is finished or `timeout` passes.
    pub(crate) async fn wait(&self, id: Uuid, timeout: Duration) -> Result<TaskResult> {
        let deadline = Instant::now() + timeout;
        let Some((target, _)) = self.target(id).await? else {
            return Err(Error::NotFound { id });
        };
        let channels = match target {
            Target::Task => vec![meta_key(&id.to_string())],
            Target::Chain(steps) => steps.iter().map(|s| meta_key(s)).collect(),
        };
        // Subscribe first, then read: a result published in between is not missed.
        let mut pubsub = match self.results.pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channels).await {
                Ok(()) => Some(pubsub),
                Err(e) => {
                    tracing::warn!(error = %e, "could not subscribe to results; polling");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not subscribe to results; polling");
                None
            }
        };
        let mut messages = pubsub.as_mut().map(|p| p.on_message());
        let poll = self.config.poll_interval().max(Duration::from_millis(100));
        loop {
            let current = self.read_result(id).await?.ok_or(Error::NotFound { id })?;
            if current.is_terminal() {
                return Ok(current);
            }
            let wake = tokio::time::sleep_until(deadline.min(Instant::now() + poll));
            tokio::select! {
                message = async {
                    match messages.as_mut() {
                        Some(stream) => stream.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if message.is_none() {
                        tracing::warn!("the result subscription ended; polling");
                        messages = None;
                    }
                }
                () = wake => {}
            }
            if Instant::now() >= deadline {
                let last = self.read_result(id).await?;
                return match last {
                    Some(result) if result.is_terminal() => Ok(result),
                    _ => Err(Error::WaitTimeout { id, timeout }),
                };
            }
        }
    }
}

fn parse_meta(id: Uuid, text: &str) -> Result<Meta> {
    serde_json::from_str(text).map_err(|e| Error::CorruptRow {
        id,
        column: "celery-task-meta",
        reason: e.to_string(),
    })
}
