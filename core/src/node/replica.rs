//! Replica steps: what a node does with the keys it holds, as storage I/O one key at a time.
//!
//! - **read** loads the stored state of a key;
//! - **mint** loads the state, applies the caller's write with this node as the actor (minting
//!   the write's dot), stores the result, then answers with it (a put this node coordinates
//!   gets the minted state as soon as the store starts, see [`Node::release_mint`]);
//! - **merge** loads the state, folds another replica's state in and stores the result if it
//!   changed;
//! - **held** loads the stored state and answers it unsealed, with whether the node holds a
//!   hint of the key (a tombstone collector's check, see [`super::tombstones`]);
//! - **remove** loads the state and removes the record if it is still the one expected and the
//!   node holds no hint of the key (a collected tombstone, a fallback's copy handed back),
//!   raising the node's counter floor with it (see [`super::tombstones`]).
//!
//! Steps on one key run one after another, in arrival order: the next step loads only once the
//! previous one's store has finished, so a read never sees a state that is not yet durable and
//! two writes to a key never lose each other. Steps on different keys run concurrently.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::refused_mints::MintAsked;
use super::{Event, Hint, Io, IoError, IoOutput, IoOwner, Node, ReplicaCall};
use crate::identity::{CertificateDigest, NodeId};
use crate::store::{ConflictPolicy, StoreConfig, StoreName};
use crate::token::Token;
use crate::version::{KeyRecord, SealedState, Siblings, Write};
use crate::wire::{ErrorKind, ErrorReply, Response};

/// What one replica step does.
#[derive(Clone, Debug)]
pub(super) enum ReplicaStep {
    Read,
    Mint(Write),
    Merge(Siblings),
    /// Answer the stored state as it is, and whether a hint of the key is held.
    Held,
    /// Remove the record if it is `expect` and no hint of the key is held; unless `primary`,
    /// only where this node is not a primary of the key.
    Remove {
        expect: Siblings,
        primary: bool,
    },
    /// Remove the record if it is damaged, no hint of the key is held and this node is no
    /// replica of the key (see [`Node::record_damaged`]).
    DropDamaged,
    /// A mint routed with a ring older than this node's: answered `stale` (`StaleRing`) unless
    /// the write is applied here already (a copy of the request, delivered twice by the
    /// network, was minted under the older ring), when the state is the answer: a refusal
    /// would tell the coordinator the write was not applied, and another replica would mint
    /// it again (found by the simulation, seed 5576).
    StaleMint {
        write: crate::version::WriteId,
        stale: ErrorReply,
    },
}

/// Where a replica step's answer goes.
#[derive(Clone, Debug)]
pub(super) enum Completion {
    /// To the caller, on its stream; `peer` is the calling node's certificate, if a node.
    Reply { stream: u64, id: u64, peer: Option<CertificateDigest> },
    /// To a coordination this node runs (it is itself one of the replicas).
    Coordination { coordination: u64, call: ReplicaCall },
    /// Nowhere (a read repair of this node's own copy).
    Nothing,
    /// To a handoff: the read of a hinted key, to hand to `target` (see [`super::handoff`]).
    Handoff { target: NodeId, generation: u64 },
}

#[derive(Clone, Debug)]
struct Pending {
    config: StoreConfig,
    step: ReplicaStep,
    done: Completion,
    /// The primary this node holds the write for, when it is a fallback.
    hint_for: Option<NodeId>,
    /// The step's number, in the order steps were taken (see [`Node::writes_taken_before`]).
    seq: u64,
}

impl Pending {
    /// The mint request a peer sent, if this step is one.
    fn mint_asked(&self) -> Option<MintAsked> {
        match (&self.step, &self.done) {
            (ReplicaStep::Mint(write), Completion::Reply { id, peer: Some(peer), .. }) => {
                Some(MintAsked { peer: *peer, id: *id, write: write.id })
            }
            _ => None,
        }
    }
}

/// The steps waiting on one key; the first is in flight.
#[derive(Debug, Default)]
pub(super) struct KeyQueue {
    steps: VecDeque<Pending>,
    /// The record to store, once the head step has loaded and changed it, with its hint and
    /// the tree digest of the state it replaces.
    storing: Option<(KeyRecord, Option<Hint>, Option<u64>)>,
    /// Once the head step asked for its record's removal: the tree digest of that record.
    removing: Option<Option<u64>>,
    /// The head step is a mint whose state went to its coordination before the store finished
    /// (see [`Node::release_mint`]).
    released: bool,
}

