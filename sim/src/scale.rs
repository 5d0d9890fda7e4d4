//! Gossip at scale: what membership costs each node as the cluster grows (issue 8, 1.1; issue
//! 9, 3.2).
//!
//! Runs `nodes` real node machines that start from one agreed view (no data, no faults, every
//! message delivered after 1 ms; 2^12 partitions, or at least 4 a node: 2^16 at 10,000), lets
//! them gossip for a while at the default interval (1 s), and counts the encoded bytes of every
//! message each node sends (gossip requests, answers and pushes). Then one node creates a store
//! and the run measures how long the change takes to reach every node, and what that costs;
//! then a node joins, and the run measures until every node holds the ring with it.
//!
//! Messages are handed over as values, not frames, so what simulated nodes share (a ring, the
//! entries of the membership) is held once, as it would be once per process in a real cluster:
//! 10,000 node machines fit in one process of a few gigabytes.
//!
//! `quickv-sim --gossip-scale 10,100,1000,10000` prints one line per size; the figures go in
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
    /// log2 of the ring's partition count ([`partition_bits_for`]).
    pub partition_bits: u8,
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
    /// Seconds from a new node's first join request until every node (the new one included)
    /// holds the ring with it committed (a ring change through the claimant, its transfer, and
    /// the commit; no data, so the transfer is the comparisons only; issue 9, 3.2).
    pub join_agreed_secs: f64,
    /// Bytes sent per node per second while the join was agreed.
    pub join_bytes_per_node_per_sec: f64,
    /// Wall-clock nanoseconds per preference-list lookup (N=3, 3 fallbacks) on the ring with
    /// every node (a mean over 200,000 lookups on this machine: an indication, not a benchmark).
    pub lookup_ns: f64,
}

/// The messages in flight, by delivery time. They travel as values, not frames: what one
/// node sends is what another takes, so the parts of a view they share (a ring, in an `Arc`)
/// stay one copy in memory, as they would be one copy per process in a real cluster. Their
/// encoded size is what is counted as sent. (The simulation of faults, `world`, sends frames.)
enum Delivery {
    Request { to: usize, from: usize, stream: u64, message: Message },
    Answer { to: usize, message: Message },
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
    /// Changes of a node's view, over every node (reported with each phase).
    view_changes: u64,
}

impl Net {
    /// Starts one more node, with its own entry and a certificate, joining through node 0.
    fn join_one(&mut self) -> usize {
        let i = self.nodes.len();
        let certificate = CertificateDigest::of(format!("n{i}").as_bytes());
        let info = NodeInfo::new(&format!("n{i}"), &format!("10.1.{}.{}:7000", i / 250, i % 250), "z9", 1)
            .expect("valid node")
            .with_certificate(certificate);
        self.addresses.insert(info.address.clone(), i);
        self.certificates.push(certificate);
        self.sent.push(0);
        self.stopped.push(false);
        let mut config = NodeConfig::new(info, ContextKey::new([9; ContextKey::LEN]));
        config.seed = i as u64;
        config.seeds = vec![self.nodes[0].info().address.clone()];
        let view = ClusterView::new(self.nodes[0].view().partition_bits());
        self.nodes.push(Node::new(config, view, self.now).expect("the node starts"));
        self.drain(i);
        i
    }

