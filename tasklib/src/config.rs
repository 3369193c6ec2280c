//! Configuration: a builder with documented defaults, validated once, readable from the
//! environment.

use std::path::PathBuf;
use std::time::Duration;

use crate::backend::{BackendConfig, BackendType};
use crate::engine::postgres::tls;
use crate::url::RedactedUrl;
use crate::{Error, Result};

/// The schema of tasklib's table by default: `public.tasks`.
pub const DEFAULT_SCHEMA: &str = "public";

/// Retries granted to a failing task before it fails for good, unless the task type or the
/// submit says otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Delay before the first retry.
pub const DEFAULT_BASE_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Each further retry waits this many times longer than the previous one.
pub const DEFAULT_RETRY_BACKOFF_MULTIPLIER: f64 = 2.0;
/// Upper bound of the delay between two attempts.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(60 * 60);
/// Random spread applied to retry delays (0 = none, 0.1 = ±10 %).
pub const DEFAULT_RETRY_JITTER: f64 = 0.0;
/// How long a claimed task stays locked to its worker without a heartbeat: the lease.
///
/// A worker renews the leases of its running tasks every third of this (10 s), so a lease
/// survives two lost heartbeats, and a handler keeps its task for as long as its process is
/// alive and reaches the database, however long it runs. When a worker dies, its tasks run
/// again elsewhere at most this long after its last heartbeat, plus a poll interval: well
/// within a minute. Longer leases only delay that; shorter ones risk a rescue during a
/// database hiccup (`docs/guarantees.md`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idle workers look for due work when no notification arrives.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long `TaskLib::connect` (and a query waiting for a free pooled connection) may wait
/// for a connection before giving up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of the connection pool `TaskLib` opens.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// Largest accepted serialized arguments, in bytes (1 MiB).
pub const DEFAULT_MAX_ARGS_BYTES: usize = 1024 * 1024;
/// How long `shutdown` waits for running tasks before it leaves them to lock expiry.
pub const DEFAULT_SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// The queue of tasks that name none.
pub const DEFAULT_QUEUE: &str = "default";
/// How connections to PostgreSQL use TLS when neither the URL's `sslmode` nor
/// [`ConfigBuilder::ssl_mode`] says: TLS when the server offers it, as libpq does.
pub const DEFAULT_SSL_MODE: SslMode = SslMode::Prefer;
/// The Temporal frontend a `temporal` backend connects to when `TEMPORAL_HOST` is unset.
pub const DEFAULT_TEMPORAL_HOST: &str = "localhost:7233";
/// The Temporal namespace when `TEMPORAL_NAMESPACE` is unset.
pub const DEFAULT_TEMPORAL_NAMESPACE: &str = "default";

/// How connections to PostgreSQL use TLS: libpq's `sslmode`, with libpq's meanings. Every
/// connection tasklib opens follows it: the pool, the workers' `LISTEN` connection and the
/// result waiters' (rustls; OpenSSL is not used).
///
/// Set it in the database URL (`?sslmode=verify-full&sslrootcert=/path/ca.pem`) or with
/// [`ConfigBuilder::ssl_mode`] and [`ConfigBuilder::ssl_root_cert`] (the builder wins).
/// Defaults to [`DEFAULT_SSL_MODE`]. `docs/deployment.md` has a guide.
///
/// ```
/// use tasklib::{Config, SslMode};
///
/// let config = Config::builder("postgres://app:secret@db.internal/app?sslmode=require")
///     .ssl_mode(SslMode::VerifyFull)
///     .ssl_root_cert("/etc/ssl/db-ca.pem")
///     .build()?;
/// assert_eq!(config.ssl_mode(), SslMode::VerifyFull);
/// assert!(config.database_url().to_string().contains("sslmode=verify-full"));
/// assert_eq!("verify-ca".parse::<SslMode>()?, SslMode::VerifyCa);
/// # Ok::<(), tasklib::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    Prefer,
    /// Always TLS (a server without it is refused); the certificate is not checked, unless a
    /// root certificate is given (`sslrootcert`), in which case it is checked as in
    /// [`VerifyCa`](Self::VerifyCa), as libpq does.
    Require,
    /// Always TLS, and the server's certificate must chain to the root certificate given
    /// (`sslrootcert`), else to one the system trusts. Its host name is not checked.
    VerifyCa,
    /// As [`VerifyCa`](Self::VerifyCa), and the certificate must also name the host of the
    /// URL (a DNS name or an IP address). What to use over a network you do not control.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling: `disable`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl Default for SslMode {
    fn default() -> Self {
        DEFAULT_SSL_MODE
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SslMode {
    type Err = Error;

    /// Parses libpq's spelling (any case).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `sslmode` when the text is none of the five (libpq's
    /// `allow` included: use `prefer` or `disable`).
    fn from_str(value: &str) -> Result<SslMode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => invalid(
                "sslmode",
                "`allow` is not supported: use `prefer` (TLS when the server offers it) or \
                 `disable`",
            ),
            _ => invalid(
                "sslmode",
                format!("`{value}` is not one of disable, prefer, require, verify-ca, verify-full"),
            ),
        }
    }
}

/// Everything `TaskLib` needs to know, validated.
///
/// Build one with [`Config::builder`] or read it from the environment with
/// [`Config::from_env`]. `Debug` output hides the database password.
///
/// ```
/// use std::time::Duration;
/// use tasklib::Config;
///
/// let config = Config::builder("postgres://app:secret@localhost/app")
///     .max_retries(5)
///     .poll_interval(Duration::from_millis(500))
///     .build()?;
/// assert_eq!(config.max_retries(), 5);
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), tasklib::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    backend: BackendType,
    database_url: RedactedUrl,
    ssl_mode: Option<SslMode>,
    ssl_root_cert: Option<PathBuf>,
    celery_broker_url: Option<RedactedUrl>,
    celery_result_backend: Option<RedactedUrl>,
    temporal_host: String,
    temporal_namespace: String,
    temporal_tls_cert_path: Option<PathBuf>,
    temporal_tls_key_path: Option<PathBuf>,
    max_retries: u32,
    base_retry_delay: Duration,
    retry_backoff_multiplier: f64,
    max_retry_delay: Duration,
    retry_jitter: f64,
    lock_timeout: Duration,
    default_task_timeout: Option<Duration>,
    poll_interval: Duration,
    worker_id: String,
    schema: String,
    transaction_pooler: bool,
    listen_url: Option<RedactedUrl>,
    run_migrations: bool,
    max_connections: u32,
    connect_timeout: Duration,
    max_args_bytes: usize,
    shutdown_grace_period: Duration,
}

