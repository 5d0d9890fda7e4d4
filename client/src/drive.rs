//! Runs core's coordinators against real nodes: the runtime glue shared by the smart client and
//! by nodes that coordinate for plain callers.
//!
//! The glue is thin on purpose: the machines decide everything (where to send, when the quorum
//! is met, what to repair); this module sends what they emit, feeds back the answers and the
//! timeouts, and hands the reply to the caller as soon as the machine emits it. The machine keeps
//! running in the background after the reply, to finish replication and read repair.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use quickv_core::coordinator::{
    self, Action, Coordinator, ForwardPut, GetCoordinator, GetError, GetOutcome, PutError, Read, ReplicaFailure,
    RoutedRequests,
};
use quickv_core::identity::NodeId;
use quickv_core::ring::PreferenceList;
use quickv_core::store::{StoreConfig, StoreName};
use quickv_core::version::{SealedState, Write};
use quickv_core::wire::{ErrorKind, Request, Response};
use tokio::time::Instant;

use quickv_net::transport::CallError;

/// Something that can send one request to a named node and wait for its answer.
///
/// Implementations map transport failures, and errors the node reports as retryable, to
/// [`ReplicaFailure::Unavailable`]; errors that say the request itself is invalid to
/// [`ReplicaFailure::Refused`].
pub trait NodeCaller: Send + Sync + 'static {
    /// Sends `request` to `to`.
    fn call(&self, to: NodeId, request: Request) -> impl Future<Output = Result<Response, ReplicaFailure>> + Send;
}

/// Maps a node's answer to what a coordinator expects: transport failures and errors the node
/// reports as retryable become [`ReplicaFailure::Unavailable`], others [`ReplicaFailure::Refused`].
/// `stale` is set when the node said the sender routed with an old ring.
pub fn replica_answer(answer: Result<Response, CallError>, stale: &AtomicBool) -> Result<Response, ReplicaFailure> {
    match answer {
        // Error answers are core's to read (`coordinator::read_answer`, `ForwardPut`); a stale
        // ring is noted for the caller to refresh its view.
        Ok(response) => {
            if let Response::Error(e) = &response
                && e.kind == ErrorKind::StaleRing
            {
                stale.store(true, Ordering::Relaxed);
            }
            Ok(response)
        }
        // No connection: the request never reached the node.
        Err(CallError::Connect { .. }) => Err(ReplicaFailure::Unavailable),
        // Sent, but no (readable) answer: the node may have acted on it.
        Err(_) => Err(ReplicaFailure::NoAnswer),
    }
}

/// What one coordinated request is about.
#[derive(Clone, Debug)]
pub struct Target {
    /// The store.
    pub store: StoreName,
    /// Its settings.
    pub config: StoreConfig,
    /// The key.
    pub key: Vec<u8>,
    /// The key's preference list.
    pub prefs: PreferenceList,
    /// How long each replica has to answer.
    pub timeout: Duration,
    /// The nodes of `prefs` the caller's failure detector holds down: asked last, only when the
    /// quorum cannot be met without them (core's coordinators decide).
    pub held_down: Vec<NodeId>,
}

/// Coordinates a get; returns the reconciled state (empty if no replica has the key) and the
/// context made of the replicas' seals. The coordinator goes on after the reply, to repair.
pub async fn get<C: NodeCaller>(caller: Arc<C>, target: Target) -> Result<GetOutcome, GetError> {
    let (required, quorum) = (target.config.r(), target.config.quorum_kind());
    let machine = GetCoordinator::new(&target.prefs, &target.config, &target.held_down, target.timeout, Duration::ZERO);
    let read = RoutedRequests::new(target.store, target.key);
    let mut repair = read.clone();
    run(caller, machine, move |_to, _read: Read| read.read(), coordinator::read_answer, move |_to| repair.repair())
        .await
        .unwrap_or(Err(GetError::Unavailable { required, answered: 0, quorum }))
}

/// Puts or, with a tombstone write, deletes: hands the write to one replica of the key, which
/// applies it and replicates it (core's [`ForwardPut`] chooses the replica and reads its
/// answer), so the value crosses the caller's link once. `minter` is set for a retry of a write
/// that failed naming one ([`PutError::minter`]): the write then goes to that node only.
pub async fn put<C: NodeCaller>(
    caller: Arc<C>,
    target: Target,
    write: Write,
    minter: Option<NodeId>,
) -> Result<SealedState, PutError> {
    let (required, quorum) = (target.config.w(), target.config.quorum_kind());
    let machine = ForwardPut::new(&target.prefs, &target.config, &target.held_down, write, minter);
    let requests = RoutedRequests::new(target.store, target.key);
    run(
        caller,
        machine,
        move |to: &NodeId, write| requests.handed_put(to, write),
        coordinator::handed_answer,
        |_to| None,
    )
    .await
    .unwrap_or(Err(PutError::Unavailable { required, acknowledged: 0, minter: None, quorum }))
}