impl Node {
    /// Queues a replica step on `key`; starts it if the key is idle.
    pub(super) fn enqueue(
        &mut self,
        store: StoreName,
        key: Vec<u8>,
        config: StoreConfig,
        step: ReplicaStep,
        done: Completion,
    ) {
        self.enqueue_hinted(store, key, config, step, done, None);
    }

    /// Queues a replica write this node takes as a fallback for `hint_for` (`None`: as a
    /// replica): the record is stored with a hint (see [`super::handoff`]).
    pub(super) fn enqueue_hinted(
        &mut self,
        store: StoreName,
        key: Vec<u8>,
        config: StoreConfig,
        step: ReplicaStep,
        done: Completion,
        hint_for: Option<NodeId>,
    ) {
        let hint_for = hint_for.filter(|target| *target != self.id);
        let seq = self.next_step;
        self.next_step += 1;
        let queue = self.keys.entry((store.clone(), key.clone())).or_default();
        queue.steps.push_back(Pending { config, step, done, hint_for, seq });
        if queue.steps.len() == 1 {
            self.issue_io(Io::Load { store: store.clone(), key: key.clone() }, IoOwner::Key(store, key));
        }
    }

    /// Whether a replica write taken before step number `seq` is still queued or being stored
    /// (a comparison reading this node's trees would not see it yet).
    pub(super) fn writes_taken_before(&self, seq: u64) -> bool {
        self.keys
            .values()
            .flat_map(|q| q.steps.iter())
            .any(|p| p.seq < seq && matches!(p.step, ReplicaStep::Mint(_) | ReplicaStep::Merge(_)))
    }

    /// The storage step of the head step of `key`'s queue finished.
    pub(super) fn replica_io_done(
        &mut self,
        now: Duration,
        key: (StoreName, Vec<u8>),
        result: Result<IoOutput, IoError>,
    ) {
        let Some(queue) = self.keys.get_mut(&key) else { return };
        let Some(head) = queue.steps.front().cloned() else { return };
        let removing = queue.removing.take();
        let released = core::mem::take(&mut queue.released);
        let answer = match (result, queue.storing.take()) {
            (Err(IoError(reason)), _) => {
                if released {
                    // Other replicas may hold the dot this store was to keep: never minted again.
                    self.damage.mint_lost(&key);
                }
                Some(Err(ErrorReply::new(ErrorKind::Internal, format!("storage failed: {reason}"))))
            }
            // The removal finished: the step is done.
            (Ok(IoOutput::Done), None) if removing.is_some() => {
                self.anti_entropy.trees.update(&key.0, &key.1, removing.flatten(), None);
                self.tombstone_removed(&key);
                match head.step {
                    ReplicaStep::Remove { primary: true, .. } => {
                        self.stats.tombstones_collected += 1;
                        self.events.push_back(Event::TombstoneCollected { store: key.0.clone(), key: key.1.clone() });
                    }
                    _ => self.stats.copies_dropped += 1,
                }
                Some(Ok(Response::Collected(true)))
            }
            (Ok(IoOutput::Done), Some((stored, hint, before))) => {
                if let Some(hint) = hint {
                    self.hint_stored(hint);
                }
                self.tree_update(&key.0, &key.1, before, &stored.siblings);
                self.tombstone_stored(now, &key, &stored.siblings);
                if head.hint_for.is_none() && !self.keeps_copy(&key, &head.config) {
                    // A write planned under the previous ring (a transfer, a comparison, a
                    // rebuild or a repair in flight when the change was committed) landed
                    // after the shed passed: shed it in turn (found by the simulation with
                    // `elastic`, seed 1313). A fallback's write stays, though its hint may
                    // have been dropped (past the byte bound): it may be one of the W copies.
                    self.shed_record(&key.0, key.1.clone(), stored.clone());
                }
                Some(Ok(match head.step {
                    ReplicaStep::Mint(_) => Response::State(Some(self.seal(&key, stored.siblings))),
                    _ => Response::Ack,
                }))
            }
            (Ok(IoOutput::Damaged(reason)), None) => self.damaged_loaded(now, &key, &head, reason),
            (Ok(IoOutput::Loaded(current)), None) => {
                self.damage.intact(&key);
                // A read stores nothing: only a write needs the digest its tree update takes out.
                let writes =
                    !matches!(head.step, ReplicaStep::Read | ReplicaStep::Held | ReplicaStep::StaleMint { .. });
                let before =
                    current.as_ref().filter(|_| writes).map(|r| super::anti_entropy::item(&key.1, &r.siblings));
                self.loaded(now, &key, &head, current, before)
            }
            // A result that does not match the step in flight: treat as a storage failure.
            _ => Some(Err(ErrorReply::new(ErrorKind::Internal, "storage answered out of turn"))),
        };
        if let Some(answer) = answer {
            if let (Some(asked), Err(reply)) = (head.mint_asked(), &answer) {
                self.refused_mints.remember(asked, reply);
            }
            self.finish_step(now, key, head.done, answer);
        }
    }

