//! Keeping the cluster view in step: joining through seeds, gossip, and each peer's liveness.
//!
//! A node without seeds starts a cluster. A node with seeds sends its entry to every seed each
//! [`sync_interval`](super::NodeConfig::sync_interval) until one answers with its view. Once in,
//! every interval the node raises its heartbeat, gossips ([`crate::gossip`]: summaries, news and
//! verdicts; whole digests and deltas only when summaries differ) with each peer it watches and
//! with one other peer chosen at random, and recomputes its verdict on each peer
//! ([`crate::liveness`]), reporting changes as [`Event::PeerState`] and spreading its verdicts on
//! the peers it watches. A change made here (a join this node accepted, a store created or
//! dropped through it) is gossiped to every peer at once, with the change as news; a change
//! learnt from a peer spreads as news on the rounds. Views merge by the laws of
//! [`ClusterView::merge`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use alloc::collections::BTreeMap;

use super::{Destination, Event, IoId, Node, Purpose};
use crate::cluster::{ClusterView, ViewError};
use crate::coordinator::ReplicaFailure;
use crate::gossip::{GossipDigest, MAX_VERDICTS, Verdict, ViewDigest, ViewWord, Watch};
use crate::identity::{CertificateDigest, NodeId};
use crate::liveness::PeerState;
use crate::membership::{NodeInfo, NodeStatus};
use crate::wire::{ErrorKind, ErrorReply, Request, Response};

impl Node {
    /// Applies `change` to the view; if it changed, saves it, tells every peer and reports it.
    pub(super) fn update_view(&mut self, now: Duration, change: impl FnOnce(&mut ClusterView) -> bool) -> bool {
        let changed = change(&mut self.view);
        if changed {
            self.view_changed(now);
        }
        changed
    }

    /// After the view changed here: saves it, gossips with every peer (the change as news) and
    /// reports it. Returns the id of the save.
    pub(super) fn view_changed(&mut self, now: Duration) -> IoId {
        self.view_learnt(now, true)
    }

    /// After any change of the view: makes its digest again, and adds what changed to the news.
    pub(super) fn view_digested(&mut self) {
        let digest = alloc::sync::Arc::new(self.view.digest());
        let base = self.spread.news_base.take().unwrap_or_else(|| self.digest.clone());
        // The news is the current view's parts that differ from the view before the first
        // change still in spread: always parts of one consistent view.
        self.spread.news = self.view.delta_between(&digest, &base);
        self.spread.news_left = self.spread_budget();
        self.spread.news_base = Some(base);
        self.summary = digest.summary();
        self.digest = digest;
    }

    /// After the view changed: moves the ring if this node is the claimant and the membership
    /// asks for it, saves the view and reports it. A change made here (`broadcast`), or a ring
    /// this node made, is gossiped to every peer at once; a change learnt from a peer spreads on
    /// the rounds.
    fn view_learnt(&mut self, now: Duration, broadcast: bool) -> IoId {
        let moved = self.claim_ring();
        if let Some(t) = self.view.transition()
            && self.transition_barrier.is_none_or(|(version, _)| version != t.next.version())
        {
            self.transition_barrier = Some((t.next.version(), self.next_step));
        }
        let save = self.save_view();
        // A ring change that makes this node a gainer starts its comparisons at once.
        self.receive(now);
        self.purge_dropped();
        self.events.push_back(Event::ViewChanged);
        self.note_left();
        if broadcast || moved {
            for peer in self.peers() {
                self.gossip_with(now, &peer, Round::Broadcast);
            }
        }
        self.ring_committed();
        self.finish_leaving(now);
        self.rerun_stale_coordinations(now);
        save
    }

