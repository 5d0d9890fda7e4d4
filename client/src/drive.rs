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
    self, ForwardAction, ForwardPut, GetAction, GetCoordinator, GetError, GetOutcome, PutError, ReplicaFailure,
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
}

/// Coordinates a get; returns the reconciled state (empty if no replica has the key) and the
/// context made of the replicas' seals.
pub async fn get<C: NodeCaller>(caller: Arc<C>, target: Target) -> Result<GetOutcome, GetError> {
    let (reply_tx, reply_rx) = oneshot::channel();
    tokio::spawn(async move {
        let origin = Instant::now();
        let mut machine = GetCoordinator::new(&target.prefs, &target.config, target.timeout, Duration::ZERO);
        let (answers_tx, mut answers) = mpsc::unbounded_channel();
        let mut reply_tx = Some(reply_tx);
        let mut repair_asked = false;
        loop {
            while let Some(action) = machine.poll_action() {
                match action {
                    GetAction::Send { to } => {
                        let request = Request::Get { store: target.store.clone(), key: target.key.clone() };
                        send(&caller, &answers_tx, to, request, coordinator::read_answer);
                    }
                    GetAction::Reply(outcome) => {
                        if let Some(tx) = reply_tx.take() {
                            let _ = tx.send(outcome);
                        }
                    }
                    // Only nodes write to replicas: a stale replica is asked to coordinate a read of
                    // the key, which repairs every replica that answers with less.
                    GetAction::Repair { to, .. } if !repair_asked => {
                        repair_asked = true;
                        let request = Request::CoordinateGet { store: target.store.clone(), key: target.key.clone() };
                        let caller = caller.clone();
                        tokio::spawn(async move {
                            let _ = caller.call(to, request).await;
                        });
                    }
                    GetAction::Repair { .. } => {}
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
    reply_rx.await.unwrap_or(Err(GetError::Unavailable { required: 1, answered: 0 }))
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
    let mut machine = ForwardPut::new(&target.prefs, &target.config, write, minter);
    loop {
        match machine.poll_action() {
            Some(ForwardAction::Send { to }) => {
                let request = Request::CoordinatePut {
                    store: target.store.clone(),
                    key: target.key.clone(),
                    write: machine.write().clone(),
                    minter: Some(to.clone()),
                };
                let answer = caller.call(to.clone(), request).await;
                machine.handle_reply(&to, answer);
            }
            Some(ForwardAction::Reply(outcome)) => return outcome,
            // Unreachable: the machine replies exactly once and acts after every input.
            None => return Err(PutError::Unavailable { required: target.config.w(), acknowledged: 0, minter: None }),
        }
    }
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
