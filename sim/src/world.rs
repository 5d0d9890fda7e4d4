//! The simulated world: nodes with their disks, the network, the clients and the clock.
//!
//! Everything happens at an instant of virtual time, in the order of a queue keyed by
//! (time, sequence number); node timers fire when they come before the next queued event. Every
//! random choice comes from the run's one [`Rng`], so a seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quickv_core::cluster::ClusterView;
use quickv_core::identity::{CertificateDigest, NodeId};
use quickv_core::membership::{NodeInfo, WebAccess};
use quickv_core::node::{Destination, Hint, Io, IoError, IoId, IoOutput, Node, NodeConfig, Origin};
use quickv_core::store::Limits;
use quickv_core::store::{ConflictPolicy, QuorumKind, StoreConfig, StoreName};
use quickv_core::token::{Token, TokenRange};
use quickv_core::version::{ContextKey, KeyRecord, Siblings};
use quickv_core::wire::{self, Message, Request, Response};

use crate::check::{self, Final};
use crate::rng::Rng;
use crate::workload::{Client, KeyId, LWW_STORE, Op, RACED_STORES, SLOPPY_STORE, STORE, Status, Tamper, values_of};
use crate::{Fault, Mechanism, Options, Outcome, RunStats};

mod elastic;
mod smart;

/// How long nodes wait for a replica.
const REPLICA_TIMEOUT: Duration = Duration::from_millis(200);
/// The longest clients wait for the cluster to form before they start anyway.
const FORMATION_LIMIT: Duration = Duration::from_secs(5);
/// How long the faults go on.
const CHAOS: Duration = Duration::from_secs(20);
/// How long the cluster has, once healed, before the final reads.
const SETTLE: Duration = Duration::from_secs(5);
/// How long the cluster has after settling for its replicas to converge with no read.
const CONVERGE: Duration = Duration::from_secs(20);
/// How often nodes compare their Merkle trees with a peer.
/// How often nodes read all their records to find damaged ones (`damage`).
const SCRUB_INTERVAL: Duration = Duration::from_secs(2);
const ANTI_ENTROPY_INTERVAL: Duration = Duration::from_millis(500);
/// Nodes paused or crashed at once, at most (a strict store of N=3, W=2 stays writable).
const MAX_IMPAIRED: usize = 1;

/// A node's disk: key records and the saved view, and the incarnation it last started in.
/// A write is durable once it completes, except on the fragile node (see [`Fault::OsSync`],
/// [`Fault::LoseDisk`]).
#[derive(Debug, Default)]
struct Disk {
    durable: BTreeMap<KeyId, KeyRecord>,
    /// Written (`None`: removed) but not yet synced: stores under way (until they complete)
    /// and, on the fragile node under `os-sync`, what waits for its next sync; reads see it.
    unsynced: BTreeMap<KeyId, Option<KeyRecord>>,
    view: Option<ClusterView>,
    incarnation: u64,
    /// The counter floor saved by removals, with the incarnation it was saved in.
    counter_floor: (u64, u64),
    /// The hints the node holds for other nodes (durable once stored).
    hints: BTreeMap<(NodeId, KeyId), Hint>,
    /// Records that fail their checks (`damage`), until a write replaces them.
    damaged: BTreeSet<KeyId>,
    /// Damaged records in a block no scan can read (a subset of `damaged`): scans report their
    /// tokens as unreadable instead of listing them, as a damaged block of a table file does.
    unreadable: BTreeSet<KeyId>,
    /// The records and hints as of the last flush into tables (`lose-journal`): what a lost
    /// journal leaves.
    tables: BTreeMap<KeyId, KeyRecord>,
    hint_tables: BTreeMap<(NodeId, KeyId), Hint>,
}

impl Disk {
    /// Moves what only the journal holds into tables: every synced record and hint.
    fn flush(&mut self) {
        self.tables = self.durable.clone();
        self.hint_tables = self.hints.clone();
    }

    /// The journal is lost: records and hints go back to the tables.
    fn lose_journal(&mut self) {
        self.durable = self.tables.clone();
        self.hints = self.hint_tables.clone();
        self.unsynced.clear();
        let tables = &self.tables;
        self.damaged.retain(|k| tables.contains_key(k));
        self.unreadable.retain(|k| tables.contains_key(k));
    }

    fn record(&self, key: &KeyId) -> Option<&KeyRecord> {
        match self.unsynced.get(key) {
            Some(pending) => pending.as_ref(),
            None => self.durable.get(key),
        }
    }

    /// The record of `key` if it passes its checks (what a scan returns, and the checkers see).
    fn intact(&self, key: &KeyId) -> Option<&KeyRecord> {
        if self.damaged.contains(key) { None } else { self.record(key) }
    }

    /// An [`Io::Scan`]: up to `limit` keys of `store` from `from` on, those in `ranges` kept.
    fn scan(&self, store: &StoreName, ranges: &[TokenRange], from: Vec<u8>, limit: usize) -> IoOutput {
        let start = (store.clone(), from);
        let in_store = |(s, _): &&KeyId| s == store;
        let mut keys: Vec<&KeyId> = self.durable.range(start.clone()..).map(|(k, _)| k).take_while(in_store).collect();
        keys.extend(self.unsynced.range(start..).map(|(k, _)| k).take_while(in_store));
        keys.sort();
        keys.dedup();
        let next = keys.get(limit).map(|(_, k)| k.clone());
        let page: Vec<&KeyId> =
            keys.into_iter().take(limit).filter(|(_, k)| TokenRange::find(ranges, Token::of(k))).collect();
        let unreadable = page
            .iter()
            .filter(|k| self.unreadable.contains(**k))
            .filter_map(|k| TokenRange::new(Token::of(&k.1), Token::of(&k.1)))
            .collect();
        let page: Vec<&KeyId> = page.into_iter().filter(|k| !self.unreadable.contains(*k)).collect();
        let damaged = page.iter().filter(|k| self.damaged.contains(**k)).map(|k| k.1.clone()).collect();
        let records = page.into_iter().filter_map(|k| Some((k.1.clone(), self.intact(k)?.clone()))).collect();
        IoOutput::Scanned { records, next, damaged, unreadable }
    }
}

#[derive(Debug)]
struct SimNode {
    config: NodeConfig,
    machine: Option<Node>,
    /// Raised at every crash: answers and storage results of an older life are dropped.
    life: u64,
    disk: Disk,
    paused: bool,
    /// Deliveries held while the node is paused.
    held: Vec<Event>,
    /// Whether the node is in the cluster: an original member, or a spare that joined
    /// (`elastic`).
    member: bool,
    /// Gone for good: it left and was stopped, or crashed for good to be removed (`elastic`).
    gone: bool,
    /// Asked to leave (`elastic`).
    leaving: bool,
}

/// Who waits for the answer on a stream.
#[derive(Clone, Debug)]
enum Requester {
    Node {
        index: usize,
        life: u64,
        request: u64,
    },
    Client {
        index: usize,
        op: usize,
    },
    /// An operator's request (`elastic`).
    Admin {
        ask: elastic::Ask,
    },
    /// A smart client's request to one node for op `op` (see [`smart`]).
    Smart {
        op: usize,
        to: NodeId,
    },
    /// A duplicate delivery of a request node `from` sent: nobody waits for its answer.
    Nobody {
        from: usize,
    },
}

