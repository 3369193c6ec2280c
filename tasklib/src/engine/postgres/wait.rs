//! Waiting for results: one `LISTEN tasks_done` connection per client, shared by every
//! waiting call, started by the first one.
//!
//! A waiter marks the rows it waits for (`notify_done`), so that the statement finishing them
//! sends a notification; tasks nobody waits for send none. The notification is a hint, as
//! everywhere in tasklib: each waiter also reads the result again every poll interval, so a
//! notification lost to a dropped connection costs at most that long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

use super::channels::Channels;
use super::db::Db;
use super::{read, tls};
use crate::result::TaskResult;
use crate::retry::BackoffPolicy;
use crate::url::RedactedUrl;
use crate::{Error, Result};

/// Channel announcing that a task someone waits for has finished; the payload is the task's
/// id, followed by its chain's id when it is a chain step.
pub const DONE_CHANNEL: &str = "tasks_done";

/// Marks the task `$1`, or the unfinished steps of chain `$1`, as waited for. A pending row
/// that is due gets its queue notified: this statement held its lock for a moment, and a
/// claim that skipped it meanwhile (`SKIP LOCKED`) must not leave it to the next poll tick.
///
/// The rows are locked in step order, the order in which a worker's completion locks a step
/// and then the next: locked in whatever order the heap holds their latest versions, the two
/// could deadlock.
const MARK_WAITED: &str = r#"
WITH open AS (
    SELECT id
    FROM tasks
    WHERE (id = $1 OR chain_id = $1)
      AND (state IN ('pending', 'running') OR (state = 'failed' AND next_retry_at IS NOT NULL))
    ORDER BY chain_step NULLS FIRST
    FOR UPDATE
), marked AS (
    UPDATE tasks AS t
    SET notify_done = true
    FROM open
    WHERE t.id = open.id
    RETURNING t.queue, t.state = 'pending' AND t.scheduled_at <= now() AS due
)
SELECT count(pg_notify(tasklib_channel('tasks_new'), q.queue))
FROM (SELECT DISTINCT queue FROM marked WHERE due) AS q
"#;

/// Longest wait for the listener to connect before a waiter relies on polling alone.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// The waiters of one client.
#[derive(Debug)]
pub(crate) struct Waits {
    /// Where the listener connects; none behind a transaction pooler without a listen URL,
    /// where waiters only poll.
    url: Option<RedactedUrl>,
    /// The schema's `tasks_done` channel.
    channel: Arc<str>,
    poll: Duration,
    waiters: Arc<Mutex<HashMap<Uuid, Waiter>>>,
    listener: Mutex<Option<Listener>>,
}

#[derive(Debug)]
struct Waiter {
    wake: Arc<Notify>,
    count: usize,
}

#[derive(Debug)]
struct Listener {
    task: JoinHandle<()>,
    connected: watch::Receiver<bool>,
}

impl Drop for Waits {
    fn drop(&mut self) {
        if let Some(listener) = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            listener.task.abort();
        }
    }
}

impl Waits {
    pub(crate) fn new(url: Option<RedactedUrl>, poll: Duration, channel: String) -> Waits {
        Waits {
            url,
            channel: channel.into(),
            poll,
            waiters: Default::default(),
            listener: Mutex::new(None),
        }
    }

