//! # quickv-sim: a deterministic simulation of a quickv cluster
//!
//! The simulation runs many real [`quickv_core::node::Node`] machines — the code `quickv-node`
//! ships — in one thread, on a virtual clock, with one seeded random generator deciding
//! everything: message delays (and so their order), drops, duplicates, partitions (symmetric and
//! one-way), paused nodes, crashed and restarted nodes (losing what their disk had not synced),
//! clients' clock skew, and what clients do. Clients are plain callers: they ask random nodes to
//! coordinate gets, puts and deletes, with fresh, stale, merged and empty contexts (and, where a
//! run asks for it, foreign and forged ones).
//!
//! After the faults stop and every node is back, the run reads every key (read repair) and
//! [`check`]s the history against what the cluster holds:
//!
//! - every acknowledged write is readable (as the value or a sibling) unless a write whose
//!   context had seen it superseded it;
//! - a write that a later acknowledged write superseded (a deleted value among them) never comes
//!   back, and a write refused as invalid never appears;
//! - one put never leaves more than one version, and siblings never outnumber the clients that
//!   wrote the key;
//! - every request gets an answer (a request whose node crashed counts as "maybe applied");
//! - with no read touching them, every key's primary replicas hold equal states once the faults
//!   have stopped (hints and anti-entropy brought them level), and again after the final reads.
//!
//! A run is a pure function of its seed and [`Options`]: the same seed gives the same trace.
//!
//! ```
//! use quickv_sim::{run, Options};
//!
//! let outcome = run(&Options::new(7));
//! assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
//! assert!(outcome.stats.acknowledged > 0);
//! ```
//!
//! From the command line: `cargo run --release -p quickv-sim -- --seeds 1000 --first 0`.

pub mod check;
mod faults;
pub mod rng;
pub mod scale;
mod workload;
mod world;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

pub use faults::Fault;

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct Options {
    /// The run's seed: everything random follows from it.
    pub seed: u64,
    /// Nodes in the cluster (default 5, in 3 zones).
    pub nodes: usize,
    /// Clients issuing requests (default 4).
    pub clients: usize,
    /// Requests each client issues (default 40).
    pub ops_per_client: usize,
    /// Distinct keys the clients use (default 3: they contend).
    pub keys: usize,
    /// The faults injected (default [`Fault::defaults`]).
    pub faults: BTreeSet<Fault>,
    /// Record a readable trace of the run.
    pub trace: bool,
    /// Safety mechanisms switched off, to show that the checkers notice (never in real runs).
    pub disabled: BTreeSet<Mechanism>,
    /// How long every node of a deleted key must hold its tombstone, twice over, before it is
    /// collected (default 4 s: longer than the longest pause, 3 s, plus the slowest message;
    /// zero: never collected). A shorter grace breaks the collector's assumption, and the
    /// checkers see deletes come back.
    pub tombstone_grace: std::time::Duration,
}

/// A safety mechanism the simulation can switch off, to show the checkers bite without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// Replicas remember the ids of the writes they minted for a key (the record's mint log,
    /// issue 7, 3.5): switched off, the simulated disk forgets them on every load, so a write sent
    /// again after its version was superseded is minted anew.
    MintLog,
    /// A restarted node starts a new incarnation (issue 7, 3.1): switched off, it mints its
    /// writes as the same actor after losing state, reusing dots it minted before.
    Incarnation,
    /// Contexts are sealed for their key with the cluster secret (issue 7, 3.3): switched off,
    /// clients seal their foreign and forged contexts for the key they write, as if nodes took
    /// any context for any key.
    ContextSeal,
    /// A context carries the newest timestamp it has seen, and a write is stamped after it
    /// (issue 7, 3.7): switched off, clients send their contexts without it.
    ContextTimestamp,
    /// Node ids are bound to the certificates nodes present (issue 7, 3.2): switched off, the
    /// `impostor` presents n1's own certificate (as a copy of n1's folder would), so nodes cannot
    /// tell it from n1.
    UniqueIds,
    /// A node restarted after losing unsynced records knows it (issue 7, 3.1 with 3.5): switched
    /// off, it takes its mint log as complete and mints a resent write it lost a second time.
    LostRecords,
    /// Fallbacks hand hinted writes back to their primaries (issue 8, 2.2): switched off
    /// (`hint_batch` 0), hints stay where they are and the checkers report them.
    Handoff,
    /// Nodes compare Merkle trees and exchange the keys that differ (issue 8, 3.2): switched
    /// off, a replica that missed a write without a hint for it (a dropped replicate whose last
    /// resort hint was dropped too, a record a crash lost) stays without it, and the
    /// convergence check reports it.
    AntiEntropy,
    /// Nodes read all their records every few seconds to find damaged ones (issue 8, 3.4):
    /// switched off, a damaged record no request touches stays damaged, and the convergence
    /// check reports it.
    Scrub,
    /// A copy of a request the network delivers twice is the same request, and a node answers a
    /// copy of a mint it answered with an error with the same error (issue 8, the simulation's
    /// seed 9384): switched off, the network gives each copy a request id of its own, so the
    /// node takes it as a new request, and a refused mint's late copy is minted while another
    /// node mints the write too.
    OneAnswer,
    /// Nodes checkpoint their storage every half tombstone grace (issue 8, 3.3 with 3.4): switched
    /// off, the simulated disk ignores the checkpoints, so under `lose-journal` a table may still
    /// hold a value whose tombstone was collected everywhere, and it comes back.
    Checkpoint,
    /// Nodes that gain partitions in a ring change receive them before the change is committed
    /// (issue 9, 2.2): switched off (`receive_partitions`), a gainer counts as having them at
    /// once, and with anti-entropy off too, writes acknowledged before a change are missing from
    /// their new replicas (`elastic`).
    Transfer,
}

