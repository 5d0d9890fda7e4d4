//! The node's **committer**: the thread that makes every write the machine asks for (records,
//! hints, removals) durable.
//!
//! The committer gathers the writes that wait for it into one batch and writes the batch with
//! one [`Engine::apply`]: one journal write and, under `SyncPolicy::Always`, one fsync for all
//! of them (group commit). While it syncs, the next writes queue up and go together in the next
//! batch, so under load a sync serves many writes and no write waits on a thread of its own.
//! The driver hands over everything one of its steps emitted at once (one message, one
//! wake-up of the thread), and the committer reports a whole batch at once (one input for the
//! driver). Each write is answered only once its batch is durable; a batch that fails fails
//! every write in it (none is answered done). Removals raise the counter floor first, in the
//! same batch: one floor write for the highest floor any removal of the batch asked for.
//!
//! Loads do not come here: the driver runs them itself ([`super::driver`]), since a load from
//! the engine's memory tables or block cache costs less than the two thread hand-offs it would
//! take. Scans, view saves and the rare whole-store steps run on tokio's blocking pool.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use quickv_core::identity::NodeId;
use quickv_core::node::{Hint, IoError, IoId, IoOutput};
use quickv_core::store::StoreName;
use quickv_core::version::KeyRecord;
use tokio::sync::mpsc::UnboundedSender;

use super::driver::Input;
use super::steps;
use crate::storage::{Change, Engine};

/// The most writes one batch takes: bounds the batch's memory and how long its first write
/// waits for the others to be encoded.
const MAX_BATCH: usize = 512;

/// A write for the committer.
#[derive(Debug)]
pub(crate) enum Write {
    /// Store `state` as the record of `key`, with `hint` if the node holds it for another.
    Store { store: StoreName, key: Vec<u8>, state: KeyRecord, hint: Option<Hint> },
    /// Remove the record of `key`, saving `counter_floor` first.
    Remove { store: StoreName, key: Vec<u8>, counter_floor: u64 },
    /// Remove a hint.
    DropHint(Hint),
}

/// The sender to the committer and the writes waiting to be handed over; dropping it ends the
/// thread once it is done.
#[derive(Debug)]
pub(crate) struct Committer {
    writes: Sender<Vec<(IoId, Write)>>,
    queued: Vec<(IoId, Write)>,
}

impl Committer {
    /// Starts the committer of node `node`, writing to `engine` in `incarnation` and reporting
    /// each write's result on `report`.
    pub(crate) fn start(
        node: &NodeId,
        engine: Arc<dyn Engine>,
        incarnation: u64,
        report: UnboundedSender<Input>,
    ) -> std::io::Result<Committer> {
        let (writes, pending) = channel();
        std::thread::Builder::new()
            .name(format!("{node}-committer"))
            .spawn(move || commit(&*engine, incarnation, pending, report))?;
        Ok(Committer { writes, queued: Vec::new() })
    }

    /// Queues a write, until the next [`Committer::hand_over`].
    pub(crate) fn write(&mut self, id: IoId, write: Write) {
        self.queued.push((id, write));
    }

    /// Hands the queued writes to the thread, in one message. The thread writes everything
    /// handed over, and ends once this sender is dropped and nothing is left.
    pub(crate) fn hand_over(&mut self) {
        if !self.queued.is_empty() {
            let _ = self.writes.send(std::mem::take(&mut self.queued));
        }
    }
}

/// The committer's loop: a batch of whatever waits (about [`MAX_BATCH`] writes at most), one
/// write, all answered at once.
fn commit(
    engine: &dyn Engine,
    incarnation: u64,
    pending: Receiver<Vec<(IoId, Write)>>,
    report: UnboundedSender<Input>,
) {
    while let Ok(mut batch) = pending.recv() {
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let (ids, result) = commit_batch(engine, incarnation, batch);
        let answers = ids.into_iter().map(|id| (id, result.clone())).collect();
        // Once the driver is gone (the node is stopping) nobody hears the answers, but what it
        // handed over is still written: a mint it coordinated may have gone to other replicas
        // before its store here finished (`quickv_core::node`'s early release), and a clean
        // stop, which keeps the incarnation, waits for this thread to end.
        let _ = report.send(Input::Ios(answers));
    }
}