    /// Takes a node's entry from its join: the entry must name the certificate the node
    /// presented, and may not take an id held by a node with another certificate (3.2).
    pub(super) fn join(
        &mut self,
        now: Duration,
        peer: Option<CertificateDigest>,
        node: NodeInfo,
    ) -> Result<(), ErrorReply> {
        // `peer` is the certificate presented (a node's: checked before); an entry without one,
        // or with another, is refused.
        if node.certificate != peer {
            return Err(ErrorReply::new(
                ErrorKind::NotPermitted,
                format!("node {} must join with the certificate it presents", node.id),
            ));
        }
        let mut refused = None;
        self.update_view(now, |view| {
            view.upsert_node(node).unwrap_or_else(|e| {
                refused = Some(e);
                false
            })
        });
        match refused {
            Some(ViewError::IdTaken(taken)) => {
                let reply = ErrorReply::new(ErrorKind::NodeIdTaken, format!("{taken}"));
                self.events.push_back(Event::IdConflict { taken: *taken });
                Err(reply)
            }
            Some(other) => Err(ErrorReply::new(ErrorKind::Malformed, format!("{other}"))),
            None => Ok(()),
        }
    }

    /// Reports the node entries of a peer's view that a merge leaves out (ids taken by another
    /// certificate).
    pub(super) fn report_conflicts(&mut self, theirs: &ClusterView) {
        let conflicts: Vec<_> = self.view.conflicts(theirs).collect();
        self.events.extend(conflicts.into_iter().map(|taken| Event::IdConflict { taken }));
    }

    /// Joins through the seeds; once in, beats, gossips with the peers it watches and one more
    /// at random, and updates the verdicts.
    pub(super) fn sync_tick(&mut self, now: Duration) {
        if self.join_refused.is_some() || self.has_left() {
            // Refused for good (the id is taken), or gone: the operator has to act.
            return;
        }
        if self.joined && self.claim_ring() {
            // A claimant that joined (or restarted) with a ring to move, and heard no change
            // since.
            self.view_changed(now);
        }
        if !self.joined {
            for seed in self.join_addresses() {
                let busy =
                    self.outgoing.values().any(|o| matches!(&o.purpose, Purpose::Join { seed: s } if *s == seed));
                if !busy {
                    let to = Destination::Node { address: seed.clone(), id: None };
                    let body = Request::Join { node: self.config.info.clone() };
                    self.send_request(now, to, body, false, Purpose::Join { seed });
                }
            }
            return;
        }
        self.heartbeat.beat += 1;
        self.refresh_watch(now);
        for peer in self.spread.watched.clone() {
            self.gossip_with(now, &peer, Round::Usual);
        }
        // One more peer at random, that this node does not watch: views and verdicts mix
        // across the whole cluster. (Drawn again while it is one watched: the few watched are
        // a small part of a large cluster, and a small one is not all watched but for one or
        // two members.)
        let members = self.spread.members.len();
        if members > self.spread.watched.len() {
            for _ in 0..8 {
                let at = (self.random() % members as u64) as usize;
                let pick = self.spread.members[at].clone();
                if !self.spread.watched.contains(&pick) {
                    self.gossip_with(now, &pick, Round::Usual);
                    break;
                }
            }
        }
        self.update_liveness(now);
        self.deliver_hints(now);
        self.finish_leaving(now);
    }