impl Config {
    /// Starts a configuration for the database at `database_url`, with every other setting at
    /// its default.
    pub fn builder(database_url: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                backend: BackendType::Postgres,
                database_url: RedactedUrl::new(database_url),
                ssl_mode: None,
                ssl_root_cert: None,
                celery_broker_url: None,
                celery_result_backend: None,
                temporal_host: DEFAULT_TEMPORAL_HOST.to_owned(),
                temporal_namespace: DEFAULT_TEMPORAL_NAMESPACE.to_owned(),
                temporal_tls_cert_path: None,
                temporal_tls_key_path: None,
                max_retries: DEFAULT_MAX_RETRIES,
                base_retry_delay: DEFAULT_BASE_RETRY_DELAY,
                retry_backoff_multiplier: DEFAULT_RETRY_BACKOFF_MULTIPLIER,
                max_retry_delay: DEFAULT_MAX_RETRY_DELAY,
                retry_jitter: DEFAULT_RETRY_JITTER,
                lock_timeout: DEFAULT_LOCK_TIMEOUT,
                default_task_timeout: None,
                poll_interval: DEFAULT_POLL_INTERVAL,
                worker_id: generate_worker_id(),
                schema: DEFAULT_SCHEMA.to_owned(),
                transaction_pooler: false,
                listen_url: None,
                run_migrations: true,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                max_args_bytes: DEFAULT_MAX_ARGS_BYTES,
                shutdown_grace_period: DEFAULT_SHUTDOWN_GRACE_PERIOD,
            },
        }
    }

    /// Starts a configuration for another engine than PostgreSQL, with every setting at its
    /// default; set the engine's own settings (a Celery broker URL, a Temporal host) next.
    pub fn for_backend(backend: BackendType) -> ConfigBuilder {
        Config::builder("").backend(backend)
    }

    /// Reads the configuration from the process environment: `TASK_BACKEND_TYPE`, the
    /// chosen engine's variables (`DATABASE_URL` for PostgreSQL, the default) and the optional
    /// `TASKLIB_*` variables, all listed in [`ConfigBuilder::from_vars`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a required variable is missing or a variable does not
    /// parse or is out of range.
    pub fn from_env() -> Result<Config> {
        ConfigBuilder::from_vars(|name| std::env::var(name).ok())?.build()
    }

    /// The engine that runs the tasks. Defaults to [`BackendType::Postgres`].
    pub fn backend(&self) -> BackendType {
        self.backend
    }

    /// The engine and its settings, every secret redacted: for logs and status pages.
    pub fn backend_config(&self) -> BackendConfig {
        let mut settings = Vec::new();
        match self.backend {
            BackendType::Postgres => {
                settings.push(("database_url", self.database_url.to_string()));
            }
            BackendType::Celery => {
                if let Some(url) = &self.celery_broker_url {
                    settings.push(("broker_url", url.to_string()));
                }
                if let Some(url) = &self.celery_result_backend {
                    settings.push(("result_backend", url.to_string()));
                }
            }
            BackendType::Temporal => {
                settings.push(("host", self.temporal_host.clone()));
                settings.push(("namespace", self.temporal_namespace.clone()));
                if let Some(path) = &self.temporal_tls_cert_path {
                    settings.push(("tls_cert_path", path.display().to_string()));
                }
                if let Some(path) = &self.temporal_tls_key_path {
                    settings.push(("tls_key_path", path.display().to_string()));
                }
            }
            BackendType::Hatchet => {}
        }
        BackendConfig::new(self.backend, settings)
    }

    /// The database URL (its `Display` and `Debug` hide the password). Empty on engines
    /// other than PostgreSQL unless set. TLS settings given to the builder
    /// ([`ssl_mode`](ConfigBuilder::ssl_mode), [`ssl_root_cert`](ConfigBuilder::ssl_root_cert))
    /// are written into it, replacing the URL's own, so that every connection made from it
    /// agrees.
    pub fn database_url(&self) -> &RedactedUrl {
        &self.database_url
    }

    /// How connections to PostgreSQL use TLS: the builder's [`ssl_mode`](ConfigBuilder::ssl_mode),
    /// else the URL's `sslmode`, else [`DEFAULT_SSL_MODE`].
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode.unwrap_or_default()
    }

    /// The root certificate(s) the server's certificate is checked against: the builder's
    /// [`ssl_root_cert`](ConfigBuilder::ssl_root_cert), else the URL's `sslrootcert`, else
    /// none (the system's trusted roots).
    pub fn ssl_root_cert(&self) -> Option<&std::path::Path> {
        self.ssl_root_cert.as_deref()
    }

    /// The Celery broker (`TASK_CELERY_BROKER_URL`).
    pub fn celery_broker_url(&self) -> Option<&RedactedUrl> {
        self.celery_broker_url.as_ref()
    }

    /// The Celery result backend (`TASK_CELERY_RESULT_BACKEND`).
    pub fn celery_result_backend(&self) -> Option<&RedactedUrl> {
        self.celery_result_backend.as_ref()
    }

    /// The Temporal frontend, `host:port` (`TEMPORAL_HOST`). Defaults to
    /// [`DEFAULT_TEMPORAL_HOST`].
    pub fn temporal_host(&self) -> &str {
        &self.temporal_host
    }

    /// The Temporal namespace (`TEMPORAL_NAMESPACE`). Defaults to
    /// [`DEFAULT_TEMPORAL_NAMESPACE`].
    pub fn temporal_namespace(&self) -> &str {
        &self.temporal_namespace
    }

    /// The client certificate and key for TLS to Temporal (`TEMPORAL_TLS_CERT_PATH`,
    /// `TEMPORAL_TLS_KEY_PATH`).
    pub fn temporal_tls(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        self.temporal_tls_cert_path
            .as_deref()
            .zip(self.temporal_tls_key_path.as_deref())
    }
    /// See [`ConfigBuilder::max_retries`].
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }
    /// See [`ConfigBuilder::base_retry_delay`].
    pub fn base_retry_delay(&self) -> Duration {
        self.base_retry_delay
    }
    /// See [`ConfigBuilder::retry_backoff_multiplier`].
    pub fn retry_backoff_multiplier(&self) -> f64 {
        self.retry_backoff_multiplier
    }
    /// See [`ConfigBuilder::max_retry_delay`].
    pub fn max_retry_delay(&self) -> Duration {
        self.max_retry_delay
    }
    /// See [`ConfigBuilder::retry_jitter`].
    pub fn retry_jitter(&self) -> f64 {
        self.retry_jitter
    }
    /// See [`ConfigBuilder::lock_timeout`].
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }
    /// See [`ConfigBuilder::default_task_timeout`].
    pub fn default_task_timeout(&self) -> Option<Duration> {
        self.default_task_timeout
    }
    /// See [`ConfigBuilder::poll_interval`].
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }
    /// See [`ConfigBuilder::worker_id`].
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }
    /// See [`ConfigBuilder::schema`].
    pub fn schema(&self) -> &str {
        &self.schema
    }
    /// See [`ConfigBuilder::transaction_pooler`].
    pub fn transaction_pooler(&self) -> bool {
        self.transaction_pooler
    }

    /// See [`ConfigBuilder::listen_url`].
    pub fn listen_url(&self) -> Option<&RedactedUrl> {
        self.listen_url.as_ref()
    }

    /// Where `LISTEN` connects: the [`listen_url`](Self::listen_url), else the database URL,
    /// except through a [transaction pooler](Self::transaction_pooler), where a listening
    /// session cannot last: then none, and tasklib polls.
    pub(crate) fn notification_url(&self) -> Option<&RedactedUrl> {
        match (&self.listen_url, self.transaction_pooler) {
            (Some(url), _) => Some(url),
            (None, false) => Some(&self.database_url),
            (None, true) => None,
        }
    }
    /// See [`ConfigBuilder::run_migrations`].
    pub fn run_migrations(&self) -> bool {
        self.run_migrations
    }
    /// See [`ConfigBuilder::max_connections`].
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }
    /// See [`ConfigBuilder::connect_timeout`].
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// See [`ConfigBuilder::max_args_bytes`].
    pub fn max_args_bytes(&self) -> usize {
        self.max_args_bytes
    }
    /// See [`ConfigBuilder::shutdown_grace_period`].
    pub fn shutdown_grace_period(&self) -> Duration {
        self.shutdown_grace_period
    }
}

