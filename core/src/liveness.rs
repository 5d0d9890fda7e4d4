//! Which peers are up: each node's local verdict on each peer, from heartbeats, its watchers'
//! verdicts, and requests.
//!
//! A [`Liveness`] holds, per peer, a phi-accrual detector ([`crate::failure`]) fed with the
//! peer's [`Heartbeat`]s as the peer's own gossip messages bring them (at most one a
//! [`min_interval`](LivenessConfig::min_interval), so a burst does not squeeze the detector's
//! estimate of the interval). A peer **close** to this node (this node watches it, or it watches
//! this node: [`crate::gossip::Watch`]) sends word every gossip interval, and its detector
//! decides: the peer is [`PeerState::Up`], [`PeerState::Suspect`] (phi past
//! [`suspect_phi`](LivenessConfig::suspect_phi)) or [`PeerState::Down`] (past
//! [`down_phi`](LivenessConfig::down_phi)).
//!
//! A peer that is not close is judged by the [`Verdict`]s of its watchers, as gossip spreads
//! them: the latest verdict of each watcher counts (a watcher with no verdict yet counts as
//! `Up`; one this node holds down does not count), and the peer takes the **mildest** of them:
//! it is down only when every watcher still standing says so, so one watcher with a bad link
//! to it does not take it out of service. A peer that spoke to this node after the verdicts that
//! hold it down or suspect is up.
//!
//! Request traffic gives faster verdicts than silence does: a peer no connection could be made
//! to is `Down` at once, and one that let a request go unanswered is at least `Suspect`, until
//! it shows life again (an answer, or a heartbeat it beat after the failure: two beats past the
//! one known then).
//!
//! The verdict is local and never moves ownership: it decides where requests go first (a node
//! known down is asked last, its fallback first), when hints are handed back, and what
//! `quickv status` shows. A peer this node has not heard from yet is assumed up from the moment
//! it is first tracked (or becomes close), so a close one that never speaks is suspected after
//! the usual silence.
//!
//! ```
//! use core::time::Duration;
//! use quickv_core::gossip::Heartbeat;
//! use quickv_core::identity::NodeId;
//! use quickv_core::liveness::{Liveness, LivenessConfig, PeerState};
//!
//! let peer = NodeId::new("n2")?;
//! let mut liveness = Liveness::new(LivenessConfig::default());
//! for beat in 0..10 {
//!     let now = Duration::from_secs(beat);
//!     liveness.handle_heartbeat(now, &peer, Heartbeat { generation: 1, beat }, false);
//!     liveness.update(now);
//! }
//! assert_eq!(liveness.state(&peer), PeerState::Up);
//! // Silence: suspected, then down.
//! liveness.update(Duration::from_secs(30));
//! assert_eq!(liveness.state(&peer), PeerState::Down);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterView;
use crate::failure::{PhiAccrualDetector, PhiConfig};
use crate::gossip::{Heartbeat, Verdict, Watch};
use crate::identity::NodeId;

/// A node's verdict on a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PeerState {
    /// Heard from recently.
    Up,
    /// Silent for longer than usual, or a request to it went unanswered: still asked.
    Suspect,
    /// Silent for much longer than usual, or unreachable: requests skip it.
    Down,
}

impl PeerState {
    /// The state's name, as `quickv status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Up => "up",
            PeerState::Suspect => "suspect",
            PeerState::Down => "down",
        }
    }
}

impl core::fmt::Display for PeerState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tuning of the verdicts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LivenessConfig {
    /// The detector's tuning.
    pub phi: PhiConfig,
    /// Phi past which a peer is suspect (default 5: about 1 in 100,000 that it is merely late).
    pub suspect_phi: f64,
    /// Phi past which a peer is down (default 8, as Cassandra).
    pub down_phi: f64,
    /// The least time between two heartbeats that feed the detector (default 500 ms, half the
    /// gossip interval).
    pub min_interval: Duration,
}

impl Default for LivenessConfig {
    fn default() -> LivenessConfig {
        LivenessConfig::for_interval(Duration::from_secs(1))
    }
}