    /// The head step found the key's record damaged: a replica write replaces it (the repair),
    /// every other step fails here and the key's other replicas serve it.
    fn damaged_loaded(
        &mut self,
        now: Duration,
        key: &(StoreName, Vec<u8>),
        head: &Pending,
        reason: String,
    ) -> Option<Result<Response, ErrorReply>> {
        if matches!(head.step, ReplicaStep::DropDamaged) {
            return self.drop_damaged(key, &head.config);
        }
        self.record_damaged(now, key, reason);
        match &head.step {
            ReplicaStep::Merge(_) => {
                self.stats.damaged_repaired += 1;
                self.damage.intact(key);
                // As if nothing were stored: the incoming state replaces the record (its tree
                // never held it: scans skip damaged records).
                self.loaded(now, key, head, None, None)
            }
            ReplicaStep::Mint(_) => Some(Err(self.no_mint_of_damaged())),
            // Whether a copy of it was minted here is lost with the record.
            ReplicaStep::StaleMint { .. } => Some(Err(ErrorReply::new(
                ErrorKind::Indeterminate,
                "routed with an older ring, and this node's record of the key is damaged: it cannot tell whether                  it applied the write",
            ))),
            _ => Some(Err(ErrorReply::new(
                ErrorKind::Internal,
                "this node's record of the key is damaged; the key's other replicas serve it and rebuild it here",
            ))),
        }
    }

    /// Removes the damaged record of a key this node lost, unless it holds a hint of the key or
    /// is a replica of it again. What the record held may have been minted here, but this
    /// incarnation mints no write of the key again (see [`super::damage`]).
    fn drop_damaged(
        &mut self,
        key: &(StoreName, Vec<u8>),
        config: &StoreConfig,
    ) -> Option<Result<Response, ErrorReply>> {
        if self.keeps_copy(key, config) {
            return Some(Ok(Response::Collected(false)));
        }
        self.damage.intact(key);
        // The tree never held it (scans skip damaged records, and a load that finds one
        // disturbs its leaf).
        self.remove_record(key, None, self.counter_floor);
        None
    }

    /// Starts removing the head step's record of `key` (whose tree digest is `before`).
    fn remove_record(&mut self, key: &(StoreName, Vec<u8>), before: Option<u64>, counter_floor: u64) {
        if let Some(queue) = self.keys.get_mut(key) {
            queue.removing = Some(before);
        }
        let io = Io::Remove { store: key.0.clone(), key: key.1.clone(), counter_floor };
        self.issue_io(io, IoOwner::Key(key.0.clone(), key.1.clone()));
    }

    pub(super) fn no_mint_of_damaged(&self) -> ErrorReply {
        ErrorReply::new(
            ErrorKind::Unavailable,
            "this node found its record of the key damaged (or failed to store it) and mints no write of it until \
             it restarts in a new incarnation: another replica takes the write",
        )
    }

    /// The head step loaded `current` (whose tree digest is `before`): answers, or stores the
    /// changed record.
    fn loaded(
        &mut self,
        now: Duration,
        key: &(StoreName, Vec<u8>),
        head: &Pending,
        current: Option<KeyRecord>,
        before: Option<u64>,
    ) -> Option<Result<Response, ErrorReply>> {
        // A tombstone the collector tracks follows what storage holds.
        if self.tombstone_tracked(key) {
            match &current {
                Some(record) => self.tombstone_stored(now, key, &record.siblings),
                None => self.tombstone_removed(key),
            }
        }
        match self.apply(now, key, head, current) {
            Ok(Step::Answer(body)) => Some(Ok(body)),
            Ok(Step::Remove(record)) => {
                // Dots this node minted for the key stay taken after the record is gone.
                let floor = self.counter_floor.max(record.siblings.history().counter(&self.actor));
                self.counter_floor = floor;
                self.remove_record(key, before, floor);
                None
            }
            Ok(Step::Store(state)) => {
                self.damage.rewritten(&key.0, Token::of(&key.1));
                let bytes = (key.1.len() + state.siblings.size_bound()) as u64;
                let hint = head.hint_for.as_ref().and_then(|target| self.new_hint(now, target, key, bytes));
                let io =
                    Io::Store { store: key.0.clone(), key: key.1.clone(), state: state.clone(), hint: hint.clone() };
                let minted = matches!(head.step, ReplicaStep::Mint(_)).then(|| state.siblings.clone());
                if let Some(queue) = self.keys.get_mut(key) {
                    queue.storing = Some((state, hint, before));
                }
                self.issue_io(io, IoOwner::Key(key.0.clone(), key.1.clone()));
                if let (Some(siblings), Completion::Coordination { coordination, .. }) = (minted, &head.done) {
                    self.release_mint(now, key, *coordination, siblings);
                }
                None
            }
            Err(reply) => Some(Err(reply)),
        }
    }

