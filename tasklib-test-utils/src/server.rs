//! Where test databases are created: `DATABASE_URL`'s server, or a private cluster.

use std::fmt;

use crate::cluster::Cluster;
use crate::error::TestDbError;

/// The server that test databases are created on.
pub(crate) enum Server {
    /// The server of `DATABASE_URL`; `base` is that URL as given (its database is the one
    /// connected to for `CREATE DATABASE`).
    External { base: url::Url },
    /// The throwaway cluster this process started.
    Private(Cluster),
}

impl Server {
    /// `DATABASE_URL`'s server when the variable is set (and not blank), else a private
    /// cluster, started now. Blocks for the cluster's start (about a second).
    pub(crate) fn from_env() -> Result<Server, TestDbError> {
        match std::env::var("DATABASE_URL") {
            Ok(raw) if !raw.trim().is_empty() => Ok(Server::External {
                base: parse_database_url(&raw)?,
            }),
            _ => Ok(Server::Private(Cluster::start()?)),
        }
    }

    /// A connection URL for `database` on this server.
    pub(crate) fn url(&self, database: &str) -> String {
        match self {
            Server::External { base } => {
                let mut url = base.clone();
                url.set_path(&format!("/{database}"));
                url.to_string()
            }
            Server::Private(cluster) => cluster.url(database),
        }
    }

    /// The URL to connect to for `CREATE DATABASE` and `DROP DATABASE`.
    pub(crate) fn admin_url(&self) -> String {
        match self {
            Server::External { base } => base.to_string(),
            Server::Private(cluster) => cluster.url("postgres"),
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The URL may hold a password: show where, not how.
            Server::External { base } => f
                .debug_struct("External")
                .field("host", &base.host_str().unwrap_or_default())
                .field("port", &base.port())
                .finish_non_exhaustive(),
            Server::Private(cluster) => f.debug_tuple("Private").field(cluster).finish(),
        }
    }
}

/// Checks that `raw` is a `postgres://` URL. The error never repeats the URL (it may hold a
/// password).
fn parse_database_url(raw: &str) -> Result<url::Url, TestDbError> {
    let base = url::Url::parse(raw).map_err(|e| TestDbError::InvalidUrl(e.to_string()))?;
    if !matches!(base.scheme(), "postgres" | "postgresql") {
        return Err(TestDbError::InvalidUrl(format!(
            "scheme `{}` is not postgres",
            base.scheme()
        )));
    }
    Ok(base)
}

/// libpq environment variables (`PGHOST`, `PGPASSWORD`...) for connecting `psql` to `url`, so
/// that no credential appears on a command line. Only the parameters libpq shares with the
/// Rust drivers are carried over; the rest are ignored.
pub(crate) fn libpq_env(url: &url::Url) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut set = |key: &str, value: String| {
        if !value.is_empty() {
            env.retain(|(k, _): &(String, String)| k != key);
            env.push((key.to_owned(), value));
        }
    };
    let host = url.host_str().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    set("PGHOST", percent_decode(host));
    if let Some(port) = url.port() {
        set("PGPORT", port.to_string());
    }
    set("PGUSER", percent_decode(url.username()));
    set(
        "PGPASSWORD",
        percent_decode(url.password().unwrap_or_default()),
    );
    set(
        "PGDATABASE",
        percent_decode(url.path().trim_start_matches('/')),
    );
    for (key, value) in url.query_pairs() {
        let var = match key.as_ref() {
            "host" => "PGHOST",
            "port" => "PGPORT",
            "user" => "PGUSER",
            "password" => "PGPASSWORD",
            "dbname" => "PGDATABASE",
            "sslmode" => "PGSSLMODE",
            "sslrootcert" => "PGSSLROOTCERT",
            "sslcert" => "PGSSLCERT",
            "sslkey" => "PGSSLKEY",
            "options" => "PGOPTIONS",
            _ => continue,
        };
        set(var, value.into_owned());
    }
    set("PGCONNECT_TIMEOUT", "10".to_owned());
    set("PGAPPNAME", "tasklib-test-utils cleanup".to_owned());
    env
}

/// Decodes `%XX` escapes (URL hosts, user names and passwords keep them in `url::Url`).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(url: &str) -> Result<Vec<(String, String)>, TestDbError> {
        Ok(libpq_env(&parse_database_url(url)?))
    }

    fn get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn credentials_and_hosts_become_libpq_variables() -> Result<(), TestDbError> {
        let env = env_of("postgres://us%40er:p%40ss%3Aw@db.example:6543/ad%20min?sslmode=require")?;
        assert_eq!(get(&env, "PGHOST"), Some("db.example"));
        assert_eq!(get(&env, "PGPORT"), Some("6543"));
        assert_eq!(get(&env, "PGUSER"), Some("us@er"));
        assert_eq!(get(&env, "PGPASSWORD"), Some("p@ss:w"));
        assert_eq!(get(&env, "PGDATABASE"), Some("ad min"));
        assert_eq!(get(&env, "PGSSLMODE"), Some("require"));
        Ok(())
    }

    #[test]
    fn socket_directories_work_as_host_or_parameter() -> Result<(), TestDbError> {
        let env = env_of("postgres://postgres@%2Fvar%2Frun%2Fpostgresql:5432/postgres")?;
        assert_eq!(get(&env, "PGHOST"), Some("/var/run/postgresql"));
        let env = env_of("postgres://postgres@localhost/postgres?host=%2Ftmp%2Fpg")?;
        assert_eq!(get(&env, "PGHOST"), Some("/tmp/pg"));
        assert_eq!(get(&env, "PGPASSWORD"), None);
        let env = env_of("postgres://[::1]:5432/postgres")?;
        assert_eq!(get(&env, "PGHOST"), Some("::1"));
        Ok(())
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for raw in ["mysql://root:hunter2@db/x", "not a url hunter2"] {
            match parse_database_url(raw) {
                Err(e) => assert!(!e.to_string().contains("hunter2"), "{e}"),
                Ok(_) => panic!("accepted {raw}"),
            }
        }
    }

    #[test]
    fn debug_hides_the_password() -> Result<(), TestDbError> {
        let server = Server::External {
            base: parse_database_url("postgres://u:hunter2@db:5432/postgres")?,
        };
        let shown = format!("{server:?}");
        assert!(
            shown.contains("db") && !shown.contains("hunter2"),
            "{shown}"
        );
        Ok(())
    }
}
