//! What every coordinator shares: the actions it emits, the interface its driver uses, and the
//! mechanics of queueing actions, replying once and finishing.

use alloc::collections::VecDeque;
use core::time::Duration;

use super::ReplicaFailure;
use crate::identity::NodeId;
use crate::version::Siblings;

/// What a coordinator asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<R, O> {
    /// Send `request` to replica `to`, and feed its answer (or why there is none) to
    /// [`Coordinator::handle_reply`].
    Send {
        /// The replica or fallback.
        to: NodeId,
        /// What to ask it.
        request: R,
    },
    /// Return this to the caller. Emitted exactly once.
    Reply(O),
    /// Write the reconciled state back to a replica that answered with less (read repair); nobody
    /// waits for the answer. Emitted after the reply.
    Repair {
        /// The stale replica.
        to: NodeId,
        /// The state to merge into it.
        siblings: Siblings,
    },
    /// Ask `to` (a node that holds the write: the put's minter) to keep a hint of `siblings` for
    /// `primary`, whose replica request failed with no fallback left to stand in for it, so the
    /// write is handed to `primary` once it is back (a last-resort hint). Never counts toward W;
    /// nobody waits for the answer. Only a put emits it.
    Hint {
        /// The node to keep the hint.
        to: NodeId,
        /// The primary the write is for.
        primary: NodeId,
        /// The minted state.
        siblings: Siblings,
    },
}

/// A replica read of the key (the request of a get's [`Action::Send`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read;

/// The interface every coordinator offers its driver (see the [module docs](super)): the node,
/// the smart client and the simulation drive every coordinator through it.
pub trait Coordinator {
    /// What an [`Action::Send`] asks a replica.
    type Request;
    /// A replica's answer, as the coordinator takes it.
    type Answer;
    /// What the caller gets.
    type Outcome;

    /// The next action to perform. Call until `None` after building and after each `handle_*`.
    fn poll_action(&mut self) -> Option<Action<Self::Request, Self::Outcome>>;

    /// Feeds the answer of replica `from`, or why there is none. Answers from nodes not asked,
    /// or asked and already timed out, are ignored.
    fn handle_reply(&mut self, now: Duration, from: &NodeId, answer: Result<Self::Answer, ReplicaFailure>);

    /// Expires every request whose deadline is at or before `now`.
    fn handle_timeout(&mut self, now: Duration);

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if at all.
    fn poll_timeout(&self) -> Option<Duration>;

    /// Whether the machine has nothing left to do.
    fn is_finished(&self) -> bool;
}

/// The mechanics every coordinator shares: actions queued in order, the one reply, and the end
/// (finished once done and every action is taken).
#[derive(Clone, Debug)]
pub(crate) struct Shell<R, O> {
    actions: VecDeque<Action<R, O>>,
    replied: bool,
    done: bool,
}

impl<R, O> Shell<R, O> {
    pub(crate) fn new() -> Shell<R, O> {
        Shell { actions: VecDeque::new(), replied: false, done: false }
    }

    /// Queues a request to `to`.
    pub(crate) fn send(&mut self, to: NodeId, request: R) {
        self.actions.push_back(Action::Send { to, request });
    }

    /// Queues a read repair of `to`.
    pub(crate) fn repair(&mut self, to: NodeId, siblings: Siblings) {
        self.actions.push_back(Action::Repair { to, siblings });
    }

    /// Queues a last-resort hint kept by `to` for `primary`.
    pub(crate) fn hint(&mut self, to: NodeId, primary: NodeId, siblings: Siblings) {
        self.actions.push_back(Action::Hint { to, primary, siblings });
    }

    /// Queues the reply; later replies are dropped, so the caller hears exactly once.
    pub(crate) fn reply(&mut self, outcome: O) {
        if !core::mem::replace(&mut self.replied, true) {
            self.actions.push_back(Action::Reply(outcome));
        }
    }

    /// Whether the reply is queued (or taken).
    pub(crate) fn has_replied(&self) -> bool {
        self.replied
    }

    /// Nothing more will be queued: answers and timeouts change nothing from now on.
    pub(crate) fn finish(&mut self) {
        self.done = true;
    }

    /// Whether [`finish`](Self::finish) was called.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    pub(crate) fn poll(&mut self) -> Option<Action<R, O>> {
        self.actions.pop_front()
    }

    /// Done, and every action taken.
    pub(crate) fn is_finished(&self) -> bool {
        self.done && self.actions.is_empty()
    }
}