/// Writes `batch` as one; returns the ids it answers and the answer.
fn commit_batch(
    engine: &dyn Engine,
    incarnation: u64,
    batch: Vec<(IoId, Write)>,
) -> (Vec<IoId>, Result<IoOutput, IoError>) {
    let mut changes: Vec<Change> = Vec::with_capacity(batch.len() + 1);
    let mut floor = 0u64;
    let ids = batch.iter().map(|(id, _)| *id).collect();
    for (_, write) in batch {
        match write {
            Write::Store { store, key, state, hint } => {
                changes.extend(steps::store_changes(&store, &key, &state, hint.as_ref()))
            }
            Write::Remove { store, key, counter_floor } => {
                floor = floor.max(counter_floor);
                changes.push(steps::remove_change(&store, &key));
            }
            Write::DropHint(hint) => changes.push(steps::drop_hint_change(&hint)),
        }
    }
    let saved_floor = if floor > 0 { steps::floor_change(engine, incarnation, floor) } else { Ok(None) };
    let result = saved_floor
        .and_then(|saved| {
            // The floor goes first: a removal is never durable without it.
            changes.splice(0..0, saved);
            engine.apply(&changes)
        })
        .map(|()| IoOutput::Done)
        .map_err(steps::failed);
    (ids, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;
    use quickv_core::store::ConflictPolicy;
    use quickv_core::version::{CausalContext, Write as KeyWrite, WriteId};

    fn record(value: &[u8]) -> KeyRecord {
        let mut state = KeyRecord::default();
        let write = KeyWrite::put(value.to_vec(), CausalContext::empty(), 1).with_id(WriteId(9));
        state.apply(&NodeId::new("a").expect("a valid id"), &write, ConflictPolicy::Siblings).expect("applies");
        state
    }

    /// A batch of stores, a hint and removals is one write: every record and the hint are
    /// there after it, removed records are gone, and the counter floor saved is the highest any
    /// removal asked for (never lowered by a later batch).
    #[test]
    fn a_batch_writes_everything_and_saves_the_highest_floor() {
        let engine = MemoryEngine::new();
        let s = StoreName::default_store();
        let hint = Hint {
            target: NodeId::new("n2").expect("id"),
            store: s.clone(),
            key: b"h".to_vec(),
            created_ms: 5,
            bytes: 10,
        };
        let store = |key: &[u8], hint: Option<Hint>| Write::Store {
            store: s.clone(),
            key: key.to_vec(),
            state: record(key),
            hint,
        };
        let remove = |key: &[u8], counter_floor| Write::Remove { store: s.clone(), key: key.to_vec(), counter_floor };
        let (ids, result) =
            commit_batch(&engine, 3, vec![(IoId(1), store(b"a", None)), (IoId(2), store(b"h", Some(hint.clone())))]);
        assert_eq!((ids, result), (vec![IoId(1), IoId(2)], Ok(IoOutput::Done)));
        let (_, result) = commit_batch(
            &engine,
            3,
            vec![(IoId(3), remove(b"a", 40)), (IoId(4), remove(b"h", 17)), (IoId(5), Write::DropHint(hint))],
        );
        assert_eq!(result, Ok(IoOutput::Done));
        assert_eq!(steps::load(&engine, &s, b"a"), Ok(IoOutput::Loaded(None)));
        assert_eq!(steps::load(&engine, &s, b"h"), Ok(IoOutput::Loaded(None)));
        assert_eq!(steps::load_hints(&engine), Ok(IoOutput::Hints(vec![])));
        assert_eq!(steps::counter_floor(&engine, 3).expect("readable"), 40);
        let (_, result) = commit_batch(&engine, 3, vec![(IoId(6), store(b"b", None)), (IoId(7), remove(b"b", 12))]);
        assert_eq!(result, Ok(IoOutput::Done));
        assert_eq!(steps::counter_floor(&engine, 3).expect("readable"), 40, "the floor never goes down");
    }

    /// A batch that cannot be written answers every write in it with the failure.
    #[test]
    fn a_failed_batch_fails_every_write_in_it() {
        let engine = MemoryEngine::new();
        let bad = StoreName::default_store();
        // A store whose floor record is damaged: the floor cannot be read, so the batch with a
        // removal in it is not written.
        engine.put(steps::NODE_SPACE, b"counter_floor", &[1, 2]).expect("written");
        let batch = vec![
            (IoId(1), Write::Store { store: bad.clone(), key: b"k".to_vec(), state: record(b"k"), hint: None }),
            (IoId(2), Write::Remove { store: bad.clone(), key: b"j".to_vec(), counter_floor: 9 }),
        ];
        let (ids, result) = commit_batch(&engine, 3, batch);
        assert_eq!(ids, vec![IoId(1), IoId(2)]);
        assert!(result.is_err(), "{result:?}");
        assert_eq!(steps::load(&engine, &bad, b"k"), Ok(IoOutput::Loaded(None)), "nothing of the batch was written");
    }
}
