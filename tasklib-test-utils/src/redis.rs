//! A private Redis server per test: `redis-server` started as a child process on a free
//! loopback port, without persistence, stopped when the value drops (and, should the test
//! process die first, by an exit watchdog). Never the machine's own Redis.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::watchdog;

/// How long `redis-server` may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How many ports are tried (another process may take a free port between the look-up and
/// the server's bind).
const PORT_TRIES: u32 = 5;

/// Why a test Redis could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestRedisError {
    /// `redis-server` is not installed.
    #[error(
        "`redis-server` was not found on PATH: install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`)"
    )]
    NotInstalled,
    /// It started but did not become ready, or a system call failed.
    #[error("starting redis-server failed: {0}")]
    Start(String),
}

/// A Redis server of one's own, on `127.0.0.1` and a free port, killed on drop.
///
/// ```no_run
/// # fn demo() -> Result<(), tasklib_test_utils::TestRedisError> {
/// let redis = tasklib_test_utils::TestRedis::start()?;
/// let broker = redis.url(0); // redis://127.0.0.1:<port>/0
/// let results = redis.url(1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestRedis {
    child: Child,
    port: u16,
    password: Option<String>,
    tls: Option<Tls>,
}

/// The TLS side of a server started with [`TestRedis::start_tls`].
#[derive(Debug)]
struct Tls {
    port: u16,
    dir: PathBuf,
}

impl TestRedis {
    /// Starts a server and waits until it accepts connections.
    ///
    /// # Errors
    /// [`TestRedisError::NotInstalled`] without `redis-server`; [`TestRedisError::Start`] when
    /// it does not come up.
    pub fn start() -> Result<TestRedis, TestRedisError> {
        Self::start_inner(None, false)
    }

    /// Starts a server that also listens with TLS ([`tls_url`](Self::tls_url)), on a
    /// certificate for `127.0.0.1` signed by a throwaway CA ([`ca_file`](Self::ca_file)),
    /// made with the `openssl` command.
    ///
    /// # Errors
    /// As [`start`](Self::start); [`TestRedisError::Start`] when `openssl` fails.
    pub fn start_tls() -> Result<TestRedis, TestRedisError> {
        Self::start_inner(None, true)
    }

    /// Starts a server that requires `password` (`requirepass`); [`url`](Self::url) includes
    /// it.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with_password(password: &str) -> Result<TestRedis, TestRedisError> {
        Self::start_inner(Some(password.to_owned()), false)
    }

    fn start_inner(password: Option<String>, tls: bool) -> Result<TestRedis, TestRedisError> {
        let mut last = String::new();
        for _ in 0..PORT_TRIES {
            let port = free_port()?;
            let tls = if tls {
                Some(Tls {
                    port: free_port()?,
                    dir: certificates()?,
                })
            } else {
                None
            };
            match start_on(port, password.as_deref(), tls.as_ref()) {
                Ok(child) => {
                    watchdog::after_exit(
                        "test redis-server",
                        &format!("kill -9 {} 2>/dev/null", child.id()),
                        &[],
                    );
                    return Ok(TestRedis {
                        child,
                        port,
                        password,
                        tls,
                    });
                }
                Err(TestRedisError::Start(why)) => last = why,
                Err(other) => return Err(other),
            }
        }
        Err(TestRedisError::Start(last))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/<db>`, or `redis://:<password>@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: u8) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/{db}", self.port),
            None => format!("redis://127.0.0.1:{}/{db}", self.port),
        }
    }

    /// `rediss://127.0.0.1:<tls port>/<db>`, for a server started with
    /// [`start_tls`](Self::start_tls).
    pub fn tls_url(&self, db: u8) -> Option<String> {
        self.tls
            .as_ref()
            .map(|tls| format!("rediss://127.0.0.1:{}/{db}", tls.port))
    }

    /// The CA certificate (PEM) that signed the TLS server's certificate: give it to clients
    /// as `SSL_CERT_FILE`.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|tls| tls.dir.join("ca.pem"))
    }

    /// Sends one command to database `db` and returns the raw RESP reply: for tests that
    /// look at what an engine left in Redis.
    ///
    /// # Errors
    /// An I/O error when the server cannot be reached.
    pub fn command(&self, db: u8, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = String::new();
        let db = db.to_string();
        let auth: Vec<&str> = match &self.password {
            Some(password) => vec!["AUTH", password],
            None => Vec::new(),
        };
        let commands = [&auth[..], &["SELECT", db.as_str()][..], args, &["QUIT"][..]];
        for command in commands.into_iter().filter(|c| !c.is_empty()) {
            request.push_str(&format!("*{}\r\n", command.len()));
            for arg in command {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
        }
        stream.write_all(request.as_bytes())?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        let mut reply = reply.as_str();
        for _ in 0..if self.password.is_some() { 2 } else { 1 } {
            reply = reply.strip_prefix("+OK\r\n").unwrap_or(reply);
        }
        Ok(reply.strip_suffix("+OK\r\n").unwrap_or(reply).to_owned())
    }

    /// How many keys database `db` holds.
    ///
    /// # Errors
    /// An I/O error when the server cannot be reached or the reply is not a number.
    pub fn dbsize(&self, db: u8) -> std::io::Result<u64> {
        let reply = self.command(db, &["DBSIZE"])?;
        reply
            .trim()
            .trim_start_matches(':')
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(tls) = &self.tls {
            let _ = std::fs::remove_dir_all(&tls.dir);
        }
    }
}

/// A CA and a server certificate for `127.0.0.1` it signed, in a new temporary directory.
fn certificates() -> Result<PathBuf, TestRedisError> {
    let dir = std::env::temp_dir().join(format!(
        "tasklib-redis-tls-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| TestRedisError::Start(e.to_string()))?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| TestRedisError::Start(e.to_string()))?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tasklib test CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .map_err(|e| TestRedisError::Start(format!("openssl: {e}")))?;
        if !out.status.success() {
            return Err(TestRedisError::Start(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(dir)
}

fn free_port() -> Result<u16, TestRedisError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TestRedisError::Start(format!("no free port: {e}")))
}

/// Starts `redis-server` on `port` and waits for its "Ready to accept connections" line.
fn start_on(port: u16, password: Option<&str>, tls: Option<&Tls>) -> Result<Child, TestRedisError> {
    let mut command = Command::new("redis-server");
    if let Some(password) = password {
        command.args(["--requirepass", password]);
    }
    if let Some(tls) = tls {
        command
            .arg("--tls-port")
            .arg(tls.port.to_string())
            .arg("--tls-cert-file")
            .arg(tls.dir.join("server.pem"))
            .arg("--tls-key-file")
            .arg(tls.dir.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(tls.dir.join("ca.pem"))
            .args(["--tls-auth-clients", "no"]);
    }
    let spawned = command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "notice",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C meant for the tests reaches it through Drop.
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TestRedisError::NotInstalled);
        }
        Err(e) => return Err(TestRedisError::Start(e.to_string())),
    };
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(TestRedisError::Start("no stdout".into()));
    };
    // Read the log on a thread until it says ready (or ends); keep draining it afterwards so
    // the server never blocks on a full pipe.
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut log = Vec::new();
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(tx) = &ready {
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(Ok(()));
                    ready = None;
                } else {
                    log.push(line);
                }
            }
        }
        if let Some(tx) = ready {
            let _ = tx.send(Err(log.join("\n")));
        }
    });
    match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(())) => Ok(child),
        Ok(Err(log)) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(TestRedisError::Start(format!("redis-server exited: {log}")))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(TestRedisError::Start(format!(
                "not ready within {START_TIMEOUT:?}"
            )))
        }
    }
}