/// Builds a [`Config`]; [`build`](ConfigBuilder::build) validates it.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Retries a failing task gets before it fails for good; a task type or a submit can
    /// override it. 0 means one attempt only. Defaults to [`DEFAULT_MAX_RETRIES`].
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.config.max_retries = retries;
        self
    }

    /// Delay before the first retry; retry *n* waits
    /// `base_retry_delay * retry_backoff_multiplier^(n-1)`, capped by `max_retry_delay`.
    /// Must be positive. Defaults to [`DEFAULT_BASE_RETRY_DELAY`].
    pub fn base_retry_delay(mut self, delay: Duration) -> Self {
        self.config.base_retry_delay = delay;
        self
    }

    /// Growth factor between consecutive retry delays; at least 1.0 (1.0 = constant delay).
    /// Defaults to [`DEFAULT_RETRY_BACKOFF_MULTIPLIER`].
    pub fn retry_backoff_multiplier(mut self, multiplier: f64) -> Self {
        self.config.retry_backoff_multiplier = multiplier;
        self
    }

    /// Cap on the delay between two attempts; must be at least `base_retry_delay`.
    /// Defaults to [`DEFAULT_MAX_RETRY_DELAY`].
    pub fn max_retry_delay(mut self, delay: Duration) -> Self {
        self.config.max_retry_delay = delay;
        self
    }

    /// Random spread of retry delays, in `[0, 1)`: 0.1 spreads each delay by ±10 % so that
    /// tasks that failed together do not retry together. Defaults to [`DEFAULT_RETRY_JITTER`]
    /// (none).
    pub fn retry_jitter(mut self, jitter: f64) -> Self {
        self.config.retry_jitter = jitter;
        self
    }

    /// How long a claimed task stays locked to its worker. A running task's lock is extended
    /// by a heartbeat; when a worker dies, its tasks become claimable again this long after
    /// the last heartbeat. Must be at least one second. Defaults to [`DEFAULT_LOCK_TIMEOUT`].
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.config.lock_timeout = timeout;
        self
    }

    /// Time limit for tasks whose type and submit set none; `None` = no limit. Must be
    /// positive. Defaults to `None`.
    pub fn default_task_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.default_task_timeout = timeout;
        self
    }

    /// How often idle workers look for due work (delayed tasks, retries, and anything a lost
    /// notification did not announce). Must be positive. Defaults to
    /// [`DEFAULT_POLL_INTERVAL`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// Identifies this process's workers in the `worker_id` column. Must not be empty.
    /// Defaults to `<hostname>-<pid>-<random>`.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = id.into();
        self
    }

    /// The PostgreSQL schema of tasklib's table, its migration history and its functions,
    /// created at the first migration if missing. Defaults to [`DEFAULT_SCHEMA`] (`public`):
    /// `public.tasks`. Use one when the application has a `tasks` table of its own, or to run
    /// two independent installations on one database: each schema has its own notification
    /// channels (`<schema>.tasks_new`...) and its own migration lock, so neither wakes nor
    /// blocks the other.
    ///
    /// A lowercase identifier: letters `a`–`z`, digits and `_`, not starting with a digit
    /// nor with `pg_`, at most 40 characters. tasklib's pool connections start with it as
    /// their `search_path`; submits inside the application's own transaction
    /// ([`TaskLib::submit_in`](crate::TaskLib::submit_in)) name it explicitly, whatever that
    /// connection's `search_path`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.config.schema = schema.into();
        self
    }

    /// Set when `database_url` leads to a connection pooler in transaction mode (PgBouncer's
    /// `pool_mode = transaction`) that does not keep prepared statements working across
    /// transactions (PgBouncer before 1.21, or with `max_prepared_statements = 0`). tasklib
    /// then sends each of its statements unnamed, in a transaction of its own, which costs
    /// two more round trips per statement, and it does not `LISTEN` through the pooler
    /// (a pooled session cannot keep listening): give [`listen_url`](Self::listen_url), or
    /// workers and result waits poll every [`poll_interval`](Self::poll_interval), and
    /// `TaskLib::connect` warns once. Defaults to `false`. See `docs/deployment.md`.
    pub fn transaction_pooler(mut self, pooled: bool) -> Self {
        self.config.transaction_pooler = pooled;
        self
    }

    /// A URL of the server itself, not a pooler, for the sessions that `LISTEN` for new
    /// tasks and finished results; the database URL when unset (except behind a
    /// [transaction pooler](Self::transaction_pooler), where it is none). TLS settings given
    /// to this builder apply to it too.
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.config.listen_url = Some(RedactedUrl::new(url));
        self
    }

    /// Whether `TaskLib::connect` applies pending migrations. Turn it off when migrations run
    /// as a separate deploy step. Defaults to `true`.
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.config.run_migrations = run;
        self
    }

    /// Size of the connection pool; at least 1. Workers use one more connection for LISTEN.
    /// Defaults to [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.config.max_connections = connections;
        self
    }

    /// How long connecting (and waiting for a free pooled connection) may take before it
    /// fails. Must be positive. Defaults to [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Largest serialized arguments accepted at submit, in bytes; at least 1.
    /// Defaults to [`DEFAULT_MAX_ARGS_BYTES`].
    pub fn max_args_bytes(mut self, bytes: usize) -> Self {
        self.config.max_args_bytes = bytes;
        self
    }

    /// How long a worker pool's shutdown waits for running tasks. Defaults to
    /// [`DEFAULT_SHUTDOWN_GRACE_PERIOD`].
    pub fn shutdown_grace_period(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace_period = grace;
        self
    }

    /// The engine that runs the tasks. Defaults to [`BackendType::Postgres`]; engines other
    /// than PostgreSQL need their cargo feature (checked when connecting).
    pub fn backend(mut self, backend: BackendType) -> Self {
        self.config.backend = backend;
        self
    }

    /// The database URL (PostgreSQL).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.config.database_url = RedactedUrl::new(url);
        self
    }

    /// How connections to PostgreSQL use TLS (see [`SslMode`]); wins over the URL's
    /// `sslmode`. Defaults to the URL's, else [`DEFAULT_SSL_MODE`].
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.config.ssl_mode = Some(mode);
        self
    }

    /// A PEM file with the certificate(s) of the CA that signed the server's certificate,
    /// like libpq's `sslrootcert`; wins over the URL's. With it, only these roots are trusted
    /// for tasklib's own connections, and `require` checks the certificate as `verify-ca`
    /// does. The file is read when connecting. Defaults to the URL's `sslrootcert`, else none:
    /// `verify-ca` and `verify-full` then trust the system's roots (and `SSL_CERT_FILE`).
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.ssl_root_cert = Some(path.into());
        self
    }

    /// The Celery broker, such as `redis://127.0.0.1:6379/0`. Required for Celery.
    pub fn celery_broker_url(mut self, url: impl Into<String>) -> Self {
        self.config.celery_broker_url = Some(RedactedUrl::new(url));
        self
    }

    /// The Celery result backend, such as `redis://127.0.0.1:6379/1`.
    pub fn celery_result_backend(mut self, url: impl Into<String>) -> Self {
        self.config.celery_result_backend = Some(RedactedUrl::new(url));
        self
    }

    /// The Temporal frontend, `host:port`. Defaults to [`DEFAULT_TEMPORAL_HOST`].
    pub fn temporal_host(mut self, host: impl Into<String>) -> Self {
        self.config.temporal_host = host.into();
        self
    }

    /// The Temporal namespace. Defaults to [`DEFAULT_TEMPORAL_NAMESPACE`].
    pub fn temporal_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.temporal_namespace = namespace.into();
        self
    }

    /// A client certificate and key (PEM files) for TLS to Temporal.
    pub fn temporal_tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.config.temporal_tls_cert_path = Some(cert.into());
        self.config.temporal_tls_key_path = Some(key.into());
        self
    }

    /// Checks every value and returns the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first setting that is out of range.
    pub fn build(self) -> Result<Config> {
        let mut config = self.config;
        if !config.database_url.expose().trim().is_empty() {
            resolve_tls(&mut config)?;
        }
        let c = &config;
        match c.backend {
            BackendType::Postgres if c.database_url.expose().trim().is_empty() => {
                return invalid("database_url", "must not be empty");
            }
            BackendType::Celery
                if c.celery_broker_url
                    .as_ref()
                    .is_none_or(|u| u.expose().trim().is_empty()) =>
            {
                return invalid(
                    "celery_broker_url",
                    "must be set for the celery backend (TASK_CELERY_BROKER_URL), e.g. \
                     redis://127.0.0.1:6379/0",
                );
            }
            BackendType::Temporal if c.temporal_host.trim().is_empty() => {
                return invalid("temporal_host", "must not be empty");
            }
            BackendType::Temporal
                if c.temporal_tls_cert_path.is_some() != c.temporal_tls_key_path.is_some() =>
            {
                return invalid(
                    "temporal_tls",
                    "TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH go together: set both or neither",
                );
            }
            _ => {}
        }
        positive("base_retry_delay", c.base_retry_delay)?;
        positive("poll_interval", c.poll_interval)?;
        positive("connect_timeout", c.connect_timeout)?;
        if !(c.retry_backoff_multiplier.is_finite() && c.retry_backoff_multiplier >= 1.0) {
            return invalid(
                "retry_backoff_multiplier",
                format!(
                    "must be a number >= 1.0, got {}",
                    c.retry_backoff_multiplier
                ),
            );
        }
        if c.max_retry_delay < c.base_retry_delay {
            return invalid("max_retry_delay", "must be at least base_retry_delay");
        }
        if !(0.0..1.0).contains(&c.retry_jitter) {
            return invalid(
                "retry_jitter",
                format!("must be in [0, 1), got {}", c.retry_jitter),
            );
        }
        if c.lock_timeout < Duration::from_secs(1) {
            return invalid("lock_timeout", "must be at least 1 second");
        }
        if let Some(timeout) = c.default_task_timeout {
            positive("default_task_timeout", timeout)?;
        }
        if c.worker_id.trim().is_empty() {
            return invalid("worker_id", "must not be empty");
        }
        if let Err(reason) = check_schema(&c.schema) {
            return invalid("schema", reason);
        }
        if c.listen_url
            .as_ref()
            .is_some_and(|u| u.expose().trim().is_empty())
        {
            return invalid("listen_url", "must not be empty when set");
        }
        if c.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if c.max_args_bytes == 0 {
            return invalid("max_args_bytes", "must be at least 1");
        }
        Ok(config)
    }

    /// Reads settings from named variables, through `lookup` (the environment, in
    /// [`Config::from_env`]). `TASK_BACKEND_TYPE` chooses the engine (`postgres`, the default,
    /// `celery`, `temporal` or `hatchet`); each engine has its variables, the others are
    /// optional:
    ///
    /// | variable | setting | format |
    /// |---|---|---|
    /// | `TASK_BACKEND_TYPE` | [`backend`](Self::backend) | `postgres`, `celery`, `temporal`, `hatchet` |
    /// | `DATABASE_URL` | the database (required for `postgres`) | URL |
    /// | `TASK_CELERY_BROKER_URL` (or `CELERY_BROKER_URL`) | [`celery_broker_url`](Self::celery_broker_url) (required for `celery`) | URL |
    /// | `TASK_CELERY_RESULT_BACKEND` (or `CELERY_RESULT_BACKEND`) | [`celery_result_backend`](Self::celery_result_backend) | URL |
    /// | `TEMPORAL_HOST` | [`temporal_host`](Self::temporal_host) | `host:port` |
    /// | `TEMPORAL_NAMESPACE` | [`temporal_namespace`](Self::temporal_namespace) | text |
    /// | `TEMPORAL_TLS_CERT_PATH`, `TEMPORAL_TLS_KEY_PATH` | [`temporal_tls`](Self::temporal_tls) | paths |
    /// | `TASKLIB_MAX_RETRIES` | [`max_retries`](Self::max_retries) | integer |
    /// | `TASKLIB_BASE_RETRY_DELAY` | [`base_retry_delay`](Self::base_retry_delay) | duration |
    /// | `TASKLIB_RETRY_BACKOFF_MULTIPLIER` | [`retry_backoff_multiplier`](Self::retry_backoff_multiplier) | number |
    /// | `TASKLIB_MAX_RETRY_DELAY` | [`max_retry_delay`](Self::max_retry_delay) | duration |
    /// | `TASKLIB_RETRY_JITTER` | [`retry_jitter`](Self::retry_jitter) | number |
    /// | `TASKLIB_LOCK_TIMEOUT` | [`lock_timeout`](Self::lock_timeout) | duration |
    /// | `TASKLIB_DEFAULT_TASK_TIMEOUT` | [`default_task_timeout`](Self::default_task_timeout) | duration, or `none` |
    /// | `TASKLIB_POLL_INTERVAL` | [`poll_interval`](Self::poll_interval) | duration |
    /// | `TASKLIB_WORKER_ID` | [`worker_id`](Self::worker_id) | text |
    /// | `TASKLIB_SCHEMA` | [`schema`](Self::schema) | identifier |
    /// | `TASKLIB_TRANSACTION_POOLER` | [`transaction_pooler`](Self::transaction_pooler) | `true`/`false` |
    /// | `TASKLIB_LISTEN_URL` | [`listen_url`](Self::listen_url) | URL |
    /// | `TASKLIB_RUN_MIGRATIONS` | [`run_migrations`](Self::run_migrations) | `true`/`false` |
    /// | `TASKLIB_MAX_CONNECTIONS` | [`max_connections`](Self::max_connections) | integer |
    /// | `TASKLIB_CONNECT_TIMEOUT` | [`connect_timeout`](Self::connect_timeout) | duration |
    /// | `TASKLIB_MAX_ARGS_BYTES` | [`max_args_bytes`](Self::max_args_bytes) | integer |
    /// | `TASKLIB_SHUTDOWN_GRACE_PERIOD` | [`shutdown_grace_period`](Self::shutdown_grace_period) | duration |
    ///
    /// A duration is a number with an optional unit: `ms`, `s` (the default), `m`, `h`, `d`
    /// or `w`,
    /// such as `500ms`, `30`, `10m`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the chosen engine's required variable is missing, or a
    /// value does not parse.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<ConfigBuilder> {
        let var = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let backend = match var("TASK_BACKEND_TYPE") {
            Some(name) => name.parse::<BackendType>()?,
            None => BackendType::Postgres,
        };
        let url = var("DATABASE_URL");
        if backend == BackendType::Postgres && url.is_none() {
            return invalid(
                "DATABASE_URL",
                "is not set: set it to a URL such as postgres://user:password@host:5432/dbname",
            );
        }
        let mut b = Config::builder(url.unwrap_or_default()).backend(backend);
        if let Some(v) = var("TASK_CELERY_BROKER_URL").or_else(|| var("CELERY_BROKER_URL")) {
            b = b.celery_broker_url(v.trim());
        }
        if let Some(v) = var("TASK_CELERY_RESULT_BACKEND").or_else(|| var("CELERY_RESULT_BACKEND"))
        {
            b = b.celery_result_backend(v.trim());
        }
        if let Some(v) = var("TEMPORAL_HOST") {
            b = b.temporal_host(v.trim());
        }
        if let Some(v) = var("TEMPORAL_NAMESPACE") {
            b = b.temporal_namespace(v.trim());
        }
        b.config.temporal_tls_cert_path = var("TEMPORAL_TLS_CERT_PATH").map(PathBuf::from);
        b.config.temporal_tls_key_path = var("TEMPORAL_TLS_KEY_PATH").map(PathBuf::from);
        if let Some(v) = var("TASKLIB_MAX_RETRIES") {
            b = b.max_retries(parse_num("TASKLIB_MAX_RETRIES", &v)?);
        }
        if let Some(v) = var("TASKLIB_BASE_RETRY_DELAY") {
            b = b.base_retry_delay(parse_duration("TASKLIB_BASE_RETRY_DELAY", &v)?);
        }
        if let Some(v) = var("TASKLIB_RETRY_BACKOFF_MULTIPLIER") {
            b = b.retry_backoff_multiplier(parse_num("TASKLIB_RETRY_BACKOFF_MULTIPLIER", &v)?);
        }
        if let Some(v) = var("TASKLIB_MAX_RETRY_DELAY") {
            b = b.max_retry_delay(parse_duration("TASKLIB_MAX_RETRY_DELAY", &v)?);
        }
        if let Some(v) = var("TASKLIB_RETRY_JITTER") {
            b = b.retry_jitter(parse_num("TASKLIB_RETRY_JITTER", &v)?);
        }
        if let Some(v) = var("TASKLIB_LOCK_TIMEOUT") {
            b = b.lock_timeout(parse_duration("TASKLIB_LOCK_TIMEOUT", &v)?);
        }
        if let Some(v) = var("TASKLIB_DEFAULT_TASK_TIMEOUT") {
            let timeout = if v.trim().eq_ignore_ascii_case("none") {
                None
            } else {
                Some(parse_duration("TASKLIB_DEFAULT_TASK_TIMEOUT", &v)?)
            };
            b = b.default_task_timeout(timeout);
        }
        if let Some(v) = var("TASKLIB_POLL_INTERVAL") {
            b = b.poll_interval(parse_duration("TASKLIB_POLL_INTERVAL", &v)?);
        }
        if let Some(v) = var("TASKLIB_WORKER_ID") {
            b = b.worker_id(v.trim());
        }
        if let Some(v) = var("TASKLIB_SCHEMA") {
            b = b.schema(v.trim());
        }
        if let Some(v) = var("TASKLIB_TRANSACTION_POOLER") {
            b = b.transaction_pooler(parse_bool("TASKLIB_TRANSACTION_POOLER", &v)?);
        }
        if let Some(v) = var("TASKLIB_LISTEN_URL") {
            b = b.listen_url(v.trim());
        }
        if let Some(v) = var("TASKLIB_RUN_MIGRATIONS") {
            b = b.run_migrations(parse_bool("TASKLIB_RUN_MIGRATIONS", &v)?);
        }
        if let Some(v) = var("TASKLIB_MAX_CONNECTIONS") {
            b = b.max_connections(parse_num("TASKLIB_MAX_CONNECTIONS", &v)?);
        }
        if let Some(v) = var("TASKLIB_CONNECT_TIMEOUT") {
            b = b.connect_timeout(parse_duration("TASKLIB_CONNECT_TIMEOUT", &v)?);
        }
        if let Some(v) = var("TASKLIB_MAX_ARGS_BYTES") {
            b = b.max_args_bytes(parse_num("TASKLIB_MAX_ARGS_BYTES", &v)?);
        }
        if let Some(v) = var("TASKLIB_SHUTDOWN_GRACE_PERIOD") {
            b = b.shutdown_grace_period(parse_duration("TASKLIB_SHUTDOWN_GRACE_PERIOD", &v)?);
        }
        Ok(b)
    }
}