#[derive(Clone, Debug)]
struct Stream {
    requester: Requester,
    target: usize,
    target_life: u64,
}

/// Why the transport reports no answer to a request.
#[derive(Clone, Copy, Debug)]
enum Missing {
    /// No connection: the request never left.
    NotDelivered,
    /// The request went out; nothing came back.
    NoAnswer,
}

#[derive(Clone, Debug)]
enum Event {
    Request {
        stream: u64,
        frame: Vec<u8>,
    },
    /// An answer, or why the transport reports there is none.
    Answer {
        requester: Requester,
        frame: Result<Vec<u8>, Missing>,
    },
    Io {
        node: usize,
        life: u64,
        id: IoId,
        result: Result<IoOutput, IoError>,
        /// A store that becomes durable as it completes (see [`Disk::unsynced`]).
        synced: Option<KeyId>,
    },
    ClientStep {
        client: usize,
    },
    /// A smart client's read may have replicas to give up on.
    SmartTimeout {
        op: usize,
    },
    /// The fragile node's disk syncs what it was given.
    DiskSync {
        node: usize,
        life: u64,
    },
    Fault(FaultEvent),
}

#[derive(Clone, Debug)]
enum FaultEvent {
    Cut(Vec<(usize, usize)>),
    Heal(Vec<(usize, usize)>),
    Pause(usize),
    Resume(usize),
    /// A record of this node's disk is damaged.
    Damage(usize),
    Crash(usize),
    /// The crash a `Crash` put off until the node's next store is under way: it comes now,
    /// before that store completes.
    CrashMidStore(usize),
    Restart(usize),
    /// The impostor starts (see [`Fault::Impostor`]).
    ImpostorStarts(usize),
    /// The impostor stops for good.
    ImpostorStops(usize),
    /// A spare node starts and joins (`elastic`).
    Join(usize),
    /// An operator asks for a leave or a removal (`elastic`).
    Ask(elastic::Ask),
    /// A node crashes for good, to be removed (`elastic`).
    Doom(usize),
    /// A node that has left is stopped (`elastic`).
    StopLeft(usize),
    /// A spare that has not joined yet is restarted with another seed (`elastic`).
    CheckJoined(usize),
    /// A node publishes new web access, the `n`th of the run (`web-rotation`).
    Rotate(usize, u64),
}

pub(crate) struct World {
    options: Options,
    rng: Rng,
    now: Duration,
    seq: u64,
    queue: BTreeMap<(Duration, u64), Event>,
    nodes: Vec<SimNode>,
    ids: Vec<NodeId>,
    streams: BTreeMap<u64, Stream>,
    next_stream: u64,
    cut: BTreeSet<(usize, usize)>,
    clients: Vec<Client>,
    /// Smart clients' requests in progress, by op.
    smart: BTreeMap<usize, smart::SmartOp>,
    history: Vec<Op>,
    keys: Vec<KeyId>,
    trace: Vec<String>,
    stats: RunStats,
    /// Whether the cluster has formed (every member in the ring, no ring change under way):
    /// clients wait for it, up to `FORMATION_LIMIT`.
    formed: bool,
    /// Nodes down or paused now, to bound concurrent node faults.
    impaired: BTreeSet<usize>,
    /// A node whose crash waits for its next store (half the crashes): it comes while that
    /// store is under way, so stores a crash loses (mints the node released to the other
    /// replicas among them) are common, not a matter of luck. The node counts as impaired.
    crash_at_store: Option<usize>,
    /// Nodes that refused to start (a violation: a node must restart from what it saved).
    broken: Vec<String>,
    /// The node whose disk may lose writes (with `os-sync` or `lose-disk`).
    fragile: Option<usize>,
    /// The index of the node claiming n1's id (with `impostor`).
    impostor: Option<usize>,
    /// Spare nodes that join during the faults (`elastic`), after the original members.
    spares: usize,
    /// The member that crashes for good and is removed (`elastic`).
    doomed: Option<usize>,
}

