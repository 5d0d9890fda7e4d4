//! Merkle anti-entropy: replicas that missed writes for any reason (a dropped message, a hint
//! past its bound, a crash that lost unsynced records, a node that was away) are brought level
//! with no read touching their keys.
//!
//! **Trees.** A node keeps a Merkle tree ([`crate::merkle`]) per store and partition it holds
//! keys of ([`Trees`]), each key adding the digest of its state to its leaf. The trees are built
//! from a scan of storage at start ([`Io::Scan`]) and updated on every record the node stores,
//! never rebuilt for an exchange.
//!
//! **Exchanges.** Every [`anti_entropy_interval`](super::NodeConfig::anti_entropy_interval)
//! (jittered between half and one and a half of it) a node picks a store and a peer that is up,
//! and compares the partitions of the store both are primaries of in its ring:
//!
//! 1. `TreeBuckets`: the partitions' roots folded into at most [`BUCKETS`] digests; the peer
//!    answers which differ;
//! 2. `TreeLeaves`: the leaves of up to [`MAX_PARTITIONS`] partitions of those buckets; the peer
//!    scans its storage for the keys in the leaves that differ and answers them with their
//!    digests (`TreeKeys`);
//! 3. the node scans its own keys in those leaves, then pulls (a replica read, merged here) each
//!    key whose state the peer has and it has not, and pushes (`Replicate`) each key whose state it
//!    has and the peer has not; both states are merged, so a key that changed on both sides ends
//!    equal on both.
//!
//! Both sides mend the leaves they scanned to what storage holds, so a tree that drifted from its
//! disk (a build racing writes, a lost record) is put right by the next comparison. An exchange
//! that found differences is followed at once by the next one with the same peer, so a node that
//! missed many writes catches up at the pace of the budget, not of the interval.
//!
//! **Budget.** What anti-entropy sends and receives (digests, keys, states) and the records its
//! comparisons read from storage are counted against
//! [`anti_entropy_budget`](super::NodeConfig::anti_entropy_budget) bytes per second, a token
//! bucket holding one second of it: no exchange or transfer starts while it is spent. At most
//! [`BATCH`] transfers are in flight at once.
//!
//! A storage that keeps records in token order (the server's does) reads just the leaves'
//! ranges, so a comparison's cost grows with the keys in the leaves that differ, not with the
//! store.

mod trees;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::time::Duration;

pub(super) use trees::Trees;
pub(super) use trees::item;

use super::budget::Budget;
use super::replica::{Completion, ReplicaStep};
use super::{Event, Io, IoOutput, IoOwner, Node, Purpose};
use crate::coordinator::ReplicaFailure;
use crate::identity::NodeId;
use crate::liveness::PeerState;
use crate::store::StoreName;
use crate::token::{Token, TokenRange};
use crate::version::{KeyRecord, Siblings};
use crate::wire::{ErrorKind, ErrorReply, Request, Response};

/// The most bucket digests a `TreeBuckets` carries.
pub const BUCKETS: usize = 256;
/// The most partitions one exchange compares leaf by leaf.
pub const MAX_PARTITIONS: usize = 4096;
/// The most transfers (pulls and pushes) in flight at once.
pub const BATCH: usize = 8;
/// Keys a scan examines per storage step.
const SCAN_PAGE: usize = 1024;
/// The most scans answering peers at once; past it a peer is told to come back later.
const MAX_ANSWERING: usize = 2;
/// How soon a comparison a ring change asks for is tried again when it cannot start yet (with
/// periodic rounds off).
const URGENT_RETRY: Duration = Duration::from_millis(250);
/// How often a gainer queues again the comparisons it still needs (see `receive`).
const RECEIVE_RETRY: Duration = Duration::from_millis(200);
/// An exchange still going after this long is given up.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);

/// What an anti-entropy request asked, to route its answer.
#[derive(Clone, Debug)]
pub(super) enum Call {
    Buckets,
    Leaves,
    Pull(Vec<u8>),
    Push,
}

/// A node's anti-entropy: its trees, the exchange it runs, the scans in flight and the budget.
#[derive(Debug)]
pub(super) struct AntiEntropy {
    pub(super) trees: Trees,
    next_round: Duration,
    next_store: usize,
    exchange: Option<Exchange>,
    /// The store and peer to go on with at once (the last exchange found differences).
    again: Option<(StoreName, NodeId)>,
    /// Comparisons to run before any chosen at random: a store and each peer holding a range
    /// this node found it cannot read (see [`Event::DamagedRange`]).
    pub(super) urgent: VecDeque<(StoreName, NodeId)>,
    /// Set at start until the node has compared every store with every peer once (see
    /// `catch_up`).
    catching_up: bool,
    scans: BTreeMap<u64, Scan>,
    next_scan: u64,
    pub(super) budget: Budget,
    /// The partitions this node shares with each peer, per replication factor, under the ring
    /// (or ring change) whose routing digest is the first field: working them out walks the ring
    /// once (65,536 partitions by default), so it is done once per ring and replication factor
    /// for every peer at once, not once per peer (a walk per peer cost a 10,000-node cluster
    /// about 10,000 walks per node and ring).
    shared: (u64, BTreeMap<usize, BTreeMap<NodeId, Shared>>),
    /// What this node still compares before it has received the partitions it gains in the
    /// ring change under way (see `receive`).
    receiving: Option<Receiving>,
}

