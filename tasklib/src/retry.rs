//! Exponential backoff, for task retries and listener reconnects.
//!
//! This is the only module that uses the `backoff` crate (unmaintained upstream): replacing
//! it means rewriting [`BackoffPolicy::delay`] and nothing else.

use std::time::Duration;

use backoff::backoff::Backoff;

use crate::config::Config;

/// Delays that grow geometrically up to a cap, optionally spread at random.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BackoffPolicy {
    /// The first delay.
    pub(crate) base: Duration,
    /// Growth factor between delays (>= 1).
    pub(crate) multiplier: f64,
    /// Upper bound of one delay.
    pub(crate) max: Duration,
    /// Random spread in [0, 1): each delay is multiplied by a factor in [1 - jitter, 1 + jitter].
    pub(crate) jitter: f64,
}

impl BackoffPolicy {
    /// The retry policy a configuration describes.
    pub(crate) fn retries(config: &Config) -> Self {
        BackoffPolicy {
            base: config.base_retry_delay(),
            multiplier: config.retry_backoff_multiplier(),
            max: config.max_retry_delay(),
            jitter: config.retry_jitter(),
        }
    }

    /// The listener's reconnect policy: 100 ms, doubling, up to 30 s, ±20 %.
    pub(crate) fn reconnect() -> Self {
        BackoffPolicy {
            base: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.2,
        }
    }

    /// The delay before try number `n` (1 = the first retry):
    /// `base * multiplier^(n-1)`, capped at `max`, then spread by the jitter.
    pub(crate) fn delay(&self, n: u32) -> Duration {
        let mut backoff = backoff::ExponentialBackoff {
            current_interval: self.base,
            initial_interval: self.base,
            randomization_factor: self.jitter,
            multiplier: self.multiplier,
            max_interval: self.max,
            max_elapsed_time: None,
            ..backoff::ExponentialBackoff::default()
        };
        // Past the cap every further step is the same, so a bounded loop is exact.
        let steps = n.clamp(1, 64);
        let mut delay = self.base;
        for _ in 0..steps {
            delay = backoff.next_backoff().unwrap_or(self.max);
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_secs(5),
            multiplier: 2.0,
            max: Duration::from_secs(60),
            jitter,
        }
    }

    #[test]
    fn grows_geometrically_then_caps() {
        let p = policy(0.0);
        let delays: Vec<u64> = (1..=6).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(p.delay(10_000), Duration::from_secs(60));
    }

    #[test]
    fn multiplier_one_is_constant() {
        let p = BackoffPolicy {
            multiplier: 1.0,
            ..policy(0.0)
        };
        assert_eq!(p.delay(1), p.delay(7));
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let p = policy(0.25);
        for _ in 0..200 {
            let d = p.delay(2).as_secs_f64();
            assert!((7.5..=12.5).contains(&d), "{d}");
        }
    }

    #[test]
    fn default_config_gives_the_documented_schedule() -> crate::Result<()> {
        let config = Config::builder("postgres://localhost/db").build()?;
        let p = BackoffPolicy::retries(&config);
        assert_eq!(p.delay(1), Duration::from_secs(5));
        assert_eq!(p.delay(3), Duration::from_secs(20));
        Ok(())
    }
}
