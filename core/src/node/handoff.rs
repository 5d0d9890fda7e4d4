//! Hinted handoff: writes a node holds for a primary that could not take them, handed back
//! when the primary is up again.
//!
//! Under a sloppy quorum a coordinator that cannot reach a primary sends the write to a
//! fallback with `hint_for` naming the primary. The fallback stores the record like any other
//! and, in the same storage step ([`Io::Store`]'s `hint`), a durable hint: *target, store, key*.
//! Hints are loaded at every start ([`Io::LoadHints`]). As soon as a target is seen up again
//! ([`crate::liveness`]: detected by gossip, not by the next request), and every gossip interval,
//! the node hands hints back to it, at most
//! [`NodeConfig::hint_batch`](super::NodeConfig::hint_batch) at a time, each acknowledgement
//! starting the next, and within [`NodeConfig::hint_budget`](super::NodeConfig::hint_budget)
//! bytes a second (what it waits for resumes at the next gossip interval): it reads the key and sends its state to the target (`Replicate`). Only once the
//! target acknowledges is the hint removed ([`Io::DropHint`]); a write to the key hinted again
//! while the handoff was in flight keeps the hint for the next round. Then the fallback drops
//! its copy if it minted none of the copy's versions itself, its record is still the state the
//! target acknowledged, it holds no other hint of the key and it is not a primary of the key
//! (a replica step, [`ReplicaStep::Remove`]). A fallback that minted a version keeps its copy:
//! its record is what keeps it from minting that dot again, and a dot minted above a floor
//! would claim to have seen the dropped versions, which live on at the primaries (the
//! simulation lost acknowledged writes that way, seed 42 of the defaults, when copies were
//! dropped regardless). Dropping those too needs per-key actors (Riak's key epochs).
//!
//! Hints are bounded per target in count ([`NodeConfig::max_hints`](super::NodeConfig::max_hints))
//! and in the bytes of the records they hold
//! ([`NodeConfig::max_hint_bytes`](super::NodeConfig::max_hint_bytes)), and in age
//! ([`NodeConfig::max_hint_age`](super::NodeConfig::max_hint_age)); past any of them the hint
//! is not kept, the record still is, and the overflow is counted ([`NodeStats::hints_dropped`]):
//! anti-entropy brings such keys level.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use serde::{Deserialize, Serialize};

use super::replica::{Completion, ReplicaStep};
use super::{Event, Io, IoOwner, Node, Purpose};
use crate::coordinator::ReplicaFailure;
use crate::identity::NodeId;
use crate::liveness::PeerState;
use crate::store::StoreName;
use crate::version::Siblings;
use crate::wire::{Request, Response};

/// What a handoff reserves of the replay's budget when it starts (its read settles the cost).
const REPLAY_RESERVE: usize = 1024;

/// A write held for a primary that could not take it: the record of `key` in `store` is to be
/// handed to `target`. Stored by the driver, durably, with the record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hint {
    /// The primary the write is for.
    pub target: NodeId,
    /// The store.
    pub store: StoreName,
    /// The key.
    pub key: Vec<u8>,
    /// When the hint was first made (wall clock, ms since the Unix epoch).
    pub created_ms: u64,
    /// The size of the hinted record when it was last hinted (its key and the size bound of its
    /// versions): what counts against [`NodeConfig::max_hint_bytes`](super::NodeConfig::max_hint_bytes).
    /// 0 for hints stored before sizes were.
    pub bytes: u64,
}

/// Who takes a hinted write (see `Node::handoff_to`).
enum Recipient {
    Node(NodeId),
    Here,
    NoneUp,
}

/// One hint as the node holds it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Held {
    created_ms: u64,
    /// The record's size when last hinted (see [`Hint::bytes`]).
    bytes: u64,
    /// Raised every time the key is hinted again: a handoff acknowledged for an older
    /// generation leaves the hint in place.
    generation: u64,
    /// The generation of a handoff in flight, if one is.
    in_flight: Option<u64>,
}

/// Every hint a node holds, by target, then key.
pub(super) type Hints = BTreeMap<NodeId, BTreeMap<(StoreName, Vec<u8>), Held>>;

