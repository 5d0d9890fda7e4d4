//! Cluster membership: which nodes exist, where they are and what state they are in, and how two
//! views of it merge.
//!
//! Each node's entry carries a `version` that only the node itself (or an operator acting for it)
//! raises. Merging two views keeps, per node, the entry with the higher version; equal versions
//! are resolved by a total order on the entry, so that every node that has seen the same entries
//! holds the same membership whatever the order it learnt them in.
//!
//! **Merge laws** (checked by property tests): `merge` is commutative, associative and
//! idempotent, so membership is a state-based CRDT and gossip may deliver views in any order,
//! any number of times.
//!
//! **Ids are bound to certificates** (issue 7, 3.2): an entry names the digest of the certificate
//! its node presents. An entry that names another certificate than the one held for its id is
//! refused ([`IdTaken`]), whatever its version: the first certificate a view holds for an id keeps
//! it, so a node started with a duplicate id cannot take the id over, through its join or through
//! gossip. (The laws above hold among entries that agree on each id's certificate; a conflicting
//! entry never enters a view that holds the id.) Entries written before certificates were
//! recorded carry none; an entry with a certificate wins over one without, so each node's entry
//! gains its certificate when the node next starts.
//!
//! **Removals are final** (issue 9, 2.3): an entry of status [`NodeStatus::Removed`] wins over
//! every entry of its node that is not, whatever the versions. A node that left, or was removed
//! while it was away, cannot come back by raising its own entry; it refuses to start
//! ([`crate::node::NodeError::Left`]), and joins again only as a new node (a new id).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::identity::{CertificateDigest, INCARNATION_SEPARATOR, MAX_NODE_ID_LEN, NameError, NodeId, Zone, check_name};

/// Where a node is in its life in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Joining: takes its share of the ring while data streams to it.
    Joining,
    /// A full member.
    Up,
    /// Leaving: gives its share of the ring away while its data streams out.
    Leaving,
    /// Gone for good: it left (`quickv node leave`, once it handed its partitions over) or was
    /// removed (`quickv node remove`). Kept so that the removal wins every merge (see the module
    /// docs); `quickv status` shows it as `left`.
    Removed,
}

impl NodeStatus {
    /// Whether a node in this state owns a share of the ring.
    pub fn owns_partitions(self) -> bool {
        matches!(self, NodeStatus::Joining | NodeStatus::Up)
    }
}

/// What a node declares about itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Raised by the node each time it changes its entry; the higher version wins a merge.
    pub version: u64,
    /// The node's stable id.
    pub id: NodeId,
    /// Address callers reach the node at, for example `127.0.0.1:7101`.
    pub address: String,
    /// Zone the node runs in.
    pub zone: Zone,
    /// Relative weight: a node with capacity 2 owns twice the keys of one with capacity 1.
    pub capacity: u32,
    /// The node's state.
    pub status: NodeStatus,
    /// The digest of the certificate the node presents (`None` in entries saved before nodes
    /// recorded it). See the module docs.
    pub certificate: Option<CertificateDigest>,
    /// How JavaScript callers reach the node (empty in entries saved before nodes published it).
    pub web: WebAccess,
}

/// Most browser certificate hashes an entry publishes: the one served, the one before it (still
/// in the views browsers loaded) and the next one (published before it is served).
pub const MAX_WEB_CERTIFICATES: usize = 3;

/// How JavaScript callers reach a node (issue 11): the address it serves its HTTPS API at, and
/// the SHA-256 hashes of the short-lived certificates its QUIC address serves WebTransport
/// sessions with (a browser passes them as `serverCertificateHashes`; none when the node takes
/// no WebTransport session). During a rotation the old and the new hash are both published.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "WebAccessFields")]
pub struct WebAccess {
    https: Option<String>,
    webtransport: Vec<CertificateDigest>,
}

/// [`WebAccess`] as decoded, before its bounds are checked.
#[derive(Deserialize)]
struct WebAccessFields {
    https: Option<String>,
    webtransport: Vec<CertificateDigest>,
}

impl TryFrom<WebAccessFields> for WebAccess {
    type Error = WebAccessError;
    fn try_from(fields: WebAccessFields) -> Result<WebAccess, WebAccessError> {
        WebAccess::new(fields.https.as_deref(), fields.webtransport)
    }
}