/// A gainer's progress through a ring change: the stores and peers (replicas of partitions it
/// gains, in the current ring) it has not yet found level with it in one comparison.
#[derive(Debug)]
struct Receiving {
    version: crate::ring::RingVersion,
    left: alloc::collections::BTreeSet<(StoreName, NodeId)>,
    /// When the pairs left are queued again (a comparison that failed, with a peer that was
    /// away, is not retried by itself).
    retry_at: Duration,
    /// The partitions gained, grouped by store and current replicas (their sources): a group
    /// is received once none of its sources is left for its store.
    groups: Vec<(StoreName, Vec<NodeId>, u64)>,
    /// When this node began receiving, and when it last reported its progress.
    started: Duration,
    reported: Duration,
    /// Keys and bytes pulled from the sources since.
    keys: u64,
    bytes: u64,
}

/// How often a gainer reports its progress while it receives.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The partitions a node shares with a peer, sorted.
type Shared = alloc::sync::Arc<Vec<u32>>;

impl AntiEntropy {
    pub(super) fn new(partition_bits: u8, bytes_per_second: u64, now: Duration) -> AntiEntropy {
        AntiEntropy {
            trees: Trees::new(partition_bits),
            next_round: now,
            next_store: 0,
            exchange: None,
            again: None,
            urgent: VecDeque::new(),
            catching_up: true,
            scans: BTreeMap::new(),
            next_scan: 1,
            budget: Budget::new(bytes_per_second, now),
            shared: (0, BTreeMap::new()),
            receiving: None,
        }
    }

    /// Whether comparisons are waiting or running, or a ring change asks for more.
    pub(super) fn has_work(&self) -> bool {
        !self.urgent.is_empty()
            || self.exchange.is_some()
            || self.receiving.as_ref().is_some_and(|r| !r.left.is_empty())
    }

    /// When the machine should next look at anti-entropy (`periodic`: whether rounds run on
    /// their own, or only the comparisons a ring change asks for).
    pub(super) fn poll_timeout(&self, periodic: bool) -> Option<Duration> {
        let retry = self.receiving.as_ref().filter(|r| !r.left.is_empty()).map(|r| r.retry_at);
        let round = match &self.exchange {
            None if periodic || !self.urgent.is_empty() => Some(self.next_round),
            None => None,
            // While an exchange runs, the next round waits for it.
            Some(exchange) => {
                let budget = exchange.waits_for_budget().then(|| self.budget.ready_at());
                let limit = exchange.started.saturating_add(EXCHANGE_LIMIT);
                [budget, Some(limit)].into_iter().flatten().min()
            }
        };
        [round, retry].into_iter().flatten().min()
    }
}

/// One exchange this node runs with a peer.
#[derive(Debug)]
struct Exchange {
    peer: NodeId,
    store: StoreName,
    ring: u64,
    started: Duration,
    stage: Stage,
    pulled: u64,
    pushed: u64,
}

#[derive(Debug)]
enum Stage {
    /// `TreeBuckets` sent for these shared partitions, `bucket` to a digest.
    Buckets { shared: Shared, bucket: usize },
    /// `TreeLeaves` sent.
    Leaves,
    /// Scanning this node's keys in the leaves that differ (scan `scan`), with the peer's.
    Scanning { theirs: BTreeMap<Vec<u8>, u64> },
    /// Pulls and pushes, `in_flight` of them sent.
    Transfers { work: VecDeque<Transfer>, in_flight: usize },
}

#[derive(Debug)]
enum Transfer {
    Pull(Vec<u8>),
    Push(Vec<u8>, Siblings),
}

impl Exchange {
    fn waits_for_budget(&self) -> bool {
        matches!(&self.stage, Stage::Transfers { work, in_flight } if !work.is_empty() && *in_flight < BATCH)
    }
}

/// One scan of storage in flight.
#[derive(Debug)]
struct Scan {
    store: StoreName,
    ranges: Vec<TokenRange>,
    /// The leaves scanned, as (partition, leaf), and what the scan found in each.
    leaves: Vec<(u32, u32)>,
    found: BTreeMap<(u32, u32), u64>,
    purpose: ScanFor,
}

#[derive(Debug)]
enum ScanFor {
    /// Building the store's trees at start.
    Build,
    /// Answering a peer's `TreeLeaves` on `stream`.
    Answer { stream: u64, id: u64, keys: Vec<(Vec<u8>, u64)> },
    /// This node's side of its exchange.
    Exchange { records: Vec<(Vec<u8>, KeyRecord)> },
    /// A scrub: reading every record to find damaged ones (see [`super::damage`]) and the
    /// tombstones to collect (see [`super::tombstones`]); after a ring change was committed
    /// (`shed`), also the records of keys this node no longer holds a replica of (see
    /// `shed_record`).
    Scrub { shed: bool },
}

impl Node {
    /// Starts building the trees of every store in the view from storage (at start); the same
    /// scan finds the tombstones to collect.
    pub(super) fn build_trees(&mut self) {
        self.scan_every_store(true, false);
    }

    /// Reads every store, finding damaged records and tombstones to collect.
    pub(super) fn scrub(&mut self) {
        self.scan_every_store(false, false);
    }

    /// After a ring change was committed: a scrub that also sheds the records of the
    /// partitions this node lost (issue 9, 2.2).
    pub(super) fn scrub_and_shed(&mut self) {
        self.scan_every_store(false, true);
    }

    /// Scans every store: to build its trees, or to scrub it (and, with `shed`, to shed).
    fn scan_every_store(&mut self, build: bool, shed: bool) {
        let stores: Vec<StoreName> = self.view.stores().map(|(name, _)| name.clone()).collect();
        for store in stores {
            if build {
                self.anti_entropy.trees.start_building(store.clone());
            }
            let purpose = if build { ScanFor::Build } else { ScanFor::Scrub { shed } };
            let ranges = alloc::vec![TokenRange::FULL];
            self.start_scan(Scan { store, ranges, leaves: Vec::new(), found: BTreeMap::new(), purpose });
        }
    }

