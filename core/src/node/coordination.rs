//! Coordination for callers that cannot route: the node runs core's get and put coordinators
//! (the same machines the smart client runs), one per request, and performs what they emit —
//! replica requests to peers, or replica steps on itself when it is one of the replicas.
//!
//! A coordination that fails (unavailable or indeterminate) after a replica answered
//! `StaleRing` ran with a ring this node had not caught up with yet (a ring change had reached
//! the replicas first): the node pulls the newer view, and once its routing version moves it
//! runs the request once more with the new plan, as a smart client does after refreshing its
//! view. A put runs again as a retry at the replica that minted it, when one may have (the
//! write marked resent), so it is never applied twice. If the view does not move within the
//! replica timeout, the caller gets the first failure.

use alloc::format;
use alloc::vec::Vec;
use core::time::Duration;

use super::replica::{Completion, ReplicaStep};
use super::{Event, Node, Purpose, ReplicaCall};
use crate::coordinator::{
    self, Action, Coordinator, GetCoordinator, GetError, PutCoordinator, PutError, PutRequest, ReplicaFailure,
};
use crate::identity::NodeId;
use crate::ring::RingVersion;
use crate::store::{QuorumKind, StoreConfig, StoreName};
use crate::token::Token;
use crate::version::{SealedState, Siblings, Write};
use crate::wire::{ErrorKind, ErrorReply, Request, Response};

/// One request this node coordinates.
#[derive(Debug)]
pub(super) struct Coordination {
    /// Where the reply goes.
    stream: u64,
    id: u64,
    store: StoreName,
    key: Vec<u8>,
    config: StoreConfig,
    machine: Machine,
    /// The routing version the request was planned with.
    planned: Option<RingVersion>,
    /// A replica answered `StaleRing`: this node's ring was behind.
    stale: bool,
    /// What to run again once the ring catches up (`None` once it ran again: once only).
    again: Option<Job>,
    /// The failure it finished with after a `StaleRing`, held until the ring moves or the
    /// time given.
    parked: Option<(Response, Duration)>,
}

#[derive(Debug)]
enum Machine {
    Get(GetCoordinator),
    Put(PutCoordinator),
}

impl Coordination {
    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        if let Some((_, until)) = &self.parked {
            return Some(*until);
        }
        match &self.machine {
            Machine::Get(m) => m.poll_timeout(),
            Machine::Put(m) => m.poll_timeout(),
        }
    }

    fn is_finished(&self) -> bool {
        match &self.machine {
            Machine::Get(m) => m.is_finished(),
            Machine::Put(m) => m.is_finished(),
        }
    }
}

/// An action of either machine, reduced to what the node does.
enum Step {
    Call { to: NodeId, call: ReplicaCall },
    Reply(Response),
    Repair { to: NodeId, siblings: crate::version::Siblings },
    Hint { to: NodeId, primary: NodeId, siblings: crate::version::Siblings },
}

/// What a plain caller asked this node to coordinate.
#[derive(Clone, Debug)]
pub(super) enum Job {
    Get,
    /// A put or delete; `minter` is set on a retry (see [`PutCoordinator::retry`]).
    Put {
        write: Write,
        minter: Option<NodeId>,
    },
}

