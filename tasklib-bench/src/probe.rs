//! Where the time and the work go: CPU seconds of this process and of the PostgreSQL server,
//! peak memory, and the server's own counters (`pg_stat_database`, `pg_stat_user_tables`).
//!
//! CPU comes from `/proc`, so the server figures exist only when the server runs on this
//! machine and `/proc/<pid>` of its processes is readable (as root, or as its user).

use std::path::PathBuf;

use tokio_postgres::Client;

use crate::db::BenchResult;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on every Linux ABI we run
/// on; `getconf CLK_TCK` prints it).
const TICKS_PER_SEC: f64 = 100.0;

/// Peak resident memory of this process (`VmHWM`), in MB.
pub(crate) fn peak_rss_mb() -> Option<f64> {
    status_kb("VmHWM:").map(|kb| kb / 1024.0)
}

/// Resident memory of this process now (`VmRSS`), in MB.
pub(crate) fn rss_mb() -> Option<f64> {
    status_kb("VmRSS:").map(|kb| kb / 1024.0)
}

/// Resets the peak to the current resident size (`echo 5 > /proc/self/clear_refs`), so the
/// next [`peak_rss_mb`] covers only what follows. False when the kernel refused.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_kb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is field 3 (`state`).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<i64>().map_or(0, |v| v.max(0) as u64))
            .collect(),
    )
}

const PPID: usize = 1; // field 4
#[cfg(feature = "temporal")]
const PGRP: usize = 2; // field 5
const UTIME: usize = 11; // field 14
const STIME: usize = 12; // field 15
const CUTIME: usize = 13; // field 16
const CSTIME: usize = 14; // field 17

/// CPU seconds this process has used, all threads, user and system.
pub(crate) fn client_cpu_secs() -> Option<f64> {
    let f = stat_fields("self")?;
    Some((f.get(UTIME)? + f.get(STIME)?) as f64 / TICKS_PER_SEC)
}

/// Every process on this machine: its `/proc/<pid>` directory and its [`stat_fields`].
fn processes() -> impl Iterator<Item = (PathBuf, Vec<u64>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))?;
            Some((entry.path(), stat_fields(pid)?))
        })
}

/// Clock ticks of user and system time in `fields` (a process's [`stat_fields`]), with those
/// of the children it has reaped when `reaped`.
fn ticks(fields: &[u64], reaped: bool) -> u64 {
    let own = [UTIME, STIME];
    let children = if reaped { &[CUTIME, CSTIME][..] } else { &[] };
    own.iter()
        .chain(children)
        .filter_map(|i| fields.get(*i))
        .sum()
}

/// CPU seconds so far of every process on this machine whose `/proc/<pid>` directory
/// `select` accepts (with the children each has reaped): for servers and workers that are
/// not PostgreSQL, found by their command line or working directory.
#[cfg(feature = "celery")]
pub(crate) fn processes_cpu_secs(select: impl Fn(&std::path::Path) -> bool) -> f64 {
    let total: u64 = processes()
        .filter(|(dir, _)| select(dir))
        .map(|(_, fields)| ticks(&fields, true))
        .sum();
    total as f64 / TICKS_PER_SEC
}

/// CPU seconds so far of every process in process group `group` (with the children each
/// has reaped): a server started as the leader of a group of its own.
#[cfg(feature = "temporal")]
pub(crate) fn group_cpu_secs(group: u64) -> f64 {
    let total: u64 = processes()
        .filter(|(_, fields)| fields.get(PGRP) == Some(&group))
        .map(|(_, fields)| ticks(&fields, true))
        .sum();
    total as f64 / TICKS_PER_SEC
}

/// The server's processes: its postmaster, read from `postmaster.pid` in the data directory.
#[derive(Debug, Clone)]
pub(crate) struct ServerCpu {
    postmaster: String,
}