/// Why a [`WebAccess`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebAccessError {
    /// The HTTPS address is not a valid name.
    #[error("invalid HTTPS address: {0}")]
    Address(NameError),
    /// More certificate hashes than a rotation needs.
    #[error("{0} WebTransport certificate hashes: a node publishes at most {MAX_WEB_CERTIFICATES}")]
    TooManyCertificates(usize),
}

impl WebAccess {
    /// A node's web access: its HTTPS address (`host:port`), and the hashes of the certificates
    /// its WebTransport sessions may be served with, oldest first.
    pub fn new(https: Option<&str>, webtransport: Vec<CertificateDigest>) -> Result<WebAccess, WebAccessError> {
        if let Some(address) = https {
            check_name(address).map_err(WebAccessError::Address)?;
        }
        if webtransport.len() > MAX_WEB_CERTIFICATES {
            return Err(WebAccessError::TooManyCertificates(webtransport.len()));
        }
        Ok(WebAccess { https: https.map(String::from), webtransport })
    }

    /// The address of the node's HTTPS API, if it serves one.
    pub fn https(&self) -> Option<&str> {
        self.https.as_deref()
    }

    /// The SHA-256 hashes of the certificates the node's WebTransport sessions may be served
    /// with, oldest first; empty when it serves none.
    pub fn webtransport(&self) -> &[CertificateDigest] {
        &self.webtransport
    }
}

/// A node entry as encoded before entries named their certificates (see
/// [`crate::cluster::ViewBeforeCertificates`]).
#[derive(Debug, Deserialize)]
pub(crate) struct NodeInfoBeforeCertificates {
    version: u64,
    id: NodeId,
    address: String,
    zone: Zone,
    capacity: u32,
    status: NodeStatus,
}

impl From<NodeInfoBeforeCertificates> for NodeInfo {
    fn from(old: NodeInfoBeforeCertificates) -> NodeInfo {
        let NodeInfoBeforeCertificates { version, id, address, zone, capacity, status } = old;
        NodeInfo { version, id, address, zone, capacity, status, certificate: None, web: WebAccess::default() }
    }
}

/// What a node's rotation of its browser certificates decides at a moment (the schedule of the
/// certificates [`WebAccess`] publishes; the server's `browser_cert` makes and serves them), given when each certificate was made and expires
/// (oldest first): pure, so that its schedule is tested without clocks.
#[derive(Debug, PartialEq, Eq)]
pub struct RotationPlan {
    /// Make a new certificate.
    pub make: bool,
    /// The indexes of the certificates still valid (to keep and publish).
    pub keep: Vec<usize>,
    /// The index of the certificate to serve (among those kept, after any new one is made).
    pub serve: Option<usize>,
}

/// The rotation's decision at `now` for certificates `(made, not_after)`, oldest first, each
/// valid for `lifetime` seconds: the next is made at `lifetime/2`, served once published for
/// `lifetime/4`, and one that expires within `lifetime/8` is neither kept nor served.
pub fn rotation_plan(certs: &[(u64, u64)], now: u64, lifetime: u64) -> RotationPlan {
    // One that expires within the next L/8 is not served and not kept: a browser's handshake
    // must not outlive it.
    let keep: Vec<usize> = (0..certs.len()).filter(|&i| certs[i].1 > now + lifetime / 8).collect();
    let newest = keep.last().map(|&i| certs[i].0);
    let make = newest.is_none_or(|made| now >= made + lifetime / 2);
    // Served: the newest kept that has been published for L/4; else the oldest kept; else the
    // one about to be made (the first, at a node's first start).
    let ready = keep.iter().rev().find(|&&i| now >= certs[i].0 + lifetime / 4);
    let serve = ready.or(keep.first()).copied();
    RotationPlan { make, keep, serve }
}

/// A node entry as encoded before entries published their web access (saved-view format 3,
/// wire version 8; see [`crate::cluster::ViewBeforeWebAccess`]).
#[derive(Debug, Deserialize)]
pub(crate) struct NodeInfoBeforeWebAccess {
    version: u64,
    id: NodeId,
    address: String,
    zone: Zone,
    capacity: u32,
    status: NodeStatus,
    certificate: Option<CertificateDigest>,
}

impl From<NodeInfoBeforeWebAccess> for NodeInfo {
    fn from(old: NodeInfoBeforeWebAccess) -> NodeInfo {
        let NodeInfoBeforeWebAccess { version, id, address, zone, capacity, status, certificate } = old;
        NodeInfo { version, id, address, zone, capacity, status, certificate, web: WebAccess::default() }
    }
}