impl Node {
    /// Starts coordinating a get, put or delete for a plain caller; one that may run again
    /// after a `StaleRing` (`again`: not itself a run again) keeps its job for that.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn coordinate(
        &mut self,
        now: Duration,
        stream: u64,
        id: u64,
        store: StoreName,
        key: Vec<u8>,
        config: StoreConfig,
        job: Job,
        again: bool,
    ) -> Result<(), ErrorReply> {
        let kept = again.then(|| job.clone());
        // Reads go to the current ring's replicas; writes, during a ring change, to both rings'
        // (see `ClusterView::write_plan`).
        let (prefs, counted, joint) = match &job {
            Job::Get => (self.preference_list(&key, &config)?, config, None),
            Job::Put { .. } => {
                let plan = self
                    .view
                    .write_plan(Token::of(&key), &config, self.config.fallbacks)
                    .ok_or_else(|| ErrorReply::new(ErrorKind::Unavailable, "the cluster has no ring yet"))?;
                (plan.prefs, plan.config, plan.joint)
            }
        };
        let joined = |put: PutCoordinator| match &joint {
            Some(joint) => put.with_joint_quorum(joint.clone()),
            None => put,
        };
        let timeout = self.config.replica_timeout;
        // Nodes this node holds down are asked last (the coordinators decide when).
        let held_down: Vec<NodeId> =
            prefs.primaries().iter().chain(prefs.fallbacks()).filter(|n| self.liveness.is_down(n)).cloned().collect();
        let machine = match job {
            Job::Get => Machine::Get(GetCoordinator::new(&prefs, &config, &held_down, timeout, now)),
            Job::Put { write, minter: None } => {
                let put = PutCoordinator::at_node(&prefs, &counted, &held_down, write, timeout, now, &self.id);
                Machine::Put(joined(put))
            }
            Job::Put { write, minter: Some(minter) } => {
                let fallback = config.quorum_kind() == QuorumKind::Sloppy && prefs.fallbacks().contains(&minter);
                if !prefs.primaries().iter().take(counted.n()).any(|p| *p == minter) && !fallback {
                    // The caller routed with another ring than this node's (or named a node that
                    // is no replica at all): it should refresh its view.
                    return Err(ErrorReply::new(
                        ErrorKind::StaleRing,
                        format!(
                            "{minter} holds no replica of the key in this node's ring (epoch {})",
                            self.view.ring().map_or(0, |r| r.epoch())
                        ),
                    ));
                }
                Machine::Put(joined(PutCoordinator::retry(&prefs, &counted, &held_down, write, minter, timeout, now)))
            }
        };
        let number = self.next_coordination;
        self.next_coordination += 1;
        let planned = self.view.routing_version();
        let coordination =
            Coordination { stream, id, store, key, config, machine, planned, stale: false, again: kept, parked: None };
        self.coordinations.insert(number, coordination);
        self.drive(now, number);
        Ok(())
    }

    /// After the view changed: runs again each coordination that failed after a `StaleRing`
    /// once this node's routing version has moved past the one it was planned with.
    pub(super) fn rerun_stale_coordinations(&mut self, now: Duration) {
        let routing = self.view.routing_version();
        let ready: Vec<u64> = self
            .coordinations
            .iter()
            .filter(|(_, c)| c.parked.is_some() && c.planned != routing)
            .map(|(&n, _)| n)
            .collect();
        for number in ready {
            let Some(c) = self.coordinations.remove(&number) else { continue };
            let (Some(job), Some((failure, _))) = (c.again, c.parked) else { continue };
            let job = match (job, &failure) {
                // The minter the failure names may have applied the write: only it is asked.
                (Job::Put { write, minter }, Response::Error(reply)) => {
                    Job::Put { write: write.resend(), minter: reply.minter.clone().or(minter) }
                }
                (job, _) => job,
            };
            self.stats.coordinations_rerun += 1;
            let minter = match &job {
                Job::Put { minter, .. } => minter.clone(),
                Job::Get => None,
            };
            self.events.push_back(Event::CoordinationRerun { store: c.store.clone(), key: c.key.clone(), minter });
            if self.coordinate(now, c.stream, c.id, c.store, c.key, c.config, job, false).is_err() {
                // Not with the new ring (the replica that minted the write is none of the key's
                // now): the caller gets the first failure, which names that replica, so that it
                // never asks another to apply the write (found by the simulation, seed 697,
                // where the refusal, naming no minter, had a second replica mint it).
                self.reply(c.stream, c.id, failure);
            }
        }
    }

    fn preference_list(&self, key: &[u8], config: &StoreConfig) -> Result<crate::ring::PreferenceList, ErrorReply> {
        self.view
            .read_preferences(Token::of(key), config, self.config.fallbacks)
            .ok_or_else(|| ErrorReply::new(ErrorKind::Unavailable, "the cluster has no ring yet"))
    }

    /// An answer to a replica request of coordination `number` (from a peer or from this node).
    pub(super) fn replica_answer(
        &mut self,
        now: Duration,
        number: u64,
        from: &NodeId,
        call: &ReplicaCall,
        answer: Result<Response, ReplicaFailure>,
    ) {
        let stale = matches!(&answer, Ok(Response::Error(reply)) if reply.kind == ErrorKind::StaleRing);
        if stale {
            // The peer's ring is newer than ours: catch up with it.
            self.gossip_with(now, &from.clone(), super::cluster_sync::Round::Pull);
        }
        let Some(coordination) = self.coordinations.get_mut(&number) else { return };
        coordination.stale |= stale;
        match (&mut coordination.machine, call) {
            (Machine::Get(machine), ReplicaCall::Read) => {
                let answer = answer.and_then(coordinator::read_answer);
                machine.handle_reply(now, from, answer);
            }
            (Machine::Put(machine), ReplicaCall::Write(request)) => {
                let answer = answer.and_then(|body| coordinator::write_answer(request, body));
                machine.handle_reply(now, from, answer);
            }
            _ => return,
        }
        self.drive(now, number);
    }

    /// This node, asked by coordination `number` to mint, has applied the write and is storing
    /// it (see `Node::release_mint`): the put replicates the state now.
    pub(super) fn minted_here(&mut self, now: Duration, number: u64, state: SealedState) {
        let Some(coordination) = self.coordinations.get_mut(&number) else { return };
        let Machine::Put(machine) = &mut coordination.machine else { return };
        machine.handle_minted(now, &self.id, state);
        self.drive(now, number);
    }

    /// Expires the replica requests of every coordination whose deadline has come.
    pub(super) fn coordinations_timeout(&mut self, now: Duration) {
        let due: Vec<u64> = self
            .coordinations
            .iter()
            .filter(|(_, c)| c.poll_timeout().is_some_and(|t| t <= now))
            .map(|(&n, _)| n)
            .collect();
        for number in due {
            if let Some(coordination) = self.coordinations.get_mut(&number) {
                if let Some((failure, _)) = coordination.parked.take() {
                    // The ring did not move in time: the caller gets the failure.
                    let (stream, id) = (coordination.stream, coordination.id);
                    self.coordinations.remove(&number);
                    self.reply(stream, id, failure);
                    continue;
                }
                match &mut coordination.machine {
                    Machine::Get(m) => m.handle_timeout(now),
                    Machine::Put(m) => m.handle_timeout(now),
                }
            }
            self.drive(now, number);
        }
    }

    /// Performs every action coordination `number` has emitted; forgets it once finished.
    fn drive(&mut self, now: Duration, number: u64) {
        loop {
            let Some(coordination) = self.coordinations.get_mut(&number) else { return };
            let seal =
                |siblings: Siblings| self.config.context_key.seal(&coordination.store, &coordination.key, siblings);
            let Some(action) = next_action(&mut coordination.machine, seal) else { break };
            if let Step::Reply(body) = action {
                if coordination.stale && coordination.again.is_some() && worth_again(&body) {
                    // Held until this node's ring catches up (see the module docs).
                    coordination.parked = Some((body, now.saturating_add(self.config.replica_timeout)));
                    continue;
                }
                let (stream, id) = (coordination.stream, coordination.id);
                self.reply(stream, id, body);
                continue;
            }
            let (store, key, config) = (coordination.store.clone(), coordination.key.clone(), coordination.config);
            match action {
                Step::Reply(_) => {}
                Step::Call { to, call } if to == self.id => {
                    let (step, hint_for) = match &call {
                        ReplicaCall::Read => (ReplicaStep::Read, None),
                        ReplicaCall::Write(PutRequest::Mint { write, hint_for }) => {
                            (ReplicaStep::Mint(write.clone()), hint_for.clone())
                        }
                        ReplicaCall::Write(PutRequest::Replicate { siblings, hint_for }) => {
                            (ReplicaStep::Merge(siblings.clone()), hint_for.clone())
                        }
                    };
                    let done = Completion::Coordination { coordination: number, call };
                    self.enqueue_hinted(store, key, config, step, done, hint_for);
                }
                Step::Call { to, call } => {
                    let body = match &call {
                        ReplicaCall::Read => Request::Get { store, key },
                        ReplicaCall::Write(PutRequest::Mint { write, hint_for }) => {
                            Request::Mint { store, key, write: write.clone(), hint_for: hint_for.clone() }
                        }
                        ReplicaCall::Write(PutRequest::Replicate { siblings, hint_for }) => {
                            Request::Replicate { store, key, siblings: siblings.clone(), hint_for: hint_for.clone() }
                        }
                    };
                    match self.destination(&to) {
                        Some(destination) => {
                            self.stats.forwarded += 1;
                            let purpose = Purpose::Replica { coordination: number, to, call };
                            self.send_request(now, destination, body, true, purpose);
                        }
                        // A node of the ring missing from the membership cannot be reached.
                        None => self.replica_answer(now, number, &to, &call, Err(ReplicaFailure::Unavailable)),
                    }
                }
                Step::Repair { to, siblings } if to == self.id => {
                    self.events.push_back(Event::ReadRepair { store: store.clone(), key: key.clone(), replica: to });
                    self.enqueue(store, key, config, ReplicaStep::Merge(siblings), Completion::Nothing);
                }
                // The minter keeps a hint for a primary nobody stands in for (it holds the
                // state already: only the hint is new).
                Step::Hint { to, primary, siblings } if to == self.id => {
                    let step = ReplicaStep::Merge(siblings);
                    self.enqueue_hinted(store, key, config, step, Completion::Nothing, Some(primary));
                }
                Step::Hint { to, primary, siblings } => {
                    if let Some(destination) = self.destination(&to) {
                        let body = Request::Replicate { store, key, siblings, hint_for: Some(primary) };
                        self.send_request(now, destination, body, true, Purpose::Repair);
                    }
                }
                Step::Repair { to, siblings } => {
                    self.events.push_back(Event::ReadRepair {
                        store: store.clone(),
                        key: key.clone(),
                        replica: to.clone(),
                    });
                    if let Some(destination) = self.destination(&to) {
                        let body = Request::Replicate { store, key, siblings, hint_for: None };
                        self.send_request(now, destination, body, true, Purpose::Repair);
                    }
                }
            }
        }
        if self.coordinations.get(&number).is_some_and(|c| c.is_finished() && c.parked.is_none()) {
            self.coordinations.remove(&number);
        } else if self.coordinations.get(&number).is_some_and(|c| c.parked.is_some()) {
            // The newer view may be here already.
            self.rerun_stale_coordinations(now);
        }
    }
}

