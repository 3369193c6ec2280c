//! Submitting: tasklib's checked rows become Celery messages, `LPUSH`ed onto the queue's
//! list (its priority bucket), all of one call in one `MULTI`. Before that, each id gets a
//! `PENDING` result, so that an id tasklib submitted reads `pending` while one it never saw
//! reads `not found` (Celery alone cannot tell them apart).

use chrono::{Duration as ChronoDuration, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::CeleryEngine;
use super::meta::{Meta, chain_key, meta_key};
use super::protocol::{
    LOWEST_PRIORITY, MAX_RETRIES_HEADER, Outgoing, STEP_HEADER, Signature, TRACEPARENT_HEADER,
};
use crate::chain::{ChainIds, NewChain};
use crate::submit::NewTask;
use crate::unique::Submitted;
use crate::{Error, Result};

/// tasklib's priority (higher first, 0 by default) as Celery's on Redis (0 highest, 9
/// lowest): 0 stays 0, -1 ..= -9 become 1 ..= 9.
///
/// # Errors
/// [`Error::InvalidOption`] for a priority above 0 or below -9: Redis has nothing above
/// Celery's default, and refusing is better than running it at another priority silently.
pub(crate) fn celery_priority(priority: i32) -> Result<u8> {
    match u8::try_from(priority.saturating_neg()) {
        Ok(p) if p <= LOWEST_PRIORITY => Ok(p),
        _ => Err(Error::InvalidOption {
            option: "priority",
            reason: format!(
                "{priority} cannot be expressed on Celery over Redis, where Celery's default \
                 (tasklib's 0) is the highest priority: use 0 down to -9 (Celery's 0 to 9)"
            ),
        }),
    }
}

impl CeleryEngine {
    /// The message for one checked row.
    pub(crate) fn outgoing(&self, task: &NewTask) -> Result<Outgoing> {
        let (args, kwargs) = split_args(task)?;
        let eta = task.scheduled_at.or_else(|| {
            (task.delay_seconds > 0.0).then(|| {
                Utc::now() + ChronoDuration::microseconds((task.delay_seconds * 1e6) as i64)
            })
        });
        let mut extra_headers = Map::new();
        extra_headers.insert(MAX_RETRIES_HEADER.to_owned(), json!(task.max_retries));
        if let Some(traceparent) = &task.trace_context {
            extra_headers.insert(TRACEPARENT_HEADER.to_owned(), json!(traceparent));
        }
        let id = task.id.to_string();
        Ok(Outgoing {
            task: task.name.clone(),
            id: id.clone(),
            queue: task.queue.clone(),
            priority: celery_priority(task.priority)?,
            args,
            kwargs,
            chain: None,
            eta,
            retries: 0,
            timelimit: [task.timeout_seconds, None],
            root_id: id,
            parent_id: None,
            origin: self.config.worker_id().to_owned(),
            extra_headers,
            delivery_tag: Uuid::now_v7().to_string(),
        })
    }

    /// Writes the `PENDING` results, then the messages.
    pub(crate) async fn submit_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<Submitted>> {
        let messages = tasks
            .iter()
            .map(|t| self.outgoing(t))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<Submitted> = tasks.iter().map(|t| Submitted::new(t.id)).collect();
        self.publish(&messages, None).await?;
        Ok(ids)
    }

    /// Writes a chain: the first step's message carries the others in `embed.chain`, last
    /// step first (Celery pops the next one from the end), each with its id in
    /// `options.task_id` so that every id is known now.
    pub(crate) async fn submit_chain(&self, chain: NewChain) -> Result<ChainIds> {
        let mut steps = chain.steps.into_iter();
        let first = steps.next().ok_or_else(|| Error::InvalidOption {
            option: "chain",
            reason: "a chain needs a first step".to_owned(),
        })?;
        let mut message = self.outgoing(&first)?;
        let mut ids = vec![first.id];
        let mut signatures = Vec::new();
        for step in steps {
            ids.push(step.id);
            signatures.push(self.signature(&step)?);
        }
        signatures.reverse();
        message.chain = Some(signatures);
        message
            .extra_headers
            .insert(STEP_HEADER.to_owned(), json!(0));
        let record = json!({ "steps": ids.iter().map(Uuid::to_string).collect::<Vec<_>>() });
        self.publish(
            std::slice::from_ref(&message),
            Some((chain.id, &ids, record)),
        )
        .await?;
        Ok(ChainIds {
            id: chain.id,
            steps: ids,
        })
    }

    /// A later chain step as Celery's signature dict.
    fn signature(&self, step: &NewTask) -> Result<Signature> {
        let (args, kwargs) = split_args(step)?;
        let mut options = Map::new();
        options.insert("task_id".into(), json!(step.id.to_string()));
        options.insert("queue".into(), json!(step.queue));
        let priority = celery_priority(step.priority)?;
        if priority != 0 {
            options.insert("priority".into(), json!(priority));
        }
        if let Some(limit) = step.timeout_seconds {
            options.insert("time_limit".into(), json!(limit));
        }
        let mut headers = Map::new();
        headers.insert(MAX_RETRIES_HEADER.to_owned(), json!(step.max_retries));
        if let Some(traceparent) = &step.trace_context {
            headers.insert(TRACEPARENT_HEADER.to_owned(), json!(traceparent));
        }
        options.insert("headers".into(), Value::Object(headers));
        Ok(Signature {
            task: step.name.clone(),
            args,
            kwargs,
            options,
            subtask_type: None,
            immutable: false,
            chord_size: None,
        })
    }

    /// `PENDING` results (and a chain's record) on the result backend, then the messages on
    /// the broker in one `MULTI`. A broker failure leaves the `PENDING` results to expire.
    async fn publish(
        &self,
        messages: &[Outgoing],
        chain: Option<(Uuid, &[Uuid], Value)>,
    ) -> Result<()> {
        let expires = self.result_expires_secs();
        let mut pending = redis::pipe();
        pending.atomic();
        let mut ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        if let Some((_, steps, _)) = &chain {
            ids = steps.iter().map(Uuid::to_string).collect();
        }
        for id in &ids {
            pending
                .cmd("SETEX")
                .arg(meta_key(id))
                .arg(expires)
                .arg(to_json(&Meta::pending(id))?)
                .ignore();
        }
        if let Some((chain_id, _, record)) = &chain {
            pending
                .cmd("SETEX")
                .arg(chain_key(*chain_id))
                .arg(expires)
                .arg(record.to_string())
                .ignore();
        }
        let mut results = self.results.conn();
        pending
            .exec_async(&mut results)
            .await
            .map_err(|e| self.results.error(e))?;

        let mut push = redis::pipe();
        push.atomic();
        for message in messages {
            push.cmd("LPUSH")
                .arg(message.list_key())
                .arg(encode(message)?)
                .ignore();
        }
        let mut broker = self.broker.conn();
        push.exec_async(&mut broker)
            .await
            .map_err(|e| self.broker.error(e))
    }
}

/// A row's arguments as Celery's `(args, kwargs)`: an object is keyword arguments, an array
/// positional ones.
fn split_args(task: &NewTask) -> Result<(Vec<Value>, Map<String, Value>)> {
    match &task.args {
        Value::Object(map) => Ok((Vec::new(), map.clone())),
        Value::Array(items) => Ok((items.clone(), Map::new())),
        other => Err(Error::InvalidOption {
            option: "args",
            reason: format!("must be a JSON object or array, got {other}"),
        }),
    }
}

pub(crate) fn to_json(meta: &Meta) -> Result<String> {
    serde_json::to_string(meta).map_err(|source| Error::Serialize {
        task: meta.task_id.clone().unwrap_or_default(),
        source,
    })
}

pub(crate) fn encode(message: &Outgoing) -> Result<String> {
    message.encode().map_err(|source| Error::Serialize {
        task: message.task.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_onto_celerys_range_or_are_refused() {
        assert_eq!(celery_priority(0).ok(), Some(0));
        assert_eq!(celery_priority(-3).ok(), Some(3));
        assert_eq!(celery_priority(-9).ok(), Some(9));
        assert!(matches!(
            celery_priority(1),
            Err(Error::InvalidOption {
                option: "priority",
                ..
            })
        ));
        assert!(celery_priority(-10).is_err());
        assert!(celery_priority(i32::MIN).is_err());
    }
}
