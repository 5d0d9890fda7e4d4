//! The smart client's side of a put: it sends the write, once, to one replica that applies it
//! and replicates it (the value crosses the client's link once), choosing that replica itself.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use super::answers::Handed;
use super::shell::{Action, Coordinator, Shell};
use super::{PutError, ReplicaFailure};
use crate::error::Refusal;
use crate::identity::NodeId;
use crate::ring::PreferenceList;
use crate::store::{QuorumKind, StoreConfig};
use crate::version::{SealedState, Write};

/// What a forwarded put asks its driver to do: send `CoordinatePut { write, minter: Some(to) }`
/// to `to` (which applies the write itself and replicates it to the key's other replicas), or
/// reply with the state after the write.
pub type ForwardAction = Action<Write, Result<SealedState, PutError>>;

/// Hands one put to a replica of the key: the first primary that can be reached (then, for a
/// sloppy store, the fallbacks; nodes the caller holds down after all others), each asked to apply the write itself and replicate it. It moves
/// to the next replica only when the one asked certainly did not apply the write (no connection,
/// or an answer saying so); when the answer is lost, the put ends
/// [`PutError::Indeterminate`] naming that replica, and the retry (built with `pinned`) goes to
/// it alone: the rules of [`PutCoordinator`](super::PutCoordinator), one level up.
#[derive(Clone, Debug)]
pub struct ForwardPut {
    write: Write,
    required: usize,
    quorum: QuorumKind,
    candidates: VecDeque<NodeId>,
    asked: Option<NodeId>,
    refusal: Option<Refusal>,
    only_refusals: bool,
    shell: Shell<Write, Result<SealedState, PutError>>,
}

impl ForwardPut {
    /// Starts a put of `write` (which must carry its id) to the key with `prefs`; with `pinned`,
    /// only that replica is asked (a retry of a put that failed naming it), and the write goes
    /// marked [`resent`](Write::resent). Nodes in `held_down` (the caller's failure detector
    /// holds them down) are asked after every other candidate.
    pub fn new(
        prefs: &PreferenceList,
        config: &StoreConfig,
        held_down: &[NodeId],
        write: Write,
        pinned: Option<NodeId>,
    ) -> ForwardPut {
        let write = if pinned.is_some() { write.resend() } else { write };
        let candidates: VecDeque<NodeId> = match pinned {
            Some(node) => core::iter::once(node).collect(),
            None => {
                let primaries = prefs.primaries().iter().take(config.n());
                let fallbacks = match config.quorum_kind() {
                    QuorumKind::Sloppy => prefs.fallbacks(),
                    QuorumKind::Strict => &[],
                };
                let (down, up): (Vec<&NodeId>, Vec<&NodeId>) =
                    primaries.chain(fallbacks).partition(|n| held_down.contains(n));
                up.into_iter().chain(down).cloned().collect()
            }
        };
        let mut put = ForwardPut {
            write,
            required: config.w(),
            quorum: config.quorum_kind(),
            candidates,
            asked: None,
            refusal: None,
            only_refusals: true,
            shell: Shell::new(),
        };
        put.next();
        put
    }

    /// The write, as each replica is sent it.
    pub fn write(&self) -> &Write {
        &self.write
    }

    fn next(&mut self) {
        match self.candidates.pop_front() {
            Some(to) => {
                self.asked = Some(to.clone());
                self.shell.send(to, self.write.clone());
            }
            None => {
                let error = match self.refusal.take() {
                    Some(reason) if self.only_refusals => PutError::Refused(reason),
                    _ => PutError::Unavailable {
                        required: self.required,
                        acknowledged: 0,
                        minter: None,
                        quorum: self.quorum,
                    },
                };
                self.reply(Err(error));
            }
        }
    }

    fn reply(&mut self, outcome: Result<SealedState, PutError>) {
        self.asked = None;
        self.shell.reply(outcome);
        self.shell.finish();
    }
}

/// The replica asked answers `CoordinatePut` as [`handed_answer`](super::handed_answer) reads
/// it; errors the transport reports map to [`ReplicaFailure::Unavailable`] (never delivered) and
/// [`ReplicaFailure::NoAnswer`]. No deadline of its own: the transport's bounds each call.
impl Coordinator for ForwardPut {
    type Request = Write;
    type Answer = Handed;
    type Outcome = Result<SealedState, PutError>;

    fn poll_action(&mut self) -> Option<ForwardAction> {
        self.shell.poll()
    }

    fn handle_reply(&mut self, _now: Duration, from: &NodeId, answer: Result<Handed, ReplicaFailure>) {
        if self.shell.is_done() || self.asked.as_ref() != Some(from) {
            return;
        }
        let asked = from.clone();
        let required = self.required;
        match answer {
            Ok(Handed::Applied(state)) => self.reply(Ok(state)),
            Ok(Handed::Undecided { minter }) => {
                self.reply(Err(PutError::Indeterminate { minter: minter.unwrap_or(asked) }));
            }
            // Applied at `minter`, but too few replicas acknowledged.
            Ok(Handed::Short { minter }) => {
                let quorum = self.quorum;
                self.reply(Err(PutError::Unavailable { required, acknowledged: 1, minter: Some(minter), quorum }));
            }
            // The write may or may not be there.
            Err(ReplicaFailure::NoAnswer) => self.reply(Err(PutError::Indeterminate { minter: asked })),
            // Not applied there: the next may.
            Err(ReplicaFailure::Unavailable) => {
                self.only_refusals = false;
                self.next();
            }
            // Refused there (a store it does not know yet, a context it cannot take): one failed
            // replica.
            Err(ReplicaFailure::Refused(e)) => {
                self.refusal.get_or_insert(e);
                self.next();
            }
        }
    }

    fn handle_timeout(&mut self, _now: Duration) {}

    fn poll_timeout(&self) -> Option<Duration> {
        None
    }

    fn is_finished(&self) -> bool {
        self.shell.is_finished()
    }
}
