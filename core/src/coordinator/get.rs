//! The get coordinator.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use super::ReplicaFailure;
use super::replicas::{Replicas, State};
use crate::identity::NodeId;
use crate::ring::PreferenceList;
use crate::store::StoreConfig;
use crate::version::{CausalContext, SealedState, Siblings};
use crate::wire::ErrorReply;

/// What a get coordinator asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetAction {
    /// Ask `to` for its state of the key.
    Send {
        /// The replica or fallback to ask.
        to: NodeId,
    },
    /// Return this to the caller. Emitted exactly once.
    Reply(Result<GetOutcome, GetError>),
    /// Write the reconciled state back to a replica that answered with less (read repair).
    /// Emitted after the reply, once every asked replica has answered or timed out.
    Repair {
        /// The stale replica.
        to: NodeId,
        /// The state to merge into it.
        siblings: Siblings,
    },
}

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
    #[error("not enough replicas answered: {answered} of the {required} required (R)")]
    Unavailable {
        /// R.
        required: usize,
        /// Replicas that answered.
        answered: usize,
    },
    /// Every replica that failed refused the request as invalid, and too few answered. Not
    /// retryable as is.
    #[error("the request was refused: {0}")]
    Refused(ErrorReply),
}

impl GetError {
    /// Whether the same request may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, GetError::Unavailable { .. })
    }
}

/// Coordinates one get: asks the N replicas, replies once R have answered, then repairs the
/// replicas that answered with a stale state. Under a sloppy quorum an unreachable replica is
/// replaced by the next fallback (which may hold the key with a hint).
#[derive(Clone, Debug)]
pub struct GetCoordinator {
    config: StoreConfig,
    replicas: Replicas,
    /// The states answered so far, by slot.
    answers: Vec<(usize, Option<Siblings>)>,
    merged: Siblings,
    /// The merged states' seals.
    context: CausalContext,
    /// The first refusal, and whether every failed replica refused (then the reply says why).
    refusal: Option<ErrorReply>,
    only_refusals: bool,
    actions: VecDeque<GetAction>,
    replied: bool,
    finished: bool,
    /// Test oracle only: never reply with a quorum failure.
    #[cfg(test)]
    pub(super) patient: bool,
}

impl GetCoordinator {
    /// Starts a get: the first actions ask each primary replica.
    pub fn new(prefs: &PreferenceList, config: &StoreConfig, timeout: Duration, now: Duration) -> GetCoordinator {
        let mut get = GetCoordinator {
            config: *config,
            replicas: Replicas::new(prefs, config, timeout),
            answers: Vec::new(),
            merged: Siblings::new(),
            context: CausalContext::empty(),
            refusal: None,
            only_refusals: true,
            actions: VecDeque::new(),
            replied: false,
            finished: false,
            #[cfg(test)]
            patient: false,
        };
        for node in prefs.primaries().iter().take(config.n()) {
            get.send(node.clone(), None, now);
        }
        // A list with fewer than N primaries: fallbacks, if any, fill the missing slots at once.
        while get.replicas.slots.len() < config.n() {
            let Some(node) = get.replicas.take_fallback() else { break };
            get.send(node, None, now);
        }
        get.evaluate();
        get
    }

    /// The next action to perform. Call until `None` after building and after each `handle_*`.
    pub fn poll_action(&mut self) -> Option<GetAction> {
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

    /// Feeds the answer of replica `from`: its state of the key (`None` if it has none) or why it
    /// could not serve. Answers from nodes not asked, or asked and already timed out, are ignored.
    pub fn handle_reply(&mut self, now: Duration, from: &NodeId, answer: Result<Option<SealedState>, ReplicaFailure>) {
        if self.finished {
            return;
        }
        let Some(slot) = self.replicas.pending(from) else { return };
        match answer {
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
        self.evaluate();
    }

    /// Expires every request whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.finished {
            return;
        }
        for slot in self.replicas.expire(now) {
            self.only_refusals = false;
            self.substitute(slot, now);
        }
        self.evaluate();
    }

    fn send(&mut self, node: NodeId, stands_in_for: Option<NodeId>, now: Duration) {
        self.replicas.send(node.clone(), stands_in_for, now);
        self.actions.push_back(GetAction::Send { to: node });
    }

    fn fail_slot(&mut self, slot: usize, now: Duration) {
        self.replicas.slots[slot].state = State::Failed;
        self.substitute(slot, now);
    }

    /// Asks a fallback in place of a failed slot (sloppy quorums only; strict has no spares).
    fn substitute(&mut self, slot: usize, now: Duration) {
        if let Some(fallback) = self.replicas.take_fallback() {
            let failed = &self.replicas.slots[slot];
            let primary = failed.stands_in_for.clone().unwrap_or_else(|| failed.node.clone());
            self.send(fallback, Some(primary), now);
        }
    }

    fn is_patient(&self) -> bool {
        #[cfg(test)]
        return self.patient;
        #[cfg(not(test))]
        false
    }

    fn reply(&mut self, outcome: Result<GetOutcome, GetError>) {
        self.replied = true;
        self.actions.push_back(GetAction::Reply(outcome));
    }

    fn evaluate(&mut self) {
        if self.finished {
            return;
        }
        let required = self.config.r();
        if !self.replied {
            if self.replicas.succeeded() >= required {
                let outcome = GetOutcome { siblings: self.merged.clone(), context: self.context.clone() };
                self.reply(Ok(outcome));
            } else if self.replicas.best_case() < required && !self.is_patient() {
                let answered = self.replicas.succeeded();
                let error = match &self.refusal {
                    Some(reason) if self.only_refusals => GetError::Refused(reason.clone()),
                    _ => GetError::Unavailable { required, answered },
                };
                self.reply(Err(error));
                self.finished = true;
                return;
            }
        }
        if self.replied && self.replicas.in_flight() == 0 {
            self.repair();
            self.finished = true;
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
                self.actions.push_back(GetAction::Repair { to: slot.node.clone(), siblings: self.merged.clone() });
            }
        }
    }
}
