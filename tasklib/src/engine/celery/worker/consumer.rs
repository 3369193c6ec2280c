//! One consumer: the loop that takes messages off a group of queues for the group's slots.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use redis::aio::MultiplexedConnection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{Shared, execute, unacked};
use crate::engine::celery::protocol::{Incoming, consume_keys};
use crate::retry::BackoffPolicy;
use crate::worker::WorkerEvent;

/// A message taken off a list and recorded as unacknowledged.
pub(crate) struct Delivery {
    pub(crate) incoming: Incoming,
    pub(crate) tag: String,
}

/// Takes messages while a slot is free, until the pool stops.
pub(crate) async fn consume(
    shared: Arc<Shared>,
    queues: Vec<String>,
    slots: Arc<Semaphore>,
    alive: mpsc::Sender<()>,
) {
    let keys = consume_keys(&queues);
    let mut stop = shared.stop.clone();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let popped = match pop(&shared, &mut conn, &keys).await {
            Ok(popped) => {
                failures = 0;
                shared.lifeline.reached();
                popped
            }
            Err(error) => {
                conn = None;
                failures += 1;
                shared.lifeline.unreachable(&error.to_string());
                tracing::warn!(error = %error, queues = ?queues, "taking messages failed; retrying");
                let delay = BackoffPolicy::reconnect().delay(failures);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
        };
        let Some(taken) = popped else {
            continue;
        };
        shared.counters.received.fetch_add(1, Ordering::Relaxed);
        let delivery = match taken {
            Taken::Recorded { raw, tag } => received(&shared, raw, tag).await,
            Taken::Popped(raw) => receive(&shared, raw).await,
        };
        let Some(delivery) = delivery else {
            continue;
        };
        if *stop.borrow() {
            // Taken just as the pool stopped: hand it back untouched.
            give_back(&shared, &delivery, true).await;
            continue;
        }
        match delivery.incoming.eta().filter(|eta| *eta > Utc::now()) {
            None => {
                tokio::spawn(execute::execute(
                    Arc::clone(&shared),
                    delivery,
                    permit,
                    alive.clone(),
                ));
            }
            Some(eta) => {
                drop(permit);
                tokio::spawn(wait_for_eta(
                    Arc::clone(&shared),
                    delivery,
                    eta,
                    Arc::clone(&slots),
                    alive.clone(),
                ));
            }
        }
    }
}

/// A message taken off a list.
enum Taken {
    /// Taken and recorded as unacknowledged in one step ([`unacked::take`]).
    Recorded { raw: String, tag: String },
    /// Taken by `BRPOP`, or without a delivery tag: not recorded yet.
    Popped(String),
}

/// The next message of the group's lists: taken and recorded in one step when one is
/// waiting, else by one `BRPOP` (recorded afterwards); `None` when nothing came within the
/// block time.
async fn pop(
    shared: &Shared,
    conn: &mut Option<MultiplexedConnection>,
    keys: &[String],
) -> crate::Result<Option<Taken>> {
    shared.counters.pops.fetch_add(1, Ordering::Relaxed);
    let mut shared_conn = shared.broker.conn();
    match unacked::take(&mut shared_conn, keys)
        .await
        .map_err(|e| shared.broker.error(e))?
    {
        Some((raw, Some(tag))) => return Ok(Some(Taken::Recorded { raw, tag })),
        Some((raw, None)) => return Ok(Some(Taken::Popped(raw))),
        None => {}
    }
    let connection = match conn {
        Some(c) => c,
        None => conn.insert(shared.broker.dedicated(shared.block).await?),
    };
    let popped: Option<(String, String)> = redis::cmd("BRPOP")
        .arg(keys)
        .arg(shared.block.as_secs_f64())
        .query_async(connection)
        .await
        .map_err(|e| shared.broker.error(e))?;
    if popped.is_none() {
        shared.counters.empty_pops.fetch_add(1, Ordering::Relaxed);
    }
    Ok(popped.map(|(_, raw)| Taken::Popped(raw)))
}

