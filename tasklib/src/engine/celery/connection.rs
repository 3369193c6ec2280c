//! The two Redis servers (or databases) of a Celery deployment: the broker, where messages
//! wait in lists, and the result backend, where results are kept. Each is a `redis::Client`
//! and a [`ConnectionManager`] (one multiplexed connection that reconnects by itself);
//! blocking pops get a connection of their own ([`Redis::dedicated`]).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, RedisError};

use crate::backend::BackendType;
use crate::url::RedactedUrl;
use crate::{Error, Result};

/// How long one command may take before it fails (pops block longer: they get their own
/// limit).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// One Redis server as tasklib uses it.
#[derive(Clone)]
pub(crate) struct Redis {
    client: redis::Client,
    manager: ConnectionManager,
    url: RedactedUrl,
    role: &'static str,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("role", &self.role)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Connects to `url`, which plays `role` (`broker` or `result backend`).
    ///
    /// # Errors
    /// [`Error::Broker`] when the URL is not a Redis URL or the server cannot be reached.
    pub(crate) async fn connect(
        url: &RedactedUrl,
        role: &'static str,
        connect_timeout: Duration,
    ) -> Result<Redis> {
        let failed = |e: RedisError| broker_error(url, role, e);
        let client = redis::Client::open(url.expose()).map_err(failed)?;
        // One plain connection first, so that an unreachable server, a wrong password or an
        // untrusted certificate fails at once (the manager would retry with backoff).
        let probe = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&probe)
            .await
            .map_err(failed)?;
        redis::cmd("PING")
            .exec_async(&mut probe)
            .await
            .map_err(failed)?;
        drop(probe);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let manager = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(failed)?;
        Ok(Redis {
            client,
            manager,
            url: url.clone(),
            role,
        })
    }

    /// The shared connection (cheap to clone).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// A connection of its own, for a blocking pop that waits up to `block`.
    pub(crate) async fn dedicated(&self, block: Duration) -> Result<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(block + RESPONSE_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(e))
    }

    /// A connection for `SUBSCRIBE`.
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        self.client
            .get_async_pubsub()
            .await
            .map_err(|e| self.error(e))
    }

    /// A failed command on this server as tasklib's error, the password kept out.
    pub(crate) fn error(&self, e: RedisError) -> Error {
        broker_error(&self.url, self.role, e)
    }
}

fn broker_error(url: &RedactedUrl, role: &'static str, e: RedisError) -> Error {
    Error::Broker {
        backend: BackendType::Celery,
        role,
        url: url.clone(),
        source: Box::new(e),
    }
}
