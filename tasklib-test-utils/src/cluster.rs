//! A private, throwaway PostgreSQL cluster started from the installed server binaries.
//!
//! Socket-only (`-h ''`, the socket in a fresh temporary directory), `fsync=off`: it starts
//! in about a second and cannot collide with another server. A small watchdog shell process
//! stops it and removes its directory once the process that started it has exited, however it
//! exited (there are no static destructors in Rust to do it).
//!
//! `initdb` and `postgres` refuse to run as root; as root (CI containers) the binaries run as
//! the `postgres` user through `runuser`, on a directory that user owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::TestDbError;
use crate::watchdog::{self, sh_quote};

/// A running throwaway cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    layout: Layout,
}

impl Cluster {
    /// Finds the binaries, creates and starts the cluster, and arms the watchdog.
    pub(crate) fn start() -> Result<Cluster, TestDbError> {
        let layout = Layout::create("tasklib-pg")?;
        layout.initdb()?;
        let started = layout.pg_ctl(
            "pg_ctl start",
            &["-o", &layout.options(400, "64MB"), "start"],
        );
        layout.arm_watchdog();
        started.map_err(|e| layout.with_log(e))?;
        tracing::info!(dir = %layout.base.display(), "started a throwaway PostgreSQL cluster");
        Ok(Cluster { layout })
    }

    /// A URL for `database`, as user `postgres`.
    pub(crate) fn url(&self, database: &str) -> String {
        self.layout.url(database)
    }
}

/// The port, which names the socket file (no TCP listener is opened).
const PORT: u16 = 5432;

/// Where a cluster lives and how its programs run: shared by the throwaway cluster and
/// [`TestCluster`](crate::TestCluster).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The directory of `initdb` and `pg_ctl`.
    pub(crate) bin: PathBuf,
    /// The cluster's own directory: the socket, `data/` and the server log.
    pub(crate) base: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) log: PathBuf,
    /// Whether the programs run as the `postgres` user (this process is root).
    pub(crate) as_root: bool,
}

impl Layout {
    /// Finds the binaries and creates a fresh `<temp>/<prefix>-<pid>-<random>` directory that
    /// the server's user owns.
    pub(crate) fn create(prefix: &str) -> Result<Layout, TestDbError> {
        let bin = find_bin_dir().ok_or(TestDbError::NoServer)?;
        let as_root = is_root();
        let base = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            crate::service::random_suffix()
        ));
        create_base_dir(&base, as_root)?;
        Ok(Layout {
            data: base.join("data"),
            log: base.join("postgres.log"),
            bin,
            base,
            as_root,
        })
    }

    /// `initdb`: user `postgres`, trust authentication, UTF-8, C locale, no sync.
    pub(crate) fn initdb(&self) -> Result<(), TestDbError> {
        run(
            "initdb",
            pg(self.as_root, &self.bin.join("initdb"))
                .arg("-D")
                .arg(&self.data)
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
        )
    }

    /// The server's options: the socket in `base` only, durability off (throwaway data).
    pub(crate) fn options(&self, max_connections: u32, shared_buffers: &str) -> String {
        format!(
            "-k {} -h '' -p {PORT} -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections={max_connections} -c shared_buffers={shared_buffers}",
            self.base.display()
        )
    }

    /// Runs `pg_ctl -D data -l log -w -t 60 <args>`. The log file matters beyond logging:
    /// without it the server would inherit pg_ctl's output pipes, and waiting for pg_ctl's
    /// output would wait for the server to exit.
    pub(crate) fn pg_ctl(&self, step: &'static str, args: &[&str]) -> Result<(), TestDbError> {
        run(
            step,
            pg(self.as_root, &self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .args(["-w", "-t", "60"])
                .args(args),
        )
    }

    /// Adds the last lines of the server log to a failed step's error.
    pub(crate) fn with_log(&self, error: TestDbError) -> TestDbError {
        match error {
            TestDbError::Cluster { step, detail } => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                TestDbError::Cluster {
                    step,
                    detail: format!("{detail}\nserver log:\n{tail}"),
                }
            }
            other => other,
        }
    }

    /// A URL for `database` that sqlx (SeaORM) and tokio-postgres both accept: the socket
    /// directory, percent-encoded, as the host. (A `?host=` parameter beside a `localhost`
    /// host would make tokio-postgres try TCP on localhost first.)
    pub(crate) fn url(&self, database: &str) -> String {
        let dir = self.base.display().to_string().replace('/', "%2F");
        format!("postgres://postgres@{dir}:{PORT}/{database}")
    }

    /// Stops the cluster and removes its directory once this process is gone.
    pub(crate) fn arm_watchdog(&self) {
        let pg_ctl = sh_quote(&self.bin.join("pg_ctl").display().to_string());
        let stop = format!(
            "{}{pg_ctl} -D {} -m immediate stop",
            if self.as_root {
                "runuser -u postgres -- "
            } else {
                ""
            },
            sh_quote(&self.data.display().to_string()),
        );
        let cleanup = format!(
            "{stop} >/dev/null 2>&1; rm -rf {}",
            sh_quote(&self.base.display().to_string())
        );
        watchdog::after_exit("a throwaway PostgreSQL cluster", &cleanup, &[]);
    }
}

