//! A token bucket of bytes per second, holding one second of them: what bounds the background
//! work a node does for others (anti-entropy's comparisons and transfers, the replay of hints).
//! Work starts while the bucket is not empty and spends what it costs, so the bucket may go
//! below zero by one piece of work; it refills with time.
//!
//! Background work yields to foreground requests: while the node serves them, the bucket earns
//! only a share of its rate and holds only a second of that share ([`Budget::set_share`]; see
//! [`NodeConfig::busy_background_percent`](super::NodeConfig::busy_background_percent)).

use core::time::Duration;

/// A token bucket: see the [module docs](self).
#[derive(Debug)]
pub(super) struct Budget {
    /// The full rate, bytes a second.
    full: u64,
    /// The rate earned now: `full`, or a share of it.
    rate: u64,
    tokens: i64,
    at: Duration,
}

impl Budget {
    /// `rate` bytes per second, full at `now`.
    pub(super) fn new(rate: u64, now: Duration) -> Budget {
        Budget { full: rate, rate, tokens: rate.min(i64::MAX as u64) as i64, at: now }
    }

    /// Adds what the time since the last refill earned, up to one second's worth.
    pub(super) fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.at);
        self.at = self.at.max(now);
        let earned = (self.rate as u128 * elapsed.as_micros() / 1_000_000).min(i64::MAX as u128) as i64;
        self.tokens = self.tokens.saturating_add(earned).min(self.cap());
    }

    /// From `now` on, earns `percent` of the full rate (at least a byte a second) and holds a
    /// second of that: what it earned until now at the old rate is kept, up to the new cap.
    pub(super) fn set_share(&mut self, now: Duration, percent: u8) {
        let rate = match percent {
            100.. => self.full,
            _ => (self.full * u64::from(percent) / 100).max(self.full.min(1)),
        };
        if rate != self.rate {
            self.refill(now);
            self.rate = rate;
            self.tokens = self.tokens.min(self.cap());
        }
    }

    fn cap(&self) -> i64 {
        self.rate.min(i64::MAX as u64) as i64
    }

    /// Takes `bytes` out.
    pub(super) fn spend(&mut self, bytes: usize) {
        self.tokens = self.tokens.saturating_sub(bytes as i64);
    }

    /// Gives back `bytes` taken earlier (a reservation larger than the work turned out).
    pub(super) fn refund(&mut self, bytes: usize) {
        self.tokens = self.tokens.saturating_add(bytes as i64).min(self.cap());
    }

    /// Whether work may start.
    pub(super) fn available(&self) -> bool {
        self.tokens > 0
    }

    /// When work may start again (now, if it may).
    pub(super) fn ready_at(&self) -> Duration {
        if self.tokens > 0 || self.rate == 0 {
            return self.at;
        }
        let micros = (self.tokens.unsigned_abs() as u128 * 1_000_000).div_ceil(self.rate as u128) + 1;
        self.at.saturating_add(Duration::from_micros(micros.min(u64::MAX as u128) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full at first; spent below zero by one piece of work; ready again when time has paid it
    /// back; never holds more than a second's worth.
    #[test]
    fn a_budget_refills_at_its_rate_up_to_a_second() {
        let ms = Duration::from_millis;
        let mut b = Budget::new(1000, ms(0));
        assert!(b.available());
        b.spend(1500);
        assert!(!b.available());
        assert_eq!(b.ready_at(), ms(500) + Duration::from_micros(1));
        b.refill(ms(400));
        assert!(!b.available());
        b.refill(ms(600));
        assert!(b.available());
        b.refill(ms(60_000));
        b.spend(1000);
        assert!(!b.available(), "at most a second's worth is held");
    }

    /// A share of the rate earns that share and holds a second of it; back at the full share
    /// the full rate returns (what was earned before is kept).
    #[test]
    fn a_budget_at_a_share_earns_and_holds_that_share() {
        let ms = Duration::from_millis;
        let mut b = Budget::new(10_000, ms(0));
        b.set_share(ms(0), 10);
        b.spend(1000);
        assert!(!b.available(), "a full bucket holds one second of the share");
        assert_eq!(b.ready_at(), ms(0) + Duration::from_micros(1));
        b.spend(1000);
        assert_eq!(b.ready_at(), ms(1000) + Duration::from_micros(1), "1,000 bytes a second");
        b.refill(ms(1500));
        assert!(b.available());
        b.set_share(ms(1500), 100);
        b.refill(ms(1600));
        assert!(b.available());
        b.spend(1500);
        assert!(!b.available(), "500 kept from the share, 1,000 earned at the full rate in 100 ms");
        b.set_share(ms(1600), 0);
        b.refill(ms(3600));
        assert!(b.available(), "a zero share still earns a byte a second");
    }
}