/// Decodes a message already recorded as unacknowledged under `tag`. One that is not
/// Celery's is dropped as [`receive`] drops it, and its record removed.
async fn received(shared: &Shared, raw: String, tag: String) -> Option<Delivery> {
    match Incoming::decode(&raw) {
        Ok(incoming) => {
            shared.hold(&tag);
            Some(Delivery { incoming, tag })
        }
        Err(error) => {
            execute::unreadable(shared, &raw, &error).await;
            let mut conn = shared.broker.conn();
            if let Err(e) = unacked::ack(&mut conn, &tag).await {
                tracing::warn!(error = %shared.broker.error(e), "could not drop the record of an unreadable message; it will come back once");
            }
            None
        }
    }
}

/// Decodes a message and records it as unacknowledged. A message that is not Celery's is
/// logged and dropped (put back, it would come round for ever), with a `FAILURE` result when
/// its id can be read.
async fn receive(shared: &Shared, raw: String) -> Option<Delivery> {
    let incoming = match Incoming::decode(&raw) {
        Ok(incoming) => incoming,
        Err(error) => {
            execute::unreadable(shared, &raw, &error).await;
            return None;
        }
    };
    let tag = incoming.envelope.properties.delivery_tag.clone();
    let info = &incoming.envelope.properties.delivery_info;
    let mut conn = shared.broker.conn();
    if let Err(e) = unacked::deliver(&mut conn, &tag, &raw, &info.exchange, &info.routing_key).await
    {
        // Not recorded: put it straight back rather than run it unprotected.
        tracing::warn!(error = %shared.broker.error(e), "could not record a delivery; re-queued");
        let key = crate::engine::celery::protocol::list_key(
            &info.routing_key,
            incoming.envelope.properties.priority,
        );
        let pushed: redis::RedisResult<()> = redis::cmd("RPUSH")
            .arg(key)
            .arg(&raw)
            .exec_async(&mut conn)
            .await;
        if let Err(e) = pushed {
            tracing::error!(error = %shared.broker.error(e), id = %incoming.envelope.headers.id, "a message could be neither recorded nor re-queued");
        }
        return None;
    }
    shared.hold(&tag);
    Some(Delivery { incoming, tag })
}

/// Holds a message until its `eta`, then runs it in a free slot; hands it back if the pool
/// stops first.
async fn wait_for_eta(
    shared: Arc<Shared>,
    delivery: Delivery,
    eta: chrono::DateTime<Utc>,
    slots: Arc<Semaphore>,
    alive: mpsc::Sender<()>,
) {
    shared.counters.waiting_eta.fetch_add(1, Ordering::Relaxed);
    let mut stop = shared.stop.clone();
    let wait = (eta - Utc::now()).to_std().unwrap_or_default();
    let permit: Option<OwnedSemaphorePermit> = tokio::select! {
        permit = async {
            tokio::time::sleep(wait).await;
            slots.acquire_owned().await.ok()
        } => permit,
        _ = stop.wait_for(|s| *s) => None,
    };
    shared.counters.waiting_eta.fetch_sub(1, Ordering::Relaxed);
    match permit {
        Some(permit) => execute::execute(Arc::clone(&shared), delivery, permit, alive).await,
        None => give_back(&shared, &delivery, true).await,
    }
}

/// Puts a message this pool holds but has not started back at the head of its list.
async fn give_back(shared: &Shared, delivery: &Delivery, at_shutdown: bool) {
    let mut conn = shared.broker.conn();
    match unacked::restore_now(&mut conn, &delivery.tag).await {
        Ok(_) => {
            shared.release(&delivery.tag);
            let id = delivery
                .incoming
                .envelope
                .headers
                .id
                .parse()
                .unwrap_or_default();
            shared.emit(WorkerEvent::TasksReturned {
                ids: vec![id],
                at_shutdown,
            });
        }
        Err(e) => {
            // Left in `unacked`: a restorer re-queues it after the visibility timeout.
            tracing::warn!(error = %shared.broker.error(e), "could not hand a message back");
        }
    }
}