/// The directory holding `initdb` and `pg_ctl`: PATH first, then the newest
/// `/usr/lib/postgresql/<version>/bin` (where Debian puts them, off PATH).
pub(crate) fn find_bin_dir() -> Option<PathBuf> {
    find_dir_with(
        &["initdb", "pg_ctl"],
        std::env::var_os("PATH"),
        Path::new(VERSIONS_ROOT),
    )
}

/// Where an installed PostgreSQL program (`psql`) is, looked for as [`find_bin_dir`] does.
pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    find_dir_with(&[name], std::env::var_os("PATH"), Path::new(VERSIONS_ROOT))
        .map(|dir| dir.join(name))
}

/// Debian's and Ubuntu's home of the versioned server binaries.
const VERSIONS_ROOT: &str = "/usr/lib/postgresql";

fn find_dir_with(
    names: &[&str],
    path: Option<std::ffi::OsString>,
    versions_root: &Path,
) -> Option<PathBuf> {
    let has_all = |dir: &Path| names.iter().all(|name| dir.join(name).is_file());
    if let Some(path) = path {
        for dir in std::env::split_paths(&path) {
            if has_all(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(versions_root)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_all(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// True when running as root (uid 0), read from /proc so no unsafe code is needed.
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// A command for a PostgreSQL binary, as the `postgres` user when we are root.
pub(crate) fn pg(as_root: bool, binary: &Path) -> Command {
    if as_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(binary);
        cmd
    } else {
        Command::new(binary)
    }
}

pub(crate) fn run(step: &'static str, cmd: &mut Command) -> Result<(), TestDbError> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io(step, &e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TestDbError::Cluster {
            step,
            detail: format!(
                "{}\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

pub(crate) fn io(step: &'static str, error: &std::io::Error) -> TestDbError {
    TestDbError::Cluster {
        step,
        detail: error.to_string(),
    }
}

/// As root, checks that the `postgres` user exists to run the server as.
fn check_postgres_user() -> Result<(), TestDbError> {
    let found = Command::new("id")
        .args(["-u", "postgres"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        Ok(())
    } else {
        Err(TestDbError::Cluster {
            step: "finding the `postgres` user",
            detail: "PostgreSQL refuses to run as root, and there is no `postgres` user to run \
                     it as: create one (`useradd --system postgres`; the Debian package does), \
                     run the tests as a normal user, or set DATABASE_URL"
                .to_owned(),
        })
    }
}

/// Creates the cluster's directory; as root, gives it to `postgres`.
pub(crate) fn create_base_dir(base: &Path, as_root: bool) -> Result<(), TestDbError> {
    if as_root {
        check_postgres_user()?;
    }
    std::fs::create_dir_all(base).map_err(|e| io("creating the cluster directory", &e))?;
    if as_root {
        run(
            "chown",
            Command::new("chown").arg("postgres:postgres").arg(base),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tasklib-bins-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn fake_bins(dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("initdb"), "")?;
        std::fs::write(dir.join("pg_ctl"), "")
    }

    #[test]
    fn prefers_path_then_the_newest_versioned_directory() -> std::io::Result<()> {
        let root = scratch("lookup");
        fake_bins(&root.join("lib/13/bin"))?;
        fake_bins(&root.join("lib/16/bin"))?;
        std::fs::create_dir_all(root.join("lib/17/bin"))?; // no binaries: skipped
        assert_eq!(
            find_dir_with(&["initdb", "pg_ctl"], None, &root.join("lib")),
            Some(root.join("lib/16/bin"))
        );
        fake_bins(&root.join("onpath"))?;
        let path = std::env::join_paths([root.join("empty"), root.join("onpath")]).ok();
        assert_eq!(
            find_dir_with(&["initdb", "pg_ctl"], path, &root.join("lib")),
            Some(root.join("onpath"))
        );
        std::fs::remove_dir_all(&root)
    }

    #[test]
    fn nothing_installed_gives_an_error_that_says_what_to_install() {
        let root = scratch("none");
        assert_eq!(find_dir_with(&["initdb", "pg_ctl"], None, &root), None);
        let message = TestDbError::NoServer.to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
    }
}