/// The one driver loop: runs `machine`, sending each request (`request` builds it for its
/// destination) and feeding back the answers (read by `answer`, core's reading of a replica's
/// answer) and the timeouts, in the caller's task until the machine emits the reply; if the
/// machine still has work then (waiting for the last replicas, repairs), that goes on in a task
/// of its own with the requests in flight. Returns the reply (`None` if the machine never
/// emitted one: it always does). A repair is sent as the request `repair` returns for the stale
/// replica, if any; nobody waits for its answer.
///
/// Requests in flight are futures polled together by the loop, not tasks: a request costs no
/// task of its own and its answer no hand-off between tasks. Dropping the returned future
/// before the reply drops the requests in flight with it: as after a timeout, the caller then
/// knows nothing of the outcome (a put may or may not have been applied).
async fn run<C, M>(
    caller: Arc<C>,
    mut machine: M,
    request: impl Fn(&NodeId, M::Request) -> Request + Send + 'static,
    answer: fn(Response) -> Result<M::Answer, ReplicaFailure>,
    repair: impl FnMut(&NodeId) -> Option<Request> + Send + 'static,
) -> Option<M::Outcome>
where
    C: NodeCaller,
    M: Coordinator + Send + 'static,
    M::Request: Send,
    M::Answer: Send + 'static,
    M::Outcome: Send + 'static,
{
    let mut glue = Glue { caller, request, answer, repair, origin: Instant::now(), calls: FuturesUnordered::new() };
    let mut reply = None;
    loop {
        glue.perform(&mut machine, &mut reply);
        if reply.is_some() || machine.is_finished() {
            break;
        }
        glue.wait(&mut machine).await;
    }
    if !machine.is_finished() {
        tokio::spawn(async move {
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

/// A request in flight: its destination and the answer, read.
type Call<T> = Pin<Box<dyn Future<Output = (NodeId, Result<T, ReplicaFailure>)> + Send>>;

/// What [`run`] sends with and the requests it has in flight.
struct Glue<C, R, P, T> {
    caller: Arc<C>,
    request: R,
    answer: fn(Response) -> Result<T, ReplicaFailure>,
    repair: P,
    origin: Instant,
    calls: FuturesUnordered<Call<T>>,
}

impl<C, R, P, T> Glue<C, R, P, T>
where
    C: NodeCaller,
    T: Send + 'static,
    P: FnMut(&NodeId) -> Option<Request>,
{
    /// Performs what `machine` emits; the reply goes to `reply`.
    fn perform<M>(&mut self, machine: &mut M, reply: &mut Option<M::Outcome>)
    where
        M: Coordinator<Answer = T>,
        R: Fn(&NodeId, M::Request) -> Request,
    {
        while let Some(action) = machine.poll_action() {
            match action {
                Action::Send { to, request: what } => {
                    let (caller, request, answer) = (self.caller.clone(), (self.request)(&to, what), self.answer);
                    self.calls.push(Box::pin(async move {
                        let answer = caller.call(to.clone(), request).await.and_then(answer);
                        (to, answer)
                    }));
                }
                Action::Reply(outcome) => *reply = reply.take().or(Some(outcome)),
                // Only a node's put coordinator keeps last-resort hints: the smart client
                // hands every put to a replica that coordinates it (core's `ForwardPut`).
                Action::Hint { .. } => {}
                Action::Repair { to, .. } => {
                    if let Some(request) = (self.repair)(&to) {
                        let caller = self.caller.clone();
                        tokio::spawn(async move {
                            let _ = caller.call(to, request).await;
                        });
                    }
                }
            }
        }
    }

    /// Waits for the next answer or the machine's next timeout, and hands it to `machine`.
    async fn wait<M: Coordinator<Answer = T>>(&mut self, machine: &mut M) {
        let (deadline, origin, calls) = (machine.poll_timeout(), self.origin, &mut self.calls);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(origin + at).await,
                None => std::future::pending().await,
            }
        };
        let answered = async {
            match calls.next().await {
                Some(answered) => answered,
                // Nothing in flight: only time passes.
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            (from, answer) = answered => machine.handle_reply(origin.elapsed(), &from, answer),
            () = sleep => machine.handle_timeout(origin.elapsed()),
        }
    }
}