impl ServerCpu {
    /// Finds the postmaster of the server `client` is connected to; `None` when the server is
    /// not on this machine or its files cannot be read.
    pub(crate) async fn locate(client: &Client) -> Option<ServerCpu> {
        let row = client
            .query_one("SELECT current_setting('data_directory')", &[])
            .await
            .ok()?;
        let dir: String = row.get(0);
        let pid_file = std::fs::read_to_string(PathBuf::from(dir).join("postmaster.pid")).ok()?;
        let postmaster = pid_file.lines().next()?.trim().to_owned();
        stat_fields(&postmaster)?;
        Some(ServerCpu { postmaster })
    }

    /// CPU seconds of the whole server so far: the postmaster, its live children (backends,
    /// autovacuum, WAL writer, …) and the children it has reaped.
    pub(crate) fn secs(&self) -> Option<f64> {
        let ppid: u64 = self.postmaster.parse().ok()?;
        let postmaster = ticks(&stat_fields(&self.postmaster)?, true);
        let children: u64 = processes()
            .filter(|(_, fields)| fields.get(PPID) == Some(&ppid))
            .map(|(_, fields)| ticks(&fields, false))
            .sum();
        Some((postmaster + children) as f64 / TICKS_PER_SEC)
    }
}

/// CPU used by the client and the server between two points.
#[derive(Debug, Clone)]
pub(crate) struct CpuMeter {
    server: Option<ServerCpu>,
    client0: Option<f64>,
    server0: Option<f64>,
    machine0: Option<MachineTicks>,
}

/// What a [`CpuMeter`] measured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUsed {
    pub(crate) client: Option<f64>,
    pub(crate) server: Option<f64>,
    /// The share of the machine's CPU time that the hypervisor gave to others (steal).
    pub(crate) steal: Option<f64>,
}

/// The machine's CPU time so far, from the `cpu` line of `/proc/stat`: all of it, and the
/// part stolen by the hypervisor (a virtual machine's CPUs waiting for the host's).
#[derive(Debug, Clone, Copy)]
struct MachineTicks {
    total: u64,
    steal: u64,
}

impl MachineTicks {
    fn read() -> Option<MachineTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        // user nice system idle iowait irq softirq steal (guest times are within user).
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect();
        Some(MachineTicks {
            total: ticks.iter().sum(),
            steal: *ticks.get(7)?,
        })
    }

    /// The share of the time between `self` and `later` that was stolen.
    fn steal_share(self, later: MachineTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total).filter(|t| *t > 0)?;
        Some(later.steal.saturating_sub(self.steal) as f64 / total as f64)
    }
}

impl CpuMeter {
    pub(crate) fn start(server: Option<ServerCpu>) -> CpuMeter {
        CpuMeter {
            client0: client_cpu_secs(),
            server0: server.as_ref().and_then(ServerCpu::secs),
            server,
            machine0: MachineTicks::read(),
        }
    }

    pub(crate) fn stop(&self) -> CpuUsed {
        let server1 = self.server.as_ref().and_then(ServerCpu::secs);
        CpuUsed {
            client: client_cpu_secs().zip(self.client0).map(|(b, a)| b - a),
            server: server1.zip(self.server0).map(|(b, a)| b - a),
            steal: self
                .machine0
                .zip(MachineTicks::read())
                .and_then(|(a, b)| a.steal_share(b)),
        }
    }
}

impl CpuUsed {
    /// Adds `client_cpu_us_per_task`, `server_cpu_us_per_task`, `cpu_busy` (the share of
    /// all cores busy with this work) and `cpu_steal` (the share the hypervisor gave to other
    /// machines: a noisy host) to a row.
    pub(crate) fn annotate(
        self,
        row: crate::report::Row,
        tasks: usize,
        seconds: f64,
    ) -> crate::report::Row {
        let per_task = |s: Option<f64>| s.map(|s| s * 1e6 / tasks.max(1) as f64);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = self
            .client
            .zip(self.server)
            .map(|(c, s)| (c + s) / (seconds * cores));
        row.with("client_cpu_us_per_task", per_task(self.client))
            .with("server_cpu_us_per_task", per_task(self.server))
            .with("cpu_busy", busy)
            .with(
                "cpu_steal",
                self.steal.map(|s| (s * 1000.0).round() / 1000.0),
            )
    }
}

