//! The listener: one dedicated tokio-postgres connection per pool running
//! `LISTEN tasks_new` (and `LISTEN tasks_cancel`), waking the producer of the queue each
//! notification names.
//!
//! Notifications are a hint, never the guarantee: when the connection drops, producers keep
//! polling, the listener reconnects with exponential backoff, and after every (re)connect it
//! wakes all producers, since whatever was sent meanwhile is gone. Behind a pooler in
//! transaction mode (PgBouncer) a session cannot keep listening: the listener connects to the
//! `listen_url` then, and without one it does nothing and producers poll.

use std::sync::Arc;

use futures::StreamExt;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

use super::pool::PoolShared;
use crate::engine::postgres::channels::Channels;
use crate::engine::postgres::tls;
use crate::retry::BackoffPolicy;
use crate::url::RedactedUrl;
use crate::worker::WorkerEvent;

/// Channel announcing new runnable tasks; the payload is the queue name.
pub const NEW_TASKS_CHANNEL: &str = "tasks_new";
/// Channel announcing cancellation requests for running tasks; the payload is the task id.
pub const CANCEL_CHANNEL: &str = "tasks_cancel";
/// Channel announcing that a queue was paused or resumed; the payload is `paused <queue>` or
/// `resumed <queue>`.
pub const QUEUES_CHANNEL: &str = "tasks_queues";

pub(crate) async fn run(pool: Arc<PoolShared>) {
    let mut shutdown = pool.lifeline.on_stop();
    let Some(url) = pool.listen_url.clone() else {
        // `TaskLib::connect` warned once; the producers poll.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
        return;
    };
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let session = tokio::select! {
            session = listen_once(&pool, &url) => session,
            _ = shutdown.changed() => return,
        };
        let reason = match session {
            Ok(reason) => {
                // It was connected: start the backoff over.
                failures = 0;
                reason
            }
            Err(reason) => reason,
        };
        if pool.is_shutting_down() {
            return;
        }
        failures += 1;
        let delay = BackoffPolicy::reconnect().delay(failures);
        tracing::warn!(attempt = failures, retry_in = ?delay, reason = %reason, "notification listener disconnected; polling continues, reconnecting");
        pool.emit(WorkerEvent::ListenerDisconnected { reason });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Connects, listens, and dispatches until the connection ends. `Ok` carries why a working
/// session ended; `Err` why it could not start.
async fn listen_once(pool: &Arc<PoolShared>, url: &RedactedUrl) -> Result<String, String> {
    // With the same TLS settings as the pool (`sslmode`, `sslrootcert` in the URL).
    let (client, mut connection) = tls::connect(url).await.map_err(|e| e.reason())?;
    let (messages_tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
    // The connection object does the I/O; drive it on its own task and forward what it
    // receives. It ends when the server closes the connection.
    let driver = tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            match message {
                Ok(message) => {
                    if messages_tx.send(message).is_err() {
                        return "listener stopped".to_owned();
                    }
                }
                Err(error) => return crate::task::error_chain(&error),
            }
        }
        "connection closed by the server".to_owned()
    });
    let listen = Channels::listen(&[
        &pool.channels.new,
        &pool.channels.cancel,
        &pool.channels.queues,
    ]);
    if let Err(error) = client.batch_execute(&listen).await {
        driver.abort();
        return Err(crate::task::error_chain(&error));
    }
    tracing::info!("notification listener connected");
    pool.emit(WorkerEvent::ListenerConnected);
    // A pause or resume sent while it was away is gone too.
    tokio::spawn(super::queue_flags::refresh(Arc::clone(pool)));
    pool.wake_all();
    while let Some(message) = messages.recv().await {
        if let AsyncMessage::Notification(note) = message {
            dispatch(pool, note.channel(), note.payload());
        }
    }
    drop(client);
    Ok(driver.await.unwrap_or_else(|e| e.to_string()))
}

fn dispatch(pool: &Arc<PoolShared>, channel: &str, payload: &str) {
    if channel == pool.channels.queues {
        // Applied at once, before any later notification (a submit's `tasks_new`) is
        // handled; the refresh then reads the table, which has the last word.
        if let Some((change, name)) = payload.split_once(' ')
            && let Some(queue) = pool.queues.get(name)
        {
            let paused = match change {
                "paused" => Some(true),
                "resumed" => Some(false),
                // `limits`: the refresh reads them.
                _ => None,
            };
            if let Some(paused) = paused {
                pool.pause_changes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let was = queue
                    .paused
                    .swap(paused, std::sync::atomic::Ordering::SeqCst);
                if was && !paused {
                    queue.wake.notify_one();
                }
            }
            tokio::spawn(super::queue_flags::refresh(Arc::clone(pool)));
        }
    } else if channel == pool.channels.new {
        if let Some(queue) = pool.queues.get(payload) {
            queue.wake.notify_one();
        }
    } else if channel == pool.channels.cancel
        && let Ok(id) = payload.parse::<Uuid>()
        && let Some(task) = pool.in_flight().get(&id)
    {
        tracing::info!(task.id = %id, "cancellation requested");
        task.cancel.send_replace(true);
    }
}