/// Merges the builder's TLS settings with the URL's (the builder wins) and writes the result
/// into the URL, which every connection is made from.
fn resolve_tls(config: &mut Config) -> Result<()> {
    let (url_mode, url_root) = tls::url_settings(&config.database_url)?;
    if config.ssl_mode.is_none() && config.ssl_root_cert.is_none() {
        config.ssl_mode = url_mode;
        config.ssl_root_cert = url_root;
        return Ok(());
    }
    config.ssl_mode = config.ssl_mode.or(url_mode);
    config.ssl_root_cert = config.ssl_root_cert.take().or(url_root);
    config.database_url = tls::with_settings(
        &config.database_url,
        config.ssl_mode,
        config.ssl_root_cert.as_deref(),
    )?;
    if let Some(listen) = &config.listen_url {
        config.listen_url = Some(tls::with_settings(
            listen,
            config.ssl_mode,
            config.ssl_root_cert.as_deref(),
        )?);
    }
    Ok(())
}

fn invalid<T>(field: &'static str, reason: impl Into<String>) -> Result<T> {
    Err(Error::InvalidConfig {
        field,
        reason: reason.into(),
    })
}

fn positive(field: &'static str, value: Duration) -> Result<()> {
    if value.is_zero() {
        return invalid(field, "must be greater than zero");
    }
    Ok(())
}

