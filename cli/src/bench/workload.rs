//! What `quickv bench` asks, in the YCSB tradition: the workloads (their mix of reads, updates
//! and inserts), the key distributions, and a small random generator, all pure (no clock, no
//! I/O) so that the mixes and skews are tested on their own.
//!
//! Keys are `PREFIX` followed by a record number. `load` inserts records `0..records`; `a`, `b`
//! and `c` read and update existing records chosen by the distribution; `d` reads the latest
//! records (zipfian over recency) and inserts new ones past `records`; `ping` sends no-op
//! requests to the replicas of records chosen by the distribution.

use clap::ValueEnum;

/// A workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Insert `--records` keys, each once.
    Load,
    /// 50% reads, 50% updates.
    A,
    /// 95% reads, 5% updates.
    B,
    /// Reads only.
    C,
    /// 95% reads of the latest keys, 5% inserts of new keys.
    D,
    /// No-op requests to the keys' replicas: the transport's ceiling.
    Ping,
}

impl Workload {
    /// What it does, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Workload::Load => "inserts",
            Workload::A => "50% reads, 50% updates",
            Workload::B => "95% reads, 5% updates",
            Workload::C => "reads only",
            Workload::D => "95% reads of the latest keys, 5% inserts",
            Workload::Ping => "no-op requests on the request path (the ceiling)",
        }
    }
}

/// How keys are chosen among the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    /// Every record alike.
    Uniform,
    /// A few records take most requests (YCSB's scrambled zipfian, constant 0.99).
    Zipfian,
}

/// One operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read record `n`.
    Read(u64),
    /// Write a new value to existing record `n`.
    Update(u64),
    /// Write record `n` for the first time.
    Insert(u64),
    /// A no-op request routed as a read of record `n`.
    Ping(u64),
}

impl Op {
    /// The record.
    pub fn record(self) -> u64 {
        match self {
            Op::Read(n) | Op::Update(n) | Op::Insert(n) | Op::Ping(n) => n,
        }
    }

    /// Its kind, as reports name it.
    pub fn kind(self) -> OpKind {
        match self {
            Op::Read(_) => OpKind::Read,
            Op::Update(_) => OpKind::Update,
            Op::Insert(_) => OpKind::Insert,
            Op::Ping(_) => OpKind::Ping,
        }
    }
}

/// The kinds of operation, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// Reads.
    Read,
    /// Updates.
    Update,
    /// Inserts.
    Insert,
    /// Pings.
    Ping,
}

impl OpKind {
    /// Every kind.
    pub const ALL: [OpKind; 4] = [OpKind::Read, OpKind::Update, OpKind::Insert, OpKind::Ping];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::Ping => "ping",
        }
    }
}

/// SplitMix64: small, fast and good enough to pick keys and operations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let out = quickv_core::mix::mix64(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The zipfian constant YCSB uses.
const THETA: f64 = 0.99;

/// Zipfian ranks over `0..n`, rank 0 the most frequent (Gray et al., "Quickly generating
/// billion-record synthetic databases", as YCSB does it); `n` may grow, extending the sum
/// incrementally.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    zetan: f64,
    zeta2: f64,
    alpha: f64,
    eta: f64,
}

impl Zipfian {
    /// Ranks over `0..n` (`n` at least 1).
    pub fn new(n: u64) -> Zipfian {
        let n = n.max(1);
        let zeta2 = 1.0 + 0.5f64.powf(THETA);
        let mut z = Zipfian { n: 0, zetan: 0.0, zeta2, alpha: 1.0 / (1.0 - THETA), eta: 0.0 };
        z.grow(n);
        z
    }

    /// Extends the ranks to `0..n` (no change when `n` is not larger).
    pub fn grow(&mut self, n: u64) {
        if n <= self.n {
            return;
        }
        for i in self.n + 1..=n {
            self.zetan += 1.0 / (i as f64).powf(THETA);
        }
        self.n = n;
        self.eta = (1.0 - (2.0 / n as f64).powf(1.0 - THETA)) / (1.0 - self.zeta2 / self.zetan);
    }

    /// A rank.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(THETA) {
            return 1;
        }
        ((self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64).min(self.n - 1)
    }
}

