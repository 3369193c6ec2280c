//! The scheduler of one pool: submits the task of each tick of the client's schedules
//! ([`Schedule`](crate::Schedule)).
//!
//! When the pool starts, it writes the schedules' definitions to `tasklib_schedules`. Then,
//! round after round, it reads the latest tick of each schedule with the database's clock,
//! claims the ticks that are due, oldest first (each claim writes its task in the same
//! statement: [`insert::claim_tick`]), and sleeps until the next tick of any schedule. Every pool of
//! every process running a schedule does the same; the claim lets one of them through per
//! tick. Each step is one statement in a transaction of its own, so it works behind a
//! transaction pooler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::pool::PoolShared;
use crate::Result;
use crate::engine::postgres::insert::{self, Inserts, TickClaim};
use crate::engine::postgres::schedules;
use crate::schedule::{DueTick, Recurring};
use crate::worker::WorkerEvent;

/// The longest sleep between two rounds, whatever the schedules: the sleep is measured by
/// this process's clock and the ticks by the database's, and a round at least this often
/// keeps the two from drifting apart for long.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Added to each sleep so that a round does not start a hair before its tick by the
/// database's clock (and find nothing due).
const WAKE_MARGIN: Duration = Duration::from_millis(5);

pub(crate) async fn run(pool: Arc<PoolShared>, schedules: Vec<Arc<Recurring>>, inserts: Inserts) {
    let mut stop = pool.lifeline.on_stop();
    tracing::info!(
        worker_id = %pool.worker_id,
        schedules = ?schedules.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "running {} schedule(s)",
        schedules.len()
    );
    let mut scheduler = Scheduler {
        names: schedules.iter().map(|s| s.name.clone()).collect(),
        schedules,
        inserts,
        registered: false,
    };
    loop {
        if pool.is_shutting_down() {
            return;
        }
        let wake = match scheduler.round(&pool).await {
            Ok(wake) => wake,
            Err(error) => {
                tracing::warn!(error = %crate::task::error_chain(&error), "running schedules failed; trying again shortly");
                Instant::now() + pool.jittered_poll()
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

struct Scheduler {
    schedules: Vec<Arc<Recurring>>,
    names: Vec<String>,
    inserts: Inserts,
    /// The definitions are in the table (written once per pool, and again if a row goes).
    registered: bool,
}

impl Scheduler {
    /// Claims every due tick; returns when to run the next round.
    async fn round(&mut self, pool: &PoolShared) -> Result<Instant> {
        if !self.registered {
            let now = schedules::now(&pool.db).await?;
            schedules::register(&pool.db, &self.schedules, now).await?;
            self.registered = true;
        }
        let rows = schedules::ticks(&pool.db, self.names.clone()).await?;
        // The database's clock, and this process's at about the same moment.
        let read_at = Instant::now();
        let Some(now) = rows.first().map(|row| row.now) else {
            return Ok(read_at + MAX_SLEEP);
        };
        if rows.iter().any(|row| !row.registered) {
            tracing::warn!(
                "a schedule's row in tasklib_schedules was deleted while it ran; writing it again"
            );
            self.registered = false;
            return Ok(read_at);
        }
        let latest: HashMap<&str, Option<DateTime<Utc>>> = rows
            .iter()
            .map(|row| (row.name.as_str(), row.last_tick))
            .collect();
        for schedule in &self.schedules {
            if pool.is_shutting_down() {
                break;
            }
            let last_tick = latest.get(schedule.name.as_str()).copied().flatten();
            // Oldest first; a tick another pool claimed meanwhile is `Taken` and costs a
            // statement that changes nothing.
            for due in schedule.due(last_tick, now) {
                self.claim(pool, schedule, due, last_tick, now).await?;
            }
        }
        let next = self
            .schedules
            .iter()
            .filter_map(|s| s.timing.next_after(now))
            .min();
        let sleep = next
            .and_then(|next| (next - now).to_std().ok())
            .map_or(MAX_SLEEP, |until| (until + WAKE_MARGIN).min(MAX_SLEEP));
        Ok(read_at + sleep)
    }

    async fn claim(
        &self,
        pool: &PoolShared,
        schedule: &Recurring,
        due: DueTick,
        last_tick: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let next = schedule.timing.next_after(now);
        let claimed = insert::claim_tick(
            &pool.db,
            &self.inserts,
            &schedule.name,
            due.at,
            next,
            schedule.task_at(due.at),
            due.run,
        )
        .await?;
        let late_by = (now - due.at).to_std().unwrap_or_default();
        let tick = due.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let task = match claimed {
            TickClaim::Taken => return Ok(()),
            TickClaim::Submitted(id) => {
                if late_by > crate::schedule::MISSED_TICK_GRACE {
                    tracing::info!(schedule = %schedule.name, %tick, ?late_by, ?last_tick, task.id = %id, "submitted a missed tick once (missed = run_once)");
                } else {
                    tracing::debug!(schedule = %schedule.name, %tick, task.id = %id, "submitted a tick");
                }
                Some(id)
            }
            TickClaim::Skipped => {
                tracing::info!(schedule = %schedule.name, %tick, ?late_by, ?last_tick, "skipped a missed tick (missed = skip)");
                None
            }
        };
        pool.emit(WorkerEvent::ScheduleTicked {
            schedule: schedule.name.clone(),
            tick: due.at,
            task,
        });
        Ok(())
    }
}
