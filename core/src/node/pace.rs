//! Background work yields to foreground requests.
//!
//! The replay of hints and anti-entropy each spend a byte budget
//! ([`hint_budget`](super::NodeConfig::hint_budget),
//! [`anti_entropy_budget`](super::NodeConfig::anti_entropy_budget)). At full rate they bring a
//! returning node level within seconds, and on a small machine they take the time foreground
//! requests need: with four nodes on two cores, get p99 while hints drained was 2.4x its value
//! with every node up (docs/cluster.md). So the budgets earn their full rate only while the node
//! is idle. The node counts its foreground requests (gets and mints, from callers or from
//! coordinating peers, and requests to coordinate) over the last second or so; the more it
//! serves, the smaller the share its background work earns, down to
//! [`busy_background_percent`](super::NodeConfig::busy_background_percent) at [`BUSY_LOAD`]
//! requests a second and above. Every node of a cluster under load sees its part of that load,
//! so every sender of background work yields, and a returning node is brought level at the
//! busy share until the load ends, at the full rate after.

use core::time::Duration;

use super::Node;

/// Foreground requests a second at which a node counts as fully busy.
pub(super) const BUSY_LOAD: u32 = 100;

/// The foreground requests a node took in the current second and the one before.
#[derive(Debug, Default)]
pub(super) struct Load {
    since: Duration,
    current: u32,
    previous: u32,
}

impl Load {
    fn roll(&mut self, now: Duration) {
        let second = Duration::from_secs(1);
        if now >= self.since.saturating_add(second) {
            let next = now >= self.since.saturating_add(second * 2);
            self.previous = if next { 0 } else { self.current };
            self.current = 0;
            self.since = now;
        }
    }

    /// Requests a second, about: the more of the last second's count and this second's rate so
    /// far (over at least 100 ms, so that a load is seen as it starts).
    fn rate(&mut self, now: Duration) -> u32 {
        self.roll(now);
        let elapsed = now.saturating_sub(self.since).as_millis().max(100) as u64;
        let current = (u64::from(self.current) * 1000 / elapsed).min(u64::from(u32::MAX)) as u32;
        current.max(self.previous)
    }
}

impl Node {
    /// A foreground request came in.
    pub(super) fn foreground_seen(&mut self, now: Duration) {
        self.load.roll(now);
        self.load.current = self.load.current.saturating_add(1);
        self.pace_background(now);
    }

    /// The share of their budgets background work earns at `now`, in percent.
    pub(super) fn background_share(&mut self, now: Duration) -> u8 {
        let busy = u32::from(self.config.busy_background_percent.min(100));
        let load = self.load.rate(now).min(BUSY_LOAD);
        (100 - (100 - busy) * load / BUSY_LOAD) as u8
    }

    /// Sets the background budgets' share for `now`.
    pub(super) fn pace_background(&mut self, now: Duration) {
        let percent = self.background_share(now);
        self.hint_replay.set_share(now, percent);
        self.anti_entropy.budget.set_share(now, percent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate is the larger of this second's rate so far and the last second's count, and
    /// falls to zero two seconds after the last request.
    #[test]
    fn the_load_counts_the_last_second_or_so() {
        let ms = Duration::from_millis;
        let mut load = Load::default();
        for i in 0..50 {
            load.roll(ms(1000 + i * 10));
            load.current += 1;
        }
        assert_eq!(load.rate(ms(1050)), 50 * 1000 / 100, "a load seen as it starts");
        assert_eq!(load.rate(ms(1500)), 100, "50 in half a second");
        assert_eq!(load.rate(ms(2100)), 50, "the last second's count, early in this one");
        load.current += 1;
        assert_eq!(load.rate(ms(2900)), 50);
        assert_eq!(load.rate(ms(3200)), 1, "the last second held one request");
        assert_eq!(load.rate(ms(6000)), 0, "idle");
    }
}
