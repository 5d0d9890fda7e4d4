//! One request, one answer: the mints this node answered with an error saying it did not apply
//! the write, remembered so that a copy of the same request arriving later gets the same error
//! instead of being applied.
//!
//! A coordinator whose mint a node refused or could not serve (a store it did not know yet, a
//! state that would grow too large, a damaged record, a storage failure) takes that node as
//! certainly not holding the write and asks the next node to mint it. Whether the node *could*
//! apply the write changes with time (the store becomes known, a merge shrinks the key's
//! state), so a copy of the request that arrives after the answer, duplicated by the network or
//! queued behind the original on the key, would mint a second version of one write at the
//! second node. The simulation found it (seed 9384: a duplicated mint refused as too large was
//! applied 30 ms later, after hints shrank the key, while the coordinator had moved on).
//!
//! A copy is the same request from the same peer: same sender certificate, same request id,
//! same write id. A new attempt (a retry, another coordination) is a new request and is taken
//! on its merits. The memory is bounded by count (copies come soon after the original); a node
//! that restarts forgets it, along with the connections its copies could have come on.

use alloc::collections::{BTreeMap, VecDeque};

use crate::identity::CertificateDigest;
use crate::version::WriteId;
use crate::wire::{ErrorKind, ErrorReply};

/// A mint request as its sender named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct MintAsked {
    pub(super) peer: CertificateDigest,
    pub(super) id: u64,
    pub(super) write: WriteId,
}

/// The latest mints answered with an error, by request, and their order (oldest first).
#[derive(Debug, Default)]
pub(super) struct RefusedMints {
    answered: BTreeMap<MintAsked, ErrorReply>,
    order: VecDeque<MintAsked>,
}

impl RefusedMints {
    /// How many answers are remembered.
    pub(super) const REMEMBERED: usize = 1024;

    /// The error an earlier copy of `asked` was answered with.
    pub(super) fn recall(&self, asked: &MintAsked) -> Option<ErrorReply> {
        self.answered.get(asked).cloned()
    }

    /// `asked` was answered with `reply`. An indeterminate answer is not remembered: its
    /// coordinator does not move on (it retries here), so a copy may be taken on its merits.
    pub(super) fn remember(&mut self, asked: MintAsked, reply: &ErrorReply) {
        if reply.kind == ErrorKind::Indeterminate || self.answered.contains_key(&asked) {
            return;
        }
        self.answered.insert(asked, reply.clone());
        self.order.push_back(asked);
        while self.order.len() > Self::REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.answered.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(id: u64) -> MintAsked {
        MintAsked { peer: crate::node::tests::certificate("peer"), id, write: WriteId(7) }
    }

    #[test]
    fn a_copy_is_the_same_peer_request_and_write() {
        let mut refused = RefusedMints::default();
        refused.remember(asked(1), &ErrorReply::new(ErrorKind::TooLarge, "too large"));
        assert_eq!(refused.recall(&asked(1)).map(|r| r.kind), Some(ErrorKind::TooLarge));
        assert!(refused.recall(&asked(2)).is_none(), "another request");
        assert!(refused.recall(&MintAsked { write: WriteId(8), ..asked(1) }).is_none(), "another write");
        let other = MintAsked { peer: crate::node::tests::certificate("other"), ..asked(1) };
        assert!(refused.recall(&other).is_none(), "another peer");
        refused.remember(asked(3), &ErrorReply::new(ErrorKind::Indeterminate, "may have"));
        assert!(refused.recall(&asked(3)).is_none(), "an indeterminate answer is not a refusal");
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut refused = RefusedMints::default();
        let reply = ErrorReply::new(ErrorKind::Unavailable, "busy");
        for id in 0..(RefusedMints::REMEMBERED as u64 + 10) {
            refused.remember(asked(id), &reply);
        }
        assert_eq!(refused.answered.len(), RefusedMints::REMEMBERED);
        assert_eq!(refused.order.len(), RefusedMints::REMEMBERED);
        assert!(refused.recall(&asked(0)).is_none(), "the oldest are forgotten");
        assert!(refused.recall(&asked(RefusedMints::REMEMBERED as u64 + 9)).is_some());
    }
}
