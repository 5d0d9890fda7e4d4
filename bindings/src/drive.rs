//! Runs core's coordinators in the browser, over WebTransport: the same machines the Rust client
//! runs (`quickv_core::coordinator`), driven the way `quickv-client`'s `drive` module drives them.
//!
//! The glue only sends what a machine emits (one native frame per WebTransport stream, to the
//! node the machine names), feeds back the answers and the timeouts, and hands the reply to the
//! caller as soon as the machine emits it; the machine goes on after the reply (replication,
//! read repair) in a task of its own.

use core::cell::{Cell, RefCell};
use core::time::Duration;
use std::rc::Rc;

use futures_util::future::{Either, LocalBoxFuture, select};
use futures_util::stream::{FuturesUnordered, StreamExt};
use quickv_core::coordinator::{Action, Coordinator, ReplicaFailure};
use quickv_core::error::ErrorKind;
use quickv_core::identity::NodeId;
use quickv_core::routing::RoutingTable;
use quickv_core::wire::{self, Message, Request, Response};
use wasm_bindgen_futures::JsFuture;

use crate::io;

/// The path nodes take WebTransport sessions at (`docs/http-api.md`).
pub(crate) const WEBTRANSPORT_PATH: &str = "/v1/webtransport";

/// Sends requests straight to nodes over WebTransport, routed with one view.
pub(crate) struct WebCaller {
    pub(crate) sessions: Rc<io::Sessions>,
    pub(crate) table: Rc<RoutingTable>,
    pub(crate) timeout: Duration,
    pub(crate) next_id: Rc<Cell<u64>>,
    /// A node said the view this request was routed with is stale.
    pub(crate) stale: Cell<bool>,
    /// The nodes asked, in order (what `Client.lastRoute` reports).
    pub(crate) asked: RefCell<std::vec::Vec<NodeId>>,
    /// What the client believes of each node, fed by every answer and failure here.
    pub(crate) liveness: Rc<crate::client::Health>,
}

impl WebCaller {
    /// Sends `body` to node `to` on a stream of its session, and reads the answer. A node that
    /// could not be reached is `Unavailable`; one that was sent the request but gave no answer
    /// `NoAnswer` (it may have acted on it).
    pub(crate) async fn call(&self, to: &NodeId, body: Request) -> Result<Response, ReplicaFailure> {
        let answer = self.exchange(to, body).await;
        self.liveness.heard(to, answer.as_ref().err());
        answer
    }

    async fn exchange(&self, to: &NodeId, body: Request) -> Result<Response, ReplicaFailure> {
        let view = self.table.view();
        let Some(node) = view.membership().node(to) else { return Err(ReplicaFailure::Unavailable) };
        let hashes: std::vec::Vec<std::string::String> =
            node.web.webtransport().iter().map(|h| crate::convert::hex(h.as_bytes())).collect();
        if hashes.is_empty() {
            return Err(ReplicaFailure::Unavailable);
        }
        let url = std::format!("https://{}{WEBTRANSPORT_PATH}", node.address);
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let message = match self.table.ring_version() {
            Some(ring) => Message::Routed { id, ring, body },
            None => Message::Request { id, body },
        };
        self.asked.borrow_mut().push(to.clone());
        let timeout_ms = self.timeout.as_secs_f64() * 1000.0;
        let answer = JsFuture::from(self.sessions.call(&url, hashes, wire::encode(&message), timeout_ms)).await;
        let bytes = match answer {
            Ok(bytes) => crate::convert::frame_bytes(&bytes),
            Err(failure) if crate::convert::failed_to_connect(&failure) => return Err(ReplicaFailure::Unavailable),
            Err(_) => return Err(ReplicaFailure::NoAnswer),
        };
        match wire::decode(&bytes) {
            Ok(Message::Response { id: got, body }) if got == id || got == 0 => {
                if let Response::Error(e) = &body
                    && e.kind == ErrorKind::StaleRing
                {
                    self.stale.set(true);
                }
                Ok(body)
            }
            _ => Err(ReplicaFailure::NoAnswer),
        }
    }
}

/// A request in flight: its destination and the answer, read.
type Call<T> = LocalBoxFuture<'static, (NodeId, Result<T, ReplicaFailure>)>;