impl LivenessConfig {
    /// The defaults for heartbeats every `interval` (the gossip interval): heartbeats relayed by
    /// gossip arrive with a jitter of about an interval, so the detector allows a pause of one
    /// interval and a deviation of at least half of one. A peer silent since its last heartbeat
    /// is then suspect after about 3.4 intervals and down after about 3.8.
    pub fn for_interval(interval: Duration) -> LivenessConfig {
        LivenessConfig {
            phi: PhiConfig {
                window: 100,
                min_std_dev: interval / 2,
                acceptable_pause: interval,
                first_interval: interval,
            },
            suspect_phi: 5.0,
            down_phi: 8.0,
            min_interval: interval / 2,
        }
    }
}

/// Why requests said a peer is not there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// No connection could be made.
    Unreachable,
    /// A request went out and nothing came back.
    Silent,
}

#[derive(Clone, Debug)]
struct Peer {
    /// Only for a close peer (a far one's heartbeats come now and then and say nothing of the
    /// interval it will keep once close).
    detector: Option<PhiAccrualDetector>,
    heartbeat: Option<Heartbeat>,
    /// When this node last had word of the peer (a newer heartbeat or an answer).
    last_heard: Option<Duration>,
    /// When the detector was last fed.
    fed: Duration,
    state: PeerState,
    /// A request failure not yet outlived, with the heartbeat known when it happened.
    failure: Option<(Failure, Option<Heartbeat>)>,
    /// Whether the peer is close (judged by its detector) or not (by its watchers' verdicts).
    close: bool,
    /// The peer's watchers, other than this node.
    observers: Vec<NodeId>,
    /// The latest verdict of each observer: when it judged, what, and when it reached here.
    verdicts: BTreeMap<NodeId, (Heartbeat, PeerState, Duration)>,
    /// A verdict taken whole from one node (a client takes the verdicts of the node it asked),
    /// and when.
    adopted: Option<(PeerState, Duration)>,
}

impl Peer {
    /// The verdict from the word of others, and since when it holds (`None`: up by default).
    fn by_word(&self, state_of: impl Fn(&NodeId) -> Option<PeerState>) -> (PeerState, Option<Duration>) {
        if let Some((state, since)) = self.adopted {
            return (state, Some(since));
        }
        let mut mildest = None::<(PeerState, Option<Duration>)>;
        for observer in &self.observers {
            if state_of(observer) == Some(PeerState::Down) {
                continue;
            }
            let word = match self.verdicts.get(observer) {
                Some((_, state, received)) => (*state, Some(*received)),
                None => (PeerState::Up, None),
            };
            mildest = Some(match mildest {
                None => word,
                Some(held) if word.0 < held.0 => word,
                Some((state, since)) if word.0 == state => (state, since.max(word.1)),
                Some(held) => held,
            });
        }
        mildest.unwrap_or((PeerState::Up, None))
    }
}

/// One peer as a node reports it (`quickv status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer.
    pub id: NodeId,
    /// The verdict.
    pub state: PeerState,
    /// How long ago the node last had word of the peer, in milliseconds (`None`: never).
    pub last_heard_ms: Option<u64>,
    /// The freshest heartbeat of the peer the node knows.
    pub heartbeat: Option<Heartbeat>,
    /// Hinted writes the node holds for the peer.
    pub hints: u64,
}

/// What a node sees, as it answers [`Request::Status`](crate::wire::Request::Status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The node that answered.
    pub node: NodeId,
    /// Its view (membership, ring, catalogue).
    pub view: ClusterView,
    /// Its verdict on each other node of the view.
    pub peers: Vec<PeerReport>,
    /// Damage its storage showed since it started.
    pub damage: DamageReport,
    /// The bytes its storage holds, as last measured (`None`: not measured yet, or a storage
    /// that cannot tell).
    pub stored_bytes: Option<u64>,
    /// How far the node has received the partitions it gains in the ring change under way
    /// (`None`: it gains none, or none is under way; issue 9, 2.4).
    pub transfer: Option<TransferReport>,
}

/// A gainer's progress through a ring change: the partitions it gains (counted once per store)
/// and those whose current replicas it has been found level with, and what it pulled meanwhile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferReport {
    /// The epoch of the ring the change moves to.
    pub epoch: u64,
    /// Partitions (of every store) the node gains.
    pub partitions_gained: u64,
    /// Those it has received: every current replica of the partition that is not removed was
    /// found level with it.
    pub partitions_received: u64,
    /// Keys and bytes (keys and their states) pulled from the sources since the change began
    /// here.
    pub keys_received: u64,
    /// See `keys_received`.
    pub bytes_received: u64,
    /// Since the node began receiving, in milliseconds.
    pub elapsed_ms: u64,
}

