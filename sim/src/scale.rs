//! Gossip at scale: what membership costs each node as the cluster grows (issue 8, 1.1).
//!
//! Runs `nodes` real node machines that start from one agreed view (no data, no faults, every
//! message delivered after 1 ms), lets them gossip for a while at the default interval (1 s),
//! and counts the bytes of every frame each node sends (gossip requests, answers and pushes).
//! Then one node creates a store and the run measures how long the change takes to reach every
//! node, and what that costs.
//!
//! `quickv-sim --gossip-scale 10,100,1000` prints one line per size; the figures go in
//! `docs/cluster.md`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use quickv_core::cluster::ClusterView;
use quickv_core::identity::CertificateDigest;
use quickv_core::liveness::PeerState;
use quickv_core::membership::NodeInfo;
use quickv_core::node::{Destination, Io, IoOutput, Node, NodeConfig, Origin};
use quickv_core::store::{StoreConfig, StoreName};
use quickv_core::version::ContextKey;
use quickv_core::wire::{self, Message, Request};

/// What one size of cluster costs.
#[derive(Clone, Debug)]
pub struct ScaleReport {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Bytes each node sent per second with an unchanging view (mean over nodes).
    pub steady_bytes_per_node_per_sec: f64,
    /// The most any one node sent per second with an unchanging view.
    pub steady_max_bytes_per_node_per_sec: f64,
    /// Seconds until a store created at one node was in every node's view.
    pub change_spread_secs: f64,
    /// Bytes sent per node per second while the change spread.
    pub change_bytes_per_node_per_sec: f64,
    /// Verdicts of `down` on live peers at the end of the steady window (over every pair).
    pub steady_false_downs: usize,
    /// Seconds from one node stopping until every other node held it down.
    pub stop_detected_secs: f64,
    /// Verdicts of `down` on live peers when the stop was detected.
    pub stop_false_downs: usize,
}

/// The frames in flight, by delivery time.
enum Delivery {
    Request { to: usize, from: usize, stream: u64, frame: Vec<u8> },
    Answer { to: usize, frame: Vec<u8> },
}

struct Net {
    nodes: Vec<Node>,
    addresses: BTreeMap<String, usize>,
    certificates: Vec<CertificateDigest>,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    deliveries: BTreeMap<u64, Delivery>,
    timers: BinaryHeap<Reverse<(Duration, usize)>>,
    /// Requests each node has out, by stream: who asked.
    streams: BTreeMap<u64, usize>,
    next_stream: u64,
    sent: Vec<u64>,
    /// Nodes stopped: they take no message and run no timer.
    stopped: Vec<bool>,
}

impl Net {
    fn new(count: usize) -> Net {
        let mut view = ClusterView::new(12);
        let mut infos = Vec::new();
        let mut certificates = Vec::new();
        for i in 0..count {
            let certificate = CertificateDigest::of(format!("n{i}").as_bytes());
            let info = NodeInfo::new(
                &format!("n{i}"),
                &format!("10.0.{}.{}:7000", i / 250, i % 250),
                &format!("z{}", i % 3),
                1,
            )
            .expect("valid node")
            .with_certificate(certificate);
            view.upsert_node(info.clone()).expect("a new id");
            infos.push(info);
            certificates.push(certificate);
        }
        let claimant = view.claimant().cloned().expect("members");
        view.advance_ring(&claimant).expect("a ring for every node");
        let _ = view.create_store(StoreName::default_store(), StoreConfig::quorum());
        let secret = ContextKey::new([9; ContextKey::LEN]);
        let mut net = Net {
            nodes: Vec::new(),
            addresses: BTreeMap::new(),
            certificates,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            deliveries: BTreeMap::new(),
            timers: BinaryHeap::new(),
            streams: BTreeMap::new(),
            next_stream: 1,
            sent: vec![0; count],
            stopped: vec![false; count],
        };
        for (i, info) in infos.into_iter().enumerate() {
            net.addresses.insert(info.address.clone(), i);
            let mut config = NodeConfig::new(info, secret.clone());
            config.seed = i as u64;
            // Start the rounds at spread instants, as real nodes do.
            let start = Duration::from_micros((i as u64 * 7919) % 1_000_000);
            net.nodes.push(Node::new(config, view.clone(), start).expect("the node starts"));
        }
        for i in 0..count {
            net.drain(i);
        }
        net
    }

    fn drain(&mut self, i: usize) {
        while let Some((id, io)) = self.nodes[i].poll_io() {
            let out = match io {
                Io::Load { .. } => IoOutput::Loaded(None),
                _ => IoOutput::Done,
            };
            self.nodes[i].handle_io(self.now, id, Ok(out));
        }
        while self.nodes[i].poll_event().is_some() {}
        while let Some(t) = self.nodes[i].poll_transmit() {
            let frame = wire::encode(&t.message);
            self.sent[i] += frame.len() as u64;
            let delivery = match t.to {
                Destination::Reply(stream) => match self.streams.remove(&stream) {
                    Some(asker) => Delivery::Answer { to: asker, frame },
                    None => continue,
                },
                Destination::Node { address, .. } => {
                    let Some(&to) = self.addresses.get(&address) else { continue };
                    let stream = self.next_stream;
                    self.next_stream += 1;
                    self.streams.insert(stream, i);
                    Delivery::Request { to, from: i, stream, frame }
                }
            };
            self.seq += 1;
            self.deliveries.insert(self.seq, delivery);
            self.queue.push(Reverse((self.now + Duration::from_millis(1), self.seq)));
        }
        if let Some(t) = self.nodes[i].poll_timeout() {
            self.timers.push(Reverse((t, i)));
        }
    }