/// An entry for a node id that names another certificate than the one a view holds for the id:
/// another node claims the id. Refused, and the view is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node id {id} is taken: it belongs to the node at {held_address} (certificate {held}), and the node at {claimed_address} presents certificate {claimed}; start that node from its own folder or give it another id"
)]
pub struct IdTaken {
    /// The id.
    pub id: NodeId,
    /// The certificate the view holds for the id.
    pub held: CertificateDigest,
    /// The address of the node holding the id.
    pub held_address: String,
    /// The certificate of the refused entry.
    pub claimed: CertificateDigest,
    /// The address of the refused entry.
    pub claimed_address: String,
}

/// Why a node entry cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeInfoError {
    /// The id is not a valid name.
    #[error("invalid node id: {0}")]
    Id(NameError),
    /// The zone is not a valid name.
    #[error("invalid zone: {0}")]
    Zone(NameError),
    /// The address is not a valid name.
    #[error("invalid address: {0}")]
    Address(NameError),
    /// Capacity must be positive.
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    /// The id contains `#` or is too long to name the node's writes (`id#incarnation`).
    #[error(
        "invalid node id {id:?}: a node id may not contain '#' and is at most {MAX_NODE_ID_LEN} bytes (its writes are named id#incarnation)"
    )]
    IdReserved {
        /// The id.
        id: String,
    },
}

impl NodeInfo {
    /// A node entry at version 1, status [`NodeStatus::Up`].
    pub fn new(id: &str, address: &str, zone: &str, capacity: u32) -> Result<NodeInfo, NodeInfoError> {
        check_name(address).map_err(NodeInfoError::Address)?;
        if capacity == 0 {
            return Err(NodeInfoError::ZeroCapacity);
        }
        if id.contains(INCARNATION_SEPARATOR) || id.len() > MAX_NODE_ID_LEN {
            return Err(NodeInfoError::IdReserved { id: id.into() });
        }
        Ok(NodeInfo {
            version: 1,
            id: NodeId::new(id).map_err(NodeInfoError::Id)?,
            address: address.into(),
            zone: Zone::new(zone).map_err(NodeInfoError::Zone)?,
            capacity,
            status: NodeStatus::Up,
            certificate: None,
            web: WebAccess::default(),
        })
    }

    /// This entry, publishing how JavaScript callers reach its node.
    pub fn with_web(mut self, web: WebAccess) -> NodeInfo {
        self.web = web;
        self
    }

    /// This entry, naming the certificate its node presents.
    pub fn with_certificate(mut self, certificate: CertificateDigest) -> NodeInfo {
        self.certificate = Some(certificate);
        self
    }

    /// Whether this entry wins a merge against `other` (same node, no certificate conflict): a
    /// removal beats everything (a node gone for good, or that left, never comes back through
    /// an entry of its own raised later: issue 9, 2.3); then an entry with a certificate beats
    /// one without; then the higher version, then the total order of entries.
    fn supersedes(&self, other: &NodeInfo) -> bool {
        let key = |n: &NodeInfo| (n.status == NodeStatus::Removed, n.certificate.is_some());
        (key(self), self) > (key(other), other)
    }

    /// The conflict if `self` (held) and `claim` name different certificates for one id.
    fn conflict(&self, claim: &NodeInfo) -> Option<IdTaken> {
        match (self.certificate, claim.certificate) {
            (Some(held), Some(claimed)) if held != claimed => Some(IdTaken {
                id: self.id.clone(),
                held,
                held_address: self.address.clone(),
                claimed,
                claimed_address: claim.address.clone(),
            }),
            _ => None,
        }
    }
}

/// A view of the cluster: one entry per node ever seen.
///
/// The entries, and the map of them, are shared (`Arc`) between clones and with the views
/// merged from: a node of a large cluster copies the map (pointers, not entries) when its
/// membership changes, and an entry learnt from a peer is the peer's. Encoded as a map of
/// entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    nodes: Arc<BTreeMap<NodeId, Arc<NodeInfo>>>,
}

impl Membership {
    /// An empty view.
    pub fn new() -> Membership {
        Membership::default()
    }

