//! The put (and delete) coordinator.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use super::ReplicaFailure;
use super::replicas::{Replicas, State};
use super::shell::{Action, Coordinator, Shell};
use crate::error::Refusal;
use crate::identity::NodeId;
use crate::ring::PreferenceList;
use crate::store::{QuorumKind, StoreConfig};
use crate::version::{CausalContext, SealedState, Siblings, Write};

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

/// What a put coordinator asks its driver to do: send a mint or a replicate, ask the minter to keep
/// a last-resort hint, or reply (it never repairs).
pub type PutAction = Action<PutRequest, Result<PutOutcome, PutError>>;

/// A fallback that accepted a write on behalf of an unreachable primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// The fallback holding the write.
    pub holder: NodeId,
    /// The primary it is meant for.
    pub primary: NodeId,
}

/// The two replica sets a write must each reach while a ring change is under way (issue 9,
/// 2.1): W of the current ring's replicas (reads go there until the change is committed) and W
/// of the next ring's (reads go there after). A fallback standing in for a primary counts for
/// the sets that primary belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JointQuorum {
    /// Each set and the acknowledgements it needs.
    pub sets: [(Vec<NodeId>, usize); 2],
}

/// A successful put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The key's state at the minting replica after the write, sealed by it.
    pub state: SealedState,
    /// The nodes that acknowledged the write before the reply.
    pub acknowledged: Vec<NodeId>,
    /// Hints left by the write before the reply (fallbacks that acknowledged for an unreachable
    /// primary); [`PutCoordinator::hints`] has those acknowledged later too.
    pub hints: Vec<Hint>,
}

impl PutOutcome {
    /// The context to pass with the caller's next write of this key.
    pub fn context(&self) -> CausalContext {
        self.state.context()
    }
}

/// Why a put failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// Fewer than W nodes acknowledged. Retryable; when `acknowledged > 0` the write is stored on
    /// that many nodes and will spread. Retry the same write (same [`WriteId`](crate::version::WriteId))
    /// with [`PutCoordinator::retry`] at [`minter`](Self::minter) so it never becomes two versions.
    #[error("not enough replicas acknowledged: {acknowledged} of the {required} required (W){}", quorum.failure_note())]
    Unavailable {
        /// W.
        required: usize,
        /// Nodes that acknowledged.
        acknowledged: usize,
        /// The store's quorum kind (a strict store never counts fallbacks, and says so).
        quorum: QuorumKind,
        /// The node that applied the write and minted its version, if one did.
        minter: Option<NodeId>,
    },
    /// The node asked to apply the write did not answer in time (or the connection was lost
    /// after the request went out): the write may have been applied there, and may spread, or
    /// not. Retryable: retry the same write with [`PutCoordinator::retry`] at `minter` to find
    /// out; asking another node to apply it could leave two versions of one write.
    #[error("no answer from {minter}, asked to apply the write: it may or may not have been applied")]
    Indeterminate {
        /// The node asked to apply the write.
        minter: NodeId,
    },
    /// Every node asked refused the write as invalid (for example a forged context), and none
    /// applied it. Not retryable.
    #[error("the write was refused: {0}")]
    Refused(Refusal),
}

impl PutError {
    /// Whether the same request may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PutError::Unavailable { .. } | PutError::Indeterminate { .. })
    }

    /// The node a retry of the same write must go to (see [`PutCoordinator::retry`]): the one
    /// that applied it, or may have.
    pub fn minter(&self) -> Option<&NodeId> {
        match self {
            PutError::Unavailable { minter, .. } => minter.as_ref(),
            PutError::Indeterminate { minter } => Some(minter),
            PutError::Refused(_) => None,
        }
    }
}

/// Whether a failed request may have taken effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    /// Certainly not: the node was not reached, or answered that it did not act.
    No,
    /// Perhaps: no answer came.
    Maybe,
}

#[derive(Clone, Debug)]
enum Phase {
    /// Waiting for the minting node; `candidates` are the nodes to try next, in order, and
    /// fallbacks after them unless the minter is `pinned` (a retry).
    Mint { candidates: VecDeque<NodeId>, pinned: bool },
    /// The node asked to mint did not answer: it may hold the write, so no other node may mint
    /// it. The put ends undecided.
    Undecided { minter: NodeId },
    /// Spreading the state `minter` answered with.
    Replicate { minted: SealedState, minter: NodeId },
}

