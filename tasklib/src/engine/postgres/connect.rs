//! Opening the connection pool, and migrating at startup.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database};

use super::db::{Db, Mode};
use super::{migrate, tls};
use crate::config::Config;
use crate::{Error, Result};

/// Opens the pool, checks that the server answers, and applies pending migrations unless
/// the configuration says not to. The pool and the probe connect with the same TLS settings
/// ([`tls`]). Behind a [transaction pooler](crate::ConfigBuilder::transaction_pooler), the
/// pool keeps no prepared statements and sends only the startup parameters a pooler passes
/// on, and the returned [`Db`] runs each statement in a transaction of its own.
pub(crate) async fn connect(config: &Config) -> Result<Db> {
    probe(config).await?;
    let pool_url = tls::pool_url(config.database_url())?;
    let mut options = ConnectOptions::new(pool_url.expose());
    options
        .max_connections(config.max_connections())
        .min_connections(0)
        .connect_timeout(config.connect_timeout())
        .acquire_timeout(config.connect_timeout())
        .sqlx_logging(false)
        // A ping on every acquire doubles the round trips of the hot path (claim, complete);
        // only connections idle for a while, which a server restart may have broken, are
        // checked first.
        .test_before_acquire_if_idle_for(Duration::from_secs(30));
    let mode = if config.transaction_pooler() {
        // PgBouncer refuses startup parameters it does not know, `extra_float_digits` (which
        // sqlx sends) and `options` among them; `search_path` comes with each transaction
        // instead ([`Mode::pooler`]).
        options
            .map_sqlx_postgres_opts(|pg| pg.statement_cache_capacity(0).extra_float_digits(None));
        if config.notification_url().is_none() {
            tracing::warn!(
                poll_interval = ?config.poll_interval(),
                "transaction pooler without listen_url: workers and result waits poll instead of \
                 listening; set listen_url to a direct connection for instant pickup"
            );
        }
        Mode::pooler(config.schema())
    } else {
        Mode::Direct
    };
    if mode == Mode::Direct && config.schema() != crate::config::DEFAULT_SCHEMA {
        // tasklib's schema first on every pooled connection, set when it opens (a startup
        // parameter: no extra round trip). The default leaves the server's `search_path` as
        // it is.
        let schema = config.schema().to_owned();
        options.map_sqlx_postgres_opts(move |pg| pg.options([("search_path", schema.as_str())]));
    }
    let conn = Database::connect(options)
        .await
        .map_err(|source| Error::Connect {
            url: config.database_url().clone(),
            source: redact_url(source, &pool_url),
        })?;
    // The pool connects lazily; make sure the server is really there.
    conn.ping().await.map_err(|source| Error::Connect {
        url: config.database_url().clone(),
        source,
    })?;
    let db = Db::new(conn, mode);
    if config.run_migrations() {
        let applied = migrate::apply(&db, Some(config.schema())).await?;
        if !applied.is_empty() {
            tracing::info!(schema = config.schema(), migrations = ?applied, "applied tasklib migrations");
        }
    }
    tracing::debug!(url = %config.database_url(), worker_id = config.worker_id(), "tasklib connected");
    Ok(db)
}

/// One direct connection attempt, closed at once. The pool retries a refused connection until
/// its timeout and then says only that it timed out; this says why, as soon as the server
/// (or the network) answers: connection refused, no such database, authentication failed,
/// a certificate that TLS settings refuse ([`Error::Tls`]).
async fn probe(config: &Config) -> Result<()> {
    let url = config.database_url();
    let failed = |reason: String| Error::Connect {
        url: url.clone(),
        source: sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(
            reason.replace(url.expose(), &url.to_string()),
        )),
    };
    match tokio::time::timeout(config.connect_timeout(), tls::connect(url)).await {
        Ok(Ok((client, connection))) => {
            drop(client);
            // Ends (the server closes the session) now that the client is gone.
            let _ = connection.await;
            Ok(())
        }
        Ok(Err(tls::ConnectError::Tls(error))) => Err(error),
        Ok(Err(tls::ConnectError::Driver(error))) => Err(failed(crate::task::error_chain(&error))),
        Err(_) => Err(failed(format!(
            "no answer within {:?} (connect_timeout)",
            config.connect_timeout()
        ))),
    }
}

/// Replaces the URL in a driver error that quotes it whole (sea-orm's "The connection string
/// '…' cannot be parsed."), since it holds the password.
fn redact_url(source: sea_orm::DbErr, url: &crate::RedactedUrl) -> sea_orm::DbErr {
    match source {
        sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(message)) => sea_orm::DbErr::Conn(
            sea_orm::RuntimeErr::Internal(message.replace(url.expose(), &url.to_string())),
        ),
        other => other,
    }
}