impl Mechanism {
    /// Every mechanism that can be switched off.
    pub const ALL: &'static [Mechanism] = &[
        Mechanism::MintLog,
        Mechanism::Incarnation,
        Mechanism::ContextSeal,
        Mechanism::ContextTimestamp,
        Mechanism::UniqueIds,
        Mechanism::LostRecords,
        Mechanism::Handoff,
        Mechanism::AntiEntropy,
        Mechanism::Scrub,
        Mechanism::OneAnswer,
        Mechanism::Checkpoint,
        Mechanism::Transfer,
    ];

    /// The mechanism's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::MintLog => "mint-log",
            Mechanism::Incarnation => "incarnation",
            Mechanism::ContextSeal => "context-seal",
            Mechanism::ContextTimestamp => "context-timestamp",
            Mechanism::UniqueIds => "unique-ids",
            Mechanism::LostRecords => "lost-records",
            Mechanism::Handoff => "handoff",
            Mechanism::AntiEntropy => "anti-entropy",
            Mechanism::Scrub => "scrub",
            Mechanism::OneAnswer => "one-answer",
            Mechanism::Checkpoint => "checkpoint",
            Mechanism::Transfer => "transfer",
        }
    }
}

impl Options {
    /// The default run for `seed`.
    pub fn new(seed: u64) -> Options {
        Options {
            seed,
            nodes: 5,
            clients: 4,
            ops_per_client: 40,
            keys: 3,
            faults: Fault::defaults().collect(),
            trace: false,
            disabled: BTreeSet::new(),
            tombstone_grace: std::time::Duration::from_secs(4),
        }
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Broken properties, one line each; empty when the run is correct.
    pub violations: Vec<String>,
    /// The trace, if asked for.
    pub trace: Vec<String>,
    /// Counts of what happened.
    pub stats: RunStats,
}

/// Counts of what happened in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Client requests sent.
    pub requests: usize,
    /// Writes (puts and deletes) acknowledged.
    pub acknowledged: usize,
    /// Writes that failed or got no answer (maybe applied).
    pub maybe: usize,
    /// Writes clients sent again (same write id) after a failure that named a minter.
    pub retries: usize,
    /// Messages between nodes.
    pub messages: usize,
    /// Faults injected.
    pub faults: usize,
    /// Times a node held a peer down (its failure detector's verdicts).
    pub peers_down: usize,
    /// Hinted writes handed back to their primaries.
    pub hints_delivered: usize,
    /// Mints of puts a node coordinated whose state went to the other replicas while the
    /// node's own store was under way.
    pub mints_released: u64,
    /// Records removed by tombstone collection, on every node.
    pub tombstones_collected: u64,
    /// Virtual time simulated, in milliseconds.
    pub virtual_ms: u64,
}

impl fmt::Display for RunStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests, {} writes acknowledged, {} maybe applied, {} retries, {} node messages, {} faults, {} peers held down, {} hints handed back, {} mints released early, {} tombstones collected, {} ms simulated",
            self.requests,
            self.acknowledged,
            self.maybe,
            self.retries,
            self.messages,
            self.faults,
            self.peers_down,
            self.hints_delivered,
            self.mints_released,
            self.tombstones_collected,
            self.virtual_ms
        )
    }
}

/// Runs one seed.
pub fn run(options: &Options) -> Outcome {
    world::World::new(options).run()
}

/// A list of faults on the command line: `delay,drop,crash` or `default` or `all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultList(pub BTreeSet<Fault>);

impl FromStr for FaultList {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultList, String> {
        let mut set = BTreeSet::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "default" => set.extend(Fault::defaults()),
                "all" => set.extend(Fault::ALL.iter().copied()),
                "none" => {}
                other => {
                    set.insert(other.parse::<Fault>()?);
                }
            }
        }
        Ok(FaultList(set))
    }
}