/// Runs `machine` until it emits its reply (returned; `None` if it never does: it always
/// does), sending each request (`request` builds it for its destination) and feeding back the
/// answers (read by `answer`, core's reading of a replica's answer) and timeouts. What is left
/// after the reply goes on in a task of its own. A repair is sent as the request `repair`
/// returns for the stale replica, if any; nobody waits for its answer.
pub(crate) async fn run<M>(
    caller: Rc<WebCaller>,
    mut machine: M,
    request: impl Fn(&NodeId, M::Request) -> Request + 'static,
    answer: fn(Response) -> Result<M::Answer, ReplicaFailure>,
    repair: impl FnMut(&NodeId) -> Option<Request> + 'static,
) -> Option<M::Outcome>
where
    M: Coordinator + 'static,
    M::Answer: 'static,
    M::Outcome: 'static,
{
    let mut glue = Glue { caller, request, answer, repair, origin: io::monotonic_ms(), calls: FuturesUnordered::new() };
    let mut reply = None;
    loop {
        glue.perform(&mut machine, &mut reply);
        if reply.is_some() || machine.is_finished() {
            break;
        }
        glue.wait(&mut machine).await;
    }
    if !machine.is_finished() {
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                glue.perform(&mut machine, &mut None);
                if machine.is_finished() {
                    break;
                }
                glue.wait(&mut machine).await;
            }
        });
    }
    reply
}

struct Glue<R, P, T> {
    caller: Rc<WebCaller>,
    request: R,
    answer: fn(Response) -> Result<T, ReplicaFailure>,
    repair: P,
    /// The monotonic clock's reading (ms) when the machine started: its time zero.
    origin: f64,
    calls: FuturesUnordered<Call<T>>,
}

impl<R, P, T: 'static> Glue<R, P, T>
where
    P: FnMut(&NodeId) -> Option<Request>,
{
    fn now(&self) -> Duration {
        Duration::from_secs_f64(((io::monotonic_ms() - self.origin) / 1000.0).max(0.0))
    }

    fn perform<M>(&mut self, machine: &mut M, reply: &mut Option<M::Outcome>)
    where
        M: Coordinator<Answer = T>,
        R: Fn(&NodeId, M::Request) -> Request,
    {
        while let Some(action) = machine.poll_action() {
            match action {
                Action::Send { to, request: what } => {
                    let (caller, request, answer) = (self.caller.clone(), (self.request)(&to, what), self.answer);
                    self.calls.push(std::boxed::Box::pin(async move {
                        let answer = caller.call(&to, request).await.and_then(answer);
                        (to, answer)
                    }));
                }
                Action::Reply(outcome) => *reply = reply.take().or(Some(outcome)),
                // Only a node's put coordinator keeps last-resort hints: this client hands every
                // put to a replica that coordinates it (core's `ForwardPut`).
                Action::Hint { .. } => {}
                Action::Repair { to, .. } => {
                    if let Some(request) = (self.repair)(&to) {
                        let caller = self.caller.clone();
                        wasm_bindgen_futures::spawn_local(async move {
                            let _ = caller.call(&to, request).await;
                        });
                    }
                }
            }
        }
    }

    /// Waits for the next answer or the machine's next timeout, and hands it to `machine`.
    async fn wait<M: Coordinator<Answer = T>>(&mut self, machine: &mut M) {
        let deadline = machine.poll_timeout();
        let now = self.now();
        let sleep = async move {
            match deadline {
                Some(at) => {
                    let ms = at.saturating_sub(now).as_secs_f64() * 1000.0;
                    let _ = JsFuture::from(io::sleep(ms)).await;
                }
                None => core::future::pending::<()>().await,
            }
        };
        let woke = {
            let calls = &mut self.calls;
            let answered = async move {
                match calls.next().await {
                    Some(answered) => answered,
                    // Nothing in flight: only time passes.
                    None => core::future::pending().await,
                }
            };
            let (answered, sleep) = (core::pin::pin!(answered), core::pin::pin!(sleep));
            match select(answered, sleep).await {
                Either::Left(((from, answer), _)) => Some((from, answer)),
                Either::Right(((), _)) => None,
            }
        };
        let now = self.now();
        match woke {
            Some((from, answer)) => machine.handle_reply(now, &from, answer),
            None => machine.handle_timeout(now),
        }
    }
}
