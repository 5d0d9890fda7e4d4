//! The driver: one task that owns the node machine ([`quickv_core::node::Node`]).
//!
//! Everything that happens to the node reaches the driver as an [`Input`] on one channel: a
//! request read by the endpoint, the answer (or silence) of a peer to a request the node sent, a
//! storage step that finished. The driver feeds it to the machine, then performs what the
//! machine emits: answers go back to the stream's task, requests to peers go out on the
//! transport (each exchange a future the driver polls itself, beside its inputs: no task and
//! no channel per request), record writes go to the node's
//! committer thread ([`super::committer`]), scans and whole-store steps run on the blocking
//! pool, and view saves run one after another in the order the machine emitted them. Record
//! loads the driver runs itself, at once: a load served from the engine's memory tables or
//! block cache takes a few microseconds, less than handing it to a thread and hearing back
//! (measured in `docs/performance.md`); a load that must read the disk holds the node's
//! driver for that read. Between inputs it sleeps until the machine's next timeout. It
//! decides nothing itself.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};

use quickv_core::cluster::ClusterView;
use quickv_core::identity::CertificateDigest;
use quickv_core::liveness::PeerState;
use quickv_core::node::{Destination, Event, Io, IoError, IoId, IoOutput, NodeStats, Origin, Transmit};
use quickv_core::wire::{self, Message, Response};
use quickv_net::transport::{CallError, Transport};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::committer::{Committer, Write};
use super::metrics::Metrics;
use super::saved_view::SavedView;
use super::steps;
use crate::storage::Engine;

/// How many queued inputs the driver takes before it performs what they caused.
const BATCH: usize = 64;

/// A request to a peer under way: its id, and the answer or why there is none.
type Exchange = Pin<Box<dyn Future<Output = (u64, Result<Message, Missing>)> + Send>>;

/// A request as the endpoint read it.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A frame that decoded.
    Decoded(Message),
    /// A frame that did not decode (the machine answers why).
    Undecodable(Vec<u8>),
    /// A frame over the frame limit, not read.
    Oversized,
}

/// Something that happened to the node.
#[derive(Debug)]
pub(crate) enum Input {
    /// A request on a stream; its answer goes to `reply`.
    Request {
        /// The digest of the node certificate the caller presented, if it presented one.
        peer: Option<CertificateDigest>,
        /// The request.
        frame: Frame,
        /// Where the answer goes.
        reply: oneshot::Sender<Message>,
    },
    /// The answer to request `id` this node sent, or why there is none.
    Answer { id: u64, answer: Result<Message, Missing> },
    /// A storage step (or view save) finished.
    Io { id: IoId, result: Result<IoOutput, IoError> },
    /// Writes finished, reported together by the committer.
    Ios(Vec<(IoId, Result<IoOutput, IoError>)>),
    /// The node's web access changed (its browser certificates rotated): publish it.
    WebAccess(quickv_core::membership::WebAccess),
}

/// What the rest of the process may look at: the view and the counters, as of the driver's
/// last step.
#[derive(Debug)]
pub(crate) struct Observed {
    view: RwLock<Arc<ClusterView>>,
    stats: Mutex<NodeStats>,
    /// Why the node's join was refused for good, once it was.
    refused: tokio::sync::watch::Sender<Option<String>>,
    /// A record or a range of them was found damaged, or a storage step failed: the next
    /// start must begin a new incarnation (see `Event::DamagedRecord`, `Event::DamagedRange`,
    /// `Event::StorageFailed`).
    renew_incarnation: std::sync::atomic::AtomicBool,
}

