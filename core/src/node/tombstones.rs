//! Tombstone collection: a deleted key's record is removed from every node once no node can
//! bring back what the delete removed.
//!
//! A delete writes a tombstone, a version that reads as absent and supersedes what the delete
//! saw. Removing it too early brings deletes back: a replica that missed the delete, a hint or a
//! fallback's copy of the older value, a read repair in flight, would each store the old value
//! again on nodes that no longer hold anything to supersede it. So a tombstone is collected only
//! when, twice, [`NodeConfig::tombstone_grace`](super::NodeConfig::tombstone_grace) apart, every
//! node that may hold a copy of the key (its primaries and the fallbacks a coordinator uses,
//! [`NodeConfig::fallbacks`](super::NodeConfig::fallbacks) of them) has been asked and answered
//! that it holds exactly that tombstone (a fallback may hold nothing) and no hint of the key:
//!
//! 1. the key's first primary (its *collector*; the others never start) notes each tombstone it
//!    stores ([`Candidate`]), and once it has held it unchanged for the grace, asks every other
//!    node of the key's preference list what it holds (`TombstoneCheck`, answered `Held`);
//! 2. a node that holds something else is brought level (its state merged here, the tombstone
//!    sent to it) and the count starts again; a node that is not up means waiting;
//! 3. after a second check a grace later, which makes older states still in flight (a repair,
//!    a handoff, a late retry) implausible, the collector asks each node to remove the record
//!    (`Collect`): each does so only if its record is still that tombstone and it holds no hint
//!    of the key, in the key's queue of replica steps, so no write to the key interleaves. Once
//!    every node answered, the collector removes its own.
//!
//! **Counters.** A record carries the node's counter for the key: minting for a key whose
//! record is gone would start from 1 again and reuse dots that contexts and other replicas
//! have seen. A node therefore keeps a *counter floor*, the highest counter any record it
//! removed held for its own actor, stored with the removal
//! ([`Io::Remove`](super::Io::Remove)), and mints every dot above it
//! ([`Siblings::apply_above`](crate::version::Siblings::apply_above)).
//!
//! After a ring change is committed each node scans its storage for the tombstones it collects
//! in the new ring (it may have received them before it was their collector; see
//! `Node::ring_committed` in `node::shedding`).
//!
//! Copies of the key on nodes outside the preference list (a caller using more fallbacks than
//! the nodes do, a ring change) are not asked: the nodes and clients of a cluster use the same
//! number of fallbacks (3 by default).
//!
//! **Checkpoints.** A storage engine with a journal (the server's) may hold the tombstone and
//! its removal only in a journal file, while an older table still holds the value the delete
//! removed. If that journal is lost later (damaged and set aside), the value would come back on
//! that node and spread. So while tombstones are collected the node asks storage for a
//! checkpoint ([`Io::Checkpoint`](super::Io::Checkpoint): what only the journal holds goes into
//! tables) every half grace ([`checkpoint_interval`]): a tombstone is collected at least a grace
//! after every node stored it, so it is in a table by then, and a lost journal brings back at
//! most the tombstone (collected again), never the value.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use super::replica::{Completion, ReplicaStep};
use super::{Destination, Io, IoOwner, Node, Purpose};
use crate::coordinator::ReplicaFailure;
use crate::identity::NodeId;
use crate::liveness::PeerState;
use crate::store::StoreName;
use crate::token::Token;
use crate::version::Siblings;
use crate::wire::{Request, Response};

/// The most tombstones a node tracks for collection; past it the rest wait for a scan of
/// storage once the tracked ones are done (one at every start finds them too).
pub const MAX_CANDIDATES: usize = 65_536;
/// The most keys being checked or collected at once.
pub const ROUNDS: usize = 32;

/// The shortest time between checkpoints (for very short graces, as tests use).
const SHORTEST_CHECKPOINT: Duration = Duration::from_millis(250);
/// The longest time between checkpoints, whatever the grace.
const LONGEST_CHECKPOINT: Duration = Duration::from_secs(600);