    /// What the head step does with the state it loaded.
    fn apply(
        &mut self,
        now: Duration,
        key: &(StoreName, Vec<u8>),
        head: &Pending,
        current: Option<KeyRecord>,
    ) -> Result<Step, ErrorReply> {
        match &head.step {
            ReplicaStep::Read => Ok(Step::Answer(Response::State(current.map(|r| self.seal(key, r.siblings))))),
            ReplicaStep::Held => {
                let hinted = self.holds_any_hint(key);
                Ok(Step::Answer(Response::Held { siblings: current.map(|r| r.siblings), hinted }))
            }
            // A copy of a mint this node refused (it waited on the key behind the original) gets
            // the same answer, though the key may have changed since (see [`super::refused_mints`]).
            ReplicaStep::Mint(_) if let Some(reply) = head.mint_asked().and_then(|a| self.refused_mints.recall(&a)) => {
                Err(reply)
            }
            // Its record may have held dots this node minted: minting the key again could reuse
            // one (see `Event::DamagedRecord`).
            ReplicaStep::Mint(_) if self.damage.found(key) => Err(self.no_mint_of_damaged()),
            ReplicaStep::Mint(write) => {
                // Only a context a node of this cluster sealed for this very key is taken.
                if let Err(e) = self.config.context_key.check(&key.0, &key.1, &write.context) {
                    self.stats.refused += 1;
                    return Err(ErrorReply::new(ErrorKind::InvalidContext, format!("{e}")));
                }
                // Under last-writer-wins a timestamp far ahead would win over every later write:
                // the key would be pinned. Refused, and nothing changes.
                if head.config.conflicts() == ConflictPolicy::Lww {
                    let clock = self.wall_clock_ms(now);
                    let skew = self.config.max_clock_skew.as_millis() as u64;
                    if write.timestamp > clock.saturating_add(skew) {
                        self.stats.refused += 1;
                        return Err(ErrorReply::new(
                            ErrorKind::Malformed,
                            format!(
                                "the write's timestamp is {} ms ahead of this node's clock; at most {skew} ms \
                                 (max_clock_skew) is taken: check the caller's clock",
                                write.timestamp - clock
                            ),
                        ));
                    }
                }
                let mut state = current.unwrap_or_default();
                self.check_resent(&state, write)?;
                // A write applied here before (a retry) is answered with the state as it is:
                // the key may have grown since by other writes, but this one adds nothing.
                let applied_before = state.applied(write.id).is_some();
                state.apply_above(&self.actor, write, head.config.conflicts(), self.counter_floor).map_err(|e| {
                    self.stats.refused += 1;
                    ErrorReply::new(ErrorKind::InvalidContext, format!("invalid causal context: {e}"))
                })?;
                // Every key stays readable: a write that would make its state larger than a
                // frame carries is refused, and nothing changes (the state is not stored).
                // (Refusing a retry of a write applied before would tell the caller that nothing
                // changed, and it would have another node mint the write: found by the
                // simulation, seed 4763.)
                let (size, limit) = (state.siblings.size_bound(), self.config.limits.max_state());
                if size > limit && !applied_before {
                    self.stats.refused += 1;
                    return Err(ErrorReply::new(
                        ErrorKind::TooLarge,
                        format!(
                            "with this write the key would hold {size} bytes of versions, over the {limit} bytes \
                             an answer can carry (max_value + room for versions): read the key and write with \
                             its context to replace its siblings"
                        ),
                    ));
                }
                Ok(Step::Store(state))
            }
            ReplicaStep::Merge(incoming) => {
                let mut state = current.clone().unwrap_or_default();
                state.merge(incoming, head.config.conflicts());
                // A hinted write this node already holds still needs its hint stored.
                let unhinted = head.hint_for.as_ref().is_some_and(|target| !self.holds_hint(target, key));
                let unchanged = current.as_ref() == Some(&state) && !unhinted;
                if unchanged || (current.is_none() && state.siblings == Siblings::new()) {
                    Ok(Step::Answer(Response::Ack))
                } else {
                    Ok(Step::Store(state))
                }
            }
            ReplicaStep::Remove { expect, primary } => Ok(match current {
                None => Step::Answer(Response::Collected(true)),
                Some(record)
                    if record.siblings == *expect
                        && !self.holds_any_hint(key)
                        && (*primary || !self.is_replica_or_pending_owner(key, &head.config)) =>
                {
                    Step::Remove(record)
                }
                Some(_) => Step::Answer(Response::Collected(false)),
            }),
            ReplicaStep::StaleMint { write, stale } => match current {
                Some(record) if record.applied(*write).is_some() => {
                    Ok(Step::Answer(Response::State(Some(self.seal(key, record.siblings)))))
                }
                _ => Err(stale.clone()),
            },
            // Intact after all: the write that replaced it shed it if it is not this node's.
            ReplicaStep::DropDamaged => Ok(Step::Answer(Response::Collected(current.is_none()))),
        }
    }