impl TransferReport {
    /// Bytes received per second so far.
    pub fn bytes_per_second(&self) -> u64 {
        if self.elapsed_ms == 0 { 0 } else { (self.bytes_received as u128 * 1000 / self.elapsed_ms as u128) as u64 }
    }

    /// About how many bytes are left: the bytes per partition received so far, times the
    /// partitions left (`None` before the first partition is received).
    pub fn bytes_left_estimate(&self) -> Option<u64> {
        let left = self.partitions_gained.saturating_sub(self.partitions_received);
        (self.partitions_received > 0)
            .then(|| (self.bytes_received as u128 * left as u128 / self.partitions_received as u128) as u64)
    }
}

/// Damage a node's storage showed since the node started (see
/// [`Event::DamagedRecord`](crate::node::Event::DamagedRecord) and
/// [`Event::DamagedRange`](crate::node::Event::DamagedRange)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageReport {
    /// Records found damaged.
    pub records: u64,
    /// Damaged records replaced since by a replica write.
    pub repaired: u64,
    /// Ranges of records storage could not read at all (a damaged table block).
    pub ranges: u64,
}

impl StatusReport {
    /// The report on one peer, if it has one.
    pub fn peer(&self, id: &NodeId) -> Option<&PeerReport> {
        self.peers.iter().find(|p| p.id == *id)
    }
}

/// A state change of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The peer.
    pub peer: NodeId,
    /// Its state before.
    pub from: PeerState,
    /// Its state now.
    pub to: PeerState,
}

/// Each peer's verdict: see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Liveness {
    config: LivenessConfig,
    peers: BTreeMap<NodeId, Peer>,
    /// Whether peers start close (judged by their detector): a node's do, a client's do not.
    detect: bool,
    /// This node and the watch circle, once the node has set them ([`Liveness::set_watch`]):
    /// they say which peers are close and who watches each, so a far peer needs no record
    /// until there is word of it.
    watch: Option<(NodeId, Watch)>,
    /// Whether something other than time changed a verdict's inputs since the last pass, and
    /// when time alone next calls for one (see [`update`](Self::update)).
    dirty: bool,
    next_pass: Duration,
}

impl Liveness {
    /// Tracks no peer yet.
    pub fn new(config: LivenessConfig) -> Liveness {
        Liveness { config, peers: BTreeMap::new(), detect: true, watch: None, dirty: true, next_pass: Duration::ZERO }
    }

    /// Tracks no peer yet, and judges peers only by the verdicts it
    /// [adopts](Self::adopt) and by requests, never by silence: for a client, which hears no
    /// heartbeats.
    pub fn without_detector(config: LivenessConfig) -> Liveness {
        Liveness { config, peers: BTreeMap::new(), detect: false, watch: None, dirty: true, next_pass: Duration::ZERO }
    }

    /// Starts tracking `id` at `now` if it is not tracked (assumed up from now).
    pub fn track(&mut self, now: Duration, id: &NodeId) {
        self.peer(now, id);
    }