/// How often a node with this tombstone grace checkpoints its storage: half the grace, within
/// bounds (see the [module docs](self)).
pub(super) fn checkpoint_interval(grace: Duration) -> Duration {
    (grace / 2).clamp(SHORTEST_CHECKPOINT, LONGEST_CHECKPOINT)
}

/// A key's name in a node: its store and key.
type KeyName = (StoreName, Vec<u8>);

/// A tombstone this node (the key's collector) holds, on its way to collection.
#[derive(Clone, Debug)]
struct Candidate {
    /// The record's state (a tombstone).
    state: Siblings,
    /// Since when the state is unchanged, or the last check passed.
    since: Duration,
    /// How many checks passed since the state last changed (collected after two).
    checks: u8,
    /// A collect was sent: primaries that answer they hold nothing have removed it.
    attempted: bool,
    /// The round in flight for it, if any.
    round: Option<u64>,
}

/// One check or collect of one key, waiting for the other nodes' answers.
#[derive(Clone, Debug)]
struct Round {
    key: KeyName,
    state: Siblings,
    collect: bool,
    primaries: Vec<NodeId>,
    waiting: usize,
    /// Every answer so far says the key may go.
    clear: bool,
}

/// What the node knows of its tombstones (see the [module docs](self)).
#[derive(Debug, Default)]
pub(super) struct Collector {
    candidates: BTreeMap<KeyName, Candidate>,
    rounds: BTreeMap<u64, Round>,
    next_round: u64,
    /// Tombstones were stored while [`MAX_CANDIDATES`] were tracked: storage is scanned for
    /// them once the tracked ones are done.
    overflowed: bool,
    next_tick: Duration,
    /// When the next checkpoint is due, and whether one is in flight.
    next_checkpoint: Duration,
    checkpointing: bool,
}

impl Node {
    /// A record of `key` was stored (or found by a scan) with `state`: tracked for collection if
    /// it is a tombstone this node collects, forgotten otherwise.
    pub(super) fn tombstone_stored(&mut self, now: Duration, key: &KeyName, state: &Siblings) {
        if !state.is_tombstone() || self.config.tombstone_grace.is_zero() || !self.collects(key) {
            self.tombstones.candidates.remove(key);
            return;
        }
        let tracked = self.tombstones.candidates.len();
        match self.tombstones.candidates.get_mut(key) {
            Some(candidate) if candidate.state == *state => {}
            Some(candidate) => {
                candidate.state = state.clone();
                candidate.since = now;
                candidate.checks = 0;
                candidate.attempted = false;
            }
            None if tracked >= MAX_CANDIDATES => self.tombstones.overflowed = true,
            None => {
                let candidate =
                    Candidate { state: state.clone(), since: now, checks: 0, attempted: false, round: None };
                self.tombstones.candidates.insert(key.clone(), candidate);
            }
        }
    }

    /// Whether `key` is a tombstone this node tracks for collection.
    pub(super) fn tombstone_tracked(&self, key: &KeyName) -> bool {
        self.tombstones.candidates.contains_key(key)
    }

    /// The record of `key` was removed from storage.
    pub(super) fn tombstone_removed(&mut self, key: &KeyName) {
        self.tombstones.candidates.remove(key);
    }

    /// Whether this node is `key`'s collector: its first primary in this node's ring.
    fn collects(&self, key: &KeyName) -> bool {
        let (Some(ring), Some(config)) = (self.view.ring(), self.view.store(&key.0)) else { return false };
        ring.preference_list(Token::of(&key.1), config.n(), 0).primaries().first() == Some(&self.id)
    }

    /// How many tombstones this node tracks for collection.
    pub fn tombstones_pending(&self) -> usize {
        self.tombstones.candidates.len()
    }

