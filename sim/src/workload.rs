//! Clients: what they ask, with which contexts, and the history of what they were told.

use std::collections::{BTreeMap, BTreeSet};

use quickv_core::identity::NodeId;
use quickv_core::store::{ConflictPolicy, QuorumKind, StoreConfig, StoreName};
use quickv_core::version::{
    CausalContext, ContextKey, ContextPart, Dot, Seal, SealedState, Siblings, Value, VersionVector, Write, WriteId,
};
use quickv_core::wire::{Request, Response};

use crate::Fault;
use crate::rng::Rng;

/// A key as the checkers see it: its store and its name.
pub(crate) type KeyId = (StoreName, Vec<u8>);

/// The store the clients use: strict, so that every acknowledged write is on its primaries.
pub(crate) const STORE: &str = "sim";
/// The same with last-writer-wins conflicts (used with [`Fault::Lww`]).
pub(crate) const LWW_STORE: &str = "sim-lww";
/// A sloppy store (used with [`Fault::Sloppy`]): fallbacks count toward W, with hints.
pub(crate) const SLOPPY_STORE: &str = "sim-sloppy";

/// What a client read of a key: the context and the values it showed.
#[derive(Clone, Debug)]
pub(crate) struct Read {
    pub(crate) context: CausalContext,
    pub(crate) values: BTreeSet<String>,
}

/// One client request and what became of it.
#[derive(Clone, Debug)]
pub(crate) struct Op {
    pub(crate) key: KeyId,
    pub(crate) kind: OpKind,
    /// The values the write's context had seen (it supersedes exactly these).
    pub(crate) seen: BTreeSet<String>,
    pub(crate) status: Status,
    /// For a get that succeeded: the state it returned.
    pub(crate) read: Option<Siblings>,
}

impl Op {
    /// A get of `key`, not answered yet.
    pub(crate) fn get(key: KeyId) -> Op {
        Op { key, kind: OpKind::Get, seen: BTreeSet::new(), status: Status::Pending, read: None }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Get,
    Put(String),
    Delete,
    /// A create of the store `key.0` with these settings (`key.1` is empty).
    Create(StoreConfig),
}

impl OpKind {
    /// Whether the op writes a key (a put or a delete).
    pub(crate) fn is_write(&self) -> bool {
        matches!(self, OpKind::Put(_) | OpKind::Delete)
    }
}

/// The names of the stores clients race to create (with [`Fault::StoreCreates`]).
pub(crate) const RACED_STORES: [&str; 2] = ["race-0", "race-1"];

/// The two settings racing creates choose from: they differ in R and W only.
pub(crate) fn raced_settings(choice: bool) -> StoreConfig {
    let (r, w) = if choice { (1, 3) } else { (2, 2) };
    StoreConfig::new(3, r, w, QuorumKind::Strict, ConflictPolicy::Siblings).expect("valid settings")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Sent, no answer yet.
    Pending,
    /// Acknowledged (for a get: answered).
    Ok,
    /// Failed or unanswered: for a write, maybe applied.
    Failed(String),
}

/// One client: its reads per key and its progress.
#[derive(Debug)]
pub(crate) struct Client {
    reads: BTreeMap<KeyId, Vec<Read>>,
    pub(crate) remaining: usize,
    pub(crate) pending: Option<usize>,
    pub(crate) skew_ms: i64,
    writes: usize,
    /// The write in flight and how many more times it may be retried.
    sent: Option<(Request, u32)>,
    /// How the client alters its contexts when the simulation switched a mechanism off.
    tamper: Tamper,
}

/// How a client alters its contexts when the simulation switched a mechanism off, to show the
/// checkers notice. Never in real runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tamper {
    /// The cluster secret (what lets a client seal anything).
    pub(crate) secret: Option<ContextKey>,
    /// Seal foreign and forged contexts for the key written, as if nodes took any context.
    pub(crate) foreign: bool,
    /// Seal every context with no timestamp, as if contexts did not carry the newest one.
    pub(crate) timestamps: bool,
}

/// How many times a client retries a write whose failure named a minter.
const RETRIES: u32 = 2;

impl Client {
    pub(crate) fn new(ops: usize, skew_ms: i64, tamper: Tamper) -> Client {
        Client { reads: BTreeMap::new(), remaining: ops, pending: None, skew_ms, writes: 0, sent: None, tamper }
    }

