//! [`TestTlsCluster`]: a PostgreSQL server of one test's own on a loopback TCP port, with TLS
//! on a certificate made for it (or, to compare, without TLS).

use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::cluster::{Layout, io, pg, run};
use crate::error::TestDbError;

/// How many ports are tried (another process may take a free port between the look-up and
/// the server's bind).
const PORT_TRIES: u32 = 5;

/// The host names a [`TestTlsCluster::start`] certificate is made for.
pub const TLS_TEST_HOSTS: &[&str] = &["localhost", "127.0.0.1"];

/// A PostgreSQL server for one test, reached over TCP on `127.0.0.1` and a free port, with
/// `ssl=on` and a server certificate signed by a certificate authority made for it (with
/// [`rcgen`](https://docs.rs/rcgen)): what TLS settings (`sslmode`, `sslrootcert`) are tested
/// against. [`start_without_tls`](Self::start_without_tls) starts the same server without TLS.
///
/// TCP connections authenticate with SCRAM as `postgres` and [`password`](Self::password)
/// (the URLs from [`url`](Self::url) carry it); the Unix socket in the cluster's directory,
/// which [`create_database`](Self::create_database) uses, is trusted. Like
/// [`TestCluster`](crate::TestCluster) it costs an `initdb` (about a second), runs as the
/// `postgres` user when the test runs as root, and is stopped and deleted on drop (or by a
/// watchdog if the test process dies first).
///
/// ```no_run
/// use tasklib_test_utils::TestTlsCluster;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = TestTlsCluster::start().await?;
/// let db = cluster.create_database().await?;
/// let ca = cluster.ca_cert().ok_or("no CA")?.display().to_string();
/// let url = format!("{}?sslmode=verify-full&sslrootcert={ca}", cluster.url("localhost", &db));
/// let tasks = tasklib::TaskLib::connect(&url).await?;
/// # drop(tasks);
/// # Ok(())
/// # }
/// ```
#[must_use = "the cluster is stopped when this value is dropped"]
pub struct TestTlsCluster {
    layout: Layout,
    port: u16,
    password: String,
    /// The CA certificate (PEM) that signed the server's, when TLS is on.
    ca_cert: Option<PathBuf>,
}

impl TestTlsCluster {
    /// Starts a server with TLS, its certificate valid for [`TLS_TEST_HOSTS`] (`localhost`
    /// and `127.0.0.1`).
    ///
    /// # Errors
    /// [`TestDbError::NoServer`] when the server binaries are not installed,
    /// [`TestDbError::Cluster`] (with the server log's tail) when a step fails.
    pub async fn start() -> Result<TestTlsCluster, TestDbError> {
        Self::start_for_hosts(TLS_TEST_HOSTS).await
    }