    /// Stops tracking every peer for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&NodeId) -> bool) {
        let before = self.peers.len();
        self.peers.retain(|id, _| keep(id));
        self.dirty |= self.peers.len() != before;
    }

    /// A heartbeat of `id` reached this node at `now`; `direct` when the peer itself sent it (then
    /// it is believed even if older than the one held: the peer's clock went back). Returns
    /// whether it was news.
    pub fn handle_heartbeat(&mut self, now: Duration, id: &NodeId, heartbeat: Heartbeat, direct: bool) -> bool {
        let min_interval = self.config.min_interval;
        let peer = self.peer(now, id);
        let newer = peer.heartbeat.is_none_or(|held| heartbeat > held);
        if !(newer || direct && peer.heartbeat != Some(heartbeat)) {
            return false;
        }
        peer.heartbeat = Some(heartbeat);
        peer.last_heard = Some(now);
        let mut dirty = peer.state != PeerState::Up;
        if let Some((_, then)) = peer.failure {
            let outlived = match then {
                Some(then) => {
                    heartbeat.generation > then.generation
                        || heartbeat.generation == then.generation && heartbeat.beat >= then.beat.saturating_add(2)
                }
                None => true,
            };
            if outlived || direct {
                peer.failure = None;
                dirty = true;
            }
        }
        // Heartbeats that arrive in a burst (gossip from several peers) feed the detector once.
        if now >= peer.fed.saturating_add(min_interval) {
            if let Some(detector) = &mut peer.detector {
                detector.handle_heartbeat(now);
            }
            peer.fed = now;
        }
        self.dirty |= dirty;
        true
    }

    /// The peer answered a request at `now`: it is alive, whatever failure was held against it.
    /// (Answers do not feed the detector: request traffic comes in bursts and lulls, and would
    /// teach it to expect word far more often than heartbeats bring it.)
    pub fn handle_answer(&mut self, now: Duration, id: &NodeId) {
        let peer = self.peer(now, id);
        peer.last_heard = Some(now);
        let dirty = peer.failure.is_some() || peer.state != PeerState::Up;
        peer.failure = None;
        self.dirty |= dirty;
    }

    /// A request to the peer failed at `now`: `unreachable` when no connection could be made
    /// (the peer is then down), otherwise it went unanswered (suspect).
    pub fn handle_failure(&mut self, now: Duration, id: &NodeId, unreachable: bool) {
        let peer = self.peer(now, id);
        let failure = if unreachable { Failure::Unreachable } else { Failure::Silent };
        let worse = !matches!(peer.failure, Some((Failure::Unreachable, _)));
        if worse {
            peer.failure = Some((failure, peer.heartbeat));
        }
        self.dirty = true;
    }

    /// Says whether `id` is close to this node (judged by its own detector, see the
    /// [module docs](self)) and who its watchers are (other than this node). A peer that becomes
    /// close is assumed alive from `now`: what the detector learnt while it was far (heartbeats
    /// now and then) says nothing about the interval it will hear at now.
    pub fn set_close(&mut self, now: Duration, id: &NodeId, close: bool, observers: Vec<NodeId>) {
        let config = self.config.phi;
        let peer = self.peer(now, id);
        if close && !peer.close {
            peer.detector = Some(started(config, now));
            peer.fed = now;
        }
        if !close {
            peer.detector = None;
        }
        peer.close = close;
        peer.verdicts.retain(|observer, _| observers.contains(observer));
        peer.observers = observers;
        self.dirty = true;
    }

    /// Sets this node's id and the watch circle of the members (see [`crate::gossip::Watch`]),
    /// and forgets peers that are no longer members. Each peer held is told whether it is
    /// close and who its watchers are (as [`set_close`](Self::set_close)); a peer close to
    /// this node is tracked from `now`; a far peer is tracked only once there is word of it (a
    /// heartbeat, an answer, a failure, a verdict of one of its watchers): until then it is up,
    /// as a far peer with no verdict is. So a node holds records of the peers it hears of, not
    /// of every member (in a cluster of 10,000, a few dozen rather than 9,999).
    pub fn set_watch(&mut self, now: Duration, me: &NodeId, watch: Watch) {
        let before = self.peers.len();
        self.peers.retain(|id, _| watch.contains(id) && id != me);
        self.dirty |= self.peers.len() != before;
        let close: Vec<NodeId> = watch.watched_by(me).into_iter().chain(watch.watchers_of(me)).collect();
        let mut ids: Vec<NodeId> = self.peers.keys().cloned().collect();
        ids.extend(close.iter().filter(|id| !self.peers.contains_key(*id)).cloned());
        for id in &ids {
            let observers = observers_of(&watch, me, id);
            let near = close.contains(id);
            self.set_close(now, id, near, observers);
        }
        self.watch = Some((me.clone(), watch));
    }

    /// A watcher's verdict on a peer reached this node at `now`. Returns whether it was news (a
    /// later verdict of that observer than the one held, from one of the peer's watchers): news
    /// is spread on.
    pub fn handle_verdict(&mut self, now: Duration, verdict: &Verdict) -> bool {
        let watched = self.watch.as_ref().is_some_and(|(me, watch)| {
            verdict.subject != *me && verdict.observer != *me && watch.watches(&verdict.observer, &verdict.subject)
        });
        if watched {
            self.peer(now, &verdict.subject);
        }
        let Some(peer) = self.peers.get_mut(&verdict.subject) else { return false };
        if !peer.observers.contains(&verdict.observer) {
            return false;
        }
        let newer = peer.verdicts.get(&verdict.observer).is_none_or(|(at, _, _)| verdict.at > *at);
        if newer {
            peer.verdicts.insert(verdict.observer.clone(), (verdict.at, verdict.state, now));
            self.dirty = true;
        }
        newer
    }

    /// Takes `state` as the verdict on `id` whole (a client takes the verdicts of the node it
    /// asked): from then on `id` is judged by it and by requests, not by its detector.
    pub fn adopt(&mut self, now: Duration, id: &NodeId, state: PeerState) {
        let peer = self.peer(now, id);
        peer.close = false;
        if peer.adopted.is_none_or(|(held, _)| held != state) {
            peer.adopted = Some((state, now));
        }
        self.dirty = true;
    }

    /// Recomputes every verdict at `now`; returns the changes.
    ///
    /// Cheap when called often: a full pass runs when an input changed (a failure, an answer
    /// or heartbeat from a peer not up, a verdict, a peer tracked or dropped) or when a tenth
    /// of the gossip interval has passed since the last (silence grows with time alone).
    pub fn update(&mut self, now: Duration) -> Vec<Transition> {
        if !self.dirty && now < self.next_pass {
            return Vec::new();
        }
        self.dirty = false;
        self.next_pass = now.saturating_add(self.config.phi.first_interval / 10);
        let config = self.config;
        // Verdicts are worked out against the states of the last update (a watcher's own state
        // decides whether its word counts), then applied.
        let peers = &self.peers;
        let state_of = |id: &NodeId| peers.get(id).map(|p| p.state);
        let verdicts: Vec<PeerState> = peers
            .values()
            .map(|peer| {
                let by_silence = if peer.close {
                    let phi = peer.detector.as_ref().map_or(0.0, |d| d.phi(now));
                    if phi >= config.down_phi {
                        PeerState::Down
                    } else if phi >= config.suspect_phi {
                        PeerState::Suspect
                    } else {
                        PeerState::Up
                    }
                } else {
                    match peer.by_word(state_of) {
                        // It spoke since.
                        (_, Some(since)) if peer.last_heard.is_some_and(|heard| heard > since) => PeerState::Up,
                        (state, _) => state,
                    }
                };
                let by_requests = match peer.failure {
                    Some((Failure::Unreachable, _)) => PeerState::Down,
                    Some((Failure::Silent, _)) => PeerState::Suspect,
                    None => PeerState::Up,
                };
                by_silence.max(by_requests)
            })
            .collect();
        let mut changes = Vec::new();
        for ((id, peer), state) in self.peers.iter_mut().zip(verdicts) {
            if state != peer.state {
                changes.push(Transition { peer: id.clone(), from: peer.state, to: state });
                peer.state = state;
            }
        }
        changes
    }

    /// The verdict on `id` as of the last [`update`](Self::update) (`Up` for a peer not tracked).
    pub fn state(&self, id: &NodeId) -> PeerState {
        self.peers.get(id).map_or(PeerState::Up, |p| p.state)
    }

    /// Whether requests should skip `id`.
    pub fn is_down(&self, id: &NodeId) -> bool {
        self.state(id) == PeerState::Down
    }

    /// The freshest heartbeat of `id` known.
    pub fn heartbeat(&self, id: &NodeId) -> Option<Heartbeat> {
        self.peers.get(id)?.heartbeat
    }

    /// When this node last had word of `id`.
    pub fn last_heard(&self, id: &NodeId) -> Option<Duration> {
        self.peers.get(id)?.last_heard
    }

    /// How many peers this node holds a record of (see [`set_watch`](Self::set_watch)).
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }

    /// The report on `id` at `now` (hints counted by the caller).
    pub fn report(&self, now: Duration, id: &NodeId, hints: u64) -> PeerReport {
        PeerReport {
            id: id.clone(),
            state: self.state(id),
            last_heard_ms: self.last_heard(id).map(|t| now.saturating_sub(t).as_millis() as u64),
            heartbeat: self.heartbeat(id),
            hints,
        }
    }

    fn peer(&mut self, now: Duration, id: &NodeId) -> &mut Peer {
        let config = self.config.phi;
        let (detect, watch) = (self.detect, &self.watch);
        self.peers.entry(id.clone()).or_insert_with(|| {
            let (close, observers) = match watch {
                Some((me, watch)) => (detect && watch.close(me, id), observers_of(watch, me, id)),
                None => (detect, Vec::new()),
            };
            Peer {
                // Assumed alive from the moment it is first tracked: silence from then on counts.
                detector: close.then(|| started(config, now)),
                heartbeat: None,
                last_heard: None,
                fed: now,
                state: PeerState::Up,
                failure: None,
                close,
                observers,
                verdicts: BTreeMap::new(),
                adopted: None,
            }
        })
    }
}