    /// A record of `key` was stored: its tree follows (`before`, `after`: the states' digests).
    pub(super) fn tree_update(&mut self, store: &StoreName, key: &[u8], before: Option<u64>, after: &Siblings) {
        self.anti_entropy.trees.update(store, key, before, Some(item(key, after)));
    }

    /// Runs anti-entropy's timers: starts an exchange when one is due and the budget allows,
    /// sends transfers the budget now allows, and gives up an exchange that went on too long.
    pub(super) fn anti_entropy_tick(&mut self, now: Duration) {
        // With periodic rounds off, comparisons a ring change asks for still run.
        let periodic = !self.config.anti_entropy_interval.is_zero();
        self.receive(now);
        if !periodic && !self.anti_entropy.has_work() {
            return;
        }
        self.anti_entropy.budget.refill(now);
        if periodic {
            self.catch_up(now);
        }
        if self.anti_entropy.exchange.as_ref().is_some_and(|e| now >= e.started.saturating_add(EXCHANGE_LIMIT)) {
            self.exchange_over(now);
        }
        self.send_transfers(now);
        if now < self.anti_entropy.next_round || self.anti_entropy.exchange.is_some() {
            return;
        }
        let interval = if periodic { self.config.anti_entropy_interval } else { URGENT_RETRY };
        let jitter = Duration::from_micros(self.random() % (interval.as_micros() as u64).max(1));
        self.anti_entropy.next_round = now.saturating_add(interval / 2).saturating_add(jitter);
        self.anti_entropy.trees.retain(|s| self.view.store(s).is_some());
        if self.anti_entropy.budget.available() {
            self.start_exchange(now, periodic);
        }
    }

    /// A gainer's part in a ring change (issue 9, 2.2): once it learns of a change under way in
    /// which it gains partitions, it compares every store with every replica of those
    /// partitions in the current ring (the comparisons cover the partitions both hold in
    /// either ring, so they pull what it lacks), until each has been found level with it in one
    /// comparison; then it notes in the view that it has received them, and the claimant
    /// commits the change once every gainer has. A removed replica is no source: what the
    /// change needs is on the others.
    pub(super) fn receive(&mut self, now: Duration) {
        let Some(t) = self.view.transition() else {
            self.anti_entropy.receiving = None;
            return;
        };
        let version = t.next.version();
        if !t.gainers.contains(&self.id) || t.received.contains(&self.id) {
            return;
        }
        if self.anti_entropy.receiving.as_ref().is_none_or(|r| r.version != version) {
            let Some(current) = self.view.ring().cloned() else { return };
            let next = t.next.clone();
            let stores: Vec<(StoreName, usize)> = self.view.stores().map(|(s, c)| (s.clone(), c.n())).collect();
            let mut sources: BTreeMap<usize, BTreeMap<Vec<NodeId>, u64>> = BTreeMap::new();
            for (_, n) in &stores {
                sources.entry(*n).or_insert_with(|| gained_from(&current, &next, *n, &self.id));
            }
            let mut left = alloc::collections::BTreeSet::new();
            let mut groups = Vec::new();
            let stores = if self.config.receive_partitions { stores } else { Vec::new() };
            for (store, n) in &stores {
                for (replicas, count) in sources.get(n).into_iter().flatten() {
                    left.extend(replicas.iter().map(|peer| (store.clone(), peer.clone())));
                    groups.push((store.clone(), replicas.clone(), *count));
                }
            }
            self.anti_entropy.receiving = Some(Receiving {
                version,
                left,
                retry_at: now,
                groups,
                started: now,
                reported: now,
                keys: 0,
                bytes: 0,
            });
        }
        let Some(receiving) = &mut self.anti_entropy.receiving else { return };
        // A source removed since (gone for good) has nothing to give: the surviving replicas
        // hold every acknowledged write (issue 9, 2.3).
        let view = &self.view;
        receiving.left.retain(|(_, peer)| !view.is_removed(peer));
        let done = receiving.left.is_empty();
        if done || now >= receiving.reported.saturating_add(PROGRESS_EVERY) {
            receiving.reported = now;
            if let Some(progress) = self.transfer_report(now) {
                self.events.push_back(Event::Receiving { progress, done });
            }
        }
        if done {
            let id = self.id.clone();
            self.update_view(now, |view| view.note_received(version, &id));
            return;
        }
        let Some(receiving) = &mut self.anti_entropy.receiving else { return };
        if now < receiving.retry_at {
            return;
        }
        receiving.retry_at = now.saturating_add(RECEIVE_RETRY);
        let current = self.anti_entropy.exchange.as_ref().map(|e| (e.store.clone(), e.peer.clone()));
        let waiting: Vec<(StoreName, NodeId)> = receiving
            .left
            .iter()
            .filter(|pair| Some(*pair) != current.as_ref() && !self.anti_entropy.urgent.contains(pair))
            .cloned()
            .collect();
        for (store, peer) in waiting {
            self.compare_soon(now, store, peer);
        }
    }