    /// Starts a server with TLS, its certificate valid for `hosts` only (DNS names or IP
    /// addresses): to test a host name the certificate does not name.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_for_hosts(hosts: &[&str]) -> Result<TestTlsCluster, TestDbError> {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        blocking(move || Self::start_blocking(Some(hosts))).await
    }

    /// Starts the same server without TLS (`ssl=off`): for plain TCP connections, and for
    /// what `sslmode=require` does when the server has no TLS.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_without_tls() -> Result<TestTlsCluster, TestDbError> {
        blocking(|| Self::start_blocking(None)).await
    }

    fn start_blocking(tls_hosts: Option<Vec<String>>) -> Result<TestTlsCluster, TestDbError> {
        let layout = Layout::create("tasklib-pgtls")?;
        let mut cluster = TestTlsCluster {
            layout,
            port: 0,
            password: format!("pw-{}", crate::service::random_suffix()),
            ca_cert: None,
        };
        // From here on, dropping `cluster` cleans up whatever exists.
        cluster.initdb()?;
        let mut ssl = String::new();
        if let Some(hosts) = tls_hosts {
            let files = cluster.write_certificates(&hosts)?;
            ssl = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                files.cert.display(),
                files.key.display()
            );
            cluster.ca_cert = Some(files.ca);
        }
        cluster.layout.arm_watchdog();
        let mut last = None;
        for _ in 0..PORT_TRIES {
            cluster.port = free_port()?;
            let options = format!(
                "-k {} -h 127.0.0.1 -p {} -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c max_connections=50 -c shared_buffers=32MB{ssl}",
                cluster.layout.base.display(),
                cluster.port,
            );
            match cluster
                .layout
                .pg_ctl("pg_ctl start", &["-o", &options, "start"])
            {
                Ok(()) => {
                    tracing::info!(dir = %cluster.layout.base.display(), port = cluster.port, tls = cluster.ca_cert.is_some(), "started a private TCP PostgreSQL cluster");
                    return Ok(cluster);
                }
                Err(error) => last = Some(cluster.layout.with_log(error)),
            }
        }
        Err(last.unwrap_or(TestDbError::Cluster {
            step: "pg_ctl start",
            detail: "no port tried".to_owned(),
        }))
    }

    /// `initdb` with SCRAM for TCP connections (the password from a file) and trust on the
    /// Unix socket.
    fn initdb(&self) -> Result<(), TestDbError> {
        let pwfile = self.layout.base.join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", self.password))
            .map_err(|e| io("writing the password file", &e))?;
        self.give_to_server(&pwfile, 0o600)?;
        let done = run(
            "initdb",
            pg(self.layout.as_root, &self.layout.bin.join("initdb"))
                .arg("-D")
                .arg(&self.layout.data)
                .arg(format!("--pwfile={}", pwfile.display()))
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
        );
        let _ = std::fs::remove_file(&pwfile);
        done
    }

    /// Makes a CA and a server certificate for `hosts` signed by it, and writes the CA's
    /// certificate, the server's certificate and its key (mode 0600, owned by the server's
    /// user, as PostgreSQL requires) into the cluster's directory.
    fn write_certificates(&self, hosts: &[String]) -> Result<CertificateFiles, TestDbError> {
        let ca = make_ca("tasklib test CA")?;
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(cert_error)?;
        params.distinguished_name.push(
            DnType::CommonName,
            hosts.first().map_or("localhost", String::as_str),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &*ca).map_err(cert_error)?;
        let base = &self.layout.base;
        let files = CertificateFiles {
            ca: base.join("root.crt"),
            cert: base.join("server.crt"),
            key: base.join("server.key"),
        };
        write(&files.ca, &ca.pem())?;
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        self.give_to_server(&files.cert, 0o644)?;
        self.give_to_server(&files.key, 0o600)?;
        Ok(files)
    }

    /// Sets `path`'s mode and, as root, gives it to the `postgres` user.
    fn give_to_server(&self, path: &Path, mode: u32) -> Result<(), TestDbError> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("chmod", &e))?;
        if self.layout.as_root {
            run(
                "chown",
                Command::new("chown").arg("postgres:postgres").arg(path),
            )?;
        }
        Ok(())
    }

    /// The TCP port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of the `postgres` user over TCP.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://postgres:<password>@<host>:<port>/<database>`, without TLS settings:
    /// append `?sslmode=…&sslrootcert=…`. `host` is what TLS checks the certificate against
    /// (`localhost` and `127.0.0.1` both reach the server).
    pub fn url(&self, host: &str, database: &str) -> String {
        format!(
            "postgres://postgres:{}@{host}:{}/{database}",
            self.password, self.port
        )
    }

    /// The PEM certificate of the CA that signed the server's certificate (the cluster's
    /// `sslrootcert`); `None` without TLS.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// Writes the certificate of a new CA that signed nothing this server uses, and returns
    /// its path: an `sslrootcert` the server's certificate does not chain to.
    ///
    /// # Errors
    /// [`TestDbError::Cluster`] when the certificate cannot be made or written.
    pub fn unrelated_ca_cert(&self) -> Result<PathBuf, TestDbError> {
        let ca = make_ca("tasklib unrelated CA")?;
        let path = self
            .layout
            .base
            .join(format!("unrelated-{}.crt", crate::service::random_suffix()));
        write(&path, &ca.pem())?;
        Ok(path)
    }

    /// Creates an empty database `tasklib_test_<random>` (over the Unix socket) and returns
    /// its name, for [`url`](Self::url) (`TaskLib::connect` applies the migrations).
    ///
    /// # Errors
    /// [`TestDbError::Database`] when the server refuses.
    pub async fn create_database(&self) -> Result<String, TestDbError> {
        let dir = self.layout.base.display().to_string().replace('/', "%2F");
        let admin = format!("postgres://postgres@{dir}:{}/postgres", self.port);
        crate::service::create_random_database(&admin, "connecting to a private TCP cluster").await
    }
}

impl fmt::Debug for TestTlsCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestTlsCluster")
            .field("dir", &self.layout.base)
            .field("port", &self.port)
            .field("tls", &self.ca_cert.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for TestTlsCluster {
    fn drop(&mut self) {
        if self.layout.data.join("postmaster.pid").exists()
            && let Err(error) = self
                .layout
                .pg_ctl("pg_ctl stop", &["-m", "immediate", "stop"])
        {
            tracing::warn!(%error, "could not stop a private TCP cluster; its watchdog will");
        }
        let _ = std::fs::remove_dir_all(&self.layout.base);
    }
}

#[derive(Debug)]
struct CertificateFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A self-signed certificate authority.
fn make_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, TestDbError> {
    let key = KeyPair::generate().map_err(cert_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, key).map_err(cert_error)
}

fn cert_error(error: rcgen::Error) -> TestDbError {
    TestDbError::Cluster {
        step: "making test certificates",
        detail: error.to_string(),
    }
}

fn write(path: &Path, contents: &str) -> Result<(), TestDbError> {
    std::fs::write(path, contents).map_err(|e| io("writing a test certificate", &e))
}

fn free_port() -> Result<u16, TestDbError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| io("finding a free port", &e))
}

/// Runs a cluster step on a blocking thread.
async fn blocking<T: Send + 'static>(
    step: impl FnOnce() -> Result<T, TestDbError> + Send + 'static,
) -> Result<T, TestDbError> {
    tokio::task::spawn_blocking(step)
        .await
        .map_err(|e| TestDbError::Cluster {
            step: "starting a private TCP cluster",
            detail: e.to_string(),
        })?
}