impl World {
    pub(crate) fn new(options: &Options) -> World {
        let mut rng = Rng::new(options.seed);
        let mut view = ClusterView::new(6);
        let strict = StoreConfig::new(3, 2, 2, QuorumKind::Strict, ConflictPolicy::Siblings).expect("valid");
        let _ = view.create_store(StoreName::new(STORE).expect("valid"), strict);
        let _ =
            view.create_store(StoreName::new(LWW_STORE).expect("valid"), strict.with_conflicts(ConflictPolicy::Lww));
        if options.faults.contains(&Fault::Sloppy) {
            let sloppy = StoreConfig::new(3, 2, 2, QuorumKind::Sloppy, ConflictPolicy::Siblings).expect("valid");
            let _ = view.create_store(StoreName::new(SLOPPY_STORE).expect("valid"), sloppy);
        }
        let secret = cluster_secret(options.seed);
        // Node clocks (with `skew`) are off by up to ±3 s too, drawn apart from the run's choices.
        let mut clocks = Rng::new(options.seed ^ 0xc10c_5eed_0000_0001);
        let node_skew = options.faults.contains(&Fault::Skew);
        let mut nodes = Vec::new();
        let mut ids = Vec::new();
        let spares = if options.faults.contains(&Fault::Elastic) { elastic::SPARES } else { 0 };
        for i in 0..options.nodes + spares {
            // Spares alternate capacities 2 and 1: rings weigh them.
            let capacity = if i < options.nodes { 1 } else { 2 - (i - options.nodes) as u32 % 2 };
            let info = NodeInfo::new(&format!("n{i}"), &address(i), &format!("z{}", i % 3), capacity)
                .expect("valid node")
                .with_certificate(certificate(&format!("n{i}")));
            ids.push(info.id.clone());
            let mut config = NodeConfig::new(info, secret.clone());
            config.replica_timeout = REPLICA_TIMEOUT;
            config.wall_clock_origin_ms =
                if node_skew { WALL_CLOCK_ORIGIN_MS - 3000 + clocks.range(0, 6000) } else { WALL_CLOCK_ORIGIN_MS };
            config.sync_interval = Duration::from_millis(100);
            config.tombstone_grace = options.tombstone_grace;
            // Scrubs find damage; with no damage injected they would only move the schedule.
            let scrubs = options.faults.contains(&Fault::Damage) && !options.disabled.contains(&Mechanism::Scrub);
            config.scrub_interval = if scrubs { SCRUB_INTERVAL } else { Duration::ZERO };
            if options.faults.contains(&Fault::LargeValues) {
                config.limits = Limits { max_key: 64, max_value: 4096 };
            }
            config.seed = rng.next_u64();
            if options.disabled.contains(&Mechanism::Handoff) {
                config.hint_batch = 0;
            }
            config.receive_partitions = !options.disabled.contains(&Mechanism::Transfer);
            config.anti_entropy_interval = match options.disabled.contains(&Mechanism::AntiEntropy) {
                true => Duration::ZERO,
                false => ANTI_ENTROPY_INTERVAL,
            };
            if i > 0 {
                config.seeds = vec![address(0)];
            }
            let disk = Disk { view: (i == 0).then(|| view.clone()), ..Disk::default() };
            let member = i < options.nodes;
            nodes.push(SimNode {
                config,
                machine: None,
                life: 0,
                disk,
                paused: false,
                held: Vec::new(),
                member,
                gone: false,
                leaving: false,
            });
        }
        let impostor = (options.faults.contains(&Fault::Impostor) && options.nodes >= 2).then(|| {
            // n1's id at a new address, with a certificate of its own (or n1's, with the
            // mechanism off); it joins through n0.
            let cert = if options.disabled.contains(&Mechanism::UniqueIds) { "n1" } else { "impostor" };
            let i = options.nodes + spares;
            let info =
                NodeInfo::new("n1", &address(i), "z9", 1).expect("valid node").with_certificate(certificate(cert));
            let mut config = NodeConfig::new(info, secret.clone());
            config.replica_timeout = REPLICA_TIMEOUT;
            config.wall_clock_origin_ms = WALL_CLOCK_ORIGIN_MS;
            config.sync_interval = Duration::from_millis(100);
            config.seed = rng.next_u64();
            config.seeds = vec![address(0)];
            nodes.push(SimNode {
                config,
                machine: None,
                life: 0,
                disk: Disk::default(),
                paused: false,
                held: Vec::new(),
                member: false,
                gone: false,
                leaving: false,
            });
            i
        });
        let mut keys = Vec::new();
        for k in 0..options.keys {
            keys.push((StoreName::new(STORE).expect("valid"), format!("k{k}").into_bytes()));
            if options.faults.contains(&Fault::Lww) {
                keys.push((StoreName::new(LWW_STORE).expect("valid"), format!("k{k}").into_bytes()));
            }
            if options.faults.contains(&Fault::Sloppy) {
                keys.push((StoreName::new(SLOPPY_STORE).expect("valid"), format!("k{k}").into_bytes()));
            }
        }
        let disk_faults =
            [Fault::OsSync, Fault::LoseDisk, Fault::LoseJournal].iter().any(|f| options.faults.contains(f));
        let fragile = disk_faults.then(|| rng.below(options.nodes as u64) as usize);
        let skew = options.faults.contains(&Fault::Skew);
        let tamper = Tamper {
            secret: Some(secret.clone()),
            foreign: options.disabled.contains(&Mechanism::ContextSeal),
            timestamps: options.disabled.contains(&Mechanism::ContextTimestamp),
        };
        let clients = (0..options.clients)
            .map(|_| {
                let skew_ms = if skew { rng.range(0, 6000) as i64 - 3000 } else { 0 };
                Client::new(options.ops_per_client, skew_ms, tamper.clone())
            })
            .collect();
        World {
            options: options.clone(),
            rng,
            now: Duration::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            ids,
            streams: BTreeMap::new(),
            next_stream: 1,
            cut: BTreeSet::new(),
            clients,
            smart: BTreeMap::new(),
            history: Vec::new(),
            keys,
            trace: Vec::new(),
            stats: RunStats::default(),
            formed: false,
            impaired: BTreeSet::new(),
            crash_at_store: None,
            broken: Vec::new(),
            fragile,
            impostor,
            spares,
            doomed: None,
        }
    }

    /// Every node's view gives each id to the node that holds it: no impostor took one over.
    fn ids_held(&self) -> Vec<String> {
        let mut violations = Vec::new();
        for i in self.live_members() {
            let Some(view) = self.nodes[i].machine.as_ref().map(Node::view) else { continue };
            for (j, member) in self.nodes[..self.members()].iter().enumerate() {
                let real = &member.config.info;
                match view.membership().node(&real.id) {
                    Some(entry) if entry.address != real.address || entry.certificate != real.certificate => violations
                        .push(format!(
                            "n{i}'s view gives n{j}'s id to the node at {} (certificate {:?}): the id was taken over",
                            entry.address, entry.certificate
                        )),
                    _ => {}
                }
            }
        }
        violations
    }

    /// Once the faults have stopped and the cluster has settled, every node holds every other
    /// node up: no verdict of the failure detector outlives the failure (issue 8, 1.2); and
    /// every hinted write has reached its primary (2.2: no node holds a hint any more).
    fn peers_up(&self) -> Vec<String> {
        let mut violations = Vec::new();
        let live = self.live_members();
        for &i in &live {
            let Some(machine) = self.nodes[i].machine.as_ref() else { continue };
            for peer in machine.status(self.now).peers.iter().filter(|p| p.hints > 0) {
                violations
                    .push(format!("n{i} still holds {} hints for {} after the cluster settled", peer.hints, peer.id));
            }
            for &j in &live {
                let state = machine.peer_state(&self.ids[j]);
                if i != j && state != quickv_core::liveness::PeerState::Up {
                    violations.push(format!("n{i} holds n{j} {state} after the cluster settled"));
                }
            }
        }
        violations
    }

    /// Once the faults have stopped, with no read touching any key, every key's primaries hold
    /// equal states (issue 8, 3.2: hints and anti-entropy bring every replica level, whatever
    /// it missed: dropped messages, hints past their bound, records a crash lost).
    fn converged(&self) -> Vec<String> {
        let mut violations = Vec::new();
        let Some(view) = self.a_live_view() else { return violations };
        for key in &self.keys {
            let (Some(ring), Some(config)) = (view.ring(), view.store(&key.0)) else { continue };
            let prefs = ring.preference_list(Token::of(&key.1), config.n(), 0);
            let states: Vec<(String, Option<&Siblings>)> = prefs
                .primaries()
                .iter()
                .filter_map(|id| {
                    let index = self.ids.iter().position(|x| x == id)?;
                    Some((format!("n{index}"), self.nodes[index].disk.intact(key).map(|r| &r.siblings)))
                })
                .collect();
            // Check 13: every tombstone has been collected by then (the last deletes are more than
            // two graces old), so no primary still holds one.
            for (node, state) in &states {
                if state.is_some_and(Siblings::is_tombstone) && !self.options.tombstone_grace.is_zero() {
                    violations.push(format!(
                        "{}/{}: {node} still holds a tombstone {} s after the faults stopped",
                        key.0,
                        String::from_utf8_lossy(&key.1),
                        (SETTLE + CONVERGE).as_secs()
                    ));
                }
            }
            if states.windows(2).any(|w| w[0].1 != w[1].1) {
                let shown: Vec<String> =
                    states.iter().map(|(n, s)| format!("{n} {:?}", s.map(values_of).unwrap_or_default())).collect();
                violations.push(format!(
                    "{}/{}: replicas differ {} s after the faults stopped, with no read: {}",
                    key.0,
                    String::from_utf8_lossy(&key.1),
                    (SETTLE + CONVERGE).as_secs(),
                    shown.join(", ")
                ));
            }
        }
        violations
    }

    /// With `web-rotation`, once the faults have stopped: every live member's view holds the
    /// web access each live member last published (check 17 of `docs/simulation.md`).
    fn web_access_spread(&self) -> Vec<String> {
        if !self.options.faults.contains(&Fault::WebRotation) {
            return Vec::new();
        }
        let live = self.live_members();
        let views: Vec<(usize, &ClusterView)> =
            live.iter().filter_map(|&i| Some((i, self.nodes[i].machine.as_ref()?.view()))).collect();
        let published: Vec<&NodeInfo> = live.iter().map(|&i| &self.nodes[i].config.info).collect();
        check::web_access_spread(&views, &published)
    }