/// The database-wide and `tasks`-table counters, for per-task deltas.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) commits: i64,
    pub(crate) rollbacks: i64,
    pub(crate) tup_updated: i64,
    pub(crate) tup_hot_updated: i64,
    pub(crate) idx_scan: i64,
    pub(crate) blks_hit: i64,
    pub(crate) autovacuums: i64,
}

impl Counters {
    /// Reads the counters. Backends publish theirs when they go idle (at most once a second)
    /// and when they exit: close the connections being measured before the second reading.
    pub(crate) async fn read(client: &Client) -> BenchResult<Counters> {
        let row = client
            .query_one(
                "SELECT d.xact_commit, d.xact_rollback, d.blks_hit,
                        COALESCE(t.n_tup_upd, 0), COALESCE(t.n_tup_hot_upd, 0),
                        COALESCE(t.idx_scan, 0), COALESCE(t.autovacuum_count, 0)
                 FROM pg_stat_database d
                 LEFT JOIN pg_stat_user_tables t ON t.relname = 'tasks'
                 WHERE d.datname = current_database()",
                &[],
            )
            .await?;
        Ok(Counters {
            commits: row.get(0),
            rollbacks: row.get(1),
            blks_hit: row.get(2),
            tup_updated: row.get(3),
            tup_hot_updated: row.get(4),
            idx_scan: row.get(5),
            autovacuums: row.get(6),
        })
    }

    /// `self - before`, with `own_queries` (the measuring connection's transactions)
    /// taken out of the commits, as per-task fields of a row.
    pub(crate) fn annotate_delta(
        self,
        before: Counters,
        own_queries: i64,
        tasks: usize,
        row: crate::report::Row,
    ) -> crate::report::Row {
        let per = |n: i64| n as f64 / tasks.max(1) as f64;
        row.with(
            "commits_per_task",
            per(self.commits - before.commits - own_queries),
        )
        .with("rollbacks", self.rollbacks - before.rollbacks)
        .with(
            "row_updates_per_task",
            per(self.tup_updated - before.tup_updated),
        )
        .with(
            "hot_updates_per_task",
            per(self.tup_hot_updated - before.tup_hot_updated),
        )
        .with("index_scans_per_task", per(self.idx_scan - before.idx_scan))
        .with("buffer_hits_per_task", per(self.blks_hit - before.blks_hit))
        .with("autovacuums", self.autovacuums - before.autovacuums)
    }
}

/// Other people's compilers on this machine: the processes named `rustc`, `cargo`,
/// `clippy-driver`, `cc`, `cc1`, `ld` or `ld.lld` running at this moment. A shared development machine builds while
/// we measure; each measurement records the most it saw, so a disturbed figure is known.
pub(crate) fn compilers_running() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|comm| {
            matches!(
                comm.trim(),
                "rustc" | "cargo" | "cc" | "cc1" | "ld" | "ld.lld" | "clippy-driver"
            )
        })
        .count()
}

/// Samples [`compilers_running`] every 250 ms until dropped; [`CompilerWatch::most`] is the
/// largest count seen.
#[derive(Debug)]
pub(crate) struct CompilerWatch {
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CompilerWatch {
    pub(crate) fn start() -> CompilerWatch {
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(compilers_running()));
        let seen = std::sync::Arc::clone(&most);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                seen.fetch_max(compilers_running(), std::sync::atomic::Ordering::Relaxed);
            }
        });
        CompilerWatch { most, task }
    }

    /// The most compilers seen so far (including now).
    pub(crate) fn most(&self) -> usize {
        let now = compilers_running();
        self.most
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed)
            .max(now)
    }
}

impl Drop for CompilerWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ticks_give_a_steal_share_between_zero_and_one() {
        let before = MachineTicks::read().expect("/proc/stat has a cpu line");
        // Spend a few clock ticks so that the machine's total moves.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(60);
        while std::time::Instant::now() < until {
            std::hint::black_box(0u64);
        }
        let after = MachineTicks::read().expect("/proc/stat has a cpu line");
        let share = before.steal_share(after).expect("ticks went by");
        assert!((0.0..=1.0).contains(&share), "{share}");
    }
}