    /// Where a node that has not joined yet asks to: its seeds, then (a restart, with a saved
    /// view) every other member the view knows. A node whose seeds all went (left, were
    /// removed, or moved) still finds its way back (found by the simulation with `elastic`: a
    /// node restarted after its only seed was removed stayed out for good).
    fn join_addresses(&self) -> Vec<String> {
        let mut addresses = self.config.seeds.clone();
        for peer in self.peers() {
            let address = self.address_of_member(&peer);
            if !address.is_empty() && !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        addresses
    }

    /// Works out again whom this node watches and, for each peer, whether it is close and who
    /// watches it, when the members changed (the view's summary moved: otherwise nothing is
    /// walked, so a round costs the same in a cluster of any size).
    fn refresh_watch(&mut self, now: Duration) {
        let unchanged =
            self.spread.members_of == Some(self.summary) && self.spread.watch_count == Some(self.config.watch_count);
        if unchanged {
            return;
        }
        let peers = self.peers();
        if self.spread.members != peers || self.spread.watch_count != Some(self.config.watch_count) {
            let watch = Watch::new(peers.iter().cloned().chain([self.id.clone()]), self.config.watch_count);
            self.spread.watched = watch.watched_by(&self.id);
            self.liveness.set_watch(now, &self.id, watch);
            self.spread.members = peers;
            self.spread.watch_count = Some(self.config.watch_count);
        }
        self.spread.members_of = Some(self.summary);
    }

    /// How many messages each piece of news or verdict rides on from this node: a few times
    /// the log2 of the cluster's size, so it reaches every node with high probability (SWIM).
    fn spread_budget(&self) -> u32 {
        let members = self.view.membership().len() as u32;
        3 * (u32::BITS - members.leading_zeros()).max(1)
    }

    /// Recomputes the verdict on each peer; reports the changes, spreads this node's verdicts
    /// on the peers it watches, and hands hints back to a peer seen up again at once.
    pub(super) fn update_liveness(&mut self, now: Duration) {
        let mut back = false;
        for change in self.liveness.update(now) {
            back |= change.to == PeerState::Up && self.hints.contains_key(&change.peer);
            if self.spread.watched.contains(&change.peer) {
                // A verdict of its own is later than every one it spread before.
                self.heartbeat.beat += 1;
                let verdict = Verdict {
                    subject: change.peer.clone(),
                    observer: self.id.clone(),
                    at: self.heartbeat,
                    state: change.to,
                };
                let budget = self.spread_budget();
                self.spread.add_verdict(verdict, budget);
            }
            self.events.push_back(Event::PeerState { peer: change.peer, from: change.from, to: change.to });
        }
        if back {
            self.deliver_hints(now);
        }
    }

    /// What this node sends in a gossip message: its view (`whole`: every entry), its
    /// heartbeat, its news (on every message of a broadcast) and verdicts.
    fn gossip_digest(&mut self, whole: bool, broadcast: bool) -> GossipDigest {
        let view = if whole { ViewWord::Whole((*self.digest).clone()) } else { ViewWord::Summary(self.summary) };
        GossipDigest {
            view,
            heartbeat: self.heartbeat,
            news: self.spread.take_news(broadcast).map(alloc::boxed::Box::new),
            verdicts: self.spread.take_verdicts(),
        }
    }

    /// Sends `peer` a gossip message (unless an exchange with it is under way).
    pub(super) fn gossip_with(&mut self, now: Duration, peer: &NodeId, round: Round) {
        let busy = self.outgoing.values().any(|o| matches!(&o.purpose, Purpose::Gossip { peer: p } if p == peer));
        let Some(to) = self.destination(peer) else { return };
        if busy {
            return;
        }
        let digest = self.gossip_digest(round == Round::Pull, round == Round::Broadcast);
        let body = Request::Gossip { from: self.id.clone(), digest: alloc::boxed::Box::new(digest) };
        self.send_request(now, to, body, false, Purpose::Gossip { peer: peer.clone() });
    }

    /// A peer's gossip message: takes its heartbeat, verdicts and news; answers with this node's
    /// summary when the views agree, its whole digest when they do not, and the parts of its
    /// view the peer lacks when the peer sent its whole digest. `certificate` is what the sender
    /// presented: its word is believed only if its entry names that certificate.
    pub(super) fn gossip_round(
        &mut self,
        now: Duration,
        certificate: Option<CertificateDigest>,
        from: &NodeId,
        digest: &GossipDigest,
    ) -> Response {
        let direct =
            certificate.is_some() && self.view.membership().node(from).is_some_and(|n| n.certificate == certificate);
        if direct {
            self.liveness.handle_answer(now, from);
            self.take_word(now, from, digest);
        }
        self.update_liveness(now);
        let (delta, whole) = match &digest.view {
            ViewWord::Whole(theirs) => (self.view.delta_between(&self.digest, theirs), false),
            ViewWord::Summary(theirs) => (None, *theirs != self.summary),
        };
        Response::Gossip { digest: alloc::boxed::Box::new(self.gossip_digest(whole, false)), delta }
    }

    /// Takes what a peer's gossip message says: its heartbeat (its own word), the verdicts it
    /// spreads (spread on here when news) and its news.
    fn take_word(&mut self, now: Duration, from: &NodeId, digest: &GossipDigest) {
        self.liveness.handle_heartbeat(now, from, digest.heartbeat, true);
        let budget = self.spread_budget();
        for verdict in &digest.verdicts {
            let about_self = verdict.subject == self.id || verdict.observer == self.id;
            if !about_self && self.liveness.handle_verdict(now, verdict) {
                self.spread.add_verdict(verdict.clone(), budget);
            }
        }
        if let Some(news) = &digest.news {
            let address = self.address_of_member(from);
            self.merge_from(now, &address, news);
        }
    }

    fn address_of_member(&self, id: &NodeId) -> String {
        self.view.membership().node(id).map(|n| n.address.clone()).unwrap_or_default()
    }

    pub(super) fn gossip_answer(&mut self, now: Duration, peer: NodeId, answer: Result<Response, ReplicaFailure>) {
        self.heard(now, &peer, &answer);
        let Ok(Response::Gossip { digest, delta }) = answer else { return };
        self.take_word(now, &peer, &digest);
        if let Some(delta) = delta {
            let address = self.address_of_member(&peer);
            self.merge_from(now, &address, &delta);
        }
        if let ViewWord::Whole(theirs) = &digest.view {
            // The views differ: push what the peer lacks, and ask for what it holds that this
            // node lacks (with this node's whole digest).
            if let (Some(push), Some(to)) = (self.view.delta_between(&self.digest, theirs), self.destination(&peer)) {
                self.send_request(now, to, Request::Sync { view: push }, false, Purpose::Push { peer: peer.clone() });
            }
            if self.lacks_from(theirs) {
                self.gossip_with(now, &peer, Round::Pull);
            }
        }
        self.update_liveness(now);
    }

    /// Whether `theirs` holds something this view may lack: an entry missing here, of a later
    /// version or otherwise the same version; a later ring; another catalogue.
    fn lacks_from(&self, theirs: &ViewDigest) -> bool {
        let entries = theirs.entries.iter().any(|e| match self.digest.entry(&e.id) {
            None => true,
            Some(mine) => e.version > mine.version || e.version == mine.version && e.fingerprint != mine.fingerprint,
        });
        let ring = match (theirs.ring, self.digest.ring) {
            (Some(t), Some(m)) => t > m,
            (t, _) => t.is_some() && self.digest.ring.is_none(),
        };
        entries || ring || theirs.stores != self.digest.stores || theirs.partition_bits != self.digest.partition_bits
    }

    pub(super) fn join_answer(&mut self, now: Duration, seed: String, answer: Result<Response, ReplicaFailure>) {
        let theirs = match answer {
            Ok(Response::Cluster(theirs)) => theirs,
            Ok(Response::Error(reply)) if reply.kind == ErrorKind::NodeIdTaken && !self.joined => {
                self.join_refused = Some(reply.message.clone());
                self.events.push_back(Event::JoinRefused { seed, reason: reply.message });
                return;
            }
            _ => return,
        };
        if self.merge_from(now, &seed, &theirs) && !self.joined {
            self.joined = true;
            // What the seed's view brought is news to this node only: its news begins at the
            // view it joined with (else a joiner spreads the whole view to every peer).
            self.spread.forget_news();
            self.events.push_back(Event::Joined { seed });
            if self.claim_ring() {
                self.view_changed(now);
            }
        }
    }

    /// Merges a peer's view (or part of one); reports a view that cannot be merged. Returns
    /// whether it merged.
    pub(super) fn merge_from(&mut self, now: Duration, address: &str, theirs: &ClusterView) -> bool {
        self.report_conflicts(theirs);
        let mut refused = None;
        let changed = self.view.merge(theirs).unwrap_or_else(|e| {
            refused = Some(format!("{e}"));
            false
        });
        if changed {
            self.view_learnt(now, false);
        }
        match refused {
            Some(reason) => {
                self.events.push_back(Event::IncompatiblePeer { address: address.into(), reason });
                false
            }
            None => true,
        }
    }

    /// Every other node of the view that is still a member.
    pub(super) fn peers(&self) -> Vec<NodeId> {
        self.view
            .membership()
            .nodes()
            .filter(|n| n.id != self.id && n.status != NodeStatus::Removed)
            .map(|n| n.id.clone())
            .collect()
    }
}

/// What kind of gossip message a node sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Round {
    /// A round: the summary, news while it lasts.
    Usual,
    /// A change made here, told to every peer: the summary and the news, whatever is left of
    /// its budget.
    Broadcast,
    /// The views differ: the whole digest, asking for a delta.
    Pull,
}

