//! The put (and delete) coordinator.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use super::ReplicaFailure;
use super::replicas::{Replicas, State};
use crate::identity::NodeId;
use crate::ring::PreferenceList;
use crate::store::StoreConfig;
use crate::version::{CausalContext, Siblings, Write};
use crate::wire::ErrorReply;

/// A request the put coordinator sends to one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutRequest {
    /// Apply the write and mint its dot ([`Siblings::apply`] with the receiver as actor); answer
    /// with the resulting state. Sent to one node at a time.
    Mint {
        /// The caller's write.
        write: Write,
        /// Set when the receiver is a fallback: the primary it holds the write for.
        hint_for: Option<NodeId>,
    },
    /// Merge this state (made by the minting node) into yours ([`Siblings::merge`]).
    Replicate {
        /// The minted state.
        siblings: Siblings,
        /// Set when the receiver is a fallback: the primary it holds the write for.
        hint_for: Option<NodeId>,
    },
}

/// What a put coordinator asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutAction {
    /// Send `request` to `to`.
    Send {
        /// The receiving node.
        to: NodeId,
        /// What to send.
        request: PutRequest,
    },
    /// Return this to the caller. Emitted exactly once.
    Reply(Result<PutOutcome, PutError>),
}

/// A fallback that accepted a write on behalf of an unreachable primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// The fallback holding the write.
    pub holder: NodeId,
    /// The primary it is meant for.
    pub primary: NodeId,
}

/// A successful put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The key's state at the minting replica after the write.
    pub siblings: Siblings,
    /// The nodes that acknowledged the write before the reply.
    pub acknowledged: Vec<NodeId>,
    /// Hints left by the write before the reply (fallbacks that acknowledged for an unreachable
    /// primary); [`PutCoordinator::hints`] has those acknowledged later too.
    pub hints: Vec<Hint>,
}

impl PutOutcome {
    /// The context to pass with the caller's next write of this key.
    pub fn context(&self) -> CausalContext {
        self.siblings.context()
    }
}

/// Why a put failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// Fewer than W nodes acknowledged. Retryable; when `acknowledged > 0` the write is stored on
    /// that many nodes and will spread, so a retry with the same context may leave a sibling.
    #[error("not enough replicas acknowledged: {acknowledged} of the {required} required (W)")]
    Unavailable {
        /// W.
        required: usize,
        /// Nodes that acknowledged.
        acknowledged: usize,
    },
    /// A replica refused the write as invalid (for example a forged context). Not retryable.
    #[error("the write was refused: {0}")]
    Refused(ErrorReply),
}

impl PutError {
    /// Whether the same request may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PutError::Unavailable { .. })
    }
}

#[derive(Clone, Debug)]
enum Phase {
    /// Waiting for the minting node; `candidates` are the nodes to try next, in order.
    Mint { candidates: VecDeque<NodeId> },
    /// Spreading the minted state.
    Replicate { minted: Siblings },
}

/// Coordinates one put or delete in two steps, as Riak does: one node (the first reachable
/// primary, or under a sloppy quorum a fallback) applies the write and mints its dot; the state
/// it answers with is then replicated to the other N-1 primaries, fallbacks standing in for
/// unreachable ones under a sloppy quorum. Replies once W nodes hold the write.
#[derive(Clone, Debug)]
pub struct PutCoordinator {
    config: StoreConfig,
    write: Write,
    primaries: Vec<NodeId>,
    replicas: Replicas,
    phase: Phase,
    hints: Vec<Hint>,
    actions: VecDeque<PutAction>,
    replied: bool,
    finished: bool,
    /// Test oracle only: never reply with a quorum failure.
    #[cfg(test)]
    pub(super) patient: bool,
}

impl PutCoordinator {
    /// Starts a put (or a delete, with [`Write::delete`]): the first action asks the first
    /// primary to mint the write.
    pub fn new(
        prefs: &PreferenceList,
        config: &StoreConfig,
        write: Write,
        timeout: Duration,
        now: Duration,
    ) -> PutCoordinator {
        let primaries: Vec<NodeId> = prefs.primaries().iter().take(config.n()).cloned().collect();
        let mut put = PutCoordinator {
            config: *config,
            write,
            replicas: Replicas::new(prefs, config, timeout),
            phase: Phase::Mint { candidates: primaries.iter().cloned().collect() },
            primaries,
            hints: Vec::new(),
            actions: VecDeque::new(),
            replied: false,
            finished: false,
            #[cfg(test)]
            patient: false,
        };
        put.mint_next(now);
        put
    }