/// Coordinates one put or delete in two steps, as Riak does: one node (the first reachable
/// primary, or under a sloppy quorum a fallback) applies the write and mints its dot; the state
/// it answers with is then replicated to the other N-1 primaries, fallbacks standing in for
/// unreachable ones under a sloppy quorum. Replies once W nodes hold the write. A primary whose
/// request fails with no fallback left to take its share (always, under a strict quorum) is not
/// forgotten: the minter keeps a hint for it ([`Action::Hint`]), which does not count toward W.
///
/// **One write, one version.** Only a node that certainly did not apply the write (it could
/// not be reached, or answered that it cannot serve now) is replaced as minter; a minter that
/// stays silent may have applied it, so the put then fails [`PutError::Indeterminate`] instead of
/// minting a second version elsewhere. A retry of the same write goes to the same minter
/// ([`retry`](Self::retry)), which recognises the write by its id and mints nothing new.
#[derive(Clone, Debug)]
pub struct PutCoordinator {
    config: StoreConfig,
    write: Write,
    primaries: Vec<NodeId>,
    replicas: Replicas,
    phase: Phase,
    hints: Vec<Hint>,
    /// Primaries the minter keeps a last-resort hint for ([`Action::Hint`]).
    last_resort: Vec<NodeId>,
    /// Primaries that answered with a refusal: they were reached, so no fallback stands in for
    /// them (a fallback would take a write its primaries refuse, and it would be acknowledged
    /// where no read of the primaries finds it).
    refused: Vec<NodeId>,
    /// The first refusal, and whether every failed request was refused (then the reply says why).
    refusal: Option<Refusal>,
    only_refusals: bool,
    shell: Shell<PutRequest, Result<PutOutcome, PutError>>,
    /// While a ring change is under way: the sets that must each hold W (see [`JointQuorum`]).
    joint: Option<alloc::boxed::Box<JointQuorum>>,
    /// Test oracle only: never reply with a quorum failure.
    #[cfg(test)]
    pub(super) patient: bool,
}

impl PutCoordinator {
    /// Starts a put (or a delete, with [`Write::delete`]): the first action asks the first
    /// primary to mint the write.
    ///
    /// `held_down` are the nodes the caller's failure detector holds down (empty if it has
    /// none): they are asked last, only when W can no longer be met without them.
    pub fn new(
        prefs: &PreferenceList,
        config: &StoreConfig,
        held_down: &[NodeId],
        write: Write,
        timeout: Duration,
        now: Duration,
    ) -> PutCoordinator {
        let candidates = Self::minters(prefs, config, held_down);
        let phase = Phase::Mint { candidates, pinned: false };
        PutCoordinator::start(prefs, config, held_down, write, timeout, now, phase)
    }

    /// The primaries to ask to mint, in preference order, leaving out those held down.
    fn minters(prefs: &PreferenceList, config: &StoreConfig, held_down: &[NodeId]) -> VecDeque<NodeId> {
        let primaries = prefs.primaries().iter().take(config.n());
        primaries.filter(|p| !held_down.contains(p)).cloned().collect()
    }

    /// [`new`](Self::new) run by `local`, a node that may itself be a primary of the key: if it
    /// is one and not held down, it is the first asked to mint (a node coordinating a write it
    /// holds mints it itself, sparing a request, as a Riak coordinator does), the other
    /// primaries after it in preference order.
    pub fn at_node(
        prefs: &PreferenceList,
        config: &StoreConfig,
        held_down: &[NodeId],
        write: Write,
        timeout: Duration,
        now: Duration,
        local: &NodeId,
    ) -> PutCoordinator {
        let mut candidates = Self::minters(prefs, config, held_down);
        if let Some(at) = candidates.iter().position(|c| c == local) {
            candidates.remove(at);
            candidates.push_front(local.clone());
        }
        let phase = Phase::Mint { candidates, pinned: false };
        PutCoordinator::start(prefs, config, held_down, write, timeout, now, phase)
    }