    /// This node's progress through the ring change under way, if it gains partitions in it.
    pub(super) fn transfer_report(&self, now: Duration) -> Option<crate::liveness::TransferReport> {
        let t = self.view.transition()?;
        let r = self.anti_entropy.receiving.as_ref().filter(|r| r.version == t.next.version())?;
        let gained: u64 = r.groups.iter().map(|(_, _, count)| count).sum();
        let received = if t.received.contains(&self.id) {
            gained
        } else {
            r.groups
                .iter()
                .filter(|(store, sources, _)| sources.iter().all(|s| !r.left.contains(&(store.clone(), s.clone()))))
                .map(|(_, _, count)| count)
                .sum()
        };
        Some(crate::liveness::TransferReport {
            epoch: t.next.epoch(),
            partitions_gained: gained,
            partitions_received: received,
            keys_received: r.keys,
            bytes_received: r.bytes,
            elapsed_ms: now.saturating_sub(r.started).as_millis() as u64,
        })
    }

    /// An exchange found this node level with its peer: a source of the partitions it gains in
    /// the ring change under way is done with.
    fn exchange_level(&mut self, now: Duration) {
        let (Some(exchange), Some(receiving)) = (&self.anti_entropy.exchange, &mut self.anti_entropy.receiving) else {
            return;
        };
        if exchange.ring == receiving.version.digest {
            receiving.left.remove(&(exchange.store.clone(), exchange.peer.clone()));
        }
        self.receive(now);
    }

    /// The exchange in flight is over: an urgent one waiting starts at once.
    fn exchange_over(&mut self, now: Duration) {
        self.anti_entropy.exchange = None;
        if !self.anti_entropy.urgent.is_empty() {
            self.anti_entropy.next_round = self.anti_entropy.next_round.min(now);
        }
    }

    /// Queues a comparison of `store` with `peer` before any chosen at random; it starts at once
    /// if no exchange runs.
    pub(super) fn compare_soon(&mut self, now: Duration, store: StoreName, peer: NodeId) {
        let pair = (store, peer);
        if !self.anti_entropy.urgent.contains(&pair) {
            self.anti_entropy.urgent.push_back(pair);
        }
        if self.anti_entropy.exchange.is_none() {
            self.anti_entropy.next_round = self.anti_entropy.next_round.min(now);
        }
    }

    /// Once the node has a ring after it started: compares every store with every other member
    /// first (what it missed while it was away, or lost with its storage, comes back within
    /// seconds rather than whenever the random rounds pick each pair).
    fn catch_up(&mut self, now: Duration) {
        if !self.anti_entropy.catching_up || self.view.ring().is_none() {
            return;
        }
        self.anti_entropy.catching_up = false;
        let Some(ring) = self.view.ring().cloned() else { return };
        let stores: Vec<(StoreName, usize)> = self.view.stores().map(|(s, c)| (s.clone(), c.n())).collect();
        // The peers sharing a partition, worked out once per replication factor (a pair at a
        // time would walk the ring once per member).
        let mut peers_for: BTreeMap<usize, alloc::collections::BTreeSet<NodeId>> = BTreeMap::new();
        for (_, n) in &stores {
            peers_for.entry(*n).or_insert_with(|| replica_peers(&ring, *n, &self.id));
        }
        for peer in self.peers() {
            for (store, n) in &stores {
                if peers_for.get(n).is_some_and(|p| p.contains(&peer)) {
                    self.compare_soon(now, store.clone(), peer.clone());
                }
            }
        }
    }

    /// Picks a store and a peer (the last ones again if they differed) and sends `TreeBuckets`.
    /// Without `periodic` rounds only urgent pairs are compared.
    fn start_exchange(&mut self, now: Duration, periodic: bool) {
        let Some(ring) = self.view.routing_version() else { return };
        let mut next = self.anti_entropy.again.take();
        // Urgent pairs that cannot be compared (a dropped store, no partition shared) are
        // passed over; one whose trees are still being built waits for the next round.
        while next.is_none() {
            let Some((store, peer)) = self.anti_entropy.urgent.pop_front() else { break };
            let Ok(config) = self.store_config(&store) else { continue };
            if !self.anti_entropy.trees.ready(&store) {
                self.anti_entropy.urgent.push_front((store, peer));
                return;
            }
            if !self.shared_with(config.n(), &peer).is_empty() {
                next = Some((store, peer));
            }
        }
        if next.is_none() && !periodic {
            return;
        }
        let (store, peer) = match next {
            Some(pair) => pair,
            None => {
                let stores: Vec<StoreName> = self.view.stores().map(|(s, _)| s.clone()).collect();
                if stores.is_empty() {
                    return;
                }
                let store = stores[self.anti_entropy.next_store % stores.len()].clone();
                self.anti_entropy.next_store = self.anti_entropy.next_store.wrapping_add(1);
                let Ok(config) = self.store_config(&store) else { return };
                // A peer up that shares a partition with this node for the store: picking among
                // every member would, in a large cluster, almost never find one (a node shares
                // partitions with a few dozen of 10,000).
                let sharing: Vec<NodeId> = self.sharing(config.n()).keys().cloned().collect();
                let up: Vec<NodeId> = sharing.into_iter().filter(|p| self.liveness.state(p) == PeerState::Up).collect();
                if up.is_empty() {
                    return;
                }
                let peer = up[(self.random() % up.len() as u64) as usize].clone();
                (store, peer)
            }
        };
        let Ok(config) = self.store_config(&store) else { return };
        if !self.anti_entropy.trees.ready(&store) {
            return;
        }
        let shared = self.shared_with(config.n(), &peer);
        if shared.is_empty() {
            return;
        }
        let bucket = shared.len().div_ceil(BUCKETS);
        let digests = self.bucket_digests(&store, &shared, bucket);
        let Some(destination) = self.destination(&peer) else { return };
        self.anti_entropy.budget.spend(digests.len() * 8);
        let body = Request::TreeBuckets { store: store.clone(), ring: ring.digest, bucket: bucket as u32, digests };
        self.stats.anti_entropy_exchanges += 1;
        self.anti_entropy.exchange = Some(Exchange {
            peer: peer.clone(),
            store,
            ring: ring.digest,
            started: now,
            stage: Stage::Buckets { shared, bucket },
            pulled: 0,
            pushed: 0,
        });
        self.send_request(now, destination, body, false, Purpose::AntiEntropy { peer, call: Call::Buckets });
    }

