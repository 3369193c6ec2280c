//! How many tasks a producer claims ahead of its free slots.
//!
//! A producer that claims only for its free slots leaves them empty for a whole claim round
//! trip each time they free: with short tasks the pool then spends much of its time waiting on
//! claims (a no-op task takes microseconds, a claim most of a millisecond). So the producer
//! also claims the tasks its slots are expected to finish during two claim round trips (the
//! rows of a claim arrive one round trip after it is sent, and the next claim waits until
//! enough rows are wanted): throughput × 2 round trips (Little's law), capped by the caller
//! (twice the slots of the group). Those rows wait in the producer's buffer and start the
//! moment a slot frees.
//!
//! A pool of slow tasks finishes next to nothing during a round trip (10 slots of one-second
//! tasks: 10 tasks/s × 1 ms = 0.01) and claims nothing ahead, so rows are not held back from
//! other workers that could run them now.

use std::time::{Duration, Instant};

/// Weight of the newest observation in the running averages.
const WEIGHT: f64 = 0.5;

/// The running estimate of one producer.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Tasks finished per second, averaged over the intervals between claims.
    rate: f64,
    /// Seconds a claim takes, averaged.
    round_trip: f64,
    /// When the previous claim returned, and the queue's finished count then.
    last: Option<(Instant, u64)>,
}

impl Pace {
    /// Records a claim that took `took` and returned at `now`, when the queue had finished
    /// `finished` tasks in all.
    pub(crate) fn observe(&mut self, took: Duration, now: Instant, finished: u64) {
        self.round_trip = average(self.round_trip, took.as_secs_f64());
        if let Some((then, before)) = self.last {
            let elapsed = now.saturating_duration_since(then).as_secs_f64();
            if elapsed > 0.0 {
                let rate = finished.saturating_sub(before) as f64 / elapsed;
                self.rate = average(self.rate, rate);
            }
        }
        self.last = Some((now, finished));
    }

    /// Rows worth claiming beyond the free slots: those expected to be started within two
    /// claim round trips, at most `most`.
    pub(crate) fn ahead(&self, most: usize) -> usize {
        let expected = (self.rate * self.round_trip * 2.0).round();
        if expected >= most as f64 {
            most
        } else {
            // Non-negative and below `most`: the cast cannot truncate.
            expected.max(0.0) as usize
        }
    }

    /// Rows claimed ahead waited too long: the tasks are slower than measured. Claims nothing
    /// ahead until a new interval has been measured.
    pub(crate) fn slow_down(&mut self) {
        self.rate = 0.0;
        self.last = None;
    }
}

fn average(old: f64, new: f64) -> f64 {
    if old == 0.0 {
        new
    } else {
        old + WEIGHT * (new - old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn claims_nothing_ahead_before_it_has_measured() {
        let mut pace = Pace::default();
        assert_eq!(pace.ahead(10), 0);
        pace.observe(ms(1), Instant::now(), 0);
        assert_eq!(
            pace.ahead(10),
            0,
            "one claim gives a round trip, not a rate"
        );
    }

    #[test]
    fn short_tasks_are_claimed_ahead_up_to_the_slots() {
        let mut pace = Pace::default();
        let start = Instant::now();
        // 10 tasks finished every 4 ms (2,500/s), claims take 1 ms: 5 ahead.
        for i in 0..=10u64 {
            pace.observe(ms(1), start + ms(4 * i), 10 * i);
        }
        assert_eq!(pace.ahead(20), 5);
        // Faster still: capped at the slots.
        for i in 11..=30u64 {
            pace.observe(
                ms(1),
                start + ms(40) + Duration::from_micros(200 * (i - 10)),
                10 * i,
            );
        }
        assert_eq!(pace.ahead(20), 20);
    }

    #[test]
    fn slow_tasks_are_not_claimed_ahead() {
        let mut pace = Pace::default();
        let start = Instant::now();
        // 10 slots of one-second tasks: 10 tasks/s.
        for i in 0..=10u64 {
            pace.observe(ms(1), start + Duration::from_secs(i), 10 * i);
        }
        assert_eq!(pace.ahead(20), 0);
        // 10 slots of 20 ms tasks (500/s) with 1 ms claims: one row ahead.
        let mut pace = Pace::default();
        for i in 0..=10u64 {
            pace.observe(ms(1), start + ms(20 * i), 10 * i);
        }
        assert_eq!(pace.ahead(20), 1);
    }

    #[test]
    fn slowing_down_forgets_the_rate() {
        let mut pace = Pace::default();
        let start = Instant::now();
        for i in 0..=10u64 {
            pace.observe(ms(1), start + ms(i), 10 * i);
        }
        assert_eq!(pace.ahead(10), 10);
        pace.slow_down();
        assert_eq!(pace.ahead(10), 0);
        pace.observe(ms(1), start + ms(20), 200);
        assert_eq!(pace.ahead(10), 0, "needs a fresh interval");
    }
}