    /// Retries a write that failed with [`PutError::Indeterminate`] or [`PutError::Unavailable`]
    /// (see [`PutError::minter`]): the same `write` (same id) goes to the same `minter` only,
    /// which answers with its state if it had applied the write, or applies it now; then the
    /// state is replicated as by [`new`](Self::new).
    pub fn retry(
        prefs: &PreferenceList,
        config: &StoreConfig,
        held_down: &[NodeId],
        write: Write,
        minter: NodeId,
        timeout: Duration,
        now: Duration,
    ) -> PutCoordinator {
        let candidates = core::iter::once(minter).collect();
        let phase = Phase::Mint { candidates, pinned: true };
        PutCoordinator::start(prefs, config, held_down, write, timeout, now, phase)
    }

    fn start(
        prefs: &PreferenceList,
        config: &StoreConfig,
        held_down: &[NodeId],
        write: Write,
        timeout: Duration,
        now: Duration,
        phase: Phase,
    ) -> PutCoordinator {
        let primaries: Vec<NodeId> = prefs.primaries().iter().take(config.n()).cloned().collect();
        let mut replicas = Replicas::new(prefs, config, held_down, timeout);
        if let Phase::Mint { candidates, .. } = &phase {
            candidates.iter().for_each(|c| replicas.remove_spare(c));
        }
        let mut put = PutCoordinator {
            config: *config,
            write,
            replicas,
            phase,
            primaries,
            hints: Vec::new(),
            last_resort: Vec::new(),
            refused: Vec::new(),
            refusal: None,
            only_refusals: true,
            shell: Shell::new(),
            joint: None,
            #[cfg(test)]
            patient: false,
        };
        put.mint_next(now);
        put
    }

    /// This put, counting its acknowledgements in two replica sets at once (a ring change is
    /// under way): it succeeds only once each set holds its W. The preference list's primaries
    /// must be both sets together, and the settings' W at least the larger of the two.
    pub fn with_joint_quorum(mut self, joint: JointQuorum) -> PutCoordinator {
        self.joint = Some(alloc::boxed::Box::new(joint));
        self
    }

    /// Every hint left so far, including those acknowledged after the reply; complete once
    /// [`is_finished`](Coordinator::is_finished).
    pub fn hints(&self) -> &[Hint] {
        &self.hints
    }

    /// The node asked to mint, `from`, has applied the write and is making its copy durable:
    /// `state` (what it will store) goes to the other replicas now, while the minter syncs.
    /// Its answer to the mint, when it comes, is its acknowledgement (or its failure).
    ///
    /// Only a minter whose dots a lost write cannot be minted again may say so before its copy
    /// is durable: a node that mints as `id#incarnation` and starts a new incarnation after
    /// any start that may have lost a write, and that mints no write of the key again in this
    /// incarnation if its store fails (the node machine, for the mints it coordinates itself).
    /// Ignored unless `from` is the node asked to mint and has not answered yet.
    pub fn handle_minted(&mut self, now: Duration, from: &NodeId, state: SealedState) {
        if self.shell.is_done() || !matches!(self.phase, Phase::Mint { .. }) || self.replicas.pending(from).is_none() {
            return;
        }
        if state.siblings.validate().is_err() {
            return;
        }
        self.phase = Phase::Replicate { minted: state, minter: from.clone() };
        self.replicate(now);
        self.evaluate(now);
    }
}

/// A node answers a mint with the state after the write, a replicate with `None` (only success
/// matters).
impl Coordinator for PutCoordinator {
    type Request = PutRequest;
    type Answer = Option<SealedState>;
    type Outcome = Result<PutOutcome, PutError>;

    fn poll_action(&mut self) -> Option<PutAction> {
        self.shell.poll()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.shell.is_done() { None } else { self.replicas.next_deadline() }
    }

    fn is_finished(&self) -> bool {
        self.shell.is_finished()
    }