/// What gossip is spreading from this node, and whom it watches.
#[derive(Clone, Debug, Default)]
pub(super) struct Spread {
    /// Parts of the view that changed lately (since the view `news_base` digests), and on how
    /// many more messages they ride.
    news: Option<ClusterView>,
    news_base: Option<alloc::sync::Arc<ViewDigest>>,
    news_left: u32,
    /// Verdicts in spread, by subject and observer, with the messages left for each.
    verdicts: BTreeMap<(NodeId, NodeId), (Verdict, u32)>,
    /// The peers this node watches.
    pub(super) watched: Vec<NodeId>,
    /// The peers the watch was worked out for, with what count, and the summary of the view
    /// they were taken from.
    members: Vec<NodeId>,
    watch_count: Option<usize>,
    members_of: Option<crate::gossip::ViewSummary>,
}

impl Spread {
    /// The news for one message: a broadcast carries it whatever is left of the budget, any
    /// other message uses one of it.
    fn take_news(&mut self, broadcast: bool) -> Option<ClusterView> {
        let out = self.news.clone()?;
        if !broadcast {
            self.news_left = self.news_left.saturating_sub(1);
            if self.news_left == 0 {
                self.news = None;
                self.news_base = None;
            }
        }
        Some(out)
    }

    /// Drops the news: the view as it is now is the base of the next.
    fn forget_news(&mut self) {
        self.news = None;
        self.news_base = None;
        self.news_left = 0;
    }

    /// Spreads `verdict` (replacing an earlier one of its observer on its subject).
    fn add_verdict(&mut self, verdict: Verdict, budget: u32) {
        let key = (verdict.subject.clone(), verdict.observer.clone());
        if self.verdicts.get(&key).is_none_or(|(held, _)| verdict.at > held.at) {
            self.verdicts.insert(key, (verdict, budget));
        }
    }

    /// The verdicts for one message: those with the most messages left (the newest), each
    /// using one.
    fn take_verdicts(&mut self) -> Vec<Verdict> {
        let mut order: Vec<(u32, (NodeId, NodeId))> =
            self.verdicts.iter().map(|(key, (_, left))| (*left, key.clone())).collect();
        order.sort_by_key(|(left, _)| core::cmp::Reverse(*left));
        let mut out = Vec::new();
        for (_, key) in order.into_iter().take(MAX_VERDICTS) {
            if let Some((verdict, left)) = self.verdicts.get_mut(&key) {
                out.push(verdict.clone());
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.verdicts.remove(&key);
                }
            }
        }
        out
    }
}