/// Whether a failure is one that running again with a newer ring may mend.
fn worth_again(body: &Response) -> bool {
    matches!(body, Response::Error(e) if matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Indeterminate))
}

/// The next action of `machine`; a get's reply carries the merged state sealed with `seal`.
fn next_action(machine: &mut Machine, seal: impl Fn(Siblings) -> SealedState) -> Option<Step> {
    Some(match machine {
        Machine::Get(m) => match m.poll_action()? {
            Action::Send { to, .. } => Step::Call { to, call: ReplicaCall::Read },
            Action::Reply(Ok(outcome)) => Step::Reply(Response::State(Some(seal(outcome.siblings)))),
            Action::Reply(Err(GetError::Refused(refusal))) => Step::Reply(Response::Error(refusal.into())),
            Action::Reply(Err(e)) => Step::Reply(unavailable(&e)),
            Action::Repair { to, siblings } => Step::Repair { to, siblings },
            Action::Hint { to, primary, siblings } => Step::Hint { to, primary, siblings },
        },
        Machine::Put(m) => match m.poll_action()? {
            Action::Send { to, request } => Step::Call { to, call: ReplicaCall::Write(request) },
            Action::Reply(Ok(outcome)) => Step::Reply(Response::State(Some(outcome.state))),
            Action::Reply(Err(PutError::Refused(refusal))) => Step::Reply(Response::Error(refusal.into())),
            Action::Repair { to, siblings } => Step::Repair { to, siblings },
            Action::Hint { to, primary, siblings } => Step::Hint { to, primary, siblings },
            Action::Reply(Err(e)) => {
                let kind = match e {
                    PutError::Indeterminate { .. } => ErrorKind::Indeterminate,
                    _ => ErrorKind::Unavailable,
                };
                let reply = ErrorReply::new(kind, format!("{e}")).with_minter(e.minter().cloned());
                Step::Reply(Response::Error(reply))
            }
        },
    })
}

fn unavailable(e: &dyn core::fmt::Display) -> Response {
    Response::Error(ErrorReply::new(ErrorKind::Unavailable, format!("{e}")))
}