    fn handle_reply(&mut self, now: Duration, from: &NodeId, answer: Result<Option<SealedState>, ReplicaFailure>) {
        if self.shell.is_done() {
            return;
        }
        let Some(slot) = self.replicas.pending(from) else { return };
        match answer {
            Ok(state) => {
                if let Phase::Mint { .. } = self.phase {
                    let Some(state) = state.filter(|s| s.siblings.validate().is_ok()) else {
                        // An answer that makes no sense: the write may or may not be there.
                        self.fail(slot, now, Applied::Maybe);
                        return self.evaluate(now);
                    };
                    self.phase = Phase::Replicate { minted: state, minter: from.clone() };
                    self.acknowledge(slot);
                    self.replicate(now);
                } else {
                    self.acknowledge(slot);
                }
            }
            Err(ReplicaFailure::Unavailable) => {
                self.only_refusals = false;
                self.fail(slot, now, Applied::No);
            }
            Err(ReplicaFailure::NoAnswer) => {
                self.only_refusals = false;
                self.fail(slot, now, Applied::Maybe);
            }
            // One replica's refusal (a store it does not know yet, a context it cannot take, a
            // state it would grow too large) is one failed replica: it did not apply the write,
            // so the next primary may mint it; but it was reached, so no fallback stands in
            // for it.
            Err(ReplicaFailure::Refused(reason)) => {
                self.refusal.get_or_insert(reason);
                if self.primaries.contains(from) {
                    self.refused.push(from.clone());
                }
                self.fail(slot, now, Applied::No);
            }
        }
        self.evaluate(now);
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.shell.is_done() {
            return;
        }
        for slot in self.replicas.expire(now) {
            self.only_refusals = false;
            self.after_failure(slot, now, Applied::Maybe);
        }
        self.evaluate(now);
    }
}

impl PutCoordinator {
    fn acknowledge(&mut self, slot: usize) {
        let s = &mut self.replicas.slots[slot];
        s.state = State::Succeeded;
        if let Some(primary) = &s.stands_in_for {
            self.hints.push(Hint { holder: s.node.clone(), primary: primary.clone() });
        }
    }

    fn fail(&mut self, slot: usize, now: Duration, applied: Applied) {
        self.replicas.slots[slot].state = State::Failed;
        self.after_failure(slot, now, applied);
    }

    fn after_failure(&mut self, slot: usize, now: Duration, applied: Applied) {
        match self.phase {
            Phase::Mint { .. } if applied == Applied::Maybe => {
                self.phase = Phase::Undecided { minter: self.replicas.slots[slot].node.clone() };
            }
            Phase::Mint { .. } => self.mint_next(now),
            Phase::Undecided { .. } => {}
            Phase::Replicate { .. } => {
                let failed = &self.replicas.slots[slot];
                let primary = failed.stands_in_for.clone().unwrap_or_else(|| failed.node.clone());
                self.stand_in_for(primary, now);
            }
        }
    }

    /// Asks the next candidate to mint: primaries first, then (sloppy) fallbacks.
    fn mint_next(&mut self, now: Duration) {
        let Phase::Mint { candidates, pinned } = &mut self.phase else { return };
        let (node, hint_for) = match candidates.pop_front() {
            Some(node) if self.primaries.contains(&node) => (node, None),
            // A pinned minter that is a fallback holds the write for a primary.
            Some(node) => (node, self.first_uncovered_primary()),
            None if *pinned => return,
            None => {
                let uncovered = self.first_uncovered_primary();
                match uncovered.as_ref().and_then(|_| self.replicas.take_fallback()) {
                    // A fallback mints only for a primary that could not be reached.
                    Some(fallback) => (fallback, uncovered),
                    // The last resort: the nodes held down, primaries first.
                    None => match self.replicas.take_held_down() {
                        Some(node) if self.primaries.contains(&node) => (node, None),
                        Some(node) if uncovered.is_some() => (node, uncovered),
                        _ => return,
                    },
                }
            }
        };
        self.replicas.send(node.clone(), hint_for.clone(), now);
        // A mint that could not lead to W acknowledgements (in each set of a joint quorum) even
        // if it succeeded is not sent: the put fails without leaving the write anywhere. (Sent
        // when only the joint quorum was out of reach, the put failed naming no minter while
        // the mint was in flight, and a retry had another replica mint the same write: found
        // by the simulation with `elastic`, seed 1212.)
        if self.best_case() < self.config.w() || !self.joint_reachable() {
            self.replicas.slots.pop();
            return;
        }
        let request = PutRequest::Mint { write: self.write.clone(), hint_for };
        self.shell.send(node, request);
    }

