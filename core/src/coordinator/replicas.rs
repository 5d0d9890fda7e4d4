//! Bookkeeping shared by the coordinators: which replicas were asked, which answered, and the
//! fallbacks still unused.

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
    /// Fallbacks not used yet (always empty for strict quorums).
    spare: VecDeque<NodeId>,
    timeout: Duration,
}

impl Replicas {
    pub(super) fn new(prefs: &PreferenceList, config: &StoreConfig, timeout: Duration) -> Replicas {
        let spare = match config.quorum_kind() {
            QuorumKind::Sloppy => prefs.fallbacks().iter().cloned().collect(),
            QuorumKind::Strict => VecDeque::new(),
        };
        Replicas { slots: Vec::new(), spare, timeout }
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

    /// Takes `node` off the unused fallbacks (it has another role in the request).
    pub(super) fn remove_spare(&mut self, node: &NodeId) {
        self.spare.retain(|n| n != node);
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