/// A detector that has heard from its peer at `now`.
fn started(config: PhiConfig, now: Duration) -> PhiAccrualDetector {
    let mut detector = PhiAccrualDetector::new(config);
    detector.handle_heartbeat(now);
    detector
}

/// The watchers of `id` other than `me`.
fn observers_of(watch: &Watch, me: &NodeId, id: &NodeId) -> Vec<NodeId> {
    watch.watchers_of(id).into_iter().filter(|o| o != me).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Heartbeats every second for 20 s, then silence: suspect within seconds, then down; never
    /// before the silence.
    #[test]
    fn silence_makes_a_peer_suspect_then_down() {
        let p = id("p");
        let mut l = Liveness::new(LivenessConfig::default());
        for beat in 0..=20 {
            let now = ms(beat * 1000);
            l.handle_heartbeat(now, &p, Heartbeat { generation: 7, beat }, false);
            assert!(l.update(now).is_empty());
            assert_eq!(l.state(&p), PeerState::Up);
        }
        let mut suspect_at = None;
        let mut down_at = None;
        for t in (20_000..40_000).step_by(100) {
            for change in l.update(ms(t)) {
                match change.to {
                    PeerState::Suspect => suspect_at = Some(t),
                    PeerState::Down => down_at = Some(t),
                    PeerState::Up => panic!("up again in silence"),
                }
            }
        }
        let (suspect_at, down_at) = (suspect_at.unwrap(), down_at.unwrap());
        assert!((22_500..24_500).contains(&suspect_at), "suspect at {suspect_at}");
        assert!(down_at > suspect_at && down_at < 25_000, "down at {down_at}");
        // It comes back: up at once.
        l.handle_heartbeat(ms(40_000), &p, Heartbeat { generation: 7, beat: 40 }, false);
        let back = l.update(ms(40_000));
        assert_eq!(back, alloc::vec![Transition { peer: p.clone(), from: PeerState::Down, to: PeerState::Up }]);
    }

    /// A peer first tracked and then never heard from is suspected after the usual silence.
    #[test]
    fn a_peer_never_heard_from_goes_down() {
        let p = id("p");
        let mut l = Liveness::new(LivenessConfig::default());
        l.track(ms(0), &p);
        l.update(ms(500));
        assert_eq!(l.state(&p), PeerState::Up);
        l.update(ms(10_000));
        assert_eq!(l.state(&p), PeerState::Down);
    }

    /// An unreachable peer is down at once; old heartbeats relayed by others do not bring it back,
    /// a beat it made after the failure does, and so does its answer.
    #[test]
    fn a_failed_request_marks_the_peer_until_it_shows_life() {
        let p = id("p");
        let mut l = Liveness::new(LivenessConfig::default());
        for beat in 0..5 {
            l.handle_heartbeat(ms(beat * 1000), &p, Heartbeat { generation: 1, beat }, false);
        }
        l.handle_failure(ms(4100), &p, true);
        l.update(ms(4100));
        assert!(l.is_down(&p));
        // A beat made before the failure, relayed late.
        l.handle_heartbeat(ms(4500), &p, Heartbeat { generation: 1, beat: 5 }, false);
        l.update(ms(4500));
        assert!(l.is_down(&p), "a relayed beat from before the failure proves nothing");
        l.handle_heartbeat(ms(6000), &p, Heartbeat { generation: 1, beat: 6 }, false);
        l.update(ms(6000));
        assert_eq!(l.state(&p), PeerState::Up);
        // Unanswered: suspect, not down; its answer clears it.
        l.handle_failure(ms(6100), &p, false);
        l.update(ms(6100));
        assert_eq!(l.state(&p), PeerState::Suspect);
        l.handle_answer(ms(6200), &p);
        l.update(ms(6200));
        assert_eq!(l.state(&p), PeerState::Up);
        // A restart (new generation) clears a failure at once; so does the peer's own report.
        l.handle_failure(ms(6300), &p, true);
        l.handle_heartbeat(ms(6400), &p, Heartbeat { generation: 2, beat: 0 }, false);
        l.update(ms(6400));
        assert_eq!(l.state(&p), PeerState::Up);
        l.handle_failure(ms(6500), &p, true);
        l.handle_heartbeat(ms(6600), &p, Heartbeat { generation: 1, beat: 0 }, true);
        l.update(ms(6600));
        assert_eq!(l.state(&p), PeerState::Up, "its own word, clock gone back");
        assert_eq!(l.heartbeat(&p), Some(Heartbeat { generation: 1, beat: 0 }));
    }

    /// A peer that is not close is judged by its watchers' latest verdicts: down only when
    /// every watcher still standing says so; a watcher held down does not count; a later
    /// verdict of one watcher replaces its earlier one, an older one does not; the peer's own
    /// word after the verdicts makes it up; silence alone never does anything.
    #[test]
    fn a_far_peer_takes_the_mildest_verdict_of_its_watchers() {
        let (p, w1, w2) = (id("p"), id("w1"), id("w2"));
        let mut l = Liveness::new(LivenessConfig::default());
        for w in [&w1, &w2] {
            l.track(ms(0), w);
        }
        l.set_close(ms(0), &p, false, alloc::vec![w1.clone(), w2.clone()]);
        let verdict = |observer: &NodeId, beat, state| Verdict {
            subject: p.clone(),
            observer: observer.clone(),
            at: Heartbeat { generation: 1, beat },
            state,
        };
        // Silence says nothing about a far peer (the watchers beat every second).
        for t in (0..=60_000).step_by(1000) {
            for w in [&w1, &w2] {
                l.handle_heartbeat(ms(t), w, Heartbeat { generation: 1, beat: t / 1000 }, true);
            }
            l.update(ms(t));
        }
        assert_eq!(l.state(&p), PeerState::Up);
        assert!(l.handle_verdict(ms(60_100), &verdict(&w1, 10, PeerState::Down)));
        l.update(ms(60_100));
        assert_eq!(l.state(&p), PeerState::Up, "w2 has not said it is down");
        assert!(l.handle_verdict(ms(60_200), &verdict(&w2, 10, PeerState::Suspect)));
        l.update(ms(60_200));
        assert_eq!(l.state(&p), PeerState::Suspect, "the mildest word");
        assert!(l.handle_verdict(ms(60_300), &verdict(&w2, 11, PeerState::Down)));
        assert!(!l.handle_verdict(ms(60_300), &verdict(&w2, 9, PeerState::Up)), "an older verdict");
        assert!(!l.handle_verdict(ms(60_300), &verdict(&id("stranger"), 99, PeerState::Up)), "not a watcher of p");
        l.update(ms(60_300));
        assert_eq!(l.state(&p), PeerState::Down);
        // w2 says p is up again; then w2 itself goes silent and is held down: only w1 counts.
        assert!(l.handle_verdict(ms(60_400), &verdict(&w2, 12, PeerState::Up)));
        l.update(ms(60_400));
        assert_eq!(l.state(&p), PeerState::Up);
        for t in (61_000..80_000).step_by(1000) {
            l.handle_heartbeat(ms(t), &w1, Heartbeat { generation: 1, beat: t / 1000 }, true);
            l.update(ms(t));
        }
        assert_eq!(l.state(&w2), PeerState::Down);
        assert_eq!(l.state(&p), PeerState::Down, "w2 is down: w1's word stands");
        // p speaks to this node after the verdicts: up.
        l.handle_answer(ms(80_000), &p);
        l.update(ms(80_000));
        assert_eq!(l.state(&p), PeerState::Up);
        // Becoming close starts its detector afresh: not down for the silence before.
        l.set_close(ms(200_000), &p, true, alloc::vec![w1.clone()]);
        l.update(ms(200_500));
        assert_eq!(l.state(&p), PeerState::Up);
    }

    /// A client adopts the verdicts of the node it asks; an answer from the peer after them
    /// makes it up; its detector never judges.
    #[test]
    fn a_client_adopts_verdicts_and_never_judges_by_silence() {
        let p = id("p");
        let mut l = Liveness::without_detector(LivenessConfig::default());
        l.handle_answer(ms(0), &p);
        l.update(ms(100_000));
        assert_eq!(l.state(&p), PeerState::Up, "silence says nothing to a client");
        l.adopt(ms(100_000), &p, PeerState::Down);
        l.update(ms(100_000));
        assert!(l.is_down(&p));
        l.adopt(ms(101_000), &p, PeerState::Down);
        l.handle_answer(ms(100_500), &p);
        l.update(ms(101_000));
        assert_eq!(l.state(&p), PeerState::Up, "it answered after the verdict");
        l.adopt(ms(102_000), &p, PeerState::Suspect);
        l.update(ms(102_000));
        assert_eq!(l.state(&p), PeerState::Suspect);
    }

    /// Answers many times a second do not squeeze the interval the detector expects.
    #[test]
    fn request_traffic_does_not_make_the_detector_jumpy() {
        let p = id("p");
        let mut l = Liveness::new(LivenessConfig::default());
        for t in (0..10_000).step_by(5) {
            l.handle_answer(ms(t), &p);
            if t % 1000 == 0 {
                l.handle_heartbeat(ms(t), &p, Heartbeat { generation: 1, beat: t / 1000 }, false);
            }
        }
        l.update(ms(11_000));
        assert_eq!(l.state(&p), PeerState::Up, "1 s of quiet after steady traffic is not suspicious");
    }

    /// With the watch set, a node of a large cluster holds records of the peers close to it
    /// and of those it hears of, not of every member: a far peer's own word makes a record
    /// that silence does not take down; a verdict of one of its watchers makes one and counts;
    /// a verdict of another node does not; a member that leaves the circle is forgotten.
    #[test]
    fn a_node_tracks_the_peers_it_hears_of_not_every_member() {
        let members: Vec<NodeId> = (0..1000).map(|i| id(&alloc::format!("n{i}"))).collect();
        let me = members[0].clone();
        let watch = Watch::new(members.clone(), 3);
        let mut l = Liveness::new(LivenessConfig::default());
        l.set_watch(ms(0), &me, watch.clone());
        let close: alloc::collections::BTreeSet<NodeId> =
            watch.watched_by(&me).into_iter().chain(watch.watchers_of(&me)).collect();
        assert_eq!(l.tracked(), close.len());
        assert_eq!(close.len(), 6);
        // A far peer speaks once, then is silent: up, and held.
        let far = members.iter().find(|m| **m != me && !close.contains(*m)).unwrap().clone();
        l.handle_heartbeat(ms(1000), &far, Heartbeat { generation: 1, beat: 1 }, true);
        l.update(ms(60_000));
        assert_eq!(l.state(&far), PeerState::Up, "silence says nothing of a far peer");
        assert_eq!(l.tracked(), close.len() + 1);
        // A verdict on another far peer: from one of its watchers it counts, from another
        // node it is not even held.
        let subject = members
            .iter()
            .find(|m| **m != me && **m != far && !close.contains(*m) && !watch.watchers_of(m).contains(&me))
            .unwrap()
            .clone();
        let watcher = watch.watchers_of(&subject)[0].clone();
        let stranger = members.iter().find(|m| !watch.watchers_of(&subject).contains(m) && **m != subject).unwrap();
        let verdict = |observer: &NodeId| Verdict {
            subject: subject.clone(),
            observer: observer.clone(),
            at: Heartbeat { generation: 1, beat: 5 },
            state: PeerState::Down,
        };
        assert!(!l.handle_verdict(ms(61_000), &verdict(stranger)));
        assert_eq!(l.tracked(), close.len() + 1);
        assert!(l.handle_verdict(ms(61_000), &verdict(&watcher)));
        assert_eq!(l.tracked(), close.len() + 2);
        l.update(ms(61_000));
        assert_eq!(l.state(&subject), PeerState::Up, "its other watchers have not said so");
        // `far` leaves: forgotten.
        let rest: Vec<NodeId> = members.iter().filter(|m| **m != far).cloned().collect();
        l.set_watch(ms(62_000), &me, Watch::new(rest, 3));
        assert_eq!(l.state(&far), PeerState::Up);
        assert!(l.heartbeat(&far).is_none());
        assert_eq!(l.tracked(), close.len() + 1);
    }
}