impl Observed {
    /// Waits until the node's join is refused for good; returns why.
    pub(crate) async fn join_refused(&self) -> String {
        let mut watch = self.refused.subscribe();
        match watch.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The driver is gone: nothing will be refused any more.
            Err(_) => std::future::pending().await,
        }
    }

    pub(crate) fn view(&self) -> Arc<ClusterView> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn stats(&self) -> NodeStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the next start must begin a new incarnation (a damaged record was found, or a
    /// storage step failed, since the node started).
    pub(crate) fn renew_incarnation(&self) -> bool {
        self.renew_incarnation.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The driver task's state.
pub(crate) struct Driver {
    machine: quickv_core::node::Node,
    origin: Instant,
    inputs: mpsc::UnboundedReceiver<Input>,
    /// For the tasks the driver starts, to report back.
    report: mpsc::UnboundedSender<Input>,
    /// Streams awaiting their answer, by the number the machine knows them by.
    streams: HashMap<u64, oneshot::Sender<Message>>,
    next_stream: u64,
    transport: Arc<Transport>,
    /// Requests to peers under way, polled by the driver's loop.
    exchanges: FuturesUnordered<Exchange>,
    engine: Arc<dyn Engine>,
    /// Every record write goes through it.
    committer: Committer,
    saves: mpsc::UnboundedSender<(IoId, ClusterView)>,
    observed: Arc<Observed>,
    /// The node's metrics, if it serves them; the arrival and name of each request awaiting its
    /// answer; when the machine's figures were last taken.
    metrics: Option<Metrics>,
    arrivals: HashMap<u64, (Instant, &'static str)>,
    figures_taken: Instant,
}

impl Driver {
    /// A driver for `machine`, created at `origin`; returns it, the sender for its inputs and
    /// what it lets others observe. The view saver task must be spawned with [`save_views`].
    pub(crate) fn new(
        machine: quickv_core::node::Node,
        incarnation: u64,
        origin: Instant,
        transport: Arc<Transport>,
        engine: Arc<dyn Engine>,
        saves: mpsc::UnboundedSender<(IoId, ClusterView)>,
        metrics: Option<Metrics>,
    ) -> std::io::Result<(Driver, mpsc::UnboundedSender<Input>, Arc<Observed>)> {
        let (report, inputs) = mpsc::unbounded_channel();
        let committer = Committer::start(machine.id(), engine.clone(), incarnation, report.clone())?;
        let observed = Arc::new(Observed {
            view: RwLock::new(Arc::new(machine.view().clone())),
            stats: Mutex::new(machine.stats()),
            refused: tokio::sync::watch::Sender::new(None),
            renew_incarnation: std::sync::atomic::AtomicBool::new(false),
        });
        let driver = Driver {
            machine,
            origin,
            inputs,
            report: report.clone(),
            streams: HashMap::new(),
            next_stream: 1,
            transport,
            exchanges: FuturesUnordered::new(),
            engine,
            committer,
            saves,
            observed: observed.clone(),
            metrics,
            arrivals: HashMap::new(),
            figures_taken: origin,
        };
        Ok((driver, report, observed))
    }

    fn now(&self) -> std::time::Duration {
        self.origin.elapsed()
    }

    /// Runs until the task is aborted (the requests to peers under way go with it).
    pub(crate) async fn run(mut self) {
        loop {
            self.perform();
            let deadline = self.machine.poll_timeout().map(|at| self.origin + at);
            let timer = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = self.inputs.recv() => {
                    let Some(input) = input else { return };
                    self.handle(input);
                }
                Some((id, answer)) = self.exchanges.next(), if !self.exchanges.is_empty() => {
                    self.handle(Input::Answer { id, answer });
                }
                () = timer => {
                    let now = self.now();
                    self.machine.handle_timeout(now);
                    continue;
                }
            }
            for _ in 1..BATCH {
                if let Ok(input) = self.inputs.try_recv() {
                    self.handle(input);
                } else if let Some(Some((id, answer))) = self.exchanges.next().now_or_never() {
                    self.handle(Input::Answer { id, answer });
                } else {
                    break;
                }
            }
            // A node busy with inputs still keeps its timers.
            let now = self.now();
            if self.machine.poll_timeout().is_some_and(|at| at <= now) {
                self.machine.handle_timeout(now);
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Request { peer, frame, reply } => {
                let stream = self.next_stream;
                self.next_stream += 1;
                self.streams.insert(stream, reply);
                if let Some(metrics) = &mut self.metrics {
                    let kind = match &frame {
                        Frame::Decoded(Message::Request { body, .. } | Message::Routed { body, .. }) => body.name(),
                        _ => "unreadable",
                    };
                    metrics.request(kind);
                    self.arrivals.insert(stream, (Instant::now(), kind));
                }
                let origin = Origin::Stream { stream, peer };
                match frame {
                    Frame::Decoded(message) => self.machine.handle_message(now, origin, message),
                    Frame::Undecodable(bytes) => self.machine.handle_frame(now, origin, &bytes),
                    Frame::Oversized => self.machine.handle_oversized(now, stream),
                }
            }
            Input::Answer { answer: Ok(message), .. } => self.machine.handle_message(now, Origin::Answer, message),
            Input::Answer { id, answer: Err(Missing::NotDelivered) } => self.machine.handle_unreachable(now, id),
            Input::Answer { id, answer: Err(Missing::NoAnswer) } => self.machine.handle_no_answer(now, id),
            Input::Io { id, result } => self.machine.handle_io(now, id, result),
            Input::WebAccess(web) => {
                self.machine.set_web_access(now, web);
            }
            Input::Ios(results) => {
                for (id, result) in results {
                    self.machine.handle_io(now, id, result);
                }
            }
        }
    }

    /// Performs everything the machine has emitted.
    fn perform(&mut self) {
        loop {
            if let Some((id, io)) = self.machine.poll_io() {
                self.run_io(id, io);
            } else if let Some(transmit) = self.machine.poll_transmit() {
                self.send(transmit);
            } else if let Some(event) = self.machine.poll_event() {
                self.log(event);
            } else {
                break;
            }
        }
        self.committer.hand_over();
        *self.observed.stats.lock().unwrap_or_else(|p| p.into_inner()) = self.machine.stats();
        if self.figures_taken.elapsed() >= std::time::Duration::from_secs(1) {
            self.figures_taken = Instant::now();
            let size = self.engine.size().ok();
            if let Some(bytes) = size {
                self.machine.note_stored_bytes(bytes);
            }
            if let Some(metrics) = &mut self.metrics {
                metrics.node(self.machine.stats(), &self.machine.status(self.origin.elapsed()));
                metrics.storage(size, self.machine.tombstones_pending());
            }
        }
    }

    fn run_io(&mut self, id: IoId, io: Io) {
        let (engine, report) = (self.engine.clone(), self.report.clone());
        match io {
            Io::SaveView(view) => {
                let _ = self.saves.send((id, view));
            }
            Io::Load { store, key } => {
                let result = steps::load(&*self.engine, &store, &key);
                let now = self.now();
                self.machine.handle_io(now, id, result);
            }
            Io::Store { store, key, state, hint } => self.committer.write(id, Write::Store { store, key, state, hint }),
            Io::Remove { store, key, counter_floor } => {
                self.committer.write(id, Write::Remove { store, key, counter_floor })
            }
            Io::DropHint(hint) => self.committer.write(id, Write::DropHint(hint)),
            Io::Scan { store, ranges, from, limit } => {
                tokio::task::spawn_blocking(move || {
                    let result = steps::scan(&*engine, &store, &ranges, &from, limit);
                    let _ = report.send(Input::Io { id, result });
                });
            }
            Io::LoadHints => {
                tokio::task::spawn_blocking(move || {
                    let result = steps::load_hints(&*engine);
                    let _ = report.send(Input::Io { id, result });
                });
            }
            Io::Checkpoint => {
                tokio::task::spawn_blocking(move || {
                    let result = steps::checkpoint(&*engine);
                    let _ = report.send(Input::Io { id, result });
                });
            }
            Io::DropData { store } => {
                tokio::task::spawn_blocking(move || {
                    let result = steps::drop_store(&*engine, &store);
                    let _ = report.send(Input::Io { id, result });
                });
            }
        }
    }

    fn send(&mut self, transmit: Transmit) {
        let Transmit { to, message } = transmit;
        match to {
            Destination::Reply(stream) => {
                if let (Some(metrics), Some((arrived, kind))) = (&mut self.metrics, self.arrivals.remove(&stream)) {
                    let error = match &message {
                        Message::Response { body: Response::Error(e), .. } => Some(format!("{:?}", e.kind)),
                        _ => None,
                    };
                    metrics.answered(kind, arrived.elapsed(), error.as_deref());
                }
                // The stream's task may be gone (its caller left); then nobody is waiting.
                if let Some(reply) = self.streams.remove(&stream) {
                    let _ = reply.send(message);
                }
            }
            Destination::Node { address, .. } => {
                let (Message::Request { id, .. } | Message::Routed { id, .. }) = message else { return };
                let transport = self.transport.clone();
                self.exchanges.push(Box::pin(async move {
                    let answer = match address.parse::<SocketAddr>() {
                        Ok(addr) => exchange(&transport, addr, id, &message).await,
                        Err(_) => Err(Missing::NotDelivered),
                    };
                    (id, answer)
                }));
            }
        }
    }

    fn log(&mut self, event: Event) {
        match event {
            Event::ViewChanged => {
                let view = Arc::new(self.machine.view().clone());
                *self.observed.view.write().unwrap_or_else(|p| p.into_inner()) = view;
            }
            Event::Joined { seed } => tracing::info!(node = %self.machine.id(), %seed, "joined the cluster"),
            Event::JoinRefused { seed, reason } => {
                tracing::error!(node = %self.machine.id(), %seed, "the cluster refused this node: {reason}");
                self.observed.refused.send_replace(Some(reason));
            }
            Event::IdConflict { taken } => tracing::warn!("refused a node entry: {taken}"),
            Event::ReadRepair { store, key, replica } => tracing::debug!(
                node = %self.machine.id(),
                %store,
                key = %key[..key.len().min(64)].escape_ascii(),
                %replica,
                "read repair of a stale replica"
            ),
            Event::CoordinationRerun { store, key, minter } => tracing::debug!(
                node = %self.machine.id(),
                %store,
                key = %key[..key.len().min(64)].escape_ascii(),
                minter = ?minter.as_ref().map(|m| m.as_str()),
                "a request routed with an older ring runs again with the newer one"
            ),
            Event::IncompatiblePeer { address, reason } => {
                tracing::warn!("peer {address} has an incompatible view: {reason}")
            }
            Event::StorageFailed { reason } => {
                // A failed store may have held a dot other replicas have: the node mints no
                // write of that key again, and the next start begins a new incarnation.
                self.observed.renew_incarnation.store(true, std::sync::atomic::Ordering::Release);
                tracing::error!("storage step failed: {reason}")
            }
            Event::HintDelivered { target, store, key } => tracing::debug!(
                node = %self.machine.id(),
                %target,
                %store,
                key = %key[..key.len().min(64)].escape_ascii(),
                "hinted write handed back"
            ),
            Event::DamagedRecord { store, key, reason } => {
                self.observed.renew_incarnation.store(true, std::sync::atomic::Ordering::Release);
                tracing::error!(
                    node = %self.machine.id(),
                    %store,
                    key = %key[..key.len().min(64)].escape_ascii(),
                    "damaged record: {reason}; the other replicas serve the key and rebuild it here, and the next \
                     start begins a new incarnation"
                )
            }
            Event::DamagedRange { store, range } => {
                self.observed.renew_incarnation.store(true, std::sync::atomic::Ordering::Release);
                tracing::error!(
                    node = %self.machine.id(),
                    %store,
                    "records with tokens {:?} to {:?} cannot be read: anti-entropy brings in the other replicas' \
                     copies, and the next start begins a new incarnation",
                    range.first(),
                    range.last()
                )
            }
            Event::TombstoneCollected { store, key } => tracing::debug!(
                node = %self.machine.id(),
                %store,
                key = %key[..key.len().min(64)].escape_ascii(),
                "tombstone collected: every node of the key held it"
            ),
            Event::AntiEntropy { peer, store, pulled, pushed } => tracing::info!(
                node = %self.machine.id(),
                %peer,
                %store,
                pulled,
                pushed,
                "anti-entropy exchange repaired keys"
            ),
            Event::RingMoved { epoch, nodes, under_way: true } => tracing::info!(
                node = %self.machine.id(),
                epoch,
                nodes,
                "as claimant, started a ring change: its new replicas receive their partitions"
            ),
            Event::RingMoved { epoch, nodes, under_way: false } => {
                tracing::info!(node = %self.machine.id(), epoch, nodes, "as claimant, committed the ring")
            }
            Event::Receiving { progress, done } => tracing::info!(
                node = %self.machine.id(),
                epoch = progress.epoch,
                partitions = progress.partitions_received,
                of = progress.partitions_gained,
                keys = progress.keys_received,
                bytes = progress.bytes_received,
                bytes_per_sec = progress.bytes_per_second(),
                "{}",
                if done { "received every partition this node gains in the ring change" } else { "receiving partitions" }
            ),
            Event::Left => tracing::warn!(
                node = %self.machine.id(),
                "this node has left the cluster: it owns nothing and serves nothing; stop it (its folder does not start \
                 again: a node joins again only as a new node, with a new id)"
            ),
            Event::RingRefused { reason } => {
                tracing::error!(node = %self.machine.id(), "as claimant, could not move the ring: {reason}")
            }
            Event::PeerState { peer, from, to } => match to {
                PeerState::Up => tracing::info!(node = %self.machine.id(), %peer, %from, "peer is up"),
                PeerState::Suspect => tracing::info!(node = %self.machine.id(), %peer, %from, "peer is suspect"),
                PeerState::Down => tracing::warn!(node = %self.machine.id(), %peer, %from, "peer is down"),
            },
            other => tracing::debug!("{other:?}"),
        }
    }
}

/// Why a request this node sent has no answer.
#[derive(Debug)]
pub(crate) enum Missing {
    /// It never left: no connection could be made. The peer did not act on it.
    NotDelivered,
    /// It went out and nothing (readable) came back. The peer may have acted on it.
    NoAnswer,
}

/// Sends request `id` and returns its answer. An error answer with id 0 (the peer could not read
/// the request, e.g. it was over its frame limit) answers it too.
async fn exchange(transport: &Transport, addr: SocketAddr, id: u64, message: &Message) -> Result<Message, Missing> {
    let bytes = transport.send_frame(addr, &wire::encode(message)).await.map_err(|e| match e {
        CallError::Connect { .. } => Missing::NotDelivered,
        _ => Missing::NoAnswer,
    })?;
    match wire::decode(&bytes) {
        Ok(Message::Response { id: got, body }) if got == id => Ok(Message::Response { id, body }),
        Ok(Message::Response { id: 0, body: body @ Response::Error(_) }) => Ok(Message::Response { id, body }),
        _ => Err(Missing::NoAnswer),
    }
}

/// Saves views in the order the machine emitted them. Saves that queued up while one was
/// running are done as one: only the last of them is written, and each is answered.
pub(crate) async fn save_views(
    file: Arc<SavedView>,
    mut saves: mpsc::UnboundedReceiver<(IoId, ClusterView)>,
    report: mpsc::UnboundedSender<Input>,
) {
    while let Some(first) = saves.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = saves.try_recv() {
            batch.push(next);
        }
        let ids: Vec<IoId> = batch.iter().map(|(id, _)| *id).collect();
        let Some((_, view)) = batch.pop() else { continue };
        let file = file.clone();
        let saved = tokio::task::spawn_blocking(move || file.save(&view)).await;
        let result = match saved {
            Ok(Ok(())) => Ok(IoOutput::Done),
            Ok(Err(e)) => Err(IoError(e.to_string())),
            Err(e) => Err(IoError(format!("view save task failed: {e}"))),
        };
        for id in ids {
            let _ = report.send(Input::Io { id, result: result.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use quickv_core::membership::NodeInfo;

    use super::*;

    /// What a clean stop relies on (`Node::shutdown` waits for the saver instead of aborting
    /// it): once the driver's sender is gone, the saver saves what was queued, answers each
    /// save, and ends; the file holds the last view.
    #[tokio::test]
    async fn the_saver_saves_what_is_queued_then_ends_when_the_driver_is_gone() {
        let dir = tempfile::tempdir().expect("a folder");
        let file = Arc::new(SavedView::new(dir.path().join("view")));
        let (saves, saves_rx) = mpsc::unbounded_channel();
        let (report, mut reports) = mpsc::unbounded_channel();
        let mut view = ClusterView::new(6);
        for i in 0..3u64 {
            let info = NodeInfo::new(&format!("n{i}"), "127.0.0.1:7101", "z", 1).expect("valid");
            view.upsert_node(info).expect("no conflict");
            saves.send((IoId(i), view.clone())).expect("the saver is there");
        }
        drop(saves);
        let saver = tokio::spawn(save_views(file.clone(), saves_rx, report));
        tokio::time::timeout(std::time::Duration::from_secs(10), saver)
            .await
            .expect("the saver ends once the driver's sender is gone")
            .expect("it did not panic");
        assert_eq!(file.load().expect("readable"), Some(view), "the last view queued is on disk");
        let mut answered = Vec::new();
        while let Ok(Input::Io { id, result }) = reports.try_recv() {
            assert_eq!(result, Ok(IoOutput::Done));
            answered.push(id);
        }
        answered.sort();
        assert_eq!(answered, vec![IoId(0), IoId(1), IoId(2)], "every save is answered");
    }
}