fn parse_num<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T> {
    value
        .trim()
        .parse()
        .or_else(|_| invalid(field, format!("`{value}` is not a valid number")))
}

fn parse_bool(field: &'static str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => invalid(field, format!("`{value}` is not true or false")),
    }
}

/// Parses a duration as the `TASKLIB_*` variables and the command lines take it: `500ms`,
/// `30`, `30s`, `10m`, `2h`, `7d`, `2w` (fractions allowed: `1.5s`).
///
/// # Errors
/// [`Error::InvalidConfig`] naming `field` when the text is not such a duration.
pub fn parse_duration(field: &'static str, value: &str) -> Result<Duration> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = match number.parse() {
        Ok(n) => n,
        Err(_) => {
            return invalid(
                field,
                format!("`{value}` is not a duration such as 500ms, 30s, 10m or 2h"),
            );
        }
    };
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        "w" => number * 604_800.0,
        _ => {
            return invalid(
                field,
                format!("`{value}` has an unknown unit: use ms, s, m, h, d or w"),
            );
        }
    };
    Duration::try_from_secs_f64(seconds)
        .or_else(|_| invalid(field, format!("`{value}` is out of range")))
}

/// The machine's host name, as the kernel (or `HOSTNAME`) reports it.
pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn generate_worker_id() -> String {
    let host = host_name().unwrap_or_else(|| "worker".to_owned());
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    // The last hex digits of a v7 id are random.
    let random = &suffix[suffix.len() - 6..];
    format!("{host}-{}-{random}", std::process::id())
}

