//! Bookkeeping shared by the coordinators: which replicas were asked, which answered, the
//! fallbacks still unused, and the nodes the caller holds down.
//!
//! **Held down is a preference, not an exclusion.** A caller's failure detector can be wrong
//! (a node busy under load, a detector that has not heard from a peer it just met), and a
//! request that never asks a node cannot learn that it is back. So the nodes the caller holds
//! down are asked last: every node held up is tried first (primaries, then under a sloppy quorum
//! fallbacks), and the nodes held down are asked only when the quorum can no longer be met
//! without them. A request whose nodes are all held up, or that meets its quorum without the
//! ones held down, never waits for a node held down.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use crate::identity::NodeId;
use crate::ring::PreferenceList;
use crate::store::{QuorumKind, StoreConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Pending { deadline: Duration },
    Succeeded,
    Failed,
}

/// One request sent to one node.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) node: NodeId,
    /// The primary this node stands in for, when it is a fallback.
    pub(super) stands_in_for: Option<NodeId>,
    pub(super) state: State,
}

#[derive(Clone, Debug)]
pub(super) struct Replicas {
    pub(super) slots: Vec<Slot>,
    /// Fallbacks not used yet and not held down (always empty for strict quorums).
    spare: VecDeque<NodeId>,
    /// Nodes of the request the caller holds down and that were not asked yet: primaries first,
    /// then (sloppy quorums) fallbacks, in preference order. Asked last.
    held_down: VecDeque<NodeId>,
    timeout: Duration,
}

impl Replicas {
    /// The bookkeeping of one request to the key with `prefs`; `held_down` are the nodes the
    /// caller's failure detector holds down (nodes outside `prefs` are ignored).
    pub(super) fn new(
        prefs: &PreferenceList,
        config: &StoreConfig,
        held_down: &[NodeId],
        timeout: Duration,
    ) -> Replicas {
        let fallbacks = match config.quorum_kind() {
            QuorumKind::Sloppy => prefs.fallbacks(),
            QuorumKind::Strict => &[],
        };
        let primaries = prefs.primaries().iter().take(config.n());
        let (down, up): (Vec<&NodeId>, Vec<&NodeId>) = fallbacks.iter().partition(|n| held_down.contains(n));
        let spare = up.into_iter().cloned().collect();
        let held_down = primaries.filter(|n| held_down.contains(n)).chain(down).cloned().collect();
        Replicas { slots: Vec::new(), spare, held_down, timeout }
    }

    /// Records a request sent to `node`; returns its slot.
    pub(super) fn send(&mut self, node: NodeId, stands_in_for: Option<NodeId>, now: Duration) -> usize {
        let deadline = now.saturating_add(self.timeout);
        self.slots.push(Slot { node, stands_in_for, state: State::Pending { deadline } });
        self.slots.len() - 1
    }

    /// The pending slot of `node`, if a request to it is outstanding.
    pub(super) fn pending(&self, node: &NodeId) -> Option<usize> {
        self.slots.iter().position(|s| s.node == *node && matches!(s.state, State::Pending { .. }))
    }

    /// Marks the slots whose deadline has passed as failed; returns them.
    pub(super) fn expire(&mut self, now: Duration) -> Vec<usize> {
        let mut expired = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if matches!(slot.state, State::Pending { deadline } if deadline <= now) {
                slot.state = State::Failed;
                expired.push(i);
            }
        }
        expired
    }

    pub(super) fn next_deadline(&self) -> Option<Duration> {
        self.slots
            .iter()
            .filter_map(|s| match s.state {
                State::Pending { deadline } => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// The next unused fallback, if the quorum is sloppy and one is left.
    pub(super) fn take_fallback(&mut self) -> Option<NodeId> {
        self.spare.pop_front()
    }

    /// Takes `node` off the unused fallbacks and the nodes held down (it has another role in the
    /// request).
    pub(super) fn remove_spare(&mut self, node: &NodeId) {
        self.spare.retain(|n| n != node);
        self.held_down.retain(|n| n != node);
    }

    /// Whether the caller holds `node` down (and it was not asked yet).
    pub(super) fn is_held_down(&self, node: &NodeId) -> bool {
        self.held_down.contains(node)
    }

    /// The next node held down and not asked yet: primaries first.
    pub(super) fn take_held_down(&mut self) -> Option<NodeId> {
        self.held_down.pop_front()
    }

    pub(super) fn spare_count(&self) -> usize {
        self.spare.len()
    }

    pub(super) fn count(&self, state: fn(&State) -> bool) -> usize {
        self.slots.iter().filter(|s| state(&s.state)).count()
    }

    pub(super) fn succeeded(&self) -> usize {
        self.count(|s| *s == State::Succeeded)
    }

    pub(super) fn in_flight(&self) -> usize {
        self.count(|s| matches!(s, State::Pending { .. }))
    }

    /// The most successes still possible when every request no longer in flight has been
    /// replaced: a failure is replaced by a fallback at once, so spares never add to it.
    pub(super) fn best_case(&self) -> usize {
        self.succeeded() + self.in_flight()
    }

    /// Whether `node` has a slot in the given state.
    pub(super) fn has(&self, node: &NodeId, state: State) -> bool {
        self.slots.iter().any(|s| s.node == *node && s.state == state)
    }

    /// Whether some fallback that has not failed stands in for `primary`.
    pub(super) fn covered(&self, primary: &NodeId) -> bool {
        self.slots.iter().any(|s| s.stands_in_for.as_ref() == Some(primary) && s.state != State::Failed)
    }
}