    /// The nodes that are or may become members: the original ones, then the spares (the
    /// impostor, if any, comes after them).
    fn members(&self) -> usize {
        self.options.nodes + self.spares
    }

    /// The view of the first live member that runs.
    fn a_live_view(&self) -> Option<ClusterView> {
        self.live_members().into_iter().find_map(|i| Some(self.nodes[i].machine.as_ref()?.view().clone()))
    }

    /// A live member at random (a client's or operator's pick).
    fn random_member(&mut self) -> usize {
        let live = self.live_members();
        live[self.rng.below(live.len() as u64) as usize]
    }

    pub(crate) fn run(mut self) -> Outcome {
        for i in 0..self.options.nodes {
            self.start(i);
        }
        // Clients start once the cluster has formed.
        for c in 0..self.clients.len() {
            let at = Duration::from_millis(1000 + self.rng.below(100));
            self.schedule_at(at, Event::ClientStep { client: c });
        }
        self.plan_faults();
        self.plan_elastic();
        let end = CHAOS + SETTLE;
        self.run_until(end);
        let mut violations = std::mem::take(&mut self.broken);
        violations.extend(self.peers_up());
        let end = end + CONVERGE;
        self.run_until(end);
        violations.extend(self.converged());
        violations.extend(self.membership_settled());
        violations.extend(self.web_access_spread());
        violations.extend(self.leftover_copies());
        let finals = self.final_reads(end);
        violations.extend(self.ids_held());
        violations.extend(check::check(&self.history, &finals, &self.clients_pending()));
        self.stats.virtual_ms = self.now.as_millis() as u64;
        self.stats.mints_released +=
            self.nodes.iter().filter_map(|n| n.machine.as_ref()).map(|m| m.stats().mints_released).sum::<u64>();
        Outcome { violations, trace: self.trace, stats: self.stats }
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.options.trace {
            let line = line();
            self.trace.push(format!("{:>8.3}s {line}", self.now.as_secs_f64()));
        }
    }