    /// The partitions whose primaries for `n` replicas include this node and `peer`: in the
    /// ring, and during a ring change in either ring (so a gainer compares with the partitions'
    /// current replicas).
    fn shared_with(&mut self, n: usize, peer: &NodeId) -> Shared {
        self.sharing(n).get(peer).cloned().unwrap_or_default()
    }

    /// Every peer that shares a partition with this node for `n` replicas, with the partitions
    /// (see `shared_with`), worked out once per ring.
    fn sharing(&mut self, n: usize) -> &BTreeMap<NodeId, Shared> {
        let routing = self.view.routing_version().map_or(0, |v| v.digest);
        let (digest, cache) = &mut self.anti_entropy.shared;
        if *digest != routing {
            *digest = routing;
            cache.clear();
        }
        let ring = self.view.ring();
        let next = self.view.transition().map(|t| &*t.next);
        cache.entry(n).or_insert_with(|| match ring {
            Some(ring) => shared_partitions(ring, next, n, &self.id),
            None => BTreeMap::new(),
        })
    }

    /// The digest of each bucket of `bucket` shared partitions: their non-zero roots folded in
    /// partition order. Walks the trees held and the shared partitions side by side (both
    /// sorted), so it costs what they number, not a lookup per partition.
    fn bucket_digests(&self, store: &StoreName, shared: &[u32], bucket: usize) -> Vec<u64> {
        let bucket = bucket.max(1);
        let mut digests = alloc::vec![0u64; shared.len().div_ceil(bucket)];
        let mut i = 0;
        for (partition, root) in self.anti_entropy.trees.roots(store) {
            while i < shared.len() && shared[i] < partition {
                i += 1;
            }
            if i == shared.len() {
                break;
            }
            if shared[i] == partition && root != 0 {
                digests[i / bucket] = crate::mix::combine(digests[i / bucket], root);
            }
        }
        digests
    }