    /// Adds an entry, keeping the winner if the node is already known. Returns whether the view
    /// changed; an entry naming another certificate than the one held for its id is refused.
    pub fn upsert(&mut self, info: NodeInfo) -> Result<bool, alloc::boxed::Box<IdTaken>> {
        self.upsert_shared(&Arc::new(info))
    }

    /// [`upsert`](Self::upsert) of an entry held elsewhere too (kept shared).
    pub(crate) fn upsert_shared(&mut self, info: &Arc<NodeInfo>) -> Result<bool, alloc::boxed::Box<IdTaken>> {
        if let Some(current) = self.nodes.get(&info.id) {
            if let Some(taken) = current.conflict(info) {
                return Err(taken.into());
            }
            if !info.supersedes(current) {
                return Ok(false);
            }
        }
        Arc::make_mut(&mut self.nodes).insert(info.id.clone(), info.clone());
        Ok(true)
    }

    /// Merges another view into this one (see the module docs for the laws), leaving out the
    /// entries that conflict with this view's certificates ([`Membership::conflicts`] lists them).
    /// Returns whether this view changed.
    pub fn merge(&mut self, other: &Membership) -> bool {
        if Arc::ptr_eq(&self.nodes, &other.nodes) {
            return false;
        }
        let mut changed = false;
        for info in other.nodes.values() {
            changed |= self.upsert_shared(info).unwrap_or(false);
        }
        changed
    }

    /// The entries of `other` that a merge into this view leaves out: ids this view holds with
    /// another certificate.
    pub fn conflicts(&self, other: &Membership) -> impl Iterator<Item = IdTaken> {
        other.nodes.values().filter_map(|claim| self.nodes.get(&claim.id)?.conflict(claim))
    }