    fn run_until(&mut self, end: Duration) {
        loop {
            let next_delivery = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let at = match (next_delivery, next_timer) {
                (Some(d), Some(t)) => d.min(t),
                (Some(d), None) => d,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            if next_timer == Some(at) {
                let Some(Reverse((t, i))) = self.timers.pop() else { break };
                // A stale timer entry (the node's timeout moved) is skipped.
                if !self.stopped[i] && self.nodes[i].poll_timeout() == Some(t) {
                    self.nodes[i].handle_timeout(self.now);
                    self.drain(i);
                }
                continue;
            }
            let Some(Reverse((_, seq))) = self.queue.pop() else { break };
            match self.deliveries.remove(&seq) {
                Some(Delivery::Request { to, .. } | Delivery::Answer { to, .. }) if self.stopped[to] => {}
                Some(Delivery::Request { to, from, stream, frame }) => {
                    let origin = Origin::peer(stream, self.certificates[from]);
                    self.nodes[to].handle_frame(self.now, origin, &frame);
                    self.drain(to);
                }
                Some(Delivery::Answer { to, frame }) => {
                    self.nodes[to].handle_frame(self.now, Origin::Answer, &frame);
                    self.drain(to);
                }
                None => {}
            }
        }
        self.now = self.now.max(end);
    }

    /// How many verdicts of `down` nodes still running hold on peers still running.
    fn false_downs(&self) -> usize {
        let ids: Vec<_> = self.nodes.iter().map(|n| n.id().clone()).collect();
        let live = |i: usize| !self.stopped[i];
        (0..self.nodes.len())
            .filter(|&i| live(i))
            .map(|i| {
                (0..ids.len())
                    .filter(|&j| j != i && live(j) && self.nodes[i].peer_state(&ids[j]) == PeerState::Down)
                    .count()
            })
            .sum()
    }
}

/// Measures a cluster of `nodes` nodes: see the module docs.
pub fn measure(nodes: usize) -> ScaleReport {
    let mut net = Net::new(nodes);
    let warm = Duration::from_secs(5);
    let window = Duration::from_secs(20);
    net.run_until(warm);
    let before = net.sent.clone();
    net.run_until(warm + window);
    let per_node: Vec<f64> = net.sent.iter().zip(&before).map(|(a, b)| (a - b) as f64 / window.as_secs_f64()).collect();
    let steady = per_node.iter().sum::<f64>() / nodes as f64;
    let steady_max = per_node.iter().copied().fold(0.0, f64::max);
    // A store created at one node: how long until every view holds it.
    let carts = StoreName::new("carts").expect("valid");
    let begun = net.now;
    let sent_before = net.sent.iter().sum::<u64>();
    let create = Request::CreateStore { name: carts.clone(), config: StoreConfig::eventual() };
    let frame = wire::encode(&Message::Request { id: 1, body: create });
    let stream = net.next_stream;
    net.next_stream += 1;
    net.nodes[0].handle_frame(net.now, Origin::caller(stream), &frame);
    net.drain(0);
    let limit = begun + Duration::from_secs(120);
    let mut spread = None;
    while net.now < limit {
        let step = net.now + Duration::from_millis(100);
        net.run_until(step);
        if net.nodes.iter().all(|n| n.view().store(&carts).is_some()) {
            spread = Some(net.now - begun);
            break;
        }
    }
    let spread = spread.unwrap_or(limit - begun);
    let change_bytes = (net.sent.iter().sum::<u64>() - sent_before) as f64;
    let steady_false_downs = net.false_downs();
    // One node stops: how long until every other node holds it down.
    let victim = nodes - 1;
    let victim_id = net.nodes[victim].id().clone();
    net.stopped[victim] = true;
    let begun = net.now;
    let limit = begun + Duration::from_secs(120);
    let mut detected = None;
    while net.now < limit {
        let step = net.now + Duration::from_millis(100);
        net.run_until(step);
        let all = (0..nodes).filter(|&i| i != victim).all(|i| net.nodes[i].peer_state(&victim_id) == PeerState::Down);
        if all {
            detected = Some(net.now - begun);
            break;
        }
    }
    ScaleReport {
        nodes,
        steady_bytes_per_node_per_sec: steady,
        steady_max_bytes_per_node_per_sec: steady_max,
        change_spread_secs: spread.as_secs_f64(),
        change_bytes_per_node_per_sec: change_bytes / nodes as f64 / spread.as_secs_f64().max(0.1),
        steady_false_downs,
        stop_detected_secs: detected.unwrap_or(limit - begun).as_secs_f64(),
        stop_false_downs: net.false_downs(),
    }
}

#[cfg(test)]
mod tests {
    /// A small cluster gossips a few hundred bytes per node per second, spreads a change to
    /// every node within a few seconds, holds no live node down, and holds a stopped one down
    /// everywhere within seconds.
    #[test]
    fn ten_nodes_gossip_cheaply_and_spread_a_change() {
        let report = super::measure(10);
        assert!(report.steady_bytes_per_node_per_sec > 100.0, "{report:?}");
        assert!(report.steady_bytes_per_node_per_sec < 2_000.0, "{report:?}");
        assert!(report.change_spread_secs < 5.0, "{report:?}");
        assert_eq!(report.steady_false_downs, 0, "{report:?}");
        assert!(report.stop_detected_secs < 10.0, "{report:?}");
        assert_eq!(report.stop_false_downs, 0, "{report:?}");
    }
}