    /// When the collector next looks at its tombstones (`None`: collection is off).
    pub(super) fn tombstones_timeout(&self) -> Option<Duration> {
        // While a checkpoint is in flight the next waits for it, not for the clock.
        let checkpoint = (!self.tombstones.checkpointing).then_some(self.tombstones.next_checkpoint);
        (!self.config.tombstone_grace.is_zero())
            .then(|| checkpoint.map_or(self.tombstones.next_tick, |c| c.min(self.tombstones.next_tick)))
    }

    /// Asks storage for a checkpoint when one is due and none is in flight.
    fn checkpoint_tick(&mut self, now: Duration) {
        if now < self.tombstones.next_checkpoint || self.tombstones.checkpointing {
            return;
        }
        let interval = checkpoint_interval(self.config.tombstone_grace);
        self.tombstones.next_checkpoint = now.saturating_add(interval);
        self.tombstones.checkpointing = true;
        self.issue_io(Io::Checkpoint, IoOwner::Checkpoint);
    }

    /// The checkpoint finished (a failure is reported as [`Event::StorageFailed`](super::Event)
    /// and the next one tries again).
    pub(super) fn checkpoint_done(&mut self) {
        self.tombstones.checkpointing = false;
    }

    /// Whether this node holds a hint of `key`, for any target.
    pub(super) fn holds_any_hint(&self, key: &KeyName) -> bool {
        self.hints.values().any(|held| held.contains_key(key))
    }

    /// Starts the checks and collects that are due (see the [module docs](self)).
    pub(super) fn tombstones_tick(&mut self, now: Duration) {
        let grace = self.config.tombstone_grace;
        if grace.is_zero() {
            return;
        }
        self.checkpoint_tick(now);
        if now < self.tombstones.next_tick {
            return;
        }
        self.tombstones.next_tick = now.saturating_add(grace.min(self.config.sync_interval));
        let room = ROUNDS.saturating_sub(self.tombstones.rounds.len());
        let due: Vec<KeyName> = self
            .tombstones
            .candidates
            .iter()
            .filter(|(_, c)| c.round.is_none() && now >= c.since.saturating_add(grace))
            .map(|(key, _)| key.clone())
            .take(room)
            .collect();
        for key in due {
            self.start_round(now, key);
        }
        if self.tombstones.overflowed && self.tombstones.candidates.is_empty() {
            // Tombstones stored while the candidates were full are found by a scan of storage.
            self.tombstones.overflowed = false;
            self.scrub();
        }
    }

    /// Checks `key` with every other node of its preference list, or collects it.
    fn start_round(&mut self, now: Duration, key: KeyName) {
        if self.view.transition().is_some() {
            // A ring change is under way: the key's pending owners are not asked yet, so no
            // tombstone is collected until it is committed.
            return;
        }
        let Some(candidate) = self.tombstones.candidates.get(&key).cloned() else { return };
        let (Some(ring), Ok(config)) = (self.view.ring(), self.store_config(&key.0)) else {
            self.tombstones.candidates.remove(&key);
            return;
        };
        let prefs = ring.preference_list(Token::of(&key.1), config.n(), self.config.fallbacks);
        if prefs.primaries().first() != Some(&self.id) {
            self.tombstones.candidates.remove(&key);
            return;
        }
        // Every other node must be up and answer, and this node's own hints be handed back first.
        let others: Option<Vec<(NodeId, Destination)>> = prefs
            .primaries()
            .iter()
            .chain(prefs.fallbacks())
            .filter(|n| **n != self.id)
            .map(|n| match self.liveness.state(n) {
                PeerState::Up => Some((n.clone(), self.destination(n)?)),
                _ => None,
            })
            .collect();
        let Some(others) = others.filter(|_| !self.holds_any_hint(&key)) else {
            if let Some(c) = self.tombstones.candidates.get_mut(&key) {
                c.since = now;
            }
            return;
        };
        let number = self.tombstones.next_round;
        self.tombstones.next_round += 1;
        let collect = candidate.checks >= 2;
        let round = Round {
            key: key.clone(),
            state: candidate.state.clone(),
            collect,
            primaries: prefs.primaries().to_vec(),
            waiting: others.len(),
            clear: true,
        };
        self.tombstones.rounds.insert(number, round);
        if let Some(c) = self.tombstones.candidates.get_mut(&key) {
            c.round = Some(number);
            c.attempted |= collect;
        }
        if others.is_empty() {
            self.round_done(now, number);
            return;
        }
        for (peer, to) in others {
            let body = match collect {
                false => Request::TombstoneCheck { store: key.0.clone(), key: key.1.clone() },
                true => {
                    Request::Collect { store: key.0.clone(), key: key.1.clone(), siblings: candidate.state.clone() }
                }
            };
            self.send_request(now, to, body, true, Purpose::Tombstone { round: number, peer });
        }
    }