    /// A peer's `TreeBuckets`: which of its buckets differ from this node's.
    pub(super) fn tree_buckets(
        &mut self,
        from: &NodeId,
        store: &StoreName,
        ring: u64,
        bucket: u32,
        digests: &[u64],
    ) -> Result<Response, ErrorReply> {
        let config = self.comparable(store, ring)?;
        let shared = self.shared_with(config.n(), from);
        let bucket = (bucket as usize).max(1);
        let mine = self.bucket_digests(store, &shared, bucket);
        if mine.len() != digests.len() {
            return Err(ErrorReply::new(ErrorKind::Malformed, "bucket digests do not match the shared partitions"));
        }
        let differ = mine.iter().zip(digests).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i as u32);
        Ok(Response::TreeBuckets(differ.collect()))
    }

    /// A peer's `TreeLeaves`: the leaves that differ, then (after a scan) this node's keys in
    /// them. `Ok(None)`: the answer comes after the scan.
    pub(super) fn tree_leaves(
        &mut self,
        stream: u64,
        id: u64,
        store: StoreName,
        ring: u64,
        partitions: &[(u32, Vec<u64>)],
    ) -> Result<Option<Response>, ErrorReply> {
        self.comparable(&store, ring)?;
        if partitions.len() > MAX_PARTITIONS {
            return Err(ErrorReply::new(ErrorKind::TooLarge, "too many partitions in one comparison"));
        }
        let count = 1usize << self.view.partition_bits();
        let mut leaves = Vec::new();
        for (partition, theirs) in partitions {
            if *partition as usize >= count {
                return Err(ErrorReply::new(ErrorKind::Malformed, "no such partition"));
            }
            let differing = self
                .anti_entropy
                .trees
                .differing(&store, *partition, theirs)
                .ok_or_else(|| ErrorReply::new(ErrorKind::Malformed, "leaves do not match this node's trees"))?;
            leaves.extend(differing.into_iter().map(|leaf| (*partition, leaf as u32)));
        }
        if leaves.is_empty() {
            return Ok(Some(Response::TreeKeys { leaves, keys: Vec::new() }));
        }
        let answering = self.anti_entropy.scans.values().filter(|s| matches!(s.purpose, ScanFor::Answer { .. }));
        if answering.count() >= MAX_ANSWERING {
            return Err(ErrorReply::new(ErrorKind::Unavailable, "busy with other comparisons: try again later"));
        }
        let ranges = self.anti_entropy.trees.ranges(&leaves);
        let purpose = ScanFor::Answer { stream, id, keys: Vec::new() };
        self.start_scan(Scan { store, ranges, leaves, found: BTreeMap::new(), purpose });
        Ok(None)
    }

    /// The store's settings, if a comparison under the ring (or ring change) whose routing
    /// digest is `ring` can be made.
    fn comparable(&self, store: &StoreName, ring: u64) -> Result<crate::store::StoreConfig, ErrorReply> {
        let config = self.store_config(store)?;
        let own = self.view.routing_version().ok_or_else(|| ErrorReply::new(ErrorKind::Unavailable, "no ring yet"))?;
        if own.digest != ring {
            return Err(ErrorReply::new(
                ErrorKind::StaleRing,
                alloc::format!("compared under another ring than this node's (epoch {})", own.epoch),
            ));
        }
        if !self.anti_entropy.trees.ready(store) {
            return Err(ErrorReply::new(ErrorKind::Unavailable, "this node is still building its trees"));
        }
        // During a ring change, writes this node took under the previous ring may still be on
        // their way to storage: a comparison (a gainer's transfer) would not see them, and the
        // gainer could be found level without them.
        if let (Some(_), Some((version, seq))) = (self.view.transition(), self.transition_barrier)
            && version == own
            && self.writes_taken_before(seq)
        {
            return Err(ErrorReply::new(
                ErrorKind::Unavailable,
                "writes taken under the previous ring are still being stored: try again",
            ));
        }
        Ok(config)
    }

    fn start_scan(&mut self, scan: Scan) {
        let number = self.anti_entropy.next_scan;
        self.anti_entropy.next_scan += 1;
        let io =
            Io::Scan { store: scan.store.clone(), ranges: scan.ranges.clone(), from: Vec::new(), limit: SCAN_PAGE };
        self.anti_entropy.scans.insert(number, scan);
        self.issue_io(io, IoOwner::Scan(number));
    }

    /// A page of scan `number` came back.
    pub(super) fn scan_page(&mut self, now: Duration, number: u64, result: Result<IoOutput, super::IoError>) {
        let Some(mut scan) = self.anti_entropy.scans.remove(&number) else { return };
        let Ok(IoOutput::Scanned { records, next, damaged, unreadable }) = result else {
            // A failed scan: a build leaves what it has (comparisons mend it), an answer says so.
            match scan.purpose {
                ScanFor::Build => self.anti_entropy.trees.built(&scan.store),
                ScanFor::Answer { stream, id, .. } => {
                    let reply = ErrorReply::new(ErrorKind::Internal, "storage failed while listing keys");
                    self.reply(stream, id, Response::Error(reply));
                }
                ScanFor::Exchange { .. } => self.exchange_over(now),
                ScanFor::Scrub { .. } => {}
            }
            return;
        };
        for key in damaged {
            self.record_damaged(now, &(scan.store.clone(), key), alloc::string::String::from("found by a scan"));
        }
        for range in unreadable {
            self.range_damaged(now, &scan.store, range);
        }
        for (key, record) in records {
            let token = Token::of(&key);
            if !TokenRange::find(&scan.ranges, token) {
                continue;
            }
            if matches!(scan.purpose, ScanFor::Build | ScanFor::Scrub { .. }) && record.siblings.is_tombstone() {
                self.tombstone_stored(now, &(scan.store.clone(), key.clone()), &record.siblings);
            }
            let digest = item(&key, &record.siblings);
            match scan.purpose {
                ScanFor::Build => {
                    self.anti_entropy.trees.toggle(&scan.store, token, digest);
                    // A node that was down at a commit, or restarted in a new incarnation (its
                    // earlier incarnation's versions no longer keep a record), sheds at start.
                    self.shed_record(&scan.store, key, record);
                    continue;
                }
                ScanFor::Scrub { shed } => {
                    if shed {
                        self.shed_record(&scan.store, key, record);
                    }
                    continue;
                }
                _ => {}
            }
            // What a comparison reads from storage counts against the budget too.
            let read = key.len() + record.siblings.size_bound();
            self.anti_entropy.budget.spend(read);
            self.stats.anti_entropy_bytes += read as u64;
            let (partition, leaf) = self.anti_entropy.trees.leaf_of(token);
            *scan.found.entry((partition, leaf as u32)).or_default() ^= digest;
            match &mut scan.purpose {
                ScanFor::Answer { keys, .. } => keys.push((key, digest)),
                ScanFor::Exchange { records } => records.push((key, record)),
                ScanFor::Build | ScanFor::Scrub { .. } => {}
            }
        }
        if let Some(from) = next {
            let io = Io::Scan { store: scan.store.clone(), ranges: scan.ranges.clone(), from, limit: SCAN_PAGE };
            self.anti_entropy.scans.insert(number, scan);
            self.issue_io(io, IoOwner::Scan(number));
            return;
        }
        for &(partition, leaf) in &scan.leaves {
            let digest = scan.found.get(&(partition, leaf)).copied().unwrap_or(0);
            self.anti_entropy.trees.mend(&scan.store, partition, leaf as usize, digest);
        }
        match scan.purpose {
            ScanFor::Build => {
                self.anti_entropy.trees.built(&scan.store);
                // Urgent comparisons waiting for the trees go now.
                if self.anti_entropy.exchange.is_none() && !self.anti_entropy.urgent.is_empty() {
                    self.anti_entropy.next_round = self.anti_entropy.next_round.min(now);
                }
            }
            ScanFor::Answer { stream, id, keys } => {
                self.reply(stream, id, Response::TreeKeys { leaves: scan.leaves, keys });
            }
            ScanFor::Exchange { records } => self.compare_keys(now, records),
            ScanFor::Scrub { .. } => {}
        }
    }

    /// The answer to an anti-entropy request this node sent.
    pub(super) fn anti_entropy_answer(
        &mut self,
        now: Duration,
        peer: NodeId,
        call: Call,
        answer: Result<Response, ReplicaFailure>,
    ) {
        self.heard(now, &peer, &answer);
        let current = self.anti_entropy.exchange.as_ref().is_some_and(|e| e.peer == peer);
        if !current {
            return;
        }
        match (call, answer) {
            (Call::Buckets, Ok(Response::TreeBuckets(differ))) => self.buckets_differ(now, &differ),
            (Call::Leaves, Ok(Response::TreeKeys { leaves, keys })) => self.leaves_differ(now, leaves, keys),
            (Call::Pull(key), answer) => {
                if let Ok(Response::State(Some(state))) = answer {
                    let size = state.siblings.size_bound();
                    self.anti_entropy.budget.spend(size);
                    self.stats.anti_entropy_bytes += size as u64;
                    self.stats.anti_entropy_pulled += 1;
                    if let Some(receiving) = &mut self.anti_entropy.receiving {
                        receiving.keys += 1;
                        receiving.bytes += (key.len() + size) as u64;
                    }
                    // A key in a range storage cannot read is pulled at every comparison (scans
                    // never see it, even once replaced): it does not call for another at once.
                    let store = self.anti_entropy.exchange.as_ref().map(|e| e.store.clone());
                    let blind = store.is_some_and(|s| self.damage.in_unreadable_range(&s, Token::of(&key)));
                    if let (Some(exchange), false) = (&mut self.anti_entropy.exchange, blind) {
                        exchange.pulled += 1;
                    }
                    let store = self.anti_entropy.exchange.as_ref().map(|e| e.store.clone());
                    if let Some((store, config)) = store.and_then(|s| self.view.store(&s).copied().map(|c| (s, c))) {
                        let step = ReplicaStep::Merge(state.siblings);
                        self.enqueue(store, key, config, step, Completion::Nothing);
                    }
                }
                self.transfer_done(now);
            }
            (Call::Push, answer) => {
                if answer.is_ok() {
                    self.stats.anti_entropy_pushed += 1;
                    if let Some(exchange) = &mut self.anti_entropy.exchange {
                        exchange.pushed += 1;
                    }
                }
                self.transfer_done(now);
            }
            // A refusal (another ring, trees still being built, busy) or no answer: this round
            // is over; the next one starts afresh.
            (_, answer) => {
                if let Ok(Response::Error(reply)) = &answer
                    && reply.kind == ErrorKind::StaleRing
                {
                    self.gossip_with(now, &peer, super::cluster_sync::Round::Pull);
                }
                self.exchange_over(now);
            }
        }
    }

    /// The peer named the buckets that differ: send the leaves of their partitions.
    fn buckets_differ(&mut self, now: Duration, differ: &[u32]) {
        let Some(exchange) = self.anti_entropy.exchange.as_mut() else { return };
        let Stage::Buckets { shared, bucket } = &exchange.stage else { return };
        let chunks: Vec<&[u32]> = shared.chunks((*bucket).max(1)).collect();
        let mut partitions: Vec<u32> = Vec::new();
        // From a random bucket on, so that a bucket that cannot be brought level does not hold
        // up the others.
        let start =
            if differ.is_empty() { 0 } else { (crate::mix::mix64(now.as_micros() as u64) as usize) % differ.len() };
        for &b in differ.iter().cycle().skip(start).take(differ.len()) {
            let Some(chunk) = chunks.get(b as usize) else { continue };
            if partitions.len() + chunk.len() > MAX_PARTITIONS {
                break;
            }
            partitions.extend_from_slice(chunk);
        }
        if partitions.is_empty() {
            if differ.is_empty() {
                self.exchange_level(now);
            }
            self.exchange_over(now);
            return;
        }
        exchange.stage = Stage::Leaves;
        let (peer, store, ring) = (exchange.peer.clone(), exchange.store.clone(), exchange.ring);
        let partitions: Vec<(u32, Vec<u64>)> =
            partitions.into_iter().map(|p| (p, self.anti_entropy.trees.leaves(&store, p))).collect();
        let bytes: usize = partitions.iter().map(|(_, l)| 4 + l.len() * 8).sum();
        self.anti_entropy.budget.spend(bytes);
        self.stats.anti_entropy_bytes += bytes as u64;
        let Some(destination) = self.destination(&peer) else {
            self.exchange_over(now);
            return;
        };
        let body = Request::TreeLeaves { store, ring, partitions };
        self.send_request(now, destination, body, false, Purpose::AntiEntropy { peer, call: Call::Leaves });
    }

    /// The peer named the leaves that differ and its keys in them: scan this node's.
    fn leaves_differ(&mut self, now: Duration, leaves: Vec<(u32, u32)>, keys: Vec<(Vec<u8>, u64)>) {
        let Some(exchange) = self.anti_entropy.exchange.as_mut() else { return };
        if leaves.is_empty() {
            self.exchange_over(now);
            return;
        }
        let bytes: usize = keys.iter().map(|(k, _)| k.len() + 8).sum();
        let store = exchange.store.clone();
        exchange.stage = Stage::Scanning { theirs: keys.into_iter().collect() };
        self.anti_entropy.budget.spend(bytes);
        self.stats.anti_entropy_bytes += bytes as u64;
        let ranges = self.anti_entropy.trees.ranges(&leaves);
        let purpose = ScanFor::Exchange { records: Vec::new() };
        self.start_scan(Scan { store, ranges, leaves, found: BTreeMap::new(), purpose });
    }

    /// This node's keys in the differing leaves are in: pull what the peer has that differs,
    /// push what this node has that differs.
    fn compare_keys(&mut self, now: Duration, records: Vec<(Vec<u8>, KeyRecord)>) {
        let Some(exchange) = self.anti_entropy.exchange.as_mut() else { return };
        let Stage::Scanning { theirs } = &mut exchange.stage else { return };
        let mut work = VecDeque::new();
        let mut mine: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for (key, record) in records {
            let digest = item(&key, &record.siblings);
            if theirs.get(&key) != Some(&digest) {
                work.push_back(Transfer::Push(key.clone(), record.siblings));
            }
            mine.insert(key, digest);
        }
        for (key, digest) in core::mem::take(theirs) {
            if mine.get(&key) != Some(&digest) {
                work.push_back(Transfer::Pull(key));
            }
        }
        exchange.stage = Stage::Transfers { work, in_flight: 0 };
        self.transfer_done_or_more(now);
    }

    fn transfer_done(&mut self, now: Duration) {
        if let Some(Exchange { stage: Stage::Transfers { in_flight, .. }, .. }) = &mut self.anti_entropy.exchange {
            *in_flight = in_flight.saturating_sub(1);
        }
        self.transfer_done_or_more(now);
    }

    /// Sends what the budget allows; ends the exchange once every transfer is done.
    fn transfer_done_or_more(&mut self, now: Duration) {
        self.anti_entropy.budget.refill(now);
        self.send_transfers(now);
        let Some(exchange) = &self.anti_entropy.exchange else { return };
        let Stage::Transfers { work, in_flight } = &exchange.stage else { return };
        if !work.is_empty() || *in_flight > 0 {
            return;
        }
        let (peer, store, pulled, pushed) =
            (exchange.peer.clone(), exchange.store.clone(), exchange.pulled, exchange.pushed);
        self.exchange_over(now);
        if pulled + pushed > 0 {
            // Keys moved: go on with the same peer at once (the rest of the buckets).
            self.anti_entropy.again = Some((store.clone(), peer.clone()));
            self.anti_entropy.next_round = now;
            self.events.push_back(Event::AntiEntropy { peer, store, pulled, pushed });
        }
    }

    fn send_transfers(&mut self, now: Duration) {
        loop {
            if !self.anti_entropy.budget.available() {
                return;
            }
            let Some(exchange) = self.anti_entropy.exchange.as_mut() else { return };
            let Stage::Transfers { work, in_flight } = &mut exchange.stage else { return };
            if *in_flight >= BATCH {
                return;
            }
            let Some(transfer) = work.pop_front() else { return };
            *in_flight += 1;
            let (peer, store) = (exchange.peer.clone(), exchange.store.clone());
            let (body, call) = match transfer {
                Transfer::Pull(key) => (Request::Get { store, key: key.clone() }, Call::Pull(key)),
                Transfer::Push(key, siblings) => {
                    let size = siblings.size_bound();
                    self.anti_entropy.budget.spend(size);
                    self.stats.anti_entropy_bytes += size as u64;
                    (Request::Replicate { store, key, siblings, hint_for: None }, Call::Push)
                }
            };
            match self.destination(&peer) {
                Some(destination) => {
                    self.send_request(now, destination, body, true, Purpose::AntiEntropy { peer, call });
                }
                None => {
                    self.exchange_over(now);
                    return;
                }
            }
        }
    }
}

