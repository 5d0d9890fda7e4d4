//! Damaged records: a record of this node's storage that fails its checks (a flipped byte in a
//! table file, a torn write) is reported, served by the key's other replicas, and rebuilt from
//! them; the rest of the node keeps serving.
//!
//! Storage reports damage when a step loads the record ([`IoOutput::Damaged`](super::IoOutput::Damaged)) or a scan meets it
//! (the `damaged` keys of [`IoOutput::Scanned`](super::IoOutput::Scanned)), never as data. A
//! scan may also meet a range it cannot read at all (a damaged block of a table file: which
//! keys it held is unknown, the `unreadable` ranges): the node's Merkle leaves over it are
//! disturbed, so anti-entropy compares them with every peer and pulls the peers' copies, each
//! merge replacing whatever damaged record it meets ([`Event::DamagedRange`](super::Event::DamagedRange)). A node learns of damage nobody
//! asks about by its **scrub**: every
//! [`scrub_interval`](super::NodeConfig::scrub_interval) it reads every record of every store
//! (the same scan finds tombstones to collect). Once a record is found damaged:
//!
//! - the node reports it ([`Event::DamagedRecord`], counted in
//!   [`NodeStats::damaged_records`](super::NodeStats::damaged_records));
//! - reads of the key at this node fail (an error, never "nothing here", which could count
//!   toward R), so coordinators take the other replicas' answers;
//! - the node asks each other primary of the key for its state and merges what comes back; a
//!   merge into a damaged record replaces it (anti-entropy, a read repair or a handoff does the
//!   same). The key's Merkle leaf is disturbed too, so anti-entropy looks there even if every
//!   peer's answer is lost;
//! - the node mints no write of the key until it restarts: the lost record may have held dots
//!   it minted, so minting the key again could reuse one. The driver makes the next start a new
//!   incarnation, whose actor has minted nothing.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::replica::{Completion, ReplicaStep};
use super::{Event, Node, Purpose};
use crate::coordinator::ReplicaFailure;
use crate::identity::NodeId;
use crate::store::StoreName;
use crate::token::Token;
use crate::wire::{Request, Response};

/// A key's name in a node: its store and key.
type KeyName = (StoreName, Vec<u8>);

/// The damaged records a node found in this incarnation, and its scrub's schedule.
#[derive(Debug)]
pub(super) struct Damage {
    /// Keys found damaged in this incarnation (never minted again by it).
    found: BTreeSet<KeyName>,
    /// Keys found damaged whose record no replica write has replaced yet, with the reads of
    /// other replicas' states in flight for each.
    unrepaired: BTreeMap<KeyName, usize>,
    /// Ranges storage could not read, found in this incarnation. Scans meet a damaged block
    /// every time until it is gone (the records that replace what it held shadow it for reads
    /// only), so a range is acted on again only once something in it was written since (a
    /// repair), or ten anti-entropy intervals after the last time (new damage there since).
    ranges: BTreeMap<(StoreName, crate::token::TokenRange), RangeSeen>,
    interval: Duration,
    next_scrub: Duration,
}

/// What a node did about a range it could not read.
#[derive(Clone, Copy, Debug)]
struct RangeSeen {
    /// A record in it was written since.
    written: bool,
    /// When the node last acted on it.
    acted: Duration,
}

impl Damage {
    pub(super) fn new(now: Duration, interval: Duration) -> Damage {
        Damage {
            found: BTreeSet::new(),
            unrepaired: BTreeMap::new(),
            ranges: BTreeMap::new(),
            interval,
            next_scrub: now.saturating_add(interval),
        }
    }

    /// Whether `key`'s record was found damaged in this incarnation.
    pub(super) fn found(&self, key: &KeyName) -> bool {
        self.found.contains(key)
    }

    /// A store of `key` whose minted state other replicas may hold failed: this incarnation
    /// mints no write of the key again (the dot it minted may be missing here and present
    /// there). The driver makes the next start a new incarnation (`Event::StorageFailed`).
    pub(super) fn mint_lost(&mut self, key: &KeyName) {
        self.found.insert(key.clone());
    }

    /// Whether `token` of `store` lies in a range found unreadable in this incarnation.
    pub(super) fn in_unreadable_range(&self, store: &StoreName, token: Token) -> bool {
        self.ranges.keys().any(|(s, range)| s == store && range.contains(token))
    }

    /// A record of `store` at `token` is being written: a range it lies in is acted on again
    /// when next met.
    pub(super) fn rewritten(&mut self, store: &StoreName, token: Token) {
        for ((s, range), seen) in self.ranges.iter_mut() {
            if s == store && range.contains(token) {
                seen.written = true;
            }
        }
    }

    /// `key`'s record passed its checks, or a replica write is replacing the damaged one: a
    /// later damage of it is news again.
    pub(super) fn intact(&mut self, key: &KeyName) {
        self.unrepaired.remove(key);
    }

    /// When the next scrub starts (`None`: scrubbing is off).
    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        (!self.interval.is_zero()).then_some(self.next_scrub)
    }
}