    fn schedule_at(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), event);
    }

    fn schedule_in(&mut self, delay: Duration, event: Event) {
        self.schedule_at(self.now + delay, event);
    }

    /// A message's delay under the run's faults.
    fn latency(&mut self) -> Duration {
        let faults = &self.options.faults;
        let chaos = self.now < CHAOS;
        let ms = if chaos && faults.contains(&Fault::SlowMessages) && self.rng.chance(3) {
            self.rng.range(REPLICA_TIMEOUT.as_millis() as u64, 3 * REPLICA_TIMEOUT.as_millis() as u64)
        } else if faults.contains(&Fault::Delay) {
            // A round trip stays well within the replica timeout.
            self.rng.range(1, REPLICA_TIMEOUT.as_millis() as u64 / 5)
        } else {
            1
        };
        Duration::from_millis(ms)
    }

    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let view = node.disk.view.clone().unwrap_or_else(|| ClusterView::new(6));
        let mut config = node.config.clone();
        config.seed = config.seed.wrapping_add(node.life);
        // Every start in the simulation follows a crash (or is the first): a new incarnation.
        if node.disk.incarnation == 0 || !self.options.disabled.contains(&Mechanism::Incarnation) {
            node.disk.incarnation += 1;
        }
        config.incarnation = node.disk.incarnation;
        config.counter_floor = match node.disk.counter_floor {
            (saved_in, floor) if saved_in == node.disk.incarnation => floor,
            _ => 0,
        };
        // A restart follows a crash, which may have lost writes: the fragile node's unsynced
        // ones, any node's stores under way (among them mints it had released to the other
        // replicas), as a server's start after a stop that was not clean.
        config.lost_records = node.life > 0 && !self.options.disabled.contains(&Mechanism::LostRecords);
        match Node::new(config, view, self.now) {
            Ok(machine) => node.machine = Some(machine),
            // It left while it was down: the operator stops it for good.
            Err(quickv_core::node::NodeError::Left(_)) if node.leaving => {
                node.gone = true;
                self.impaired.remove(&i);
                return;
            }
            Err(e) => {
                self.broken.push(format!("n{i} could not start from its saved view: {e}"));
                return;
            }
        }
        self.note(|| format!("n{i} starts"));
        self.drain(i);
    }

    fn run_until(&mut self, end: Duration) {
        // Timer rounds in a row at one instant: a node whose timer stays in the past after it
        // handled it would spin (as its driver would, on a real machine).
        let mut spins = (Duration::ZERO, 0u32);
        loop {
            let next_event = self.queue.keys().next().map(|(t, _)| *t);
            let next_timer =
                self.nodes.iter().filter(|n| !n.paused).filter_map(|n| n.machine.as_ref()?.poll_timeout()).min();
            let at = match (next_event, next_timer) {
                (Some(e), Some(t)) => e.min(t),
                (Some(e), None) => e,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            if next_timer.is_some_and(|t| t <= at) {
                spins = if spins.0 == self.now { (self.now, spins.1 + 1) } else { (self.now, 1) };
                if spins.1 > 10_000 {
                    let spinning: Vec<usize> = (0..self.nodes.len())
                        .filter(|&i| self.nodes[i].machine.as_ref().and_then(Node::poll_timeout) <= Some(self.now))
                        .filter(|&i| self.nodes[i].machine.is_some())
                        .collect();
                    self.broken
                        .push(format!("nodes {spinning:?} keep a timer in the past at {:?}: they spin", self.now));
                    return;
                }
                for i in 0..self.nodes.len() {
                    let due = !self.nodes[i].paused
                        && self.nodes[i].machine.as_ref().and_then(Node::poll_timeout).is_some_and(|t| t <= self.now);
                    if due {
                        if let Some(m) = self.nodes[i].machine.as_mut() {
                            m.handle_timeout(self.now);
                        }
                        self.drain(i);
                    }
                }
                continue;
            }
            let Some((_, event)) = self.queue.pop_first() else { break };
            self.handle(event);
        }
        self.now = self.now.max(end);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Request { stream, frame } => {
                let Some(info) = self.streams.get(&stream).cloned() else { return };
                let target = info.target;
                if self.nodes[target].paused {
                    self.nodes[target].held.push(Event::Request { stream, frame });
                    return;
                }
                if self.nodes[target].life != info.target_life || self.nodes[target].machine.is_none() {
                    // The connection broke with the request in flight.
                    self.streams.remove(&stream);
                    return self.fail_stream(info.requester, Missing::NoAnswer);
                }
                let peer = match info.requester {
                    Requester::Node { index: from, .. } | Requester::Nobody { from } => {
                        self.nodes[from].config.info.certificate
                    }
                    Requester::Client { .. } | Requester::Smart { .. } | Requester::Admin { .. } => None,
                };
                let origin = Origin::Stream { stream, peer };
                if let Some(m) = self.nodes[target].machine.as_mut() {
                    m.handle_frame(self.now, origin, &frame);
                }
                self.drain(target);
            }
            Event::Answer { requester, frame } => self.answer(requester, frame),
            Event::Io { node, life, id, result, synced } => {
                if self.nodes[node].life != life {
                    return;
                }
                if self.nodes[node].paused {
                    self.nodes[node].held.push(Event::Io { node, life, id, result, synced });
                    return;
                }
                if let Some(key) = synced {
                    let disk = &mut self.nodes[node].disk;
                    if let Some(Some(record)) = disk.unsynced.remove(&key) {
                        disk.durable.insert(key, record);
                    }
                }
                if let Some(m) = self.nodes[node].machine.as_mut() {
                    m.handle_io(self.now, id, result);
                }
                self.drain(node);
            }
            Event::DiskSync { node, life } => {
                if self.nodes[node].life == life {
                    let disk = &mut self.nodes[node].disk;
                    for (key, record) in std::mem::take(&mut disk.unsynced) {
                        match record {
                            Some(record) => disk.durable.insert(key, record),
                            None => disk.durable.remove(&key),
                        };
                    }
                }
            }
            Event::ClientStep { client } => self.client_step(client),
            Event::SmartTimeout { op } => self.smart_timeout(op),
            Event::Fault(fault) => self.fault(fault),
        }
    }

    fn answer(&mut self, requester: Requester, frame: Result<Vec<u8>, Missing>) {
        match requester {
            Requester::Node { index, life, request } => {
                if self.nodes[index].life != life || self.nodes[index].machine.is_none() {
                    return;
                }
                if self.nodes[index].paused {
                    self.nodes[index].held.push(Event::Answer { requester, frame });
                    return;
                }
                if let Some(m) = self.nodes[index].machine.as_mut() {
                    match &frame {
                        Ok(frame) => m.handle_frame(self.now, Origin::Answer, frame),
                        Err(Missing::NotDelivered) => m.handle_unreachable(self.now, request),
                        Err(Missing::NoAnswer) => m.handle_no_answer(self.now, request),
                    }
                }
                self.drain(index);
            }
            Requester::Client { index, op } => {
                let response = frame.ok().and_then(|f| match wire::decode(&f) {
                    Ok(Message::Response { body, .. }) => Some(body),
                    _ => None,
                });
                self.note(|| format!("c{index} op {op} answered: {}", brief(&response)));
                let record = &mut self.history[op];
                if let Some(retry) = self.clients[index].answer(record, response) {
                    self.note(|| format!("c{index} op {op} retried"));
                    self.stats.retries += 1;
                    let target = self.random_member();
                    return self.send_from_client(requester, target, retry);
                }
                self.client_done(index, op);
            }
            Requester::Smart { op, to } => self.smart_answer(op, to, frame),
            Requester::Admin { ask } => {
                let response = frame.ok().and_then(|f| match wire::decode(&f) {
                    Ok(Message::Response { body, .. }) => Some(body),
                    _ => None,
                });
                self.admin_answer(ask, response);
            }
            Requester::Nobody { .. } => {}
        }
    }

    /// Client `index` has the answer to op `op`: counts it, and schedules the client's next step.
    fn client_done(&mut self, index: usize, op: usize) {
        if self.history[op].kind.is_write() {
            match self.history[op].status {
                Status::Ok => self.stats.acknowledged += 1,
                _ => self.stats.maybe += 1,
            }
        }
        if self.clients[index].remaining > 0 && self.now < CHAOS {
            let think = Duration::from_millis(self.rng.range(1, 50));
            self.schedule_in(think, Event::ClientStep { client: index });
        }
    }

    /// Tells the requester its stream failed (after a little while).
    fn fail_stream(&mut self, requester: Requester, why: Missing) {
        let delay = self.latency();
        self.schedule_in(delay, Event::Answer { requester, frame: Err(why) });
    }

    fn client_step(&mut self, client: usize) {
        if self.clients[client].remaining == 0 || self.clients[client].pending.is_some() {
            return;
        }
        // Clients start once the cluster has formed: joins go through ring changes, which take
        // longer while messages are delayed and dropped.
        if !self.formed {
            let members = self.options.nodes;
            self.formed = self.now >= FORMATION_LIMIT
                || self.nodes[0].machine.as_ref().is_some_and(|m| {
                    let view = m.view();
                    view.transition().is_none() && view.ring().is_some_and(|r| r.nodes().len() >= members)
                });
            if !self.formed {
                return self.schedule_in(Duration::from_millis(100), Event::ClientStep { client });
            }
        }
        let now_ms = WALL_CLOCK_ORIGIN_MS + self.now.as_millis() as u64;
        let (op, request) =
            self.clients[client].next(client, &mut self.rng, &self.keys, &self.options.faults, &self.ids, now_ms);
        let index = self.history.len();
        self.note(|| {
            format!("c{client} op {index}: {:?} {:?} seen {:?}", op.kind, String::from_utf8_lossy(&op.key.1), op.seen)
        });
        self.history.push(op);
        self.clients[client].pending = Some(index);
        self.stats.requests += 1;
        if self.is_smart(client) {
            return self.start_smart(client, index, request);
        }
        let target = self.random_member();
        self.send_from_client(Requester::Client { index: client, op: index }, target, request);
    }

    fn send_from_client(&mut self, requester: Requester, target: usize, body: Request) {
        self.send_message_from_client(requester, target, Message::Request { id: 1, body });
    }

    fn send_message_from_client(&mut self, requester: Requester, target: usize, message: Message) {
        let frame = wire::encode(&message);
        let stream = self.open_stream(requester.clone(), target);
        if self.nodes[target].machine.is_none() {
            self.streams.remove(&stream);
            return self.fail_stream(requester, Missing::NotDelivered);
        }
        let delay = Duration::from_millis(self.rng.range(1, 5));
        self.schedule_in(delay, Event::Request { stream, frame });
    }

    fn open_stream(&mut self, requester: Requester, target: usize) -> u64 {
        let stream = self.next_stream;
        self.next_stream += 1;
        let target_life = self.nodes[target].life;
        self.streams.insert(stream, Stream { requester, target, target_life });
        stream
    }

    /// Performs everything node `i` has emitted.
    fn drain(&mut self, i: usize) {
        loop {
            let Some(machine) = self.nodes[i].machine.as_mut() else { return };
            if let Some((id, io)) = machine.poll_io() {
                self.storage(i, id, io);
            } else if let Some(transmit) = machine.poll_transmit() {
                let frame = wire::encode(&transmit.message);
                match transmit.to {
                    Destination::Reply(stream) => self.reply(i, stream, frame),
                    Destination::Node { address, .. } => {
                        let request = match transmit.message {
                            Message::Request { id, .. } | Message::Routed { id, .. } => id,
                            Message::Response { .. } => continue,
                        };
                        self.send_between_nodes(i, &address, request, frame);
                    }
                }
            } else if let Some(event) = machine.poll_event() {
                if event == quickv_core::node::Event::Left {
                    self.schedule_in(Duration::from_millis(20), Event::Fault(FaultEvent::StopLeft(i)));
                }
                match &event {
                    quickv_core::node::Event::PeerState { to: quickv_core::liveness::PeerState::Down, .. } => {
                        self.stats.peers_down += 1
                    }
                    quickv_core::node::Event::HintDelivered { .. } => self.stats.hints_delivered += 1,
                    quickv_core::node::Event::TombstoneCollected { .. } => self.stats.tombstones_collected += 1,
                    _ => {}
                }
                self.note(|| format!("n{i} {event:?}"));
            } else {
                return;
            }
        }
    }

    fn storage(&mut self, i: usize, id: IoId, io: Io) {
        let life = self.nodes[i].life;
        let forget = self.options.disabled.contains(&Mechanism::MintLog);
        let journal = self.fragile == Some(i) && self.options.faults.contains(&Fault::LoseJournal);
        let disk = &mut self.nodes[i].disk;
        let mut synced = None;
        let storing = matches!(io, Io::Store { .. });
        let result = match io {
            Io::Load { store, key } if disk.damaged.contains(&(store.clone(), key.clone())) => {
                Ok(IoOutput::Damaged("checksum mismatch".into()))
            }
            Io::Load { store, key } => {
                let record = disk.record(&(store, key)).cloned();
                let record = if forget { record.map(|r| KeyRecord::new(r.siblings)) } else { record };
                Ok(IoOutput::Loaded(record))
            }
            // Writes are synced when they complete; a crash before that may lose them (the
            // completion is dropped with the node's life; what the node released before, a
            // mint it coordinates, is at the other replicas).
            Io::Store { store, key, state, hint } => {
                if journal && self.rng.chance(5) {
                    // The engine flushes a full memtable on its own.
                    disk.flush();
                }
                disk.damaged.remove(&(store.clone(), key.clone()));
                disk.unreadable.remove(&(store.clone(), key.clone()));
                if let Some(hint) = hint {
                    disk.hints.insert((hint.target.clone(), (store.clone(), key.clone())), hint);
                }
                if self.fragile == Some(i) && self.options.faults.contains(&Fault::OsSync) {
                    // Acknowledged at once, synced a little later.
                    disk.unsynced.insert((store, key), Some(state));
                    let at = Duration::from_millis(self.rng.range(10, 200));
                    self.schedule_in(at, Event::DiskSync { node: i, life });
                } else {
                    // Written now (reads see it), durable once the store completes.
                    synced = Some((store.clone(), key.clone()));
                    disk.unsynced.insert((store, key), Some(state));
                }
                Ok(IoOutput::Done)
            }
            // Under `os-sync` the fragile node's removals are synced later too: a crash brings
            // the record back. The floor is saved at once (a crash starts a new incarnation).
            Io::Remove { store, key, counter_floor } => {
                disk.damaged.remove(&(store.clone(), key.clone()));
                disk.unreadable.remove(&(store.clone(), key.clone()));
                if disk.counter_floor.0 != disk.incarnation || disk.counter_floor.1 < counter_floor {
                    disk.counter_floor = (disk.incarnation, counter_floor);
                }
                if self.fragile == Some(i) && self.options.faults.contains(&Fault::OsSync) {
                    disk.unsynced.insert((store, key), None);
                    let at = Duration::from_millis(self.rng.range(10, 200));
                    self.schedule_in(at, Event::DiskSync { node: i, life });
                } else {
                    disk.unsynced.remove(&(store.clone(), key.clone()));
                    disk.durable.remove(&(store, key));
                }
                Ok(IoOutput::Done)
            }
            Io::DropData { store } => {
                disk.damaged.retain(|(s, _)| *s != store);
                disk.unreadable.retain(|(s, _)| *s != store);
                disk.durable.retain(|(s, _), _| *s != store);
                disk.unsynced.retain(|(s, _), _| *s != store);
                Ok(IoOutput::Done)
            }
            Io::SaveView(view) => {
                disk.view = Some(view);
                Ok(IoOutput::Done)
            }
            Io::DropHint(hint) => {
                disk.hints.remove(&(hint.target, (hint.store, hint.key)));
                Ok(IoOutput::Done)
            }
            Io::LoadHints => Ok(IoOutput::Hints(disk.hints.values().cloned().collect())),
            Io::Checkpoint => {
                if !self.options.disabled.contains(&Mechanism::Checkpoint) {
                    disk.flush();
                }
                Ok(IoOutput::Done)
            }
            Io::Scan { store, ranges, from, limit } => Ok(disk.scan(&store, &ranges, from, limit)),
        };
        let delay = Duration::from_micros(self.rng.range(50, 2000));
        if storing && self.crash_at_store == Some(i) {
            self.crash_at_store = None;
            self.schedule_in(delay / 2, Event::Fault(FaultEvent::CrashMidStore(i)));
        }
        self.schedule_in(delay, Event::Io { node: i, life, id, result, synced });
    }

    fn reply(&mut self, from: usize, stream: u64, frame: Vec<u8>) {
        let Some(info) = self.streams.remove(&stream) else { return };
        let lost = match &info.requester {
            Requester::Node { index, .. } => self.cut.contains(&(from, *index)),
            _ => false,
        };
        if lost {
            // The answer never arrives; the sender's timeouts deal with it.
            self.note(|| format!("n{from} answer on stream {stream} lost"));
            return;
        }
        let delay = self.latency();
        self.schedule_in(delay, Event::Answer { requester: info.requester, frame: Ok(frame) });
    }

    fn send_between_nodes(&mut self, from: usize, address: &str, request: u64, frame: Vec<u8>) {
        self.stats.messages += 1;
        let requester = Requester::Node { index: from, life: self.nodes[from].life, request };
        // No such node, or it is down: no connection, nothing leaves.
        let Some(to) = (0..self.nodes.len()).find(|&j| self.nodes[j].config.info.address == address) else {
            return self.fail_stream(requester, Missing::NotDelivered);
        };
        if self.nodes[to].machine.is_none() {
            return self.fail_stream(requester, Missing::NotDelivered);
        }
        if self.cut.contains(&(from, to)) {
            // Nothing arrives; sometimes the transport notices.
            if self.rng.chance(50) {
                let delay = REPLICA_TIMEOUT + self.latency();
                self.schedule_in(delay, Event::Answer { requester, frame: Err(Missing::NoAnswer) });
            }
            return;
        }
        let chaos = self.now < CHAOS;
        if chaos && self.options.faults.contains(&Fault::Drop) && self.rng.chance(2) {
            self.note(|| format!("n{from} -> n{to} request {request} dropped"));
            return self.fail_stream(requester, Missing::NoAnswer);
        }
        if chaos && self.options.faults.contains(&Fault::Duplicate) && self.rng.chance(2) {
            let stream = self.open_stream(Requester::Nobody { from }, to);
            let delay = self.latency();
            let copy = match wire::decode(&frame) {
                // Switched off, the copy looks like a request of its own.
                Ok(Message::Request { id, body }) if self.options.disabled.contains(&Mechanism::OneAnswer) => {
                    wire::encode(&Message::Request { id: id | 1 << 48, body })
                }
                Ok(Message::Routed { id, ring, body }) if self.options.disabled.contains(&Mechanism::OneAnswer) => {
                    wire::encode(&Message::Routed { id: id | 1 << 48, ring, body })
                }
                _ => frame.clone(),
            };
            self.schedule_in(delay, Event::Request { stream, frame: copy });
        }
        let stream = self.open_stream(requester, to);
        let delay = self.latency();
        self.schedule_in(delay, Event::Request { stream, frame });
    }

    /// Schedules the run's faults over the chaos period; at its end everything heals.
    fn plan_faults(&mut self) {
        let faults = self.options.faults.clone();
        let count = self.options.nodes;
        if faults.contains(&Fault::WebRotation) {
            // A fixed schedule: the run's randomness (and so every other schedule) is the same
            // with the fault or without.
            for n in 1..CHAOS.as_secs() / 2 {
                let at = Duration::from_secs(2 * n);
                self.schedule_at(at, Event::Fault(FaultEvent::Rotate(n as usize % count, n)));
            }
        }
        if let Some(impostor) = self.impostor {
            // It runs for a while in the chaos period, then stops for good.
            let at = Duration::from_millis(self.rng.range(1500, CHAOS.as_millis() as u64 / 2));
            self.schedule_at(at, Event::Fault(FaultEvent::ImpostorStarts(impostor)));
            let stop = at + Duration::from_millis(self.rng.range(500, 4000));
            self.schedule_at(stop.min(CHAOS), Event::Fault(FaultEvent::ImpostorStops(impostor)));
        }
        if faults.contains(&Fault::Damage) {
            let mut at = Duration::from_millis(self.rng.range(1500, 4000));
            while at < CHAOS {
                let node = self.rng.below(count as u64) as usize;
                self.schedule_at(at, Event::Fault(FaultEvent::Damage(node)));
                at += Duration::from_millis(self.rng.range(1000, 4000));
            }
        }
        let mut at = Duration::from_millis(1500);
        while at < CHAOS {
            let length = Duration::from_millis(self.rng.range(200, 3000));
            let end = (at + length).min(CHAOS);
            let kinds: Vec<Fault> = [Fault::Partition, Fault::OneWay, Fault::Pause, Fault::Crash]
                .into_iter()
                .filter(|f| faults.contains(f))
                .collect();
            if kinds.is_empty() {
                break;
            }
            let node = self.rng.below(count as u64) as usize;
            let (start, stop) = match *self.rng.pick(&kinds) {
                Fault::Partition => {
                    let side: BTreeSet<usize> = (0..count).filter(|_| self.rng.chance(50)).collect();
                    let links: Vec<(usize, usize)> = (0..count)
                        .flat_map(|a| (0..count).map(move |b| (a, b)))
                        .filter(|(a, b)| side.contains(a) != side.contains(b))
                        .collect();
                    (FaultEvent::Cut(links.clone()), FaultEvent::Heal(links))
                }
                Fault::OneWay => {
                    let other = (node + 1 + self.rng.below(count as u64 - 1) as usize) % count;
                    (FaultEvent::Cut(vec![(node, other)]), FaultEvent::Heal(vec![(node, other)]))
                }
                Fault::Pause => (FaultEvent::Pause(node), FaultEvent::Resume(node)),
                _ => {
                    // With a fragile disk, half the crashes hit it.
                    let node = match self.fragile {
                        Some(fragile) if self.rng.chance(50) => fragile,
                        _ => node,
                    };
                    (FaultEvent::Crash(node), FaultEvent::Restart(node))
                }
            };
            self.schedule_at(at, Event::Fault(start));
            self.schedule_at(end, Event::Fault(stop));
            at += Duration::from_millis(self.rng.range(300, 2500));
        }
    }

    fn fault(&mut self, fault: FaultEvent) {
        self.note(|| format!("fault {fault:?}"));
        match fault {
            FaultEvent::Cut(links) => {
                self.stats.faults += 1;
                self.cut.extend(links);
            }
            FaultEvent::Heal(links) => {
                for link in links {
                    self.cut.remove(&link);
                }
            }
            FaultEvent::Pause(i) | FaultEvent::Crash(i) | FaultEvent::Damage(i) if self.nodes[i].gone => {}
            FaultEvent::Pause(i) => {
                if self.impaired.len() < MAX_IMPAIRED && self.impaired.insert(i) {
                    self.stats.faults += 1;
                    self.nodes[i].paused = true;
                }
            }
            FaultEvent::Resume(i) => {
                if self.nodes[i].paused {
                    self.nodes[i].paused = false;
                    self.impaired.remove(&i);
                    for event in std::mem::take(&mut self.nodes[i].held) {
                        self.schedule_in(Duration::ZERO, event);
                    }
                }
            }
            FaultEvent::Crash(i) => {
                if self.impaired.len() < MAX_IMPAIRED && self.nodes[i].machine.is_some() && self.impaired.insert(i) {
                    self.stats.faults += 1;
                    if self.rng.chance(50) {
                        self.crash_at_store = Some(i);
                    } else {
                        self.crash(i);
                    }
                }
            }
            FaultEvent::CrashMidStore(i) => {
                if self.nodes[i].machine.is_some() {
                    self.crash(i);
                }
            }
            FaultEvent::ImpostorStarts(i) => {
                self.stats.faults += 1;
                self.start(i);
            }
            FaultEvent::ImpostorStops(i) => self.crash(i),
            FaultEvent::Damage(i) => self.damage(i),
            FaultEvent::Join(i) => self.join(i),
            FaultEvent::Ask(ask) => self.ask(ask),
            FaultEvent::Doom(i) => self.doom(i),
            FaultEvent::StopLeft(i) => self.stop_left(i),
            FaultEvent::CheckJoined(i) => self.check_joined(i),
            FaultEvent::Rotate(i, n) => self.rotate(i, n),
            FaultEvent::Restart(i) if self.crash_at_store == Some(i) => {
                // It stored nothing in time: no crash after all.
                self.crash_at_store = None;
                self.impaired.remove(&i);
            }
            FaultEvent::Restart(i) => {
                if self.nodes[i].machine.is_none() && !self.nodes[i].gone {
                    self.impaired.remove(&i);
                    self.start(i);
                }
            }
        }
    }

    /// Node `i` publishes new web access: the next browser certificate beside the one before
    /// (`web-rotation`). A node that is down misses its turn; a restart publishes the last
    /// access the node published (as a server keeps its browser certificates in its folder).
    fn rotate(&mut self, i: usize, n: u64) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let Some(machine) = node.machine.as_mut().filter(|_| !node.paused && !node.gone) else { return };
        let mut hashes = node.config.info.web.webtransport().to_vec();
        hashes.push(certificate(&format!("browser-{i}-{n}")));
        let keep = hashes.len().saturating_sub(2);
        let web = WebAccess::new(Some(&format!("{}-https", address(i))), hashes.split_off(keep))
            .expect("two hashes and a valid address");
        node.config.info.web = web.clone();
        if machine.set_web_access(now, web) {
            self.stats.faults += 1;
        }
        self.note(|| format!("n{i} publishes web access {n}"));
        self.drain(i);
    }

    /// A flipped byte on node `i`'s disk: one of its durable records fails its checks from now
    /// on. Only a record another node (not the fragile one, whose crash loses records) holds an
    /// intact copy of: a single fault, which N=3 and W=2 tolerate; damage on top of another
    /// loss of the only other copy would lose writes by design.
    fn damage(&mut self, i: usize) {
        // A fallback's hinted copy does not count: the fallback drops it once the primary
        // acknowledges the handoff (found at seed 5,533: the copy that made a damage "safe" was
        // dropped by an acknowledgement already in flight, and the fragile node then lost the
        // last other copy, two faults on the write's two remaining copies).
        // Nor a copy on a node that goes for good (`elastic`).
        let safe_elsewhere = |k: &KeyId, record: &KeyRecord| {
            self.nodes.iter().enumerate().any(|(j, n)| {
                j != i
                    && Some(j) != self.fragile
                    && Some(j) != self.doomed
                    && !n.gone
                    && !n.leaving
                    && n.disk.intact(k).is_some_and(|r| r.siblings == record.siblings)
                    && !n.disk.hints.keys().any(|(_, hinted)| hinted == k)
            })
        };
        let candidates: Vec<KeyId> = self.nodes[i]
            .disk
            .durable
            .iter()
            .filter(|(k, record)| !self.nodes[i].disk.damaged.contains(*k) && safe_elsewhere(k, record))
            .map(|(k, _)| k.clone())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let key = self.rng.pick(&candidates).clone();
        self.stats.faults += 1;
        // Half the time the record sits in a block no scan can read either.
        let block = self.rng.chance(50);
        self.note(|| {
            let what = if block { "record (in an unreadable block)" } else { "record" };
            format!("n{i} {what} {}/{} damaged", key.0, String::from_utf8_lossy(&key.1))
        });
        if block {
            self.nodes[i].disk.unreadable.insert(key.clone());
        }
        self.nodes[i].disk.damaged.insert(key);
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(machine) = node.machine.take() {
            self.stats.mints_released += machine.stats().mints_released;
        }
        node.life += 1;
        node.held.clear();
        if self.fragile != Some(i) {
            // Stores under way when it crashed: each reached the disk, or not.
            let under_way = std::mem::take(&mut self.nodes[i].disk.unsynced);
            let lost = under_way.len();
            for (key, record) in under_way {
                if self.rng.chance(50) {
                    let disk = &mut self.nodes[i].disk;
                    match record {
                        Some(record) => disk.durable.insert(key, record),
                        None => disk.durable.remove(&key),
                    };
                }
            }
            self.note(|| format!("n{i} crashed with {lost} stores under way"));
        } else {
            let faults = &self.options.faults;
            // Half the crashes lose the journal (the others, under `lose-disk`, every record).
            let journal = faults.contains(&Fault::LoseJournal) && self.rng.chance(50);
            let node = &mut self.nodes[i];
            let lost = node.disk.unsynced.len();
            node.disk.unsynced.clear();
            if journal {
                node.disk.lose_journal();
                self.note(|| format!("n{i} lost its journal: back to its last flush"));
            } else if self.options.faults.contains(&Fault::LoseDisk) {
                node.disk.durable.clear();
                node.disk.damaged.clear();
                node.disk.unreadable.clear();
                node.disk.tables.clear();
                node.disk.hint_tables.clear();
            }
            self.note(|| format!("n{i} disk lost {lost} unsynced records"));
        }
        // Streams to the crashed node break: their senders hear so.
        let broken: Vec<u64> = self.streams.iter().filter(|(_, s)| s.target == i).map(|(&id, _)| id).collect();
        for stream in broken {
            if let Some(info) = self.streams.remove(&stream) {
                // The node may have acted on the request before it crashed.
                self.fail_stream(info.requester, Missing::NoAnswer);
            }
        }
    }

    fn clients_pending(&self) -> Vec<usize> {
        self.clients.iter().filter_map(|c| c.pending).collect()
    }

    /// After the faults: every key read once through the coordinators (repairing replicas),
    /// then each key's state on each node's disk.
    fn final_reads(&mut self, mut end: Duration) -> Final {
        let mut reads = BTreeMap::new();
        let checker = self.clients.len();
        self.clients.push(Client::new(0, 0, Tamper::default()));
        for key in self.keys.clone() {
            for attempt in 0..5 {
                let op = self.history.len();
                self.history.push(Op::get(key.clone()));
                let request = Request::CoordinateGet { store: key.0.clone(), key: key.1.clone() };
                let live = self.live_members();
                let target = live[attempt % live.len()];
                self.send_from_client(Requester::Client { index: checker, op }, target, request);
                end += Duration::from_secs(1);
                self.run_until(end);
                self.clients[checker].pending = None;
                if let Some(state) = self.history[op].read.clone() {
                    self.note(|| format!("final read of {}/{}: {state:?}", key.0, String::from_utf8_lossy(&key.1)));
                    reads.insert(key.clone(), state);
                    break;
                }
            }
        }
        end += Duration::from_secs(2);
        self.run_until(end);
        let mut replicas = BTreeMap::new();
        for key in &self.keys {
            let Some(view) = self.a_live_view() else { continue };
            let (Some(ring), Some(config)) = (view.ring(), view.store(&key.0)) else { continue };
            let prefs = ring.preference_list(quickv_core::token::Token::of(&key.1), config.n(), 0);
            let holders: Vec<(NodeId, Option<Siblings>)> = prefs
                .primaries()
                .iter()
                .filter_map(|id| {
                    let index = self.ids.iter().position(|x| x == id)?;
                    Some((id.clone(), self.nodes[index].disk.intact(key).map(|r| r.siblings.clone())))
                })
                .collect();
            replicas.insert(key.clone(), holders);
        }
        let catalogues = self
            .nodes
            .iter()
            .zip(&self.ids)
            .filter_map(|(node, id)| {
                let view = node.machine.as_ref()?.view();
                let raced = RACED_STORES.iter().filter_map(|name| {
                    let name = StoreName::new(name).ok()?;
                    let config = *view.store(&name)?;
                    Some((name, config))
                });
                Some((id.clone(), raced.collect()))
            })
            .collect();
        Final { reads, replicas, catalogues }
    }
}

/// The wall-clock time (ms since the Unix epoch) at the start of a run: node and client clocks
/// are this plus the run's time plus their skew.
const WALL_CLOCK_ORIGIN_MS: u64 = 1_700_000_000_000;

/// The cluster secret of the run with `seed`, drawn from a generator of its own so that the
/// run's other random choices are those of earlier builds.
fn cluster_secret(seed: u64) -> ContextKey {
    let mut rng = Rng::new(seed ^ 0x5eed_c0de_5ea1_0000);
    let mut bytes = [0u8; ContextKey::LEN];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    ContextKey::new(bytes)
}

/// The certificate digest of the node (or impostor) `name`.
fn certificate(name: &str) -> CertificateDigest {
    CertificateDigest::of(format!("certificate of {name}").as_bytes())
}

fn address(i: usize) -> String {
    format!("sim-node-{i}")
}

fn brief(response: &Option<Response>) -> String {
    match response {
        None => "no answer".into(),
        Some(Response::State(Some(s))) => format!("{:?}", values_of(&s.siblings)),
        Some(Response::Error(e)) => format!("{:?} {}", e.kind, e.message),
        Some(other) => format!("{other:?}"),
    }
}