    /// Waits until task (or chain) `id` is finished, or `timeout` passes.
    pub(crate) async fn wait(&self, db: &Db, id: Uuid, timeout: Duration) -> Result<TaskResult> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut connected = self.listening();
        // Notifications sent before LISTEN took effect are lost: wait (briefly) for it.
        let _ = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + CONNECT_WAIT),
            connected.wait_for(|c| *c),
        )
        .await;
        let wake = self.register(id);
        let outcome = self.wait_registered(db, id, &wake, deadline, timeout).await;
        self.unregister(id);
        outcome
    }

    async fn wait_registered(
        &self,
        db: &Db,
        id: Uuid,
        wake: &Notify,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<TaskResult> {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            MARK_WAITED,
            [id.into()],
        ))
        .await?;
        loop {
            // Armed before reading, so a notification that lands in between is kept.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let result = read::result(db, id).await?.ok_or(Error::NotFound { id })?;
            if result.is_terminal() {
                return Ok(result);
            }
            let poll = tokio::time::Instant::now() + self.poll;
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep_until(poll.min(deadline)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::WaitTimeout { id, timeout });
                    }
                }
            }
        }
    }

    fn register(&self, id: Uuid) -> Arc<Notify> {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let waiter = waiters.entry(id).or_insert_with(|| Waiter {
            wake: Arc::new(Notify::new()),
            count: 0,
        });
        waiter.count += 1;
        Arc::clone(&waiter.wake)
    }

    fn unregister(&self, id: Uuid) {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waiter) = waiters.get_mut(&id) {
            waiter.count -= 1;
            if waiter.count == 0 {
                waiters.remove(&id);
            }
        }
    }

    /// The listener's connected flag, starting the listener on first use; always true with no
    /// listener to wait for.
    fn listening(&self) -> watch::Receiver<bool> {
        let Some(url) = &self.url else {
            return watch::channel(true).1;
        };
        let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = listener.as_ref()
            && !running.task.is_finished()
        {
            return running.connected.clone();
        }
        let (connected_tx, connected) = watch::channel(false);
        let task = tokio::spawn(listen(
            url.clone(),
            Arc::clone(&self.channel),
            Arc::clone(&self.waiters),
            connected_tx,
        ));
        *listener = Some(Listener {
            task,
            connected: connected.clone(),
        });
        connected
    }
}

/// Keeps a `LISTEN tasks_done` session open, reconnecting with backoff; wakes every waiter
/// after each (re)connect, since notifications sent meanwhile are gone.
async fn listen(
    url: RedactedUrl,
    channel: Arc<str>,
    waiters: Arc<Mutex<HashMap<Uuid, Waiter>>>,
    connected: watch::Sender<bool>,
) {
    let mut failures = 0u32;
    loop {
        match session(&url, &channel, &waiters, &connected).await {
            Ok(()) => failures = 0,
            Err(reason) => {
                tracing::debug!(%reason, "result listener could not connect");
            }
        }
        connected.send_replace(false);
        failures += 1;
        tokio::time::sleep(BackoffPolicy::reconnect().delay(failures)).await;
    }
}

async fn session(
    url: &RedactedUrl,
    channel: &str,
    waiters: &Mutex<HashMap<Uuid, Waiter>>,
    connected: &watch::Sender<bool>,
) -> std::result::Result<(), String> {
    let (client, mut connection) = tls::connect(url).await.map_err(|e| e.reason())?;
    let (tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = stream.next().await {
            if tx.send(message).is_err() {
                return;
            }
        }
    });
    if let Err(error) = client.batch_execute(&Channels::listen(&[channel])).await {
        driver.abort();
        return Err(crate::task::error_chain(&error));
    }
    connected.send_replace(true);
    wake_all(waiters);
    while let Some(message) = messages.recv().await {
        if let AsyncMessage::Notification(note) = message
            && note.channel() == channel
        {
            let waiters = waiters.lock().unwrap_or_else(PoisonError::into_inner);
            for id in note
                .payload()
                .split(' ')
                .filter_map(|s| s.parse::<Uuid>().ok())
            {
                if let Some(waiter) = waiters.get(&id) {
                    waiter.wake.notify_waiters();
                }
            }
        }
    }
    drop(client);
    wake_all(waiters);
    Ok(())
}

fn wake_all(waiters: &Mutex<HashMap<Uuid, Waiter>>) {
    let waiters = waiters.lock().unwrap_or_else(PoisonError::into_inner);
    for waiter in waiters.values() {
        waiter.wake.notify_waiters();
    }
}