impl Node {
    /// The record of `key` failed its checks (see the [module docs](self)).
    pub(super) fn record_damaged(&mut self, now: Duration, key: &KeyName, reason: String) {
        let token = Token::of(&key.1);
        match self.damage.unrepaired.get(key) {
            // Found again while its rebuild is under way.
            Some(&in_flight) if in_flight > 0 => return,
            // Found again after a rebuild that brought nothing: ask again.
            Some(_) => {}
            None => {
                self.damage.found.insert(key.clone());
                self.stats.damaged_records += 1;
                self.events.push_back(Event::DamagedRecord { store: key.0.clone(), key: key.1.clone(), reason });
                // The tree still holds the record's digest and would compare equal to the
                // peers': the leaf is disturbed, so the next exchange finds it different and
                // mends it to what storage holds (scans skip damaged records).
                self.anti_entropy.trees.toggle(&key.0, token, crate::mix::mix64(token.0 as u64 ^ 0xda3a_9ed0));
            }
        }
        let (Some(ring), Ok(config)) = (self.view.ring(), self.store_config(&key.0)) else { return };
        if !self.keeps_copy(key, &config) {
            // A copy of a key this node lost (a ring change took it, and the shed has not
            // passed yet), holding no hint: the replicas hold what it held, so it goes rather
            // than being rebuilt (found by the simulation with `elastic`, where rebuilt copies
            // stayed on nodes that were no replica of their keys).
            self.damage.unrepaired.insert(key.clone(), 0);
            self.enqueue(key.0.clone(), key.1.clone(), config, ReplicaStep::DropDamaged, Completion::Nothing);
            return;
        }
        // Every other node that may hold a copy: the primaries, and the fallbacks coordinators
        // use (a fallback's hinted copy may be the one to rebuild from, or the one rebuilt).
        let prefs = ring.preference_list(token, config.n(), self.config.fallbacks);
        let others: Vec<(NodeId, super::Destination)> = prefs
            .primaries()
            .iter()
            .chain(prefs.fallbacks())
            .filter(|n| **n != self.id)
            .filter_map(|n| Some((n.clone(), self.destination(n)?)))
            .collect();
        self.damage.unrepaired.insert(key.clone(), others.len());
        for (from, to) in others {
            let body = Request::Get { store: key.0.clone(), key: key.1.clone() };
            self.send_request(now, to, body, true, Purpose::Rebuild { key: key.clone(), from });
        }
    }

    /// Another replica answered the read of a key whose record this node found damaged.
    pub(super) fn rebuild_answer(
        &mut self,
        now: Duration,
        key: KeyName,
        from: NodeId,
        answer: Result<Response, ReplicaFailure>,
    ) {
        self.heard(now, &from, &answer);
        if let Some(in_flight) = self.damage.unrepaired.get_mut(&key) {
            *in_flight = in_flight.saturating_sub(1);
        }
        let (Ok(Response::State(Some(state))), Ok(config)) = (answer, self.store_config(&key.0)) else { return };
        let step = if self.keeps_copy(&key, &config) {
            ReplicaStep::Merge(state.siblings)
        } else {
            // A ring change took the key from this node while the rebuild was under way.
            ReplicaStep::DropDamaged
        };
        self.enqueue(key.0, key.1, config, step, Completion::Nothing);
    }

    /// Whether this node keeps a copy of `key`: it is a replica of it (or a pending owner), or
    /// holds a hint of it.
    pub(super) fn keeps_copy(&self, key: &KeyName, config: &crate::store::StoreConfig) -> bool {
        self.holds_any_hint(key) || self.is_replica_or_pending_owner(key, config)
    }

    /// Storage could read nothing in `range` of `store` (see [`Event::DamagedRange`]): the
    /// Merkle leaves over it are disturbed, so the next exchanges compare them with the peers'
    /// (whatever the tree held there) and bring in the peers' copies of what is missing. Once
    /// per range until something in it is written, or a while has passed (see `Damage::ranges`).
    pub(super) fn range_damaged(&mut self, now: Duration, store: &StoreName, range: crate::token::TokenRange) {
        let again = self.config.anti_entropy_interval.saturating_mul(10);
        let seen = RangeSeen { written: false, acted: now };
        match self.damage.ranges.insert((store.clone(), range), seen) {
            Some(before) if !before.written && now < before.acted.saturating_add(again) => {
                // Acted on lately, nothing written there since: keep the time it was.
                self.damage.ranges.insert((store.clone(), range), before);
                return;
            }
            _ => {}
        }
        self.stats.damaged_ranges += 1;
        self.events.push_back(Event::DamagedRange { store: store.clone(), range });
        let salt = self.stats.damaged_ranges;
        self.anti_entropy.trees.disturb(store, range, salt);
        // Compare that store with every other node of the range's keys first, rather than
        // waiting for the random rounds to pick them.
        let (Some(ring), Ok(config)) = (self.view.ring(), self.store_config(store)) else { return };
        let mut peers: Vec<NodeId> = Vec::new();
        for token in [range.first(), range.last()] {
            let prefs = ring.preference_list(token, config.n(), self.config.fallbacks);
            peers.extend(prefs.primaries().iter().chain(prefs.fallbacks()).filter(|n| **n != self.id).cloned());
        }
        for peer in peers {
            self.compare_soon(now, store.clone(), peer);
        }
    }

    /// Starts a scrub when one is due.
    pub(super) fn scrub_tick(&mut self, now: Duration) {
        if self.damage.interval.is_zero() || now < self.damage.next_scrub {
            return;
        }
        self.damage.next_scrub = now.saturating_add(self.damage.interval);
        self.scrub();
    }
}