    /// A peer answered a check or a collect.
    pub(super) fn tombstone_answer(
        &mut self,
        now: Duration,
        number: u64,
        peer: NodeId,
        answer: Result<Response, ReplicaFailure>,
    ) {
        self.heard(now, &peer, &answer);
        let Some(round) = self.tombstones.rounds.get_mut(&number) else { return };
        round.waiting = round.waiting.saturating_sub(1);
        let primary = round.primaries.contains(&peer);
        let attempted = self.tombstones.candidates.get(&round.key).is_some_and(|c| c.attempted);
        let mut mend: Option<(Option<Siblings>, Siblings)> = None;
        let clear = match answer {
            Ok(Response::Collected(gone)) => gone,
            Ok(Response::Held { siblings, hinted }) => {
                let level = match &siblings {
                    Some(held) => *held == round.state,
                    // A fallback need hold nothing; a primary may have removed it already.
                    None => !primary || attempted,
                };
                if !level {
                    mend = Some((siblings, round.state.clone()));
                }
                level && !hinted
            }
            _ => false,
        };
        round.clear &= clear;
        let key = round.key.clone();
        let finished = round.waiting == 0;
        if let Some((theirs, ours)) = mend {
            self.mend_tombstone(now, &key, &peer, theirs, ours);
        }
        if finished {
            self.round_done(now, number);
        }
    }

    /// `peer` holds `theirs` of `key`, not the tombstone: each side takes the other's state, and
    /// collection starts over once the key's state settles again.
    fn mend_tombstone(
        &mut self,
        now: Duration,
        key: &KeyName,
        peer: &NodeId,
        theirs: Option<Siblings>,
        ours: Siblings,
    ) {
        let Ok(config) = self.store_config(&key.0) else { return };
        if let Some(theirs) = theirs {
            self.enqueue(key.0.clone(), key.1.clone(), config, ReplicaStep::Merge(theirs), Completion::Nothing);
        }
        if let Some(to) = self.destination(peer) {
            let body = Request::Replicate { store: key.0.clone(), key: key.1.clone(), siblings: ours, hint_for: None };
            self.send_request(now, to, body, true, Purpose::Repair);
        }
    }

    /// Every node answered round `number`.
    fn round_done(&mut self, now: Duration, number: u64) {
        let Some(round) = self.tombstones.rounds.remove(&number) else { return };
        let Some(candidate) = self.tombstones.candidates.get_mut(&round.key) else { return };
        candidate.round = None;
        if candidate.state != round.state {
            // The key changed while the round ran: the new state waits its own grace.
            return;
        }
        candidate.since = now;
        if !round.clear {
            candidate.checks = 0;
            return;
        }
        if !round.collect {
            candidate.checks = candidate.checks.saturating_add(1);
            if candidate.checks >= 2 {
                // The second check passed: collect at once.
                candidate.since = now.saturating_sub(self.config.tombstone_grace);
            }
            return;
        }
        // Every other node has removed it: this node removes its own last, so that a collect
        // that failed somewhere is tried again from here.
        let Ok(config) = self.store_config(&round.key.0) else { return };
        let step = ReplicaStep::Remove { expect: round.state, primary: true };
        self.enqueue(round.key.0, round.key.1, config, step, Completion::Nothing);
    }
}
