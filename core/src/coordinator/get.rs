//! The get coordinator.

use alloc::vec::Vec;
use core::time::Duration;

use super::ReplicaFailure;
use super::replicas::{Replicas, State};
use super::shell::{Action, Coordinator, Read, Shell};
use crate::error::Refusal;
use crate::identity::NodeId;
use crate::ring::PreferenceList;
use crate::store::{QuorumKind, StoreConfig};
use crate::version::{CausalContext, SealedState, Siblings};

/// What a get coordinator asks its driver to do: send a replica read, reply, or repair a replica
/// that answered with less (after the reply, once every asked replica has answered or timed out).
pub type GetAction = Action<Read, Result<GetOutcome, GetError>>;

/// A successful get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetOutcome {
    /// The reconciled state of the key (empty if no replica had it).
    pub siblings: Siblings,
    /// The context for the caller's next write of the key: the seals of the states merged.
    pub context: CausalContext,
}

/// Why a get failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// Fewer than R replicas answered. Retryable: replicas may come back.
    #[error("not enough replicas answered: {answered} of the {required} required (R){}", quorum.failure_note())]
    Unavailable {
        /// R.
        required: usize,
        /// Replicas that answered.
        answered: usize,
        /// The store's quorum kind (a strict store never counts fallbacks, and says so).
        quorum: QuorumKind,
    },
    /// Every replica that failed refused the request as invalid, and too few answered. Not
    /// retryable as is.
    #[error("the request was refused: {0}")]
    Refused(Refusal),
}

impl GetError {
    /// Whether the same request may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, GetError::Unavailable { .. })
    }
}

/// Coordinates one get: asks the N replicas, replies once R have answered, then repairs the
/// replicas that answered with a stale state. Under a sloppy quorum an unreachable replica is
/// replaced by the next fallback (which may hold the key with a hint). Replicas the caller holds
/// down are asked last: a fallback stands in for them from the start, and they are asked only
/// when R can no longer be met without them.
#[derive(Clone, Debug)]
pub struct GetCoordinator {
    config: StoreConfig,
    primaries: Vec<NodeId>,
    replicas: Replicas,
    /// The states answered so far, by slot.
    answers: Vec<(usize, Option<Siblings>)>,
    merged: Siblings,
    /// The merged states' seals.
    context: CausalContext,
    /// The first refusal, and whether every failed replica refused (then the reply says why).
    refusal: Option<Refusal>,
    only_refusals: bool,
    shell: Shell<Read, Result<GetOutcome, GetError>>,
    /// Test oracle only: never reply with a quorum failure.
    #[cfg(test)]
    pub(super) patient: bool,
}

impl GetCoordinator {
    /// Starts a get: the first actions ask each primary replica not in `held_down` (the nodes
    /// the caller's failure detector holds down; empty if it has none).
    pub fn new(
        prefs: &PreferenceList,
        config: &StoreConfig,
        held_down: &[NodeId],
        timeout: Duration,
        now: Duration,
    ) -> GetCoordinator {
        let primaries: Vec<NodeId> = prefs.primaries().iter().take(config.n()).cloned().collect();
        let mut get = GetCoordinator {
            config: *config,
            replicas: Replicas::new(prefs, config, held_down, timeout),
            primaries: primaries.clone(),
            answers: Vec::new(),
            merged: Siblings::new(),
            context: CausalContext::empty(),
            refusal: None,
            only_refusals: true,
            shell: Shell::new(),
            #[cfg(test)]
            patient: false,
        };
        for node in primaries {
            if get.replicas.is_held_down(&node) {
                get.stand_in_for(node, now);
            } else {
                get.send(node, None, now);
            }
        }
        // A list with fewer than N primaries: fallbacks, if any, fill the missing slots at once.
        while get.replicas.slots.len() < config.n() {
            let Some(node) = get.replicas.take_fallback() else { break };
            get.send(node, None, now);
        }
        get.evaluate(now);
        get
    }
}

/// A replica answers a read with its state of the key (`None` if it has none).
impl Coordinator for GetCoordinator {
    type Request = Read;
    type Answer = Option<SealedState>;
    type Outcome = Result<GetOutcome, GetError>;