    /// The entry of `id`, as shared (see [`Membership`]).
    pub(crate) fn shared(&self, id: &NodeId) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(id)
    }

    /// The entry of one node.
    pub fn node(&self, id: &NodeId) -> Option<&NodeInfo> {
        self.nodes.get(id).map(|n| &**n)
    }

    /// Every entry, ordered by node id.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().map(|n| &**n)
    }

    /// The entries that own a share of the ring, ordered by node id.
    pub fn ring_members(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes().filter(|n| n.status.owns_partitions())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    /// The browser certificates' schedule (server `browser_cert`'s docs), over 30 days at a 10-day lifetime: a new certificate
    /// every 5 days, served 2.5 days after it is made, the old one published until it expires;
    /// never more than two; always one served that is valid for the next 1.25 days.
    #[test]
    fn certificates_rotate_before_they_expire_and_overlap() {
        let lifetime = 10 * DAY;
        let mut certs: Vec<(u64, u64)> = Vec::new();
        let mut served_changes = Vec::new();
        let mut last_served = None;
        let start = 1_000 * DAY;
        for hour in 0..30 * 24 {
            let now = start + hour * 3600;
            let p = rotation_plan(&certs, now, lifetime);
            let mut kept: Vec<(u64, u64)> = p.keep.iter().map(|&i| certs[i]).collect();
            if p.make {
                kept.push((now, now - 3600 + lifetime)); // valid from an hour before
            }
            certs = kept;
            let serve = rotation_plan(&certs, now, lifetime).serve.expect("one is served");
            assert!(certs.len() <= 2, "at {hour} h: {certs:?}");
            assert!(certs[serve].1 > now + lifetime / 8, "the served one outlives handshakes");
            if last_served != Some(certs[serve].0) {
                served_changes.push((hour, (certs[serve].0 - start) / 3600));
                last_served = Some(certs[serve].0);
            }
        }
        // (hour switched, hour the served certificate was made): the first at once, then each
        // one 60 hours (L/4) after it was made, every 120 hours (L/2).
        assert_eq!(served_changes, alloc::vec![(0, 0), (180, 120), (300, 240), (420, 360), (540, 480), (660, 600)]);
    }

    use proptest::prelude::*;

    fn entry(id: u8, version: u64, status: u8, capacity: u32) -> NodeInfo {
        let mut n = NodeInfo::new(&alloc::format!("n{id}"), "127.0.0.1:1", "z", capacity.max(1)).unwrap();
        // Half the ids have entries saved before certificates were recorded.
        if version.is_multiple_of(2) {
            n = n.with_certificate(CertificateDigest::of(&[id]));
        }
        n.version = version;
        n.status =
            [NodeStatus::Joining, NodeStatus::Up, NodeStatus::Leaving, NodeStatus::Removed][usize::from(status % 4)];
        n
    }

    fn view() -> impl Strategy<Value = Membership> {
        proptest::collection::vec((0u8..6, 0u64..4, 0u8..4, 1u32..3), 0..8).prop_map(|es| {
            let mut m = Membership::new();
            for (id, v, s, c) in es {
                m.upsert(entry(id, v, s, c)).unwrap();
            }
            m
        })
    }

    fn merged(a: &Membership, b: &Membership) -> Membership {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in view(), b in view()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in view(), b in view(), c in view()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in view(), b in view()) {
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab.clone());
            prop_assert_eq!(merged(&a, &a), a);
        }
    }

    #[test]
    fn higher_version_wins_and_zero_capacity_is_refused() {
        let mut m = Membership::new();
        assert_eq!(m.upsert(entry(1, 3, 1, 1)), Ok(true));
        assert_eq!(m.upsert(entry(1, 1, 2, 1)), Ok(false));
        assert_eq!(m.node(&NodeId::new("n1").unwrap()).unwrap().status, NodeStatus::Up);
        assert_eq!(m.upsert(entry(1, 5, 2, 1)), Ok(true));
        assert_eq!(NodeInfo::new("x", "a:1", "z", 0), Err(NodeInfoError::ZeroCapacity));
    }

    /// Issue 9, 2.3: a removal wins over any later entry of the node, so a node that left (or
    /// was removed while away) cannot come back by raising its own entry.
    #[test]
    fn a_removal_wins_over_later_entries() {
        let n1 = NodeId::new("n1").unwrap();
        let mut m = Membership::new();
        m.upsert(entry(1, 2, 1, 1)).unwrap();
        assert_eq!(m.upsert(entry(1, 3, 3, 1)), Ok(true), "removed at version 3");
        for (version, status) in [(4, 1), (9, 0), (9, 2)] {
            assert_eq!(m.upsert(entry(1, version, status, 1)), Ok(false), "version {version}");
        }
        assert_eq!(m.node(&n1).unwrap().status, NodeStatus::Removed);
        let mut raised = Membership::new();
        raised.upsert(entry(1, 9, 1, 1)).unwrap();
        assert!(!m.merge(&raised));
        assert!(raised.merge(&m));
        assert_eq!(raised.node(&n1).unwrap().status, NodeStatus::Removed);
    }

    /// 3.2: an entry naming another certificate for a held id is refused, whatever its version,
    /// by `upsert` and by `merge`; the held entry stays.
    #[test]
    fn an_id_cannot_be_taken_by_another_certificate() {
        let real =
            NodeInfo::new("n1", "10.0.0.1:7000", "z", 1).unwrap().with_certificate(CertificateDigest::of(b"real"));
        let mut impostor = NodeInfo::new("n1", "10.0.0.9:7000", "z", 1).unwrap();
        impostor = impostor.with_certificate(CertificateDigest::of(b"impostor"));
        impostor.version = 99;
        let mut m = Membership::new();
        m.upsert(real.clone()).unwrap();
        let taken = m.upsert(impostor.clone()).unwrap_err();
        assert_eq!((taken.held_address.as_str(), taken.claimed_address.as_str()), ("10.0.0.1:7000", "10.0.0.9:7000"));
        assert!(alloc::format!("{taken}").contains("node id n1 is taken"));
        let mut theirs = Membership::new();
        theirs.upsert(impostor).unwrap();
        assert!(!m.merge(&theirs));
        assert_eq!(m.conflicts(&theirs).count(), 1);
        assert_eq!(m.node(&real.id), Some(&real));
        // The real node may move: same certificate, new address, higher version.
        let mut moved = real.clone();
        moved.address = "10.0.0.2:7000".into();
        moved.version = 2;
        assert_eq!(m.upsert(moved.clone()), Ok(true));
        // An entry saved before certificates gains one; one without never replaces one with.
        let mut old = NodeInfo::new("n2", "10.0.0.3:7000", "z", 1).unwrap();
        old.version = 7;
        m.upsert(old.clone()).unwrap();
        let n2 = old.clone().with_certificate(CertificateDigest::of(b"n2"));
        assert_eq!(m.upsert(NodeInfo { version: 1, ..n2.clone() }), Ok(true));
        assert_eq!(m.upsert(old), Ok(false));
        assert_eq!(m.node(&n2.id).unwrap().certificate, n2.certificate);
    }
}