/// The members that are primaries for `n` replicas of some partition `me` is a primary of.
fn replica_peers(ring: &crate::ring::Ring, n: usize, me: &NodeId) -> alloc::collections::BTreeSet<NodeId> {
    let mut peers = alloc::collections::BTreeSet::new();
    for p in 0..ring.partition_count() {
        let prefs = ring.preference_list(ring.partition_range(p).first(), n, 0);
        if prefs.is_primary(me) {
            peers.extend(prefs.primaries().iter().take(n).filter(|node| *node != me).cloned());
        }
    }
    peers
}

/// For each other node, the partitions whose primaries for `n` replicas include both it and
/// `me`, in `ring` or (during a ring change) in either `ring` or `next`, in order: one walk of
/// the ring for every peer.
fn shared_partitions(
    ring: &crate::ring::Ring,
    next: Option<&crate::ring::Ring>,
    n: usize,
    me: &NodeId,
) -> BTreeMap<NodeId, Shared> {
    let mut shared: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
    let mut holders: Vec<NodeId> = Vec::new();
    for p in 0..ring.partition_count() {
        let token = ring.partition_range(p).first();
        let prefs = ring.preference_list(token, n, 0);
        let later = next.map(|r| r.preference_list(token, n, 0));
        let in_later = later.as_ref().is_some_and(|l| l.is_primary(me));
        if !prefs.is_primary(me) && !in_later {
            continue;
        }
        holders.clear();
        holders.extend(prefs.primaries().iter().take(n).cloned());
        if let Some(later) = &later {
            holders.extend(later.primaries().iter().take(n).cloned());
        }
        holders.sort();
        holders.dedup();
        for holder in holders.iter().filter(|h| *h != me) {
            shared.entry(holder.clone()).or_default().push(p as u32);
        }
    }
    shared.into_iter().map(|(peer, partitions)| (peer, alloc::sync::Arc::new(partitions))).collect()
}

/// The partitions `me` becomes a replica of in `next` (for `n` replicas), counted by their
/// current replicas (sorted).
fn gained_from(
    ring: &crate::ring::Ring,
    next: &crate::ring::Ring,
    n: usize,
    me: &NodeId,
) -> BTreeMap<Vec<NodeId>, u64> {
    let mut groups = BTreeMap::new();
    for p in 0..ring.partition_count() {
        let token = ring.partition_range(p).first();
        let before = ring.preference_list(token, n, 0);
        if !before.is_primary(me) && next.preference_list(token, n, 0).is_primary(me) {
            let mut sources = before.primaries().to_vec();
            sources.sort();
            *groups.entry(sources).or_insert(0) += 1;
        }
    }
    groups
}
