//! Failure detection: the phi-accrual detector (Hayashibara et al.), as used by Cassandra and Akka.
//!
//! Instead of a yes/no verdict, the detector gives a suspicion level `phi`: the -log10 of the
//! probability that a heartbeat as late as the current silence would still arrive, estimated
//! from a window of recent inter-arrival times modelled as a normal distribution. `phi = 1`
//! means about a 10% chance the node is merely slow, `phi = 8` about 1 in 10^8. The caller
//! compares `phi` with its threshold (8 is a common choice).
//!
//! ```
//! use core::time::Duration;
//! use quickv_core::failure::{PhiAccrualDetector, PhiConfig};
//!
//! let mut d = PhiAccrualDetector::new(PhiConfig::default());
//! for i in 0..20 {
//!     d.handle_heartbeat(Duration::from_millis(1_000 * i));
//! }
//! assert!(d.phi(Duration::from_millis(19_500)) < 1.0);
//! assert!(d.phi(Duration::from_millis(40_000)) > 8.0);
//! ```

use alloc::collections::VecDeque;
use core::time::Duration;

/// Tuning of the detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhiConfig {
    /// How many inter-arrival times to remember.
    pub window: usize,
    /// Floor on the standard deviation, so a very regular sender is not suspected at once.
    pub min_std_dev: Duration,
    /// Extra silence tolerated on top of the mean (for example a GC pause).
    pub acceptable_pause: Duration,
    /// The interval assumed before any heartbeat pair has been seen.
    pub first_interval: Duration,
}

impl Default for PhiConfig {
    fn default() -> PhiConfig {
        PhiConfig {
            window: 1000,
            min_std_dev: Duration::from_millis(100),
            acceptable_pause: Duration::ZERO,
            first_interval: Duration::from_secs(1),
        }
    }
}

/// Suspicion of one peer, fed with the arrival times of its heartbeats.
#[derive(Clone, Debug)]
pub struct PhiAccrualDetector {
    config: PhiConfig,
    intervals: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    last: Option<Duration>,
}

impl PhiAccrualDetector {
    /// A detector that has heard nothing yet.
    pub fn new(config: PhiConfig) -> PhiAccrualDetector {
        PhiAccrualDetector { config, intervals: VecDeque::new(), sum: 0.0, sum_sq: 0.0, last: None }
    }

    /// Records a heartbeat (or any message) from the peer at `now`.
    pub fn handle_heartbeat(&mut self, now: Duration) {
        match self.last {
            None => {
                // Seed the window with the assumed interval so phi is defined from the start.
                let first = ms(self.config.first_interval);
                self.push(first - first / 4.0);
                self.push(first + first / 4.0);
            }
            Some(last) if now > last => self.push(ms(now - last)),
            Some(_) => {}
        }
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
    }

    /// The suspicion level at `now`: 0 before the first heartbeat and right after one, growing
    /// with the silence.
    pub fn phi(&self, now: Duration) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let n = self.intervals.len() as f64;
        let mean = self.sum / n + ms(self.config.acceptable_pause);
        let variance = (self.sum_sq / n - (self.sum / n) * (self.sum / n)).max(0.0);
        let std_dev = libm::sqrt(variance).max(ms(self.config.min_std_dev));
        let elapsed = ms(now.saturating_sub(last));
        // Logistic approximation of the normal CDF's tail (as in Akka), in log space for range.
        let y = (elapsed - mean) / std_dev;
        let exponent = y * (1.5976 + 0.070566 * y * y);
        let e = libm::exp(-exponent);
        if elapsed > mean {
            // -log10(e / (1 + e)), written so that a long silence gives a large finite phi.
            exponent / core::f64::consts::LN_10 + libm::log10(1.0 + e)
        } else {
            -libm::log10(1.0 - 1.0 / (1.0 + e))
        }
    }

    /// Whether the peer should be considered available at `now` under `threshold`.
    pub fn is_available(&self, now: Duration, threshold: f64) -> bool {
        self.phi(now) < threshold
    }

    fn push(&mut self, interval: f64) {
        if self.intervals.len() == self.config.window.max(2)
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.intervals.push_back(interval);
        self.sum += interval;
        self.sum_sq += interval * interval;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(every_ms: u64, count: u64) -> PhiAccrualDetector {
        let mut d = PhiAccrualDetector::new(PhiConfig::default());
        for i in 0..count {
            d.handle_heartbeat(Duration::from_millis(every_ms * i));
        }
        d
    }

    #[test]
    fn phi_grows_with_silence() {
        let d = fed(1000, 50);
        let last = 49_000;
        let mut prev = -1.0;
        for extra in [0, 500, 1000, 1500, 2000, 3000, 5000, 10_000] {
            let phi = d.phi(Duration::from_millis(last + extra));
            assert!(phi >= prev, "phi fell from {prev} to {phi} at +{extra}ms");
            assert!(phi.is_finite());
            prev = phi;
        }
        assert!(d.is_available(Duration::from_millis(last + 1000), 8.0));
        assert!(!d.is_available(Duration::from_millis(last + 5000), 8.0));
    }

    #[test]
    fn irregular_heartbeats_are_suspected_later() {
        let regular = fed(1000, 100);
        let mut jittery = PhiAccrualDetector::new(PhiConfig::default());
        let mut t = 0;
        for i in 0..100u64 {
            t += if i % 2 == 0 { 400 } else { 1600 };
            jittery.handle_heartbeat(Duration::from_millis(t));
        }
        let silence = Duration::from_millis(2500);
        assert!(jittery.phi(Duration::from_millis(t) + silence) < regular.phi(Duration::from_millis(99_000) + silence));
    }

    #[test]
    fn no_heartbeat_means_no_suspicion_and_old_times_are_ignored() {
        let mut d = PhiAccrualDetector::new(PhiConfig::default());
        assert_eq!(d.phi(Duration::from_secs(100)), 0.0);
        d.handle_heartbeat(Duration::from_secs(10));
        d.handle_heartbeat(Duration::from_secs(5));
        assert!(d.phi(Duration::from_secs(10)) < 0.5);
    }
}