    fn new(count: usize) -> Net {
        let mut view = ClusterView::new(partition_bits_for(count));
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
            view_changes: 0,
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
        while let Some(event) = self.nodes[i].poll_event() {
            if matches!(event, quickv_core::node::Event::ViewChanged) {
                self.view_changes += 1;
            }
        }
        while let Some(t) = self.nodes[i].poll_transmit() {
            self.sent[i] += wire::encode(&t.message).len() as u64;
            let message = t.message;
            let delivery = match t.to {
                Destination::Reply(stream) => match self.streams.remove(&stream) {
                    Some(asker) => Delivery::Answer { to: asker, message },
                    None => continue,
                },
                Destination::Node { address, .. } => {
                    let Some(&to) = self.addresses.get(&address) else { continue };
                    let stream = self.next_stream;
                    self.next_stream += 1;
                    self.streams.insert(stream, i);
                    Delivery::Request { to, from: i, stream, message }
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
                Some(Delivery::Request { to, from, stream, message }) => {
                    let origin = Origin::peer(stream, self.certificates[from]);
                    self.nodes[to].handle_message(self.now, origin, message);
                    self.drain(to);
                }
                Some(Delivery::Answer { to, message }) => {
                    self.nodes[to].handle_message(self.now, Origin::Answer, message);
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

/// The partitions a cluster of `nodes` is simulated with: 2^12, or more so that there are at
/// least 4 a node (2^16, the default of real clusters, at 10,000 nodes).
pub fn partition_bits_for(nodes: usize) -> u8 {
    let wanted = (nodes.max(1) * 4).next_power_of_two().trailing_zeros() as u8;
    wanted.clamp(12, 16)
}

/// Measures a cluster of `nodes` nodes: see the module docs. Reports each phase on stderr as
/// it ends (a run of thousands of nodes takes minutes).
pub fn measure(nodes: usize) -> ScaleReport {
    let started = std::time::Instant::now();
    let phase = |name: &str, net: &Net| {
        let (at, changes) = (started.elapsed().as_secs_f64(), net.view_changes);
        eprintln!("  {nodes} nodes: {name} ({at:.1} s, {changes} view changes so far over every node)")
    };
    let mut net = Net::new(nodes);
    phase("started", &net);
    let warm = Duration::from_secs(5);
    let window = Duration::from_secs(20);
    net.run_until(warm);
    let before = net.sent.clone();
    net.run_until(warm + window);
    let per_node: Vec<f64> = net.sent.iter().zip(&before).map(|(a, b)| (a - b) as f64 / window.as_secs_f64()).collect();
    let steady = per_node.iter().sum::<f64>() / nodes as f64;
    let steady_max = per_node.iter().copied().fold(0.0, f64::max);
    phase(&format!("steady window, {steady:.0} B/s per node (max {steady_max:.0})"), &net);
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
    phase("store create", &net);
    let change_bytes = (net.sent.iter().sum::<u64>() - sent_before) as f64;
    let steady_false_downs = net.false_downs();
    // A node joins: how long until every node holds the ring with it, no change under way.
    let begun = net.now;
    let sent_before = net.sent.iter().sum::<u64>();
    let joiner = net.join_one();
    let joiner_id = net.nodes[joiner].id().clone();
    let limit = begun + Duration::from_secs(300);
    let mut agreed = None;
    while net.now < limit {
        let step = net.now + Duration::from_millis(100);
        net.run_until(step);
        let version = net.nodes[0].view().ring().map(|r| r.version());
        let all = net.nodes.iter().all(|n| {
            let view = n.view();
            view.transition().is_none()
                && view.ring().is_some_and(|r| r.version() == version.unwrap_or(r.version()))
                && view.ring().is_some_and(|r| r.nodes().iter().any(|m| m.id == joiner_id))
        });
        if all {
            agreed = Some(net.now - begun);
            break;
        }
    }
    let agreed = agreed.unwrap_or(limit - begun);
    phase("join", &net);
    let join_bytes = (net.sent.iter().sum::<u64>() - sent_before) as f64;
    let members = net.nodes.len() as f64;
    let lookup_ns = lookup_ns(net.nodes[0].view().ring().expect("a ring"));
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
    phase("stop", &net);
    ScaleReport {
        nodes,
        partition_bits: net.nodes[0].view().partition_bits(),
        steady_bytes_per_node_per_sec: steady,
        steady_max_bytes_per_node_per_sec: steady_max,
        change_spread_secs: spread.as_secs_f64(),
        change_bytes_per_node_per_sec: change_bytes / nodes as f64 / spread.as_secs_f64().max(0.1),
        steady_false_downs,
        stop_detected_secs: detected.unwrap_or(limit - begun).as_secs_f64(),
        stop_false_downs: net.false_downs(),
        join_agreed_secs: agreed.as_secs_f64(),
        join_bytes_per_node_per_sec: join_bytes / members / agreed.as_secs_f64().max(0.1),
        lookup_ns,
    }
}

/// What the ring alone costs at one cluster size (no node machines: the claimant's work and a
/// lookup, for sizes whose every node's view would not fit in one process).
#[derive(Clone, Debug)]
pub struct RingReport {
    /// Members.
    pub nodes: usize,
    /// log2 of the partition count.
    pub partition_bits: u8,
    /// Wall-clock milliseconds to build the first ring of every member.
    pub build_ms: f64,
    /// Wall-clock milliseconds for the claimant to make the next ring when one node joins.
    pub join_ms: f64,
    /// Partitions whose replicas (N=3) the join changes, and replicas the joiner gains.
    pub moved_partitions: usize,
    /// See `moved_partitions`.
    pub joiner_gains: usize,
    /// The encoded size of the view every node holds (membership, ring, one store), bytes.
    pub view_bytes: usize,
    /// Wall-clock nanoseconds per preference-list lookup (N=3, 3 fallbacks), over 200,000.
    pub lookup_ns: f64,
}

/// Builds the ring of `nodes` members in 3 zones with `2^partition_bits` partitions, then times
/// a join's next ring and lookups (wall clock on this machine: indications).
pub fn ring_at_scale(nodes: usize, partition_bits: u8) -> RingReport {
    let mut view = ClusterView::new(partition_bits);
    let entry = |i: usize, zone: &str| {
        NodeInfo::new(&format!("n{i}"), &format!("10.{}.{}.{}:7000", i / 62_500, i / 250 % 250, i % 250), zone, 1)
            .expect("valid node")
    };
    for i in 0..nodes {
        view.upsert_node(entry(i, &format!("z{}", i % 3))).expect("a new id");
    }
    let _ = view.create_store(StoreName::default_store(), StoreConfig::quorum());
    let claimant = view.claimant().cloned().expect("members");
    let started = std::time::Instant::now();
    view.advance_ring(&claimant).expect("a ring");
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
    let ring = view.ring().expect("a ring").clone();
    let view_bytes = quickv_core::encoding::to_vec(&view).len();
    view.upsert_node(entry(nodes, "z1")).expect("a new id");
    let started = std::time::Instant::now();
    let next = view.next_ring().expect("the next ring").expect("a change");
    let join_ms = started.elapsed().as_secs_f64() * 1000.0;
    let plan = quickv_core::ring::RingPlan::between(Some(&ring), &next, 3).expect("a plan");
    let joiner = format!("n{nodes}");
    let joiner_gains = plan.nodes.iter().find(|n| n.id.as_str() == joiner).map_or(0, |n| n.gained);
    let moved_partitions = (0..ring.partition_count())
        .filter(|&p| {
            let token = ring.partition_range(p).first();
            ring.preference_list(token, 3, 0).primaries() != next.preference_list(token, 3, 0).primaries()
        })
        .count();
    let lookup_ns = lookup_ns(&next);
    RingReport { nodes, partition_bits, build_ms, join_ms, moved_partitions, joiner_gains, view_bytes, lookup_ns }
}

/// Wall-clock nanoseconds per preference-list lookup (N=3, 3 fallbacks) on `ring`, over
/// 200,000 lookups.
fn lookup_ns(ring: &quickv_core::ring::Ring) -> f64 {
    let lookups = 200_000u64;
    let started = std::time::Instant::now();
    let mut primaries = 0usize;
    for k in 0..lookups {
        let token = quickv_core::token::Token::of(&k.to_le_bytes());
        primaries += std::hint::black_box(ring.preference_list(token, 3, 3)).primaries().len();
    }
    assert_eq!(primaries as u64, 3 * lookups);
    started.elapsed().as_nanos() as f64 / lookups as f64
}

/// One figure of a report, as the chart draws it.
type Figure = fn(&ScaleReport) -> f64;

/// An SVG line chart of `reports`: by cluster size (log scale), the seconds a join takes to be
/// agreed and a store create to spread, and the bytes each node sends per second, steady.
pub fn plot(reports: &[ScaleReport]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 360.0, 60.0, 70.0, 30.0, 50.0);
    let sizes: Vec<f64> = reports.iter().map(|r| (r.nodes as f64).log10()).collect();
    let (lo, hi) = (sizes.iter().copied().fold(f64::MAX, f64::min), sizes.iter().copied().fold(f64::MIN, f64::max));
    let x = |v: f64| left + (v - lo) / (hi - lo).max(1e-9) * (w - left - right);
    let secs_max = reports.iter().map(|r| r.join_agreed_secs.max(r.change_spread_secs)).fold(1.0, f64::max).ceil();
    let bytes_max = reports.iter().map(|r| r.steady_bytes_per_node_per_sec).fold(1.0, f64::max) * 1.2;
    let y = |v: f64, max: f64| h - bottom - v / max * (h - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\">quickv-sim --gossip-scale: ring changes and gossip by cluster size</text>\n\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{}\" y1=\"{top}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">seconds (virtual)</text>\n\
         <text x=\"{}\" y=\"{}\" transform=\"rotate(90 {} {})\" text-anchor=\"middle\">bytes per node per second</text>\n",
        w / 2.0,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        w - right,
        w - right,
        h - bottom,
        h / 2.0,
        h / 2.0,
        w - 15.0,
        h / 2.0,
        w - 15.0,
        h / 2.0,
    );
    for (r, &s) in reports.iter().zip(&sizes) {
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} nodes</text>\n",
            x(s),
            h - bottom + 18.0,
            r.nodes
        );
    }
    for tick in 0..=4 {
        let v = secs_max * tick as f64 / 4.0;
        svg += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\n",
            left - 5.0,
            y(v, secs_max) + 4.0
        );
        let b = bytes_max * tick as f64 / 4.0;
        svg += &format!("<text x=\"{}\" y=\"{:.1}\">{b:.0}</text>\n", w - right + 5.0, y(b, bytes_max) + 4.0);
    }
    let series: [(&str, &str, Figure, f64); 3] = [
        ("a join agreed by every node (s)", "#c0392b", |r| r.join_agreed_secs, secs_max),
        ("a store create at every node (s)", "#2980b9", |r| r.change_spread_secs, secs_max),
        ("gossip bytes per node per second, steady", "#27ae60", |r| r.steady_bytes_per_node_per_sec, bytes_max),
    ];
    for (k, (name, colour, value, max)) in series.iter().enumerate() {
        let points: Vec<String> =
            reports.iter().zip(&sizes).map(|(r, &s)| format!("{:.1},{:.1}", x(s), y(value(r), *max))).collect();
        svg += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\n",
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            svg += &format!("<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{colour}\"/>\n");
        }
        let ly = top + 14.0 + 16.0 * k as f64;
        svg += &format!(
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{name}</text>\n",
            left + 10.0,
            ly - 4.0,
            left + 28.0,
            ly
        );
    }
    svg + "</svg>\n"
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
        assert!(report.join_agreed_secs < 10.0, "{report:?}");
        assert!(report.lookup_ns > 0.0, "{report:?}");
        assert_eq!(report.partition_bits, 12, "{report:?}");
        assert_eq!(
            [100, 1_000, 2_000, 10_000, 100_000].map(super::partition_bits_for),
            [12, 12, 13, 16, 16],
            "2^12 partitions, or at least 4 a node up to the default 2^16"
        );
        let svg = super::plot(&[report.clone(), super::ScaleReport { nodes: 100, ..report }]);
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
    }

    /// A join into 300 members of equal capacity gives the joiner about its share of replicas
    /// (3 x 16,384 / 301, about 163), and moves little more than what it enters.
    #[test]
    fn a_join_at_scale_moves_about_the_joiners_share() {
        let report = super::ring_at_scale(300, 14);
        assert!((130..=200).contains(&report.joiner_gains), "{report:?}");
        assert!(report.moved_partitions >= report.joiner_gains, "{report:?}");
        assert!(report.moved_partitions <= 2 * report.joiner_gains, "{report:?}");
        assert!(report.lookup_ns > 0.0 && report.view_bytes > 0, "{report:?}");
    }
}