/// Why `schema` cannot be tasklib's schema, if it cannot: a lowercase identifier that needs
/// no quoting, so it can be written into statements and channel names as it is.
fn check_schema(schema: &str) -> std::result::Result<(), String> {
    let plain = schema
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let starts_well = schema
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if schema.is_empty() || schema.len() > 40 || !plain || !starts_well {
        return Err(format!(
            "`{schema}` is not a lowercase identifier of at most 40 characters (a-z, 0-9, _, not starting with a digit)"
        ));
    }
    if schema.starts_with("pg_") {
        return Err(format!(
            "`{schema}`: names starting with `pg_` are reserved by PostgreSQL"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_the_documented_constants() -> Result<()> {
        let c = Config::builder("postgres://localhost/db").build()?;
        assert_eq!(c.max_retries(), 3);
        assert_eq!(c.base_retry_delay(), Duration::from_secs(5));
        assert_eq!(c.retry_backoff_multiplier(), 2.0);
        assert_eq!(c.lock_timeout(), Duration::from_secs(30));
        assert_eq!(c.default_task_timeout(), None);
        assert_eq!(c.poll_interval(), Duration::from_secs(1));
        assert!(c.run_migrations());
        assert!(!c.worker_id().is_empty());
        Ok(())
    }

    #[test]
    fn worker_ids_differ_between_configs() -> Result<()> {
        let a = Config::builder("postgres://localhost/db").build()?;
        let b = Config::builder("postgres://localhost/db").build()?;
        assert_ne!(a.worker_id(), b.worker_id());
        Ok(())
    }

    #[test]
    fn rejects_out_of_range_values() {
        let base = || Config::builder("postgres://localhost/db");
        let cases = [
            (base().base_retry_delay(Duration::ZERO), "base_retry_delay"),
            (base().poll_interval(Duration::ZERO), "poll_interval"),
            (
                base().retry_backoff_multiplier(0.5),
                "retry_backoff_multiplier",
            ),
            (
                base().retry_backoff_multiplier(f64::NAN),
                "retry_backoff_multiplier",
            ),
            (
                base().lock_timeout(Duration::from_millis(10)),
                "lock_timeout",
            ),
            (
                base().default_task_timeout(Some(Duration::ZERO)),
                "default_task_timeout",
            ),
            (base().retry_jitter(1.0), "retry_jitter"),
            (base().worker_id(" "), "worker_id"),
            (base().max_connections(0), "max_connections"),
            (
                base().max_retry_delay(Duration::from_secs(1)),
                "max_retry_delay",
            ),
            (Config::builder(""), "database_url"),
        ];
        for (builder, field) in cases {
            match builder.build() {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn reads_environment_variables() -> Result<()> {
        let c = ConfigBuilder::from_vars(vars(&[
            ("DATABASE_URL", "postgres://u:pw@h/db"),
            ("TASKLIB_MAX_RETRIES", "7"),
            ("TASKLIB_BASE_RETRY_DELAY", "250ms"),
            ("TASKLIB_RETRY_BACKOFF_MULTIPLIER", "1.5"),
            ("TASKLIB_LOCK_TIMEOUT", "2m"),
            ("TASKLIB_DEFAULT_TASK_TIMEOUT", "30"),
            ("TASKLIB_POLL_INTERVAL", "0.5s"),
            ("TASKLIB_WORKER_ID", "w-1"),
            ("TASKLIB_RUN_MIGRATIONS", "false"),
        ]))?
        .build()?;
        assert_eq!(c.max_retries(), 7);
        assert_eq!(c.base_retry_delay(), Duration::from_millis(250));
        assert_eq!(c.retry_backoff_multiplier(), 1.5);
        assert_eq!(c.lock_timeout(), Duration::from_secs(120));
        assert_eq!(c.default_task_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(c.poll_interval(), Duration::from_millis(500));
        assert_eq!(c.worker_id(), "w-1");
        assert!(!c.run_migrations());
        Ok(())
    }

    #[test]
    fn a_transaction_pooler_listens_only_where_told() -> Result<()> {
        let direct =
            ConfigBuilder::from_vars(vars(&[("DATABASE_URL", "postgres://u:pw@h/db")]))?.build()?;
        assert!(!direct.transaction_pooler());
        assert_eq!(direct.notification_url(), Some(direct.database_url()));

        let pooled = ConfigBuilder::from_vars(vars(&[
            ("DATABASE_URL", "postgres://u:pw@bouncer:6432/db"),
            ("TASKLIB_TRANSACTION_POOLER", "true"),
        ]))?
        .build()?;
        assert!(pooled.transaction_pooler());
        assert_eq!(pooled.notification_url(), None);

        let split = ConfigBuilder::from_vars(vars(&[
            (
                "DATABASE_URL",
                "postgres://u:pw@bouncer:6432/db?sslmode=require",
            ),
            ("TASKLIB_TRANSACTION_POOLER", "yes"),
            ("TASKLIB_LISTEN_URL", "postgres://u:pw@primary:5432/db"),
        ]))?
        .build()?;
        let listen = split.notification_url().map(|u| u.to_string());
        assert_eq!(listen.as_deref(), Some("postgres://u:***@primary:5432/db"));
        assert!(!format!("{split:?}").contains("pw"));

        let tls = Config::builder("postgres://h/db")
            .listen_url("postgres://primary/db")
            .ssl_mode(SslMode::VerifyFull)
            .build()?;
        let listen = tls
            .listen_url()
            .map(RedactedUrl::expose)
            .unwrap_or_default();
        assert!(listen.contains("sslmode=verify-full"), "{listen}");
        Ok(())
    }

    #[test]
    fn missing_url_and_bad_values_are_named() {
        match ConfigBuilder::from_vars(vars(&[])) {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "DATABASE_URL"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
        let bad = ConfigBuilder::from_vars(vars(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("TASKLIB_POLL_INTERVAL", "soon"),
        ]));
        match bad {
            Err(Error::InvalidConfig { field, reason }) => {
                assert_eq!(field, "TASKLIB_POLL_INTERVAL");
                assert!(reason.contains("soon"));
            }
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn tls_settings_come_from_the_url_and_the_builder_wins() -> Result<()> {
        let plain = Config::builder("postgres://u:pw@h/db").build()?;
        assert_eq!(plain.ssl_mode(), DEFAULT_SSL_MODE);
        assert_eq!(plain.ssl_root_cert(), None);
        assert_eq!(plain.database_url().expose(), "postgres://u:pw@h/db");

        let url = "postgres://u:pw@h/db?sslmode=require&sslrootcert=/a/ca.pem&application_name=x";
        let from_url = Config::builder(url).build()?;
        assert_eq!(from_url.ssl_mode(), SslMode::Require);
        assert_eq!(
            from_url.ssl_root_cert(),
            Some(std::path::Path::new("/a/ca.pem"))
        );
        assert_eq!(from_url.database_url().expose(), url);

        let both = Config::builder(url).ssl_mode(SslMode::VerifyFull).build()?;
        assert_eq!(both.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(
            both.ssl_root_cert(),
            Some(std::path::Path::new("/a/ca.pem"))
        );
        assert_eq!(
            both.database_url().expose(),
            "postgres://u:pw@h/db?application_name=x&sslmode=verify-full&sslrootcert=/a/ca.pem"
        );
        let root = Config::builder("postgres://h/db?ssl-mode=disable")
            .ssl_root_cert("/b/ca.pem")
            .build()?;
        assert_eq!(root.ssl_mode(), SslMode::Disable);
        assert_eq!(
            root.database_url().expose(),
            "postgres://h/db?sslmode=disable&sslrootcert=/b/ca.pem"
        );

        match Config::builder("postgres://h/db?sslmode=verify_full").build() {
            Err(Error::InvalidConfig { field, reason }) => {
                assert_eq!(field, "sslmode");
                assert!(reason.contains("verify-full"), "{reason}");
            }
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
        assert!("allow".parse::<SslMode>().is_err());
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(mode.to_string().parse::<SslMode>()?, mode);
        }
        Ok(())
    }

    #[test]
    fn parses_durations() -> Result<()> {
        assert_eq!(parse_duration("x", "500ms")?, Duration::from_millis(500));
        assert_eq!(parse_duration("x", "30")?, Duration::from_secs(30));
        assert_eq!(parse_duration("x", "10m")?, Duration::from_secs(600));
        assert_eq!(parse_duration("x", "2h")?, Duration::from_secs(7200));
        assert_eq!(parse_duration("x", "7d")?, Duration::from_secs(7 * 86_400));
        assert!(parse_duration("x", "10 parsecs").is_err());
        assert!(parse_duration("x", "").is_err());
        Ok(())
    }

    #[test]
    fn backend_from_the_environment() -> Result<()> {
        let pg =
            ConfigBuilder::from_vars(vars(&[("DATABASE_URL", "postgres://u:pw@h/db")]))?.build()?;
        assert_eq!(pg.backend(), BackendType::Postgres);
        assert_eq!(
            pg.backend_config().get("database_url"),
            Some("postgres://u:***@h/db")
        );

        let celery = ConfigBuilder::from_vars(vars(&[
            ("TASK_BACKEND_TYPE", "celery"),
            ("CELERY_BROKER_URL", "redis://:pw@127.0.0.1:6379/0"),
            ("TASK_CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1"),
        ]))?
        .build()?;
        assert_eq!(celery.backend(), BackendType::Celery);
        let shown = celery.backend_config().to_string();
        assert!(!shown.contains("pw"), "{shown}");
        assert!(shown.contains("redis://127.0.0.1:6379/1"), "{shown}");
        // The TASK_ spelling wins over Celery's own.
        let both = ConfigBuilder::from_vars(vars(&[
            ("TASK_BACKEND_TYPE", "celery"),
            ("TASK_CELERY_BROKER_URL", "redis://a/0"),
            ("CELERY_BROKER_URL", "redis://b/0"),
        ]))?
        .build()?;
        assert_eq!(
            both.celery_broker_url().map(|u| u.expose()),
            Some("redis://a/0")
        );

        let temporal = ConfigBuilder::from_vars(vars(&[
            ("TASK_BACKEND_TYPE", "temporal"),
            ("TEMPORAL_NAMESPACE", "jobs"),
        ]))?
        .build()?;
        assert_eq!(temporal.temporal_host(), DEFAULT_TEMPORAL_HOST);
        assert_eq!(temporal.temporal_namespace(), "jobs");
        Ok(())
    }

    #[test]
    fn backend_settings_that_are_missing_or_wrong() {
        let unknown = ConfigBuilder::from_vars(vars(&[("TASK_BACKEND_TYPE", "rabbit")]));
        let message = unknown.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("rabbit") && message.contains("postgres, celery"),
            "{message}"
        );
        let no_broker = ConfigBuilder::from_vars(vars(&[("TASK_BACKEND_TYPE", "celery")]))
            .and_then(ConfigBuilder::build);
        assert!(matches!(
            no_broker,
            Err(Error::InvalidConfig {
                field: "celery_broker_url",
                ..
            })
        ));
        let half_tls = ConfigBuilder::from_vars(vars(&[
            ("TASK_BACKEND_TYPE", "temporal"),
            ("TEMPORAL_TLS_CERT_PATH", "/tmp/cert.pem"),
        ]))
        .and_then(ConfigBuilder::build);
        assert!(matches!(
            half_tls,
            Err(Error::InvalidConfig {
                field: "temporal_tls",
                ..
            })
        ));
        // PostgreSQL still needs its URL.
        assert!(ConfigBuilder::from_vars(vars(&[("TASK_BACKEND_TYPE", "postgres")])).is_err());
    }
}