    fn poll_action(&mut self) -> Option<GetAction> {
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
            // A fallback without the key holds no hinted write of it: its empty answer says
            // nothing about the key, so it never counts toward R (the next fallback is asked).
            Ok(None) if self.replicas.slots[slot].stands_in_for.is_some() => {
                self.only_refusals = false;
                self.fail_slot(slot, now);
            }
            Ok(state) => {
                // A state that breaks the invariants is as good as no answer.
                if state.as_ref().is_some_and(|s| s.siblings.validate().is_err()) {
                    self.fail_slot(slot, now);
                } else {
                    self.replicas.slots[slot].state = State::Succeeded;
                    if let Some(s) = &state {
                        self.merged.merge(&s.siblings, self.config.conflicts());
                        self.context.merge(&s.context());
                    }
                    self.answers.push((slot, state.map(|s| s.siblings)));
                }
            }
            Err(ReplicaFailure::Unavailable | ReplicaFailure::NoAnswer) => {
                self.only_refusals = false;
                self.fail_slot(slot, now);
            }
            // One replica's refusal (a store it does not know yet) is one failed replica.
            Err(ReplicaFailure::Refused(reason)) => {
                self.refusal.get_or_insert(reason);
                self.fail_slot(slot, now);
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
            self.substitute(slot, now);
        }
        self.evaluate(now);
    }
}

impl GetCoordinator {
    fn send(&mut self, node: NodeId, stands_in_for: Option<NodeId>, now: Duration) {
        self.replicas.send(node.clone(), stands_in_for, now);
        self.shell.send(node, Read);
    }

    fn fail_slot(&mut self, slot: usize, now: Duration) {
        self.replicas.slots[slot].state = State::Failed;
        self.substitute(slot, now);
    }

    /// Asks a fallback in place of a failed slot (sloppy quorums only; strict has no spares).
    fn substitute(&mut self, slot: usize, now: Duration) {
        let failed = &self.replicas.slots[slot];
        let primary = failed.stands_in_for.clone().unwrap_or_else(|| failed.node.clone());
        self.stand_in_for(primary, now);
    }

    /// Asks the next fallback held up in place of `primary`, if one is left.
    fn stand_in_for(&mut self, primary: NodeId, now: Duration) {
        if let Some(fallback) = self.replicas.take_fallback() {
            self.send(fallback, Some(primary), now);
        }
    }

    /// Asks every node held down not asked yet, the last resort before failing; returns whether
    /// any was. A fallback among them stands in for the first primary that has not answered.
    fn ask_held_down(&mut self, now: Duration) -> bool {
        let mut asked = false;
        while let Some(node) = self.replicas.take_held_down() {
            let stands_in_for = match self.primaries.contains(&node) {
                true => None,
                false => {
                    let answered = |p: &NodeId| self.replicas.has(p, State::Succeeded);
                    self.primaries.iter().find(|p| !answered(p)).or(self.primaries.first()).cloned()
                }
            };
            self.send(node, stands_in_for, now);
            asked = true;
        }
        asked
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
        let required = self.config.r();
        if !self.shell.has_replied() && self.replicas.best_case() < required {
            self.ask_held_down(now);
        }
        if !self.shell.has_replied() {
            if self.replicas.succeeded() >= required {
                let outcome = GetOutcome { siblings: self.merged.clone(), context: self.context.clone() };
                self.shell.reply(Ok(outcome));
            } else if self.replicas.best_case() < required && !self.is_patient() {
                let answered = self.replicas.succeeded();
                let error = match &self.refusal {
                    Some(reason) if self.only_refusals => GetError::Refused(reason.clone()),
                    _ => GetError::Unavailable { required, answered, quorum: self.config.quorum_kind() },
                };
                self.shell.reply(Err(error));
                self.shell.finish();
                return;
            }
        }
        if self.shell.has_replied() && self.replicas.in_flight() == 0 {
            self.repair();
            self.shell.finish();
        }
    }

    /// Repairs every true replica that answered with less than the reconciled state.
    fn repair(&mut self) {
        if self.merged == Siblings::new() {
            return;
        }
        for (slot, state) in &self.answers {
            let slot = &self.replicas.slots[*slot];
            if slot.stands_in_for.is_none() && state.as_ref() != Some(&self.merged) {
                self.shell.repair(slot.node.clone(), self.merged.clone());
            }
        }
    }
}
