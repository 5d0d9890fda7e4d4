//! Runs core's coordinators against real nodes: the runtime glue shared by the smart client and
//! by nodes that coordinate for plain callers.
//!
//! The glue is thin on purpose: the machines decide everything (where to send, when the quorum
//! is met, what to repair); this module sends what they emit, feeds back the answers and the
//! timeouts, and hands the reply to the caller as soon as the machine emits it. The machine keeps
//! running in the background after the reply, to finish replication and read repair.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quickv_core::coordinator::{
    self, Action, Coordinator, ForwardPut, GetCoordinator, GetError, GetOutcome, PutError, Read, ReplicaFailure,
};
use quickv_core::identity::NodeId;
use quickv_core::ring::PreferenceList;
use quickv_core::store::{StoreConfig, StoreName};
use quickv_core::version::{SealedState, Write};
use quickv_core::wire::{ErrorKind, Request, Response};
use tokio::sync::{mpsc, oneshot};
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
    let (store, key) = (target.store, target.key);
    let (read, repair) = ((store.clone(), key.clone()), (store, key));
    let mut repair_asked = false;
    run(
        caller,
        machine,
        move |_to, _read: Read| Request::Get { store: read.0.clone(), key: read.1.clone() },
        coordinator::read_answer,
        // Only nodes write to replicas: the first stale replica is asked to coordinate a read of
        // the key, which repairs every replica that answered with less.
        move |_to| {
            let ask = !std::mem::replace(&mut repair_asked, true);
            ask.then(|| Request::CoordinateGet { store: repair.0.clone(), key: repair.1.clone() })
        },
    )
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
    let (store, key) = (target.store, target.key);
    run(
        caller,
        machine,
        move |to: &NodeId, write| Request::CoordinatePut {
            store: store.clone(),
            key: key.clone(),
            write,
            minter: Some(to.clone()),
        },
        coordinator::handed_answer,
        |_to| None,
    )
    .await
    .unwrap_or(Err(PutError::Unavailable { required, acknowledged: 0, minter: None, quorum }))
}

/// The one driver loop: runs `machine` in a task of its own to its end, sending each request
/// (`request` builds it for its destination) in a task of its own and feeding back the answers
/// (read by `answer`, core's reading of a replica's answer) and the timeouts. Returns the reply
/// as soon as the machine emits it (`None` if it never did: it always does); the machine goes on
/// in the background after that, to finish repairs. A repair is sent as the request `repair`
/// returns for the stale replica, if any; nobody waits for its answer.
async fn run<C, M>(
    caller: Arc<C>,
    mut machine: M,
    request: impl Fn(&NodeId, M::Request) -> Request + Send + 'static,
    answer: fn(Response) -> Result<M::Answer, ReplicaFailure>,
    mut repair: impl FnMut(&NodeId) -> Option<Request> + Send + 'static,
) -> Option<M::Outcome>
where
    C: NodeCaller,
    M: Coordinator + Send + 'static,
    M::Request: Send,
    M::Answer: Send + 'static,
    M::Outcome: Send + 'static,
{
    let (reply_tx, reply_rx) = oneshot::channel();
    tokio::spawn(async move {
        let origin = Instant::now();
        let (answers_tx, mut answers) = mpsc::unbounded_channel();
        let mut reply_tx = Some(reply_tx);
        loop {
            while let Some(action) = machine.poll_action() {
                match action {
                    Action::Send { to, request: what } => {
                        send(&caller, &answers_tx, to.clone(), request(&to, what), answer);
                    }
                    Action::Reply(outcome) => {
                        if let Some(tx) = reply_tx.take() {
                            let _ = tx.send(outcome);
                        }
                    }
                    // Only a node's put coordinator keeps last-resort hints: the smart client
                    // hands every put to a replica that coordinates it (core's `ForwardPut`).
                    Action::Hint { .. } => {}
                    Action::Repair { to, .. } => {
                        if let Some(request) = repair(&to) {
                            let caller = caller.clone();
                            tokio::spawn(async move {
                                let _ = caller.call(to, request).await;
                            });
                        }
                    }
                }
            }
            if machine.is_finished() {
                break;
            }
            match next_event(&mut answers, machine.poll_timeout(), origin).await {
                Event::Answer(from, answer) => machine.handle_reply(origin.elapsed(), &from, answer),
                Event::Timeout => machine.handle_timeout(origin.elapsed()),
            }
        }
    });
    reply_rx.await.ok()
}

type Answer<T> = (NodeId, Result<T, ReplicaFailure>);

enum Event<T> {
    Answer(NodeId, Result<T, ReplicaFailure>),
    Timeout,
}

/// Sends one request in its own task; the answer, mapped by `expect` (core's reading of a
/// replica's answer), comes back on `answers`.
fn send<C: NodeCaller, T: Send + 'static>(
    caller: &Arc<C>,
    answers: &mpsc::UnboundedSender<Answer<T>>,
    to: NodeId,
    request: Request,
    expect: impl FnOnce(Response) -> Result<T, ReplicaFailure> + Send + 'static,
) {
    let (caller, answers) = (caller.clone(), answers.clone());
    tokio::spawn(async move {
        let answer = caller.call(to.clone(), request).await.and_then(expect);
        let _ = answers.send((to, answer));
    });
}

async fn next_event<T>(
    answers: &mut mpsc::UnboundedReceiver<Answer<T>>,
    deadline: Option<Duration>,
    origin: Instant,
) -> Event<T> {
    let sleep = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(origin + at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        answer = answers.recv() => match answer {
            Some((from, answer)) => Event::Answer(from, answer),
            // Unreachable while the machine holds a sender; treat as time passing.
            None => Event::Timeout,
        },
        () = sleep => Event::Timeout,
    }
}