    /// The next action to perform. Call until `None` after building and after each `handle_*`.
    pub fn poll_action(&mut self) -> Option<PutAction> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if at all.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.finished { None } else { self.replicas.next_deadline() }
    }

    /// Whether the machine has nothing left to do.
    pub fn is_finished(&self) -> bool {
        self.finished && self.actions.is_empty()
    }

    /// Every hint left so far, including those acknowledged after the reply; complete once
    /// [`is_finished`](Self::is_finished).
    pub fn hints(&self) -> &[Hint] {
        &self.hints
    }

    /// Feeds the answer of node `from`: for a mint, the state after the write; for a replicate,
    /// any state (only success matters). Answers from nodes not asked are ignored.
    pub fn handle_reply(&mut self, now: Duration, from: &NodeId, answer: Result<Siblings, ReplicaFailure>) {
        if self.finished {
            return;
        }
        let Some(slot) = self.replicas.pending(from) else { return };
        match answer {
            Ok(state) => {
                if let Phase::Mint { .. } = self.phase {
                    if state.validate().is_err() {
                        self.fail(slot, now);
                        return self.evaluate();
                    }
                    self.phase = Phase::Replicate { minted: state };
                    self.acknowledge(slot);
                    self.replicate(now);
                } else {
                    self.acknowledge(slot);
                }
            }
            Err(ReplicaFailure::Unavailable) => self.fail(slot, now),
            Err(ReplicaFailure::Refused(reason)) => {
                self.replicas.slots[slot].state = State::Failed;
                if matches!(self.phase, Phase::Mint { .. }) && !self.replied {
                    // The write itself is invalid: every node would refuse it.
                    self.reply(Err(PutError::Refused(reason)));
                    self.finished = true;
                } else {
                    self.fail(slot, now);
                }
            }
        }
        self.evaluate();
    }

    /// Expires every request whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.finished {
            return;
        }
        for slot in self.replicas.expire(now) {
            self.after_failure(slot, now);
        }
        self.evaluate();
    }

    fn acknowledge(&mut self, slot: usize) {
        let s = &mut self.replicas.slots[slot];
        s.state = State::Succeeded;
        if let Some(primary) = &s.stands_in_for {
            self.hints.push(Hint { holder: s.node.clone(), primary: primary.clone() });
        }
    }

    fn fail(&mut self, slot: usize, now: Duration) {
        self.replicas.slots[slot].state = State::Failed;
        self.after_failure(slot, now);
    }

    fn after_failure(&mut self, slot: usize, now: Duration) {
        match self.phase {
            Phase::Mint { .. } => self.mint_next(now),
            Phase::Replicate { .. } => {
                let failed = &self.replicas.slots[slot];
                let primary = failed.stands_in_for.clone().unwrap_or_else(|| failed.node.clone());
                if let Some(fallback) = self.replicas.take_fallback() {
                    self.send_replicate(fallback, Some(primary), now);
                }
            }
        }
    }

    /// Asks the next candidate to mint: primaries first, then (sloppy) fallbacks.
    fn mint_next(&mut self, now: Duration) {
        let Phase::Mint { candidates } = &mut self.phase else { return };
        let (node, hint_for) = match candidates.pop_front() {
            Some(primary) => (primary, None),
            None => match self.replicas.take_fallback() {
                Some(fallback) => (fallback, self.first_uncovered_primary()),
                None => return,
            },
        };
        self.replicas.send(node.clone(), hint_for.clone(), now);
        let request = PutRequest::Mint { write: self.write.clone(), hint_for };
        self.actions.push_back(PutAction::Send { to: node, request });
    }

    /// After the mint: sends the minted state to every other primary, or to a fallback in place
    /// of a primary that already failed.
    fn replicate(&mut self, now: Duration) {
        for primary in self.primaries.clone() {
            let asked = self.replicas.slots.iter().any(|s| s.node == primary);
            if self.replicas.covered(&primary) {
                continue;
            }
            if !asked {
                self.send_replicate(primary, None, now);
            } else if self.replicas.has(&primary, State::Failed)
                && let Some(fallback) = self.replicas.take_fallback()
            {
                self.send_replicate(fallback, Some(primary), now);
            }
        }
    }

    fn send_replicate(&mut self, node: NodeId, hint_for: Option<NodeId>, now: Duration) {
        let Phase::Replicate { minted } = &self.phase else { return };
        let request = PutRequest::Replicate { siblings: minted.clone(), hint_for: hint_for.clone() };
        self.replicas.send(node.clone(), hint_for, now);
        self.actions.push_back(PutAction::Send { to: node, request });
    }

    fn first_uncovered_primary(&self) -> Option<NodeId> {
        self.primaries.iter().find(|p| !self.replicas.covered(p)).cloned()
    }

    /// The most acknowledgements still possible.
    ///
    /// While minting, if the node asked succeeds it holds the write, every untried primary is
    /// then asked, and each spare fallback can cover one primary that already failed (a
    /// fallback minter itself covers one). Once replicating, failures are replaced at once, so
    /// only the answers in hand and in flight count.
    fn best_case(&self) -> usize {
        match &self.phase {
            Phase::Replicate { .. } => self.replicas.best_case(),
            Phase::Mint { candidates } => {
                let Some(minter) = self.replicas.slots.iter().find(|s| matches!(s.state, State::Pending { .. })) else {
                    return 0;
                };
                let failed = self.primaries.iter().filter(|p| self.replicas.has(p, State::Failed)).count();
                let uncovered = failed.saturating_sub(usize::from(minter.stands_in_for.is_some()));
                1 + candidates.len() + uncovered.min(self.replicas.spare_count())
            }
        }
    }

    fn is_patient(&self) -> bool {
        #[cfg(test)]
        return self.patient;
        #[cfg(not(test))]
        false
    }

    fn reply(&mut self, outcome: Result<PutOutcome, PutError>) {
        self.replied = true;
        self.actions.push_back(PutAction::Reply(outcome));
    }

    fn evaluate(&mut self) {
        if self.finished {
            return;
        }
        let required = self.config.w();
        let acknowledged = self.replicas.succeeded();
        if !self.replied {
            let reachable = self.best_case() >= required;
            if let (Phase::Replicate { minted }, true) = (&self.phase, acknowledged >= required) {
                let outcome = PutOutcome {
                    siblings: minted.clone(),
                    acknowledged: self.acknowledged_nodes(),
                    hints: self.hints.clone(),
                };
                self.reply(Ok(outcome));
            } else if !reachable && !self.is_patient() {
                self.reply(Err(PutError::Unavailable { required, acknowledged }));
                self.finished = true;
                return;
            }
        }
        if self.replied && self.replicas.in_flight() == 0 {
            self.finished = true;
        }
    }

    fn acknowledged_nodes(&self) -> Vec<NodeId> {
        self.replicas.slots.iter().filter(|s| s.state == State::Succeeded).map(|s| s.node.clone()).collect()
    }
}