/// The bytes of the records held as hints for each target (the sum of their [`Hint::bytes`]).
pub(super) type HintBytes = BTreeMap<NodeId, u64>;

/// How many handoffs are in flight to each target (the hints whose `in_flight` is set), kept
/// beside [`Hints`] so that starting the next handoff does not count them through every hint
/// held for the target (a backlog of 100,000 hints drained in time quadratic in it).
pub(super) type InFlight = BTreeMap<NodeId, usize>;

impl Node {
    /// Whether a hinted write of `bytes` for `target` may be kept as a hint (the bounds per
    /// target: a key hinted already stays hinted if its new size fits).
    pub(super) fn hint_fits(&self, target: &NodeId, key: &(StoreName, Vec<u8>), bytes: u64) -> bool {
        let held = self.hints.get(target).and_then(|h| h.get(key));
        let count = self.hints_for(target) + u64::from(held.is_none());
        let total = self.hint_bytes_for(target).saturating_sub(held.map_or(0, |h| h.bytes)).saturating_add(bytes);
        count <= self.config.max_hints as u64 && total <= self.config.max_hint_bytes
    }

    /// The hint to store with a hinted write of `key` for `target`, whose record is `bytes`
    /// large, or `None` (and the overflow counted) past the bounds.
    pub(super) fn new_hint(
        &mut self,
        now: Duration,
        target: &NodeId,
        key: &(StoreName, Vec<u8>),
        bytes: u64,
    ) -> Option<Hint> {
        if *target == self.id {
            return None;
        }
        if !self.hint_fits(target, key, bytes) {
            self.stats.hints_dropped += 1;
            return None;
        }
        let created_ms =
            self.hints.get(target).and_then(|h| h.get(key)).map_or(self.wall_clock_ms(now), |h| h.created_ms);
        Some(Hint { target: target.clone(), store: key.0.clone(), key: key.1.clone(), created_ms, bytes })
    }

    /// A hint is durable (stored with its record, or loaded at start).
    pub(super) fn hint_stored(&mut self, hint: Hint) {
        let held = self.hints.entry(hint.target.clone()).or_default();
        let entry = held.entry((hint.store, hint.key)).or_insert(Held {
            created_ms: hint.created_ms,
            bytes: 0,
            generation: 0,
            in_flight: None,
        });
        entry.generation += 1;
        let before = core::mem::replace(&mut entry.bytes, hint.bytes);
        let total = self.hint_bytes.entry(hint.target).or_default();
        *total = total.saturating_sub(before).saturating_add(hint.bytes);
    }

    /// The bytes of the records held as hints for `target`.
    pub(super) fn hint_bytes_for(&self, target: &NodeId) -> u64 {
        self.hint_bytes.get(target).copied().unwrap_or(0)
    }

    /// Whether this node holds a hint of `key` for `target`.
    pub(super) fn holds_hint(&self, target: &NodeId, key: &(StoreName, Vec<u8>)) -> bool {
        self.hints.get(target).is_some_and(|h| h.contains_key(key))
    }

    /// The hints this node holds for `target`.
    pub(super) fn hints_for(&self, target: &NodeId) -> u64 {
        self.hints.get(target).map_or(0, |h| h.len() as u64)
    }

    /// Hands back hints to every target that is up (see [`Self::deliver_hints_to`]); drops
    /// hints past their age. Called every gossip interval and when a target is seen up again.
    pub(super) fn deliver_hints(&mut self, now: Duration) {
        self.expire_hints(now);
        let targets: Vec<NodeId> = self.hints.keys().cloned().collect();
        for target in targets {
            self.deliver_hints_to(now, &target);
        }
    }

