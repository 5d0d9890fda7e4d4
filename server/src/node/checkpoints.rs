//! Checkpoints: the node has its storage move what only the journal holds into table files
//! ([`Engine::checkpoint`]) every half tombstone grace.
//!
//! Why: a tombstone is collected (removed from every node) at least a grace after every node of
//! the key said it held it. If both the tombstone and its removal lived only in a journal file
//! that is later lost (damaged and moved aside, `storage::quarantine`), the value the delete
//! removed, still in an older table, would come back on that node and spread by anti-entropy.
//! With a checkpoint at least every half grace, the tombstone is in a table by the time it is
//! collected: a lost journal brings back at most the tombstone (collected again), never the
//! value (`a_collected_tombstone_does_not_bring_back_the_value_when_the_journal_is_lost`).

use std::sync::Weak;
use std::time::Duration;

use crate::storage::Engine;

/// The shortest time between checkpoints (for very short graces, as tests use).
const SHORTEST: Duration = Duration::from_millis(250);
/// The longest time between checkpoints, whatever the grace.
const LONGEST: Duration = Duration::from_secs(600);

/// How often a node with this tombstone grace checkpoints: half the grace, within bounds.
pub(crate) fn interval(grace: Duration) -> Duration {
    (grace / 2).clamp(SHORTEST, LONGEST)
}

/// Checkpoints `engine` every `every` until it is dropped.
pub(crate) async fn run(engine: Weak<dyn Engine>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(engine) = engine.upgrade() else { return };
        match tokio::task::spawn_blocking(move || engine.checkpoint()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("storage checkpoint failed: {e}"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint comes at most half a grace after a write, for every grace a node takes
    /// (from a second up); never more often than four times a second.
    #[test]
    fn checkpoints_come_at_most_half_a_grace_apart() {
        for secs in [1, 2, 60, 600, 1200] {
            let grace = Duration::from_secs(secs);
            assert!(interval(grace) <= grace / 2, "grace {secs} s");
        }
        assert_eq!(interval(Duration::from_secs(600)), Duration::from_secs(300));
        assert_eq!(interval(Duration::from_secs(86_400)), LONGEST);
        assert_eq!(interval(Duration::from_millis(100)), SHORTEST);
    }
}