    /// After the mint: sends the minted state to every other primary, or to a fallback in place
    /// of a primary that already failed.
    ///
    /// A primary the caller holds down gets a fallback in its place (sloppy stores) or, when
    /// none is left, the state itself if W cannot be met without it, else a last-resort hint.
    fn replicate(&mut self, now: Duration) {
        let mut held_down = Vec::new();
        for primary in self.primaries.clone() {
            let asked = self.replicas.slots.iter().any(|s| s.node == primary);
            if self.replicas.covered(&primary) {
                continue;
            }
            if !asked && self.replicas.is_held_down(&primary) {
                held_down.push(primary);
            } else if !asked {
                self.send_replicate(primary, None, now);
            } else if self.replicas.has(&primary, State::Failed) {
                self.stand_in_for(primary, now);
            }
        }
        for primary in held_down {
            if self.replicas.spare_count() == 0 && self.best_case() < self.config.w() {
                self.replicas.remove_spare(&primary);
                self.send_replicate(primary, None, now);
            } else {
                self.stand_in_for(primary, now);
            }
        }
    }

    /// Sends the minted state to every node held down not asked yet, the last resort before
    /// failing: a primary gets it as a replica, a fallback stands in for a primary that holds
    /// no copy and has no stand-in.
    fn ask_held_down(&mut self, now: Duration) {
        if !matches!(self.phase, Phase::Replicate { .. }) {
            return;
        }
        while let Some(node) = self.replicas.take_held_down() {
            if self.primaries.contains(&node) {
                self.send_replicate(node, None, now);
                continue;
            }
            let holds = |p: &NodeId| {
                self.replicas.slots.iter().any(|s| s.node == *p && s.state != State::Failed)
                    || self.replicas.covered(p)
                    || self.refused.contains(p)
            };
            if let Some(primary) = self.primaries.iter().find(|p| !holds(p)).cloned() {
                self.send_replicate(node, Some(primary), now);
            }
        }
    }

    /// Covers `primary`, whose request failed after the mint: a spare fallback takes its share
    /// (sloppy stores), or else the minter keeps a last-resort hint for it, so that a write
    /// acknowledged without `primary` still reaches it once it is back. A primary that refused
    /// the write is left alone (it would refuse the handoff too).
    fn stand_in_for(&mut self, primary: NodeId, now: Duration) {
        if self.refused.contains(&primary) {
            return;
        }
        if let Some(fallback) = self.replicas.take_fallback() {
            return self.send_replicate(fallback, Some(primary), now);
        }
        let Phase::Replicate { minted, minter } = &self.phase else { return };
        if *minter != primary && !self.last_resort.contains(&primary) {
            self.last_resort.push(primary.clone());
            self.shell.hint(minter.clone(), primary, minted.siblings.clone());
        }
    }

    fn send_replicate(&mut self, node: NodeId, hint_for: Option<NodeId>, now: Duration) {
        let Phase::Replicate { minted, .. } = &self.phase else { return };
        let request = PutRequest::Replicate { siblings: minted.siblings.clone(), hint_for: hint_for.clone() };
        self.replicas.send(node.clone(), hint_for, now);
        self.shell.send(node, request);
    }