    /// Starts handoffs to `target` if it is up and the replay's budget allows, keeping at most
    /// `hint_batch` in flight: each acknowledgement starts the next, so hints drain at the pace
    /// the target answers and within [`hint_budget`](super::NodeConfig::hint_budget) bytes a
    /// second (the replay's throttle: foreground requests keep most of both nodes' time). A
    /// failed handoff, or one the budget holds back, waits for the next round.
    fn deliver_hints_to(&mut self, now: Duration, target: &NodeId) {
        // A removed target's hints go to the keys' replicas (see `handoff_to`).
        let removed = self.view.is_removed(target);
        if !removed && (self.liveness.state(target) != PeerState::Up || self.view.membership().node(target).is_none()) {
            return;
        }
        self.pace_background(now);
        self.hint_replay.refill(now);
        if !self.hint_replay.available() {
            return;
        }
        let busy = self.handoffs.get(target).copied().unwrap_or(0);
        let room = self.config.hint_batch.saturating_sub(busy);
        let Some(held) = self.hints.get_mut(target) else { return };
        debug_assert_eq!(busy, held.values().filter(|h| h.in_flight.is_some()).count(), "handoffs counted");
        let mut starts = Vec::new();
        for (key, hint) in held.iter_mut().filter(|(_, h)| h.in_flight.is_none()).take(room) {
            // Each start reserves a share of the budget; the read settles what it really costs.
            if !self.hint_replay.available() {
                break;
            }
            self.hint_replay.spend(REPLAY_RESERVE);
            hint.in_flight = Some(hint.generation);
            starts.push((key.clone(), hint.generation));
        }
        *self.handoffs.entry(target.clone()).or_default() += starts.len();
        for ((store, key), generation) in starts {
            let Ok(config) = self.store_config(&store) else {
                // A dropped store: nothing to hand back.
                self.forget_hint(target, &(store, key));
                continue;
            };
            let done = Completion::Handoff { target: target.clone(), generation };
            self.enqueue(store, key, config, ReplicaStep::Read, done);
        }
    }

    /// The key of a hint was read: sends its state to the target (or drops the hint if the node
    /// no longer has the key).
    pub(super) fn handoff_read(
        &mut self,
        now: Duration,
        key: (StoreName, Vec<u8>),
        target: NodeId,
        generation: u64,
        read: Response,
    ) {
        if !matches!(read, Response::State(Some(_))) {
            // Nothing is sent: the reservation goes back.
            self.hint_replay.refund(REPLAY_RESERVE);
        }
        let via = match self.handoff_to(&target, &key) {
            Recipient::Node(via) => via,
            Recipient::Here => {
                // This node is a replica of the key now: its copy is where the write belongs.
                self.hint_replay.refund(REPLAY_RESERVE);
                return self.forget_hint(&target, &key);
            }
            Recipient::NoneUp => {
                self.hint_replay.refund(REPLAY_RESERVE);
                return self.handoff_failed(&target, &key);
            }
        };
        match read {
            Response::State(Some(state)) => match self.destination(&via) {
                Some(to) => {
                    let sent = state.siblings.clone();
                    self.hint_replay.spend(key.1.len() + sent.size_bound());
                    self.hint_replay.refund(REPLAY_RESERVE);
                    let body = Request::Replicate {
                        store: key.0.clone(),
                        key: key.1.clone(),
                        siblings: state.siblings,
                        hint_for: None,
                    };
                    let purpose = Purpose::Handoff { target, to: via, key, generation, sent };
                    self.send_request(now, to, body, false, purpose);
                }
                None => self.handoff_failed(&target, &key),
            },
            // Nothing stored under the key (its record was lost): nothing to hand back.
            Response::State(None) => self.forget_hint(&target, &key),
            _ => self.handoff_failed(&target, &key),
        }
    }