/// FNV-1a of a record rank: scatters zipfian ranks over the records, so the popular ones are
/// not neighbours.
fn scatter(rank: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in rank.to_le_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Chooses each operation of a worker: the workload's mix and the distribution's keys.
#[derive(Clone, Debug)]
pub struct Chooser {
    workload: Workload,
    distribution: Distribution,
    records: u64,
    zipf: Zipfian,
    rng: Rng,
}

impl Chooser {
    /// A chooser over `records` existing records (at least 1), seeded with `seed`.
    pub fn new(workload: Workload, distribution: Distribution, records: u64, seed: u64) -> Chooser {
        let records = records.max(1);
        // Only zipfian and latest choices use the sum: skip its cost otherwise.
        let ranks = if distribution == Distribution::Zipfian || workload == Workload::D { records } else { 1 };
        Chooser { workload, distribution, records, zipf: Zipfian::new(ranks), rng: Rng::new(seed) }
    }

    /// The next operation. `count` is the operation's number in the run (the record a `load`
    /// inserts); `existing` is how many records are there to read (for `d`, whose reads go to the
    /// latest: every record below it was inserted and acknowledged); `allocate` numbers a new
    /// record for an insert of `d`.
    pub fn next(&mut self, count: u64, existing: u64, allocate: impl FnOnce() -> u64) -> Op {
        match self.workload {
            Workload::Load => Op::Insert(count),
            Workload::A => self.read_or_update(0.5),
            Workload::B => self.read_or_update(0.95),
            Workload::C => Op::Read(self.existing()),
            Workload::Ping => Op::Ping(self.existing()),
            Workload::D => {
                if self.rng.unit() < 0.05 {
                    Op::Insert(allocate())
                } else {
                    self.zipf.grow(existing);
                    let latest = existing.saturating_sub(1);
                    Op::Read(latest - self.zipf.sample(&mut self.rng).min(latest))
                }
            }
        }
    }

    fn read_or_update(&mut self, reads: f64) -> Op {
        let record = self.existing();
        if self.rng.unit() < reads { Op::Read(record) } else { Op::Update(record) }
    }

    /// An existing record, by the distribution.
    fn existing(&mut self) -> u64 {
        match self.distribution {
            Distribution::Uniform => self.rng.below(self.records),
            Distribution::Zipfian => scatter(self.zipf.sample(&mut self.rng)) % self.records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn counts(chooser: &mut Chooser, ops: u64, existing: u64) -> (HashMap<OpKind, u64>, HashMap<u64, u64>) {
        let (mut kinds, mut records) = (HashMap::new(), HashMap::new());
        for count in 0..ops {
            let op = chooser.next(count, existing, || panic!("only d inserts new records"));
            *kinds.entry(op.kind()).or_default() += 1;
            *records.entry(op.record()).or_default() += 1;
        }
        (kinds, records)
    }

    /// Each workload's mix is what it says, within a percent over 100,000 operations.
    #[test]
    fn workloads_mix_reads_updates_and_inserts_as_ycsb_does() {
        let share = |kinds: &HashMap<OpKind, u64>, kind| *kinds.get(&kind).unwrap_or(&0) as f64 / 100_000.0;
        for (workload, reads, updates, inserts) in
            [(Workload::A, 0.5, 0.5, 0.0), (Workload::B, 0.95, 0.05, 0.0), (Workload::C, 1.0, 0.0, 0.0)]
        {
            let mut chooser = Chooser::new(workload, Distribution::Uniform, 1000, 7);
            let (kinds, records) = counts(&mut chooser, 100_000, 1000);
            assert!((share(&kinds, OpKind::Read) - reads).abs() < 0.01, "{workload:?}: {kinds:?}");
            assert!((share(&kinds, OpKind::Update) - updates).abs() < 0.01, "{workload:?}: {kinds:?}");
            assert_eq!(share(&kinds, OpKind::Insert), inserts);
            assert!(records.keys().all(|&r| r < 1000), "only existing records");
        }
        let mut load = Chooser::new(Workload::Load, Distribution::Zipfian, 10, 1);
        let ops: Vec<Op> = (0..5).map(|count| load.next(count, 0, || panic!("no allocation"))).collect();
        assert_eq!(ops, [0, 1, 2, 3, 4].map(Op::Insert), "load inserts every record once, in order");
    }

    /// Uniform keys cover the records evenly; zipfian ones put a large share on a few records,
    /// scattered over the key space.
    #[test]
    fn zipfian_keys_are_skewed_and_uniform_ones_are_not() {
        let top_share = |distribution| {
            let mut chooser = Chooser::new(Workload::C, distribution, 10_000, 3);
            let (_, records) = counts(&mut chooser, 200_000, 10_000);
            let mut hits: Vec<u64> = records.values().copied().collect();
            hits.sort_unstable_by(|a, b| b.cmp(a));
            let top: u64 = hits.iter().take(100).sum();
            (top as f64 / 200_000.0, records)
        };
        let (uniform, covered) = top_share(Distribution::Uniform);
        assert!(uniform < 0.02, "the top 1% of uniform records took {uniform}");
        assert!(covered.len() > 9_900, "uniform covered {} of 10,000 records", covered.len());
        let (zipfian, records) = top_share(Distribution::Zipfian);
        assert!(zipfian > 0.3, "the top 1% of zipfian records took only {zipfian}");
        let hottest = records.iter().max_by_key(|(_, hits)| **hits).map(|(r, _)| *r);
        assert_ne!(hottest, Some(0), "ranks are scattered, not the first records");
    }

    /// Workload d reads mostly the latest records and inserts new ones after the last.
    #[test]
    fn workload_d_reads_the_latest_records_and_inserts_new_ones() {
        let mut chooser = Chooser::new(Workload::D, Distribution::Uniform, 10_000, 11);
        let mut inserted = 10_000;
        let (mut recent, mut reads, mut inserts) = (0, 0, Vec::new());
        for count in 0..100_000 {
            let existing = inserted;
            let allocate = || {
                inserted += 1;
                inserted - 1
            };
            match chooser.next(count, existing, allocate) {
                Op::Read(r) => {
                    assert!(r < inserted, "a read of a record not yet inserted");
                    reads += 1;
                    recent += u64::from(inserted - r <= 100);
                }
                Op::Insert(r) => inserts.push(r),
                other => panic!("{other:?}"),
            }
        }
        assert!((inserts.len() as f64 / 100_000.0 - 0.05).abs() < 0.01, "{} inserts", inserts.len());
        assert!(inserts.windows(2).all(|w| w[1] == w[0] + 1) && inserts[0] == 10_000, "new records, in order");
        assert!(recent as f64 / reads as f64 > 0.5, "only {recent} of {reads} reads were of the latest 100");
    }

    /// The zipfian sum grown step by step equals the sum computed at once.
    #[test]
    fn a_grown_zipfian_matches_one_made_at_its_size() {
        let mut grown = Zipfian::new(10);
        grown.grow(500);
        grown.grow(1000);
        let made = Zipfian::new(1000);
        assert_eq!(grown.n, 1000);
        assert!((grown.zetan - made.zetan).abs() < 1e-9 && (grown.eta - made.eta).abs() < 1e-9);
        let mut rng = Rng::new(5);
        assert!((0..10_000).all(|_| made.sample(&mut rng) < 1000));
    }
}