    /// The first primary no fallback stands in for yet, leaving out those that refused.
    fn first_uncovered_primary(&self) -> Option<NodeId> {
        self.primaries.iter().find(|p| !self.replicas.covered(p) && !self.refused.contains(p)).cloned()
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
            Phase::Undecided { .. } => 0,
            Phase::Mint { .. } => {
                let Some(minter) = self.replicas.slots.iter().find(|s| matches!(s.state, State::Pending { .. })) else {
                    return 0;
                };
                // Primaries not asked yet get the minted state (as candidates, or when a pinned
                // retry replicates).
                let asked = |p: &NodeId| self.replicas.slots.iter().any(|s| s.node == *p) || self.replicas.covered(p);
                let untried = self.primaries.iter().filter(|p| !asked(p)).count();
                let failed = self
                    .primaries
                    .iter()
                    .filter(|p| self.replicas.has(p, State::Failed) && !self.refused.contains(p))
                    .count();
                let uncovered = failed.saturating_sub(usize::from(minter.stands_in_for.is_some()));
                1 + untried + uncovered.min(self.replicas.spare_count())
            }
        }
    }

    fn is_patient(&self) -> bool {
        #[cfg(test)]
        return self.patient;
        #[cfg(not(test))]
        false
    }

    fn evaluate(&mut self, now: Duration) {
        if self.shell.is_done() {
            return;
        }
        let required = self.config.w();
        let acknowledged = self.replicas.succeeded();
        if !self.shell.has_replied() && (self.best_case() < required || !self.joint_reachable()) {
            self.ask_held_down(now);
        }
        if !self.shell.has_replied() {
            let reachable = self.best_case() >= required && self.joint_reachable();
            if let Phase::Undecided { minter } = &self.phase {
                let minter = minter.clone();
                self.shell.reply(Err(PutError::Indeterminate { minter }));
                self.shell.finish();
                return;
            }
            if let (Phase::Replicate { minted, .. }, true) = (&self.phase, acknowledged >= required && self.joint_met())
            {
                let outcome = PutOutcome {
                    state: minted.clone(),
                    acknowledged: self.acknowledged_nodes(),
                    hints: self.hints.clone(),
                };
                self.shell.reply(Ok(outcome));
            } else if !reachable && !self.is_patient() {
                let minter = match &self.phase {
                    Phase::Replicate { minter, .. } => Some(minter.clone()),
                    _ => None,
                };
                // A mint still in flight may apply the write: a retry must go to that node.
                let minting = match &self.phase {
                    Phase::Mint { .. } => self.replicas.slots.iter().find(|s| matches!(s.state, State::Pending { .. })),
                    _ => None,
                };
                let error = match (&self.refusal, minting) {
                    (_, Some(slot)) => PutError::Indeterminate { minter: slot.node.clone() },
                    (Some(reason), None) if self.only_refusals && acknowledged == 0 => {
                        PutError::Refused(reason.clone())
                    }
                    _ => PutError::Unavailable { required, acknowledged, minter, quorum: self.config.quorum_kind() },
                };
                self.shell.reply(Err(error));
                self.shell.finish();
                return;
            }
        }
        if self.shell.has_replied() && self.replicas.in_flight() == 0 {
            self.shell.finish();
        }
    }

    /// The primary a slot's answer counts for.
    fn counts_for(slot: &super::replicas::Slot) -> &NodeId {
        slot.stands_in_for.as_ref().unwrap_or(&slot.node)
    }

    /// Whether each set of the joint quorum holds its W (always, without one).
    fn joint_met(&self) -> bool {
        let Some(joint) = &self.joint else { return true };
        joint.sets.iter().all(|(set, w)| {
            let held =
                self.replicas.slots.iter().filter(|s| s.state == State::Succeeded && set.contains(Self::counts_for(s)));
            held.count() >= *w
        })
    }

    /// Whether each set of the joint quorum can still reach its W: acknowledged or pending
    /// requests for its members, members not asked yet (not held down: those are asked last,
    /// once this says no), and spare fallbacks for its members that failed.
    fn joint_reachable(&self) -> bool {
        let Some(joint) = &self.joint else { return true };
        let undecided = matches!(self.phase, Phase::Undecided { .. });
        !undecided
            && joint.sets.iter().all(|(set, w)| {
                let live = |s: &&super::replicas::Slot| s.state != State::Failed && set.contains(Self::counts_for(s));
                let counted = self.replicas.slots.iter().filter(live).count();
                let asked = |p: &NodeId| self.replicas.slots.iter().any(|s| s.node == *p) || self.replicas.covered(p);
                let untried = set
                    .iter()
                    .filter(|p| self.primaries.contains(p) && !asked(p) && !self.replicas.is_held_down(p))
                    .count();
                let failed = set
                    .iter()
                    .filter(|p| {
                        self.replicas.has(p, State::Failed) && !self.replicas.covered(p) && !self.refused.contains(p)
                    })
                    .count();
                counted + untried + failed.min(self.replicas.spare_count()) >= *w
            })
    }

    fn acknowledged_nodes(&self) -> Vec<NodeId> {
        self.replicas.slots.iter().filter(|s| s.state == State::Succeeded).map(|s| s.node.clone()).collect()
    }
}