    /// The target answered a handoff.
    pub(super) fn handoff_answer(
        &mut self,
        now: Duration,
        target: NodeId,
        key: (StoreName, Vec<u8>),
        generation: u64,
        sent: Siblings,
        answer: Result<Response, ReplicaFailure>,
    ) {
        self.heard(now, &target, &answer);
        match answer {
            Ok(Response::Ack) => {
                let current = self.hints.get(&target).and_then(|h| h.get(&key)).map(|h| h.generation);
                if current == Some(generation) {
                    self.stats.hints_delivered += 1;
                    self.events.push_back(Event::HintDelivered {
                        target: target.clone(),
                        store: key.0.clone(),
                        key: key.1.clone(),
                    });
                    self.forget_hint(&target, &key);
                    // The copy goes too, unless this node minted in it (see the module docs).
                    let minted_here = sent.history().counter(&self.actor) > 0;
                    if let (false, Ok(config)) = (minted_here, self.store_config(&key.0)) {
                        let step = ReplicaStep::Remove { expect: sent, primary: false };
                        self.enqueue(key.0.clone(), key.1.clone(), config, step, Completion::Nothing);
                    }
                    self.deliver_hints_to(now, &target);
                } else {
                    // Hinted again meanwhile: the newer state goes in a later round.
                    self.handoff_failed(&target, &key);
                }
            }
            _ => self.handoff_failed(&target, &key),
        }
    }

    /// Who takes the hinted write of `key` for `target`: the target while it is a replica of
    /// the key (a primary, or a pending owner during a ring change); once it is not (it was
    /// removed, or a ring change took the key from it: issue 9, 2.3 and 2.5) the first of the
    /// key's replicas that is up, whose anti-entropy spreads it to the others; nobody when this
    /// node is one of them itself (its copy is in place).
    fn handoff_to(&self, target: &NodeId, key: &(StoreName, Vec<u8>)) -> Recipient {
        let replicas = self
            .store_config(&key.0)
            .ok()
            .and_then(|config| self.view.write_plan(crate::token::Token::of(&key.1), &config, 0))
            .map(|plan| plan.prefs.primaries().to_vec())
            .unwrap_or_default();
        if replicas.is_empty() || (replicas.contains(target) && !self.view.is_removed(target)) {
            return Recipient::Node(target.clone());
        }
        if replicas.contains(&self.id) {
            return Recipient::Here;
        }
        replicas
            .into_iter()
            .find(|r| self.liveness.state(r) == PeerState::Up && !self.view.is_removed(r))
            .map_or(Recipient::NoneUp, Recipient::Node)
    }

    fn handoff_failed(&mut self, target: &NodeId, key: &(StoreName, Vec<u8>)) {
        if let Some(hint) = self.hints.get_mut(target).and_then(|h| h.get_mut(key))
            && hint.in_flight.take().is_some()
        {
            self.handoff_ended(target);
        }
    }

    /// One handoff to `target` is no longer in flight.
    fn handoff_ended(&mut self, target: &NodeId) {
        if let Some(count) = self.handoffs.get_mut(target) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.handoffs.remove(target);
            }
        }
    }

    /// Removes a hint, in memory and on disk.
    fn forget_hint(&mut self, target: &NodeId, key: &(StoreName, Vec<u8>)) {
        let Some(held) = self.hints.get_mut(target) else { return };
        let Some(hint) = held.remove(key) else { return };
        if held.is_empty() {
            self.hints.remove(target);
        }
        if hint.in_flight.is_some() {
            self.handoff_ended(target);
        }
        if let Some(total) = self.hint_bytes.get_mut(target) {
            *total = total.saturating_sub(hint.bytes);
            if !self.hints.contains_key(target) {
                self.hint_bytes.remove(target);
            }
        }
        let (created_ms, bytes) = (hint.created_ms, hint.bytes);
        let hint = Hint { target: target.clone(), store: key.0.clone(), key: key.1.clone(), created_ms, bytes };
        self.issue_io(Io::DropHint(hint), IoOwner::Nobody);
    }

    /// Drops hints older than `max_hint_age` (counted: anti-entropy brings their keys level).
    fn expire_hints(&mut self, now: Duration) {
        let oldest = self.wall_clock_ms(now).saturating_sub(self.config.max_hint_age.as_millis() as u64);
        let expired: Vec<(NodeId, (StoreName, Vec<u8>))> = self
            .hints
            .iter()
            .flat_map(|(target, held)| {
                held.iter()
                    .filter(|(_, h)| h.created_ms < oldest && h.in_flight.is_none())
                    .map(move |(key, _)| (target.clone(), key.clone()))
            })
            .collect();
        for (target, key) in expired {
            self.stats.hints_dropped += 1;
            self.forget_hint(&target, &key);
        }
    }
}