    /// A resent write this node has no record of, at a node that lost records in a crash since
    /// the write was made, may have been minted here before and lost with them: minting it again
    /// would make a second version of one write. Answered indeterminate instead; the caller reads
    /// the key to find out. (Writes stamped after this start plus the clock skew nodes allow were
    /// made after the loss, so the node's record of them is complete.)
    fn check_resent(&self, record: &KeyRecord, write: &Write) -> Result<(), ErrorReply> {
        let made_before_loss =
            write.timestamp < self.started_ms.saturating_add(self.config.max_clock_skew.as_millis() as u64);
        if write.resent && self.config.lost_records && made_before_loss && record.applied(write.id).is_none() {
            return Err(ErrorReply::new(
                ErrorKind::Indeterminate,
                "this node restarted after losing writes it had not synced, and has no record of this write: it \
                 cannot tell whether it applied it before; read the key to find out",
            ));
        }
        Ok(())
    }

    /// `state` of `key` as this node answers it: sealed, so a caller's context made of it is
    /// taken by any node of the cluster for this key only.
    fn seal(&self, key: &(StoreName, Vec<u8>), state: Siblings) -> SealedState {
        self.config.context_key.seal(&key.0, &key.1, state)
    }

    /// The head step of `key` minted a write that a coordination of this node (`coordination`)
    /// asked for, and its store is under way: the coordination gets the minted state now, so
    /// the other replicas store it while this node syncs, and this node's acknowledgement
    /// follows once the store finishes. A put then waits for one sync after another node's,
    /// not for two in a row. This may go before the store is durable because no dot minted
    /// here is ever minted again, whatever becomes of the store: a start that may have lost a
    /// write begins a new incarnation (see [`NodeConfig::incarnation`](super::NodeConfig::incarnation)),
    /// and a store that fails stops this incarnation from minting the key again
    /// ([`super::damage`]). Mints a peer asked for are answered only once durable.
    fn release_mint(&mut self, now: Duration, key: &(StoreName, Vec<u8>), coordination: u64, siblings: Siblings) {
        if let Some(queue) = self.keys.get_mut(key) {
            queue.released = true;
        }
        self.stats.mints_released += 1;
        let state = self.seal(key, siblings);
        self.minted_here(now, coordination, state);
    }

    /// Delivers the head step's answer and starts the next step of the key, if any.
    fn finish_step(
        &mut self,
        now: Duration,
        key: (StoreName, Vec<u8>),
        done: Completion,
        answer: Result<Response, ErrorReply>,
    ) {
        let body = answer.unwrap_or_else(Response::Error);
        match done {
            Completion::Reply { stream, id, .. } => self.reply(stream, id, body),
            Completion::Coordination { coordination, call } => {
                let me = self.id.clone();
                self.replica_answer(now, coordination, &me, &call, Ok(body));
            }
            Completion::Nothing => {}
            Completion::Handoff { target, generation } => self.handoff_read(now, key.clone(), target, generation, body),
        }
        let Some(queue) = self.keys.get_mut(&key) else { return };
        queue.steps.pop_front();
        if queue.steps.is_empty() {
            self.keys.remove(&key);
        } else {
            let io = Io::Load { store: key.0.clone(), key: key.1.clone() };
            self.issue_io(io, IoOwner::Key(key.0.clone(), key.1.clone()));
        }
    }
}

enum Step {
    Answer(Response),
    Store(KeyRecord),
    Remove(KeyRecord),
}
