//! Which peers are up: each node's local verdict on each peer, from heartbeats and requests.
//!
//! A [`Liveness`] holds, per peer, a phi-accrual detector ([`crate::failure`]) fed with the
//! peer's [`Heartbeat`]s as gossip brings them (a newer one, learnt from anyone; at most one a
//! [`min_interval`](LivenessConfig::min_interval), so a burst of gossip does not squeeze the
//! detector's estimate of the heartbeat interval). From it each peer
//! is [`PeerState::Up`], [`PeerState::Suspect`] (phi past
//! [`suspect_phi`](LivenessConfig::suspect_phi)) or [`PeerState::Down`] (past
//! [`down_phi`](LivenessConfig::down_phi)).
//!
//! Request traffic gives faster verdicts than silence does: a peer no connection could be made
//! to is `Down` at once, and one that let a request go unanswered is at least `Suspect`, until
//! it shows life again (an answer, or a heartbeat it beat after the failure: two beats past the
//! one known then).
//!
//! The verdict is local and never moves ownership: it decides where requests go first (a node
//! known down is not asked, its fallback is), when hints are handed back, and what
//! `quickv status` shows. A peer this node has not heard from yet is assumed up from the moment
//! it is first tracked, so one that never speaks is suspected after the usual silence.
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
use crate::gossip::Heartbeat;
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
    detector: PhiAccrualDetector,
    heartbeat: Option<Heartbeat>,
    /// When this node last had word of the peer (a newer heartbeat or an answer).
    last_heard: Option<Duration>,
    /// When the detector was last fed.
    fed: Duration,
    state: PeerState,
    /// A request failure not yet outlived, with the heartbeat known when it happened.
    failure: Option<(Failure, Option<Heartbeat>)>,
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
}

impl Liveness {
    /// Tracks no peer yet.
    pub fn new(config: LivenessConfig) -> Liveness {
        Liveness { config, peers: BTreeMap::new() }
    }

    /// Starts tracking `id` at `now` if it is not tracked (assumed up from now).
    pub fn track(&mut self, now: Duration, id: &NodeId) {
        self.peer(now, id);
    }

    /// Stops tracking every peer for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&NodeId) -> bool) {
        self.peers.retain(|id, _| keep(id));
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
            }
        }
        // Heartbeats that arrive in a burst (gossip from several peers) feed the detector once.
        if now >= peer.fed.saturating_add(min_interval) {
            peer.detector.handle_heartbeat(now);
            peer.fed = now;
        }
        true
    }

    /// The peer answered a request at `now`: it is alive, whatever failure was held against it.
    /// (Answers do not feed the detector: request traffic comes in bursts and lulls, and would
    /// teach it to expect word far more often than heartbeats bring it.)
    pub fn handle_answer(&mut self, now: Duration, id: &NodeId) {
        let peer = self.peer(now, id);
        peer.last_heard = Some(now);
        peer.failure = None;
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
    }

    /// Recomputes every verdict at `now`; returns the changes.
    pub fn update(&mut self, now: Duration) -> Vec<Transition> {
        let config = self.config;
        let mut changes = Vec::new();
        for (id, peer) in &mut self.peers {
            let phi = peer.detector.phi(now);
            let by_silence = if phi >= config.down_phi {
                PeerState::Down
            } else if phi >= config.suspect_phi {
                PeerState::Suspect
            } else {
                PeerState::Up
            };
            let by_requests = match peer.failure {
                Some((Failure::Unreachable, _)) => PeerState::Down,
                Some((Failure::Silent, _)) => PeerState::Suspect,
                None => PeerState::Up,
            };
            let state = by_silence.max(by_requests);
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
        self.peers.entry(id.clone()).or_insert_with(|| {
            let mut detector = PhiAccrualDetector::new(config);
            // Assumed alive from the moment it is first tracked: silence from then on counts.
            detector.handle_heartbeat(now);
            Peer { detector, heartbeat: None, last_heard: None, fed: now, state: PeerState::Up, failure: None }
        })
    }
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
}