    /// Chooses the next request: the op to record and the request to send.
    pub(crate) fn next(
        &mut self,
        index: usize,
        rng: &mut Rng,
        keys: &[KeyId],
        faults: &BTreeSet<Fault>,
        nodes: &[NodeId],
        now_ms: u64,
    ) -> (Op, Request) {
        self.remaining -= 1;
        let key = rng.pick(keys).clone();
        let reads = self.reads.get(&key).cloned().unwrap_or_default();
        if faults.contains(&Fault::StoreCreates) && rng.chance(5) {
            let name: &&str = rng.pick(&RACED_STORES);
            let name = StoreName::new(name).expect("valid name");
            let config = raced_settings(rng.chance(50));
            let op = Op {
                key: (name.clone(), Vec::new()),
                kind: OpKind::Create(config),
                seen: BTreeSet::new(),
                status: Status::Pending,
                read: None,
            };
            return (op, Request::CreateStore { name, config });
        }
        let roll = rng.below(100);
        if roll < 35 || (roll >= 85 && reads.is_empty()) {
            return (Op::get(key.clone()), Request::CoordinateGet { store: key.0, key: key.1 });
        }
        let (context, seen) = self.choose_context(rng, &key, &reads, faults, nodes);
        let timestamp = now_ms.saturating_add_signed(self.skew_ms);
        let (kind, write) = if roll < 85 {
            self.writes += 1;
            let value = format!("c{index}w{}", self.writes);
            let mut bytes = value.clone().into_bytes();
            if faults.contains(&Fault::LargeValues) && rng.chance(50) {
                // Padding after the name; values_of reads the name only.
                bytes.resize(rng.range(1024, 3072) as usize, PAD);
            }
            (OpKind::Put(value), Write::put(bytes, context, timestamp))
        } else {
            (OpKind::Delete, Write::delete(context, timestamp))
        };
        // Clients name their writes, as the smart client does.
        let write = write.with_id(WriteId((u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())).max(1)));
        let op = Op { key: key.clone(), kind, seen, status: Status::Pending, read: None };
        let request = Request::CoordinatePut { store: key.0, key: key.1, write, minter: None };
        self.sent = Some((request.clone(), RETRIES));
        (op, request)
    }

    fn choose_context(
        &self,
        rng: &mut Rng,
        key: &KeyId,
        reads: &[Read],
        faults: &BTreeSet<Fault>,
        nodes: &[NodeId],
    ) -> (CausalContext, BTreeSet<String>) {
        if faults.contains(&Fault::ForeignContext) && rng.chance(10) {
            // The context of another key: the writer saw nothing of this one.
            if let Some(read) = self.reads.iter().filter(|(k, _)| *k != key).flat_map(|(_, r)| r.last()).next() {
                return (self.forge(key, &read.context, true), BTreeSet::new());
            }
        }
        if faults.contains(&Fault::ForgedContext) && rng.chance(5) {
            // A context claiming u64::MAX writes by a node, with a seal made up: nodes must refuse
            // it (it used to wrap the node's counter and make its later writes vanish).
            let mut vector = VersionVector::new();
            vector.add(&Dot { actor: rng.pick(nodes).clone(), counter: u64::MAX });
            let mut seal = [0u8; 16];
            seal[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
            seal[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
            let part = ContextPart::new(vector, rng.next_u64(), Seal(seal));
            return (self.forge(key, &CausalContext::from_parts([part]), true), BTreeSet::new());
        }
        let Some(latest) = reads.last() else { return (CausalContext::empty(), BTreeSet::new()) };
        let (context, seen) = match rng.below(100) {
            0..60 => (latest.context.clone(), latest.values.clone()),
            60..75 => {
                let old = rng.pick(reads);
                (old.context.clone(), old.values.clone())
            }
            75..90 => {
                let other = rng.pick(reads);
                let mut context = latest.context.clone();
                context.merge(&other.context);
                (context, latest.values.union(&other.values).cloned().collect())
            }
            _ => (CausalContext::empty(), BTreeSet::new()),
        };
        (self.forge(key, &context, false), seen)
    }

    /// `context` (of another key, or made up, when `foreign`) as the client sends it: unchanged
    /// unless a mechanism is switched off (see [`Tamper`]).
    fn forge(&self, key: &KeyId, context: &CausalContext, foreign: bool) -> CausalContext {
        let t = &self.tamper;
        match &t.secret {
            Some(secret) if (foreign && t.foreign) || t.timestamps => {
                let latest = if t.timestamps { 0 } else { context.latest() };
                CausalContext::from_parts([secret.seal_part(&key.0, &key.1, context.vector(), latest)])
            }
            _ => context.clone(),
        }
    }

    /// Records the answer to `op` (`None`: the node went away before answering).
    /// Takes the answer to the client's request; returns a retry to send instead of finishing,
    /// when a write failed naming the node that applied it (or may have): the same write (same
    /// id) goes again, naming that node, as the smart client does.
    pub(crate) fn answer(&mut self, op: &mut Op, answer: Option<Response>) -> Option<Request> {
        if let (Some(Response::Error(e)), Some((Request::CoordinatePut { store, key, write, .. }, left))) =
            (&answer, &self.sent)
            && *left > 0
            && let Some(minter) = &e.minter
        {
            let retry = Request::CoordinatePut {
                store: store.clone(),
                key: key.clone(),
                write: write.clone().resend(),
                minter: Some(minter.clone()),
            };
            self.sent = Some((retry.clone(), left - 1));
            return Some(retry);
        }
        self.sent = None;
        self.pending = None;
        op.status = match answer {
            Some(Response::State(Some(state))) => {
                if op.kind == OpKind::Get {
                    self.remember(&op.key, &state);
                    op.read = Some(state.siblings);
                }
                Status::Ok
            }
            Some(Response::Ack) if matches!(op.kind, OpKind::Create(_)) => Status::Ok,
            Some(Response::Error(e)) => Status::Failed(format!("{:?}: {}", e.kind, e.message)),
            Some(other) => Status::Failed(format!("unexpected answer {other:?}")),
            None => Status::Failed("no answer: the node went away".into()),
        };
        None
    }

    fn remember(&mut self, key: &KeyId, state: &SealedState) {
        self.remember_read(key, state.context(), &state.siblings);
    }

    /// Records a read of `key`: what it showed and its context, for later writes.
    pub(crate) fn remember_read(&mut self, key: &KeyId, context: CausalContext, siblings: &Siblings) {
        let reads = self.reads.entry(key.clone()).or_default();
        reads.push(Read { context, values: values_of(siblings) });
        if reads.len() > 4 {
            reads.remove(0);
        }
    }
}

/// What pads large values after their name.
const PAD: u8 = b'+';

/// The live values of a state, by name.
pub(crate) fn values_of(state: &Siblings) -> BTreeSet<String> {
    state.values().map(value_name).collect()
}

/// A value's name: the text before any padding.
pub(crate) fn value_name(value: &Value) -> String {
    let name = value.as_ref().split(|b| *b == PAD).next().unwrap_or_default();
    String::from_utf8_lossy(name).into_owned()
}
