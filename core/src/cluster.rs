//! The cluster view every node and client holds: membership, the ring and the store catalogue.
//!
//! Nodes exchange whole views and [`ClusterView::merge`] them:
//!
//! - **membership** merges as the CRDT of [`crate::membership`];
//! - the **store catalogue** is a map from name to configuration that only grows. One node
//!   decides every create, the [claimant](ClusterView::claimant), so one name never gets two
//!   settings; should two nodes ever both have decided (views that disagree on the claimant for
//!   a moment), every view keeps the smaller configuration in [`StoreConfig`]'s order, so all
//!   views still agree. A dropped store keeps its name with the
//!   [`StoreConfig::dropped`] entry, the least of all, so a drop wins every merge and the name is
//!   not used again;
//! - the **ring** depends on its history (see [`crate::ring`]), so it is agreed rather than
//!   derived: only the [claimant](ClusterView::claimant) makes a new ring
//!   ([`ClusterView::advance_ring`], one change at a time, each raising the epoch by one), and
//!   a merge takes the other view's ring when it is newer (of two rings the one with the higher
//!   `(epoch, digest)` wins, which matters only should two nodes ever both have acted as
//!   claimant). A merge never makes a ring: before, every view moved its ring to match its own
//!   membership, so two joins through two seeds made two rings of one epoch that routed half
//!   the keys differently until gossip picked one (issue 9, 1.1).
//!
//! **Merge laws**: the membership and catalogue parts are commutative, associative and
//! idempotent; the ring part keeps the greatest ring, so it is too. Views converge once the
//! claimant has moved the ring to the agreed membership and gossip has spread it (checked by a
//! property test).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::gossip::{EntryDigest, ViewDigest, fingerprint};
use crate::identity::NodeId;
use crate::membership::{IdTaken, Membership, NodeInfo, NodeInfoBeforeCertificates, NodeInfoBeforeWebAccess};
use crate::ring::{Ring, RingError, RingNode};
use crate::store::{QuorumKind, StoreConfig, StoreName};

/// Membership, ring and store catalogue, as one node or client sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    partition_bits: u8,
    membership: Membership,
    /// Shared, not copied, by clones of the view and by the deltas and news made from it (a
    /// ring of 65,536 partitions and thousands of members is hundreds of kilobytes); encoded
    /// as the ring itself.
    ring: Option<Arc<Ring>>,
    stores: BTreeMap<StoreName, StoreConfig>,
    /// Boxed: most views have none, and views travel inside messages.
    transition: Option<alloc::boxed::Box<Transition>>,
}

/// Where a write goes and how it is counted ([`ClusterView::write_plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritePlan {
    /// The replicas (both rings' during a transition) and the current ring's fallbacks.
    pub prefs: crate::ring::PreferenceList,
    /// The settings the put coordinator counts with (N: every replica above).
    pub config: StoreConfig,
    /// During a transition, the two replica sets that must each hold W.
    pub joint: Option<crate::coordinator::JointQuorum>,
}

/// A ring change under way (issue 9, 2.1): the ring it moves to, the nodes that gain replicas
/// in it, and those of them that have received every partition they gain. While it lasts, reads
/// go to the current ring's replicas and writes to those of both rings (the gainers are the
/// keys' *pending owners*); once every gainer has received its partitions the claimant commits
/// it: the next ring becomes the ring, one epoch later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The ring the change moves to (one epoch above the current ring), shared as the view's
    /// ring is.
    pub next: Arc<Ring>,
    /// The nodes that become replicas of partitions they were not replicas of, for the stores'
    /// replication factors when the change started.
    pub gainers: BTreeSet<NodeId>,
    /// The gainers that have received every partition they gain (each adds itself).
    pub received: BTreeSet<NodeId>,
}

/// Why a store cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreateStoreError {
    /// The store exists with other settings; settings are fixed for life.
    #[error("store {name} already exists with {existing}; a store's settings cannot change (asked for {requested})")]
    Conflict {
        /// The store.
        name: StoreName,
        /// Its settings.
        existing: StoreConfig,
        /// The settings asked for.
        requested: StoreConfig,
    },
    /// The settings are invalid.
    #[error("invalid store settings: {0}")]
    Invalid(#[from] crate::store::StoreConfigError),
    /// A store of this name was dropped; names are not used again.
    #[error("store {0} was dropped; a dropped store's name is not used again")]
    Dropped(StoreName),
}

/// Why a store could not be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropStoreError {
    /// No store of this name exists.
    #[error("store {0} does not exist")]
    Unknown(StoreName),
}

/// Why two views cannot be merged, or a decoded view is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The views belong to clusters with different partition counts.
    #[error("cluster views have different partition counts ({0} and {1} bits): not the same cluster")]
    PartitionMismatch(u8, u8),
    /// The ring could not be built or is inconsistent.
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    /// A store configuration in the catalogue is invalid.
    #[error("store {0} has an invalid configuration")]
    InvalidStore(StoreName),
    /// A node entry names another certificate than the one the view holds for its id.
    #[error(transparent)]
    IdTaken(alloc::boxed::Box<IdTaken>),
}

impl ClusterView {
    /// A view of a cluster with no nodes and no stores yet (the node that founds a cluster adds
    /// the `default` store).
    pub fn new(partition_bits: u8) -> ClusterView {
        ClusterView {
            partition_bits,
            membership: Membership::new(),
            ring: None,
            stores: BTreeMap::new(),
            transition: None,
        }
    }

    /// log2 of the ring's partition count, fixed for the cluster's life.
    pub fn partition_bits(&self) -> u8 {
        self.partition_bits
    }

    /// The membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The node that decides ring changes and store creates: the ring member with the smallest
    /// id that is not removed (before there is a ring, the smallest id among the members that
    /// may own partitions). Every view that holds the same ring names the same claimant, so
    /// ring changes are made one at a time by one node, and of racing creates of one name exactly
    /// one wins (as Riak's claimant decides cluster changes). A node is claimant only once it
    /// owns partitions: a node that joins with a smaller id takes over after the ring that takes
    /// it in. `None` for a view without members.
    pub fn claimant(&self) -> Option<&crate::identity::NodeId> {
        let in_ring =
            self.ring.as_ref().and_then(|ring| ring.nodes().iter().map(|n| &n.id).find(|id| !self.is_removed(id)));
        in_ring.or_else(|| self.membership.ring_members().map(|n| &n.id).min())
    }

    /// The ring the claimant moves to next: `Some` when the ring's members (ids, zones and
    /// capacities) differ from the membership's ring members, or there is no ring yet and some
    /// member may own partitions. Only partitions that must move, move ([`Ring::next`]). `None`
    /// during a transition: one change at a time (see [`plan`](Self::plan) for the one under
    /// way).
    pub fn next_ring(&self) -> Result<Option<Ring>, ViewError> {
        if self.transition.is_some() {
            return Ok(None);
        }
        let wanted = self.membership.ring_members().map(|n| RingNode {
            id: n.id.clone(),
            zone: n.zone.clone(),
            capacity: n.capacity,
        });
        let matches = match &self.ring {
            Some(ring) => ring.nodes().iter().cloned().eq(wanted),
            None => wanted.count() == 0,
        };
        if matches || self.membership.ring_members().next().is_none() {
            return Ok(None);
        }
        Ok(Some(match &self.ring {
            Some(ring) => ring.next(&self.membership)?,
            None => Ring::build(&self.membership, self.partition_bits)?,
        }))
    }

    /// What the claimant's next change would move, for `n` replicas (during a transition: what
    /// the transition moves): `None` when there is nothing to do.
    pub fn plan(&self, n: usize) -> Result<Option<crate::ring::RingPlan>, ViewError> {
        if let Some(t) = &self.transition {
            return Ok(Some(crate::ring::RingPlan::between(self.ring.as_deref(), &t.next, n)?));
        }
        let Some(next) = self.next_ring()? else { return Ok(None) };
        Ok(Some(crate::ring::RingPlan::between(self.ring.as_deref(), &next, n)?))
    }

    /// The claimant's step, if `by` is the [claimant](Self::claimant); nodes call it after
    /// every change of their view, and only the claimant's call does anything:
    ///
    /// - no ring yet: the first ring is built (there is no data to move);
    /// - a transition whose gainers have all received their partitions: committed (the next
    ///   ring becomes the ring, one epoch later);
    /// - no transition, and the membership asks for a change ([`next_ring`](Self::next_ring)):
    ///   a transition to it starts (or, when no node gains a partition, the ring moves at once).
    ///
    /// Returns whether the view changed.
    pub fn advance_ring(&mut self, by: &NodeId) -> Result<bool, ViewError> {
        if self.claimant() != Some(by) {
            return Ok(false);
        }
        if let Some(t) = &self.transition {
            // A gainer removed since the change started never receives: the change commits
            // without waiting for it, and the next one takes its partitions away again.
            if t.gainers.iter().any(|g| !t.received.contains(g) && !self.is_removed(g)) {
                return Ok(false);
            }
            let next = t.next.with_epoch(t.next.epoch() + 1);
            self.ring = Some(Arc::new(next));
            self.transition = None;
            return Ok(true);
        }
        let Some(next) = self.next_ring()? else { return Ok(false) };
        let Some(current) = &self.ring else {
            self.ring = Some(Arc::new(next));
            return Ok(true);
        };
        let mut gainers = BTreeSet::new();
        let factors: BTreeSet<usize> = self.stores().map(|(_, c)| c.n()).collect();
        for n in factors {
            let plan = crate::ring::RingPlan::between(Some(current), &next, n)?;
            gainers.extend(plan.nodes.into_iter().filter(|node| node.gained > 0).map(|node| node.id));
        }
        if gainers.is_empty() {
            self.ring = Some(Arc::new(next));
        } else {
            let next = Arc::new(next);
            self.transition = Some(alloc::boxed::Box::new(Transition { next, gainers, received: BTreeSet::new() }));
        }
        Ok(true)
    }

    /// Whether `node` is gone for good: it left, or was removed
    /// ([`NodeStatus::Removed`](crate::membership::NodeStatus::Removed)).
    pub fn is_removed(&self, node: &NodeId) -> bool {
        self.membership.node(node).is_some_and(|n| n.status == crate::membership::NodeStatus::Removed)
    }

    /// The ring change under way, if any.
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_deref()
    }

    /// Notes that `node`, a gainer of the transition to `next`, has received every partition it
    /// gains. Returns whether the view changed (not for another transition, or a node that is
    /// not a gainer).
    pub fn note_received(&mut self, next: crate::ring::RingVersion, node: &NodeId) -> bool {
        match &mut self.transition {
            Some(t) if t.next.version() == next && t.gainers.contains(node) => t.received.insert(node.clone()),
            _ => false,
        }
    }

    /// Where a write of `token` goes, for a store of `config` with up to `fallbacks` fallbacks:
    /// the current ring's preference list, and during a transition one whose primaries are the
    /// current ring's N primaries followed by the next ring's primaries not among them (the
    /// key's *pending owners*), with the settings the put coordinator counts with (that many
    /// primaries) and the joint quorum it must meet: W of the current ring's replicas (reads go
    /// there until the change is committed) and W of the next ring's (reads go there after).
    /// `None` before there is a ring.
    pub fn write_plan(&self, token: crate::token::Token, config: &StoreConfig, fallbacks: usize) -> Option<WritePlan> {
        let ring = self.ring.as_ref()?;
        let current = ring.preference_list(token, config.n(), fallbacks);
        let unchanged = |prefs| Some(WritePlan { prefs, config: *config, joint: None });
        let Some(t) = &self.transition else { return unchanged(current) };
        let next = t.next.preference_list(token, config.n(), 0);
        let gained: Vec<NodeId> = next.primaries().iter().filter(|id| !current.is_primary(id)).cloned().collect();
        if gained.is_empty() && current.primaries().iter().all(|id| next.is_primary(id)) {
            return unchanged(current);
        }
        let mut primaries = current.primaries().to_vec();
        primaries.extend(gained.iter().cloned());
        let fallbacks = current.fallbacks().iter().filter(|id| !primaries.contains(id)).cloned().collect();
        let (old, new) = (current.primaries().to_vec(), next.primaries().to_vec());
        let (w_old, w_new) = (config.w().min(old.len()), config.w().min(new.len()));
        let counted = config.for_transition(primaries.len());
        Some(WritePlan {
            prefs: crate::ring::PreferenceList::from_parts(token, primaries, fallbacks),
            config: counted,
            joint: Some(crate::coordinator::JointQuorum { sets: [(old, w_old), (new, w_new)] }),
        })
    }

    /// The preference list a read of `token` uses: the current ring's (reads go there until a
    /// ring change is committed). While a change is under way, a sloppy store's list goes on
    /// with the key's pending owners (replicas in the next ring that are not in the current
    /// one) after its fallbacks: they stand in for current replicas that do not answer, as
    /// fallbacks do, with what they have received so far. Without them, a current replica lost
    /// in the middle of a change left a sloppy store unreadable until the change ended (which
    /// waits for that replica). A strict store never counts anything but its replicas.
    pub fn read_preferences(
        &self,
        token: crate::token::Token,
        config: &StoreConfig,
        fallbacks: usize,
    ) -> Option<crate::ring::PreferenceList> {
        let current = self.ring.as_ref()?.preference_list(token, config.n(), fallbacks);
        let Some(t) = self.transition.as_ref().filter(|_| config.quorum_kind() == QuorumKind::Sloppy) else {
            return Some(current);
        };
        let next = t.next.preference_list(token, config.n(), 0);
        let pending = next.primaries().iter().filter(|id| !current.is_primary(id) && !current.fallbacks().contains(id));
        let mut stand_ins = current.fallbacks().to_vec();
        stand_ins.extend(pending.cloned());
        Some(crate::ring::PreferenceList::from_parts(token, current.primaries().to_vec(), stand_ins))
    }

    /// The version of the ring requests are routed with: during a transition the next ring's
    /// (writes go to both rings' replicas, reads to the current ring's), else the ring's.
    pub fn routing_version(&self) -> Option<crate::ring::RingVersion> {
        match &self.transition {
            Some(t) => Some(t.next.version()),
            None => self.ring.as_deref().map(Ring::version),
        }
    }

    /// The ring, once the cluster has a node that owns partitions.
    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_deref()
    }

    /// Every store and its settings, by name (dropped stores left out).
    pub fn stores(&self) -> impl Iterator<Item = (&StoreName, &StoreConfig)> {
        self.stores.iter().filter(|(_, c)| !c.is_dropped())
    }

    /// One store's settings (`None` if it does not exist or was dropped).
    pub fn store(&self, name: &StoreName) -> Option<&StoreConfig> {
        self.stores.get(name).filter(|c| !c.is_dropped())
    }

    /// The names of the dropped stores (not used again; their data is deleted by every node).
    pub fn dropped_stores(&self) -> impl Iterator<Item = &StoreName> {
        self.stores.iter().filter(|(_, c)| c.is_dropped()).map(|(name, _)| name)
    }

    /// Whether `name` was dropped.
    pub fn was_dropped(&self, name: &StoreName) -> bool {
        self.stores.get(name).is_some_and(StoreConfig::is_dropped)
    }

    /// Drops a store: it stops existing everywhere the view reaches, and its name is not used
    /// again (nodes delete its data: `Io::DropData`). A drop wins every merge. Returns whether the view
    /// changed; dropping an unknown store is an error.
    pub fn drop_store(&mut self, name: &StoreName) -> Result<bool, DropStoreError> {
        match self.stores.get_mut(name) {
            Some(config) if config.is_dropped() => Ok(false),
            Some(config) => {
                *config = StoreConfig::dropped();
                Ok(true)
            }
            None => Err(DropStoreError::Unknown(name.clone())),
        }
    }

    /// Adds or updates a node entry (the membership rule decides). Returns whether the view
    /// changed. The ring does not move: the claimant moves it ([`advance_ring`](Self::advance_ring)).
    /// An entry that names another certificate than the one held for its id is refused
    /// ([`ViewError::IdTaken`]) and changes nothing.
    pub fn upsert_node(&mut self, info: NodeInfo) -> Result<bool, ViewError> {
        self.membership.upsert(info).map_err(ViewError::IdTaken)
    }

    /// Creates a store. Returns `Ok(true)` if it was created, `Ok(false)` if it already exists
    /// with exactly these settings, and an error if it exists with others.
    pub fn create_store(&mut self, name: StoreName, config: StoreConfig) -> Result<bool, CreateStoreError> {
        config.validate()?;
        match self.stores.get(&name) {
            Some(existing) if existing.is_dropped() => Err(CreateStoreError::Dropped(name)),
            Some(existing) if *existing == config => Ok(false),
            Some(existing) => Err(CreateStoreError::Conflict { name, existing: *existing, requested: config }),
            None => {
                self.stores.insert(name, config);
                Ok(true)
            }
        }
    }

    /// The node entries of `other` that [`merge`](ClusterView::merge) leaves out: ids this view
    /// holds with another certificate.
    pub fn conflicts(&self, other: &ClusterView) -> impl Iterator<Item = IdTaken> {
        self.membership.conflicts(&other.membership)
    }

    /// Merges another view into this one (see the module docs), leaving out node entries that
    /// conflict with this view's ([`ClusterView::conflicts`]). Returns whether this view changed.
    pub fn merge(&mut self, other: &ClusterView) -> Result<bool, ViewError> {
        if other.partition_bits != self.partition_bits {
            return Err(ViewError::PartitionMismatch(self.partition_bits, other.partition_bits));
        }
        let mut changed = self.membership.merge(&other.membership);
        for (name, config) in &other.stores {
            match self.stores.get_mut(name) {
                Some(mine) if *config < *mine => {
                    *mine = *config;
                    changed = true;
                }
                Some(_) => {}
                None => {
                    self.stores.insert(name.clone(), *config);
                    changed = true;
                }
            }
        }
        // The ring and the transition go together: the view routed with the later ring wins;
        // two views of one transition hold the gainers that received in either.
        let (mine, theirs) = (self.routing_version(), other.routing_version());
        if theirs.is_some() && (mine.is_none() || theirs > mine) {
            self.ring = other.ring.clone();
            self.transition = other.transition.clone();
            changed = true;
        } else if let (Some(t), Some(o)) = (&mut self.transition, &other.transition)
            && t.next.version() == o.next.version()
            && !o.received.is_subset(&t.received)
        {
            t.received.extend(o.received.iter().cloned());
            changed = true;
        }
        Ok(changed)
    }

    /// This view entry by entry, for gossip (see [`crate::gossip`]).
    pub fn digest(&self) -> ViewDigest {
        ViewDigest {
            partition_bits: self.partition_bits,
            entries: self
                .membership
                .nodes()
                .map(|n| EntryDigest { id: n.id.clone(), version: n.version, fingerprint: fingerprint(n) })
                .collect(),
            ring: self.ring_word(),
            stores: fingerprint(&self.stores),
        }
    }

    /// The parts of this view that differ from what `theirs` summarises: the node entries it
    /// lacks or holds otherwise, the ring if theirs is another, the catalogue if it differs.
    /// `None` when there is no difference. Merging the delta into the view `theirs` came from
    /// has the effect of merging this whole view (merges are idempotent and work part by part).
    pub fn delta_for(&self, theirs: &ViewDigest) -> Option<ClusterView> {
        self.delta_between(&self.digest(), theirs)
    }

    /// [`delta_for`](Self::delta_for), given this view's own digest (`mine`, as
    /// [`digest`](Self::digest) made it; a node keeps it until its view changes).
    pub fn delta_between(&self, mine: &ViewDigest, theirs: &ViewDigest) -> Option<ClusterView> {
        let mut delta = ClusterView::new(self.partition_bits);
        let mut any = theirs.partition_bits != self.partition_bits;
        for entry in &mine.entries {
            let same = theirs
                .entry(&entry.id)
                .is_some_and(|e| e.version == entry.version && e.fingerprint == entry.fingerprint);
            if let (false, Some(node)) = (same, self.membership.shared(&entry.id)) {
                // Entries of one view never conflict with each other.
                let _ = delta.membership.upsert_shared(node);
                any = true;
            }
        }
        if self.ring.is_some() && theirs.ring != mine.ring {
            delta.ring = self.ring.clone();
            delta.transition = self.transition.clone();
            any = true;
        }
        if theirs.stores != mine.stores {
            delta.stores = self.stores.clone();
            any = true;
        }
        any.then_some(delta)
    }

    /// What gossip compares of the ring: the routing ring's epoch, and its digest with the
    /// transition's received gainers folded in (so news of a gainer that received spreads).
    fn ring_word(&self) -> Option<(u64, u64)> {
        let version = self.routing_version()?;
        let received = self.transition.as_ref().map_or(0, |t| fingerprint(&t.received));
        Some((version.epoch, crate::mix::combine(version.digest, received)))
    }

    /// Checks a decoded view before it is used.
    pub fn validate(&self) -> Result<(), ViewError> {
        if let Some(t) = &self.transition {
            t.next.validate()?;
            let current =
                self.ring.as_ref().ok_or(ViewError::Ring(RingError::Inconsistent("a transition without a ring")))?;
            if t.next.partition_bits() != self.partition_bits || t.next.epoch() != current.epoch() + 1 {
                return Err(ViewError::Ring(RingError::Inconsistent("a transition that does not follow the ring")));
            }
        }
        if let Some(ring) = &self.ring {
            ring.validate()?;
            if ring.partition_bits() != self.partition_bits {
                return Err(ViewError::PartitionMismatch(self.partition_bits, ring.partition_bits()));
            }
        }
        match self.stores.iter().find(|(_, c)| !c.is_dropped() && c.validate().is_err()) {
            Some((name, _)) => Err(ViewError::InvalidStore(name.clone())),
            None => Ok(()),
        }
    }
}

/// A view as encoded before node entries published their web access (saved-view format 3):
/// decode it with postcard, then turn it into today's view, whose entries publish none until
/// their nodes next start.
#[derive(Debug, Deserialize)]
pub struct ViewBeforeWebAccess {
    partition_bits: u8,
    membership: BTreeMap<NodeId, NodeInfoBeforeWebAccess>,
    ring: Option<Ring>,
    stores: BTreeMap<StoreName, StoreConfig>,
    transition: Option<alloc::boxed::Box<Transition>>,
}

impl From<ViewBeforeWebAccess> for ClusterView {
    fn from(old: ViewBeforeWebAccess) -> ClusterView {
        let ViewBeforeWebAccess { partition_bits, membership, ring, stores, transition } = old;
        let membership = membership_of(membership.into_values().map(NodeInfo::from));
        ClusterView { partition_bits, membership, ring: ring.map(Arc::new), stores, transition }
    }
}

/// A view as encoded before ring changes were staged (saved-view format 2): no transition.
#[derive(Debug, Deserialize)]
pub struct ViewBeforeTransitions {
    partition_bits: u8,
    membership: BTreeMap<NodeId, NodeInfoBeforeWebAccess>,
    ring: Option<Ring>,
    stores: BTreeMap<StoreName, StoreConfig>,
}

impl From<ViewBeforeTransitions> for ClusterView {
    fn from(old: ViewBeforeTransitions) -> ClusterView {
        let ViewBeforeTransitions { partition_bits, membership, ring, stores } = old;
        ViewBeforeWebAccess { partition_bits, membership, ring, stores, transition: None }.into()
    }
}

/// A view as encoded before node entries named their certificates (saved-view format 1):
/// decode it with postcard, then turn it into today's view, whose entries have no certificate
/// until their nodes next start.
#[derive(Debug, Deserialize)]
pub struct ViewBeforeCertificates {
    partition_bits: u8,
    membership: BTreeMap<NodeId, NodeInfoBeforeCertificates>,
    ring: Option<Ring>,
    stores: BTreeMap<StoreName, StoreConfig>,
}

impl From<ViewBeforeCertificates> for ClusterView {
    fn from(old: ViewBeforeCertificates) -> ClusterView {
        ClusterView {
            partition_bits: old.partition_bits,
            membership: membership_of(old.membership.into_values().map(NodeInfo::from)),
            ring: old.ring.map(Arc::new),
            stores: old.stores,
            transition: None,
        }
    }
}

/// A membership of entries decoded from an older format (one entry per id, as they were saved).
fn membership_of(entries: impl Iterator<Item = NodeInfo>) -> Membership {
    let mut membership = Membership::new();
    for info in entries {
        // The entries of one saved view agree on each id's certificate.
        let _ = membership.upsert(info);
    }
    membership
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeId;
    use crate::membership::NodeStatus;
    use crate::store::{ConflictPolicy, QuorumKind};
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// 3.4: a dropped store is gone from every view it reaches, whatever order views merge in,
    /// and its name is not used again.
    #[test]
    fn a_drop_wins_every_merge_and_the_name_is_not_reused() {
        let name = StoreName::new("carts").unwrap();
        let mut dropped = ClusterView::new(4);
        dropped.create_store(name.clone(), StoreConfig::quorum()).unwrap();
        let created = dropped.clone();
        assert_eq!(dropped.drop_store(&name), Ok(true));
        assert_eq!(dropped.drop_store(&name), Ok(false), "dropping twice changes nothing");
        assert!(dropped.store(&name).is_none() && dropped.was_dropped(&name));
        assert!(dropped.stores().all(|(n, _)| *n != name));
        for (mut mine, theirs) in [(created.clone(), dropped.clone()), (dropped.clone(), created.clone())] {
            mine.merge(&theirs).unwrap();
            assert!(mine.store(&name).is_none(), "the drop won");
            assert!(mine.validate().is_ok());
        }
        let err = dropped.clone().create_store(name.clone(), StoreConfig::quorum()).unwrap_err();
        assert!(err.to_string().contains("was dropped"), "{err}");
        let unknown = StoreName::new("nope").unwrap();
        assert!(dropped.drop_store(&unknown).is_err());
    }

    fn node(i: usize, capacity: u32) -> NodeInfo {
        NodeInfo::new(&format!("n{i}"), &format!("127.0.0.1:{}", 7100 + i), &format!("z{}", i % 3), capacity).unwrap()
    }

    #[test]
    fn new_view_has_no_store_no_ring_and_no_claimant() {
        let view = ClusterView::new(8);
        assert_eq!(view.stores().count(), 0);
        assert!(view.ring().is_none());
        assert_eq!(view.claimant(), None);
    }

    #[test]
    fn the_claimant_is_the_ring_member_with_the_smallest_id() {
        let mut view = ClusterView::new(8);
        view.upsert_node(node(2, 1)).unwrap();
        assert_eq!(view.claimant().map(|c| c.as_str()), Some("n2"), "no ring: the smallest member");
        let n2 = view.claimant().unwrap().clone();
        assert!(view.advance_ring(&n2).unwrap());
        view.upsert_node(node(1, 1)).unwrap();
        view.upsert_node(node(3, 1)).unwrap();
        assert_eq!(view.claimant(), Some(&n2), "n1 is not in the ring yet");
        let n1 = NodeId::new("n1").unwrap();
        assert!(!view.advance_ring(&n1).unwrap(), "only the claimant moves the ring");
        assert_eq!(view.ring().unwrap().nodes().len(), 1);
        assert!(view.advance_ring(&n2).unwrap());
        assert_eq!(view.claimant(), Some(&n1), "n1 took over once in the ring");
        // A removed claimant hands over to the next smallest ring member.
        let mut gone = node(1, 1);
        gone.version = 2;
        gone.status = NodeStatus::Removed;
        view.upsert_node(gone).unwrap();
        assert_eq!(view.claimant(), Some(&n2));
        assert!(view.advance_ring(&n2).unwrap());
        assert_eq!(view.ring().unwrap().nodes().len(), 2);
    }

    #[test]
    fn the_claimant_builds_then_moves_the_ring_one_epoch_at_a_time() {
        let mut view = ClusterView::new(8);
        let n0 = NodeId::new("n0").unwrap();
        assert!(view.upsert_node(node(0, 1)).unwrap());
        assert!(view.ring().is_none(), "an entry alone makes no ring");
        assert!(view.advance_ring(&n0).unwrap());
        assert_eq!(view.ring().unwrap().epoch(), 1);
        assert!(view.upsert_node(node(1, 1)).unwrap());
        assert_eq!(view.next_ring().unwrap().map(|r| r.epoch()), Some(2), "the plan");
        assert_eq!(view.ring().unwrap().epoch(), 1);
        assert!(view.advance_ring(&n0).unwrap());
        let ring = view.ring().unwrap();
        assert_eq!(ring.epoch(), 2);
        assert_eq!(ring.nodes().len(), 2);
        // The same entry again changes nothing, and there is nothing to do.
        assert!(!view.upsert_node(node(1, 1)).unwrap());
        assert_eq!(view.next_ring(), Ok(None));
        assert!(!view.advance_ring(&n0).unwrap());
    }

    /// Issue 9, 2.1: during a transition a write of a key whose replicas change goes to the
    /// current replicas then the pending owners, and must reach W of each ring's replicas; a key
    /// whose replicas stay is written as before. Routing uses the next ring's version, and the
    /// commit comes once every gainer received, one epoch after it.
    #[test]
    fn a_transitions_writes_go_to_both_rings_replicas() {
        let mut view = ClusterView::new(8);
        let n0 = NodeId::new("n0").unwrap();
        for i in 0..3 {
            view.upsert_node(node(i, 1)).unwrap();
        }
        view.create_store(StoreName::default_store(), StoreConfig::quorum()).unwrap();
        view.advance_ring(&n0).unwrap();
        let current = view.ring().unwrap().clone();
        view.upsert_node(node(3, 1)).unwrap();
        assert!(view.advance_ring(&n0).unwrap());
        let t = view.transition().unwrap().clone();
        assert_eq!(t.gainers.iter().map(NodeId::as_str).collect::<Vec<_>>(), ["n3"]);
        assert_eq!(view.routing_version(), Some(t.next.version()));
        assert_eq!(view.ring(), Some(&current), "reads still go to the current ring");
        let config = StoreConfig::quorum();
        let (mut moved, mut stayed) = (0, 0);
        for k in 0..200 {
            let token = crate::token::Token::of(format!("k{k}").as_bytes());
            let plan = view.write_plan(token, &config, 1).unwrap();
            let old = current.preference_list(token, 3, 0);
            let new = t.next.preference_list(token, 3, 0);
            match &plan.joint {
                None => {
                    stayed += 1;
                    assert_eq!(plan.prefs.primaries(), old.primaries());
                }
                Some(joint) => {
                    moved += 1;
                    assert_eq!(&plan.prefs.primaries()[..3], old.primaries(), "current replicas first");
                    assert!(plan.prefs.primaries()[3..].iter().all(|p| new.is_primary(p) && !old.is_primary(p)));
                    assert_eq!(plan.config.n(), plan.prefs.primaries().len());
                    assert_eq!(joint.sets, [(old.primaries().to_vec(), 2), (new.primaries().to_vec(), 2)]);
                }
            }
        }
        assert!(moved > 0 && stayed > 0, "{moved} moved, {stayed} stayed");
        // No commit until the gainer received; then one epoch after the transition's.
        assert!(!view.advance_ring(&n0).unwrap());
        assert!(!view.note_received(t.next.version(), &n0), "n0 gains nothing");
        assert!(view.note_received(t.next.version(), &NodeId::new("n3").unwrap()));
        assert!(view.advance_ring(&n0).unwrap());
        assert!(view.transition().is_none());
        assert_eq!(view.ring().unwrap().epoch(), t.next.epoch() + 1);
        assert_eq!(view.ring().unwrap().with_epoch(t.next.epoch()), *t.next);
    }

    /// Regression (issue 9, 1.1): two joins through two seeds made two rings of one epoch, each
    /// seed moving its ring as its membership changed. Now the seeds only take the entries; the
    /// claimant makes one ring with both.
    #[test]
    fn two_joins_through_two_seeds_make_one_ring_per_epoch() {
        let mut founder = ClusterView::new(8);
        let n0 = NodeId::new("n0").unwrap();
        for i in 0..3 {
            founder.upsert_node(node(i, 1)).unwrap();
        }
        founder.advance_ring(&n0).unwrap();
        let (mut seed1, mut seed2) = (founder.clone(), founder.clone());
        seed1.upsert_node(node(3, 1)).unwrap();
        seed2.upsert_node(node(4, 1)).unwrap();
        for (seed, id) in [(&mut seed1, "n1"), (&mut seed2, "n2")] {
            assert!(!seed.advance_ring(&NodeId::new(id).unwrap()).unwrap(), "a seed is not the claimant");
        }
        assert_eq!(seed1.ring(), founder.ring());
        assert_eq!(seed2.ring(), founder.ring());
        let mut claimant = founder.clone();
        claimant.merge(&seed1).unwrap();
        claimant.merge(&seed2).unwrap();
        assert!(claimant.advance_ring(&n0).unwrap());
        assert_eq!(claimant.ring().unwrap().nodes().len(), 5, "one ring with both joins");
        assert_eq!(claimant.ring().unwrap().epoch(), 2);
        for seed in [&mut seed1, &mut seed2] {
            seed.merge(&claimant).unwrap();
            assert_eq!(seed, &claimant);
        }
    }

    #[test]
    fn store_settings_are_fixed_for_life() {
        let mut view = ClusterView::new(8);
        assert!(view.create_store(StoreName::default_store(), StoreConfig::quorum()).unwrap());
        let carts = StoreName::new("carts").unwrap();
        assert!(view.create_store(carts.clone(), StoreConfig::eventual()).unwrap());
        assert!(!view.create_store(carts.clone(), StoreConfig::eventual()).unwrap());
        let err = view.create_store(carts.clone(), StoreConfig::strict()).unwrap_err();
        assert!(matches!(err, CreateStoreError::Conflict { .. }));
        assert!(err.to_string().contains("cannot change"), "{err}");
        assert!(view.create_store(StoreName::default_store(), StoreConfig::eventual()).is_err());
        assert_eq!(view.store(&carts), Some(&StoreConfig::eventual()));
    }

    #[test]
    fn views_of_different_clusters_do_not_merge() {
        let mut a = ClusterView::new(8);
        assert_eq!(a.merge(&ClusterView::new(9)), Err(ViewError::PartitionMismatch(8, 9)));
    }

    fn config_strategy() -> impl Strategy<Value = StoreConfig> {
        (1u8..=5, any::<bool>(), any::<bool>()).prop_map(|(n, strict, lww)| {
            let kind = if strict { QuorumKind::Strict } else { QuorumKind::Sloppy };
            let policy = if lww { ConflictPolicy::Lww } else { ConflictPolicy::Siblings };
            StoreConfig::new(n, 1, n, kind, policy).unwrap()
        })
    }

    /// One node's local history: nodes it saw join (or change) and stores created through it.
    #[derive(Clone, Debug)]
    enum Event {
        Node(usize, u32, bool),
        Store(usize, StoreConfig),
    }

    fn event_strategy() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0usize..6, 1u32..4, any::<bool>()).prop_map(|(i, c, up)| Event::Node(i, c, up)),
            (0usize..3, config_strategy()).prop_map(|(i, c)| Event::Store(i, c)),
        ]
    }

    fn apply(view: &mut ClusterView, event: &Event, version: u64) {
        match event {
            Event::Node(i, capacity, up) => {
                let mut info = node(*i, *capacity);
                info.version = version;
                info.status = if *up { NodeStatus::Up } else { NodeStatus::Leaving };
                view.upsert_node(info).unwrap();
            }
            Event::Store(i, config) => {
                let _ = view.create_store(StoreName::new(&format!("s{i}")).unwrap(), *config);
            }
        }
    }

    /// What node `me` does after its view changed: as claimant, its step; as a gainer of a
    /// change under way, it takes its partitions at once (transfers are the node's, not tested
    /// here).
    fn act(view: &mut ClusterView, me: &NodeId) {
        view.advance_ring(me).unwrap();
        if let Some(next) = view.transition().filter(|t| t.gainers.contains(me)).map(|t| t.next.version()) {
            view.note_received(next, me);
            view.advance_ring(me).unwrap();
        }
    }

    /// A view that saw `events`, its entries versioned from `base`.
    fn built(events: &[Event], base: u64) -> ClusterView {
        let mut v = ClusterView::new(6);
        for (k, e) in events.iter().enumerate() {
            apply(&mut v, e, base + k as u64);
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Views that saw different events in different orders agree after gossip rounds.
        #[test]
        fn views_converge_after_exchanges(
            histories in proptest::collection::vec(proptest::collection::vec(event_strategy(), 0..6), 2..5),
            order in proptest::collection::vec((0usize..5, 0usize..5), 0..12),
        ) {
            let mut views: Vec<ClusterView> = histories.iter().enumerate().map(|(v, events)| {
                let mut view = ClusterView::new(6);
                for (k, e) in events.iter().enumerate() {
                    apply(&mut view, e, (v * 10 + k) as u64 + 1);
                }
                view
            }).collect();
            let count = views.len();
            // Some random exchanges first, then full rounds until nothing changes.
            // View `a` is node `n{a}`'s: after each merge it moves the ring if it is the claimant.
            let me = |a: usize| NodeId::new(&format!("n{a}")).unwrap();
            for (a, b) in order {
                let (a, b) = (a % count, b % count);
                let other = views[b].clone();
                views[a].merge(&other).unwrap();
                act(&mut views[a], &me(a));
            }
            for _round in 0..(6 * count + 6) {
                for a in 0..count {
                    for b in 0..count {
                        let other = views[b].clone();
                        views[a].merge(&other).unwrap();
                        act(&mut views[a], &me(a));
                    }
                }
            }
            for v in &views[1..] {
                prop_assert_eq!(v, &views[0]);
            }
            // Once the claimant is one of the views, the agreed ring matches the agreed membership.
            let view = &views[0];
            // Once the claimant and every member are views (so gainers receive), the agreed ring
            // matches the agreed membership and no change is under way.
            let acting = view.membership().nodes().all(|n| (0..count).any(|a| n.id == me(a)));
            let members: Vec<_> = view.membership().ring_members().map(|n| n.id.clone()).collect();
            if acting && !members.is_empty() {
                prop_assert_eq!(view.next_ring(), Ok(None), "the claimant left nothing to do");
                prop_assert!(view.transition().is_none(), "a change left under way");
                let ids: Vec<_> = view.ring().expect("a ring").nodes().iter().map(|n| n.id.clone()).collect();
                prop_assert_eq!(ids, members);
            }
        }

        /// Gossip's deltas do what merging whole views does, and one exchange (a digest, a delta
        /// back, a delta forth) leaves both sides with the same view.
        #[test]
        fn a_digest_exchange_merges_as_whole_views_do(
            a in proptest::collection::vec(event_strategy(), 0..6),
            b in proptest::collection::vec(event_strategy(), 0..6),
        ) {
            let (va, vb) = (built(&a, 1), built(&b, 100));
            let mut whole = va.clone();
            whole.merge(&vb).unwrap();
            // A sends its digest; B answers with its delta and digest.
            let mut a_side = va.clone();
            if let Some(delta) = vb.delta_for(&va.digest()) {
                prop_assert!(delta.validate().is_ok());
                a_side.merge(&delta).unwrap();
            }
            prop_assert_eq!(&a_side, &whole);
            // A sends back what B lacks.
            let mut b_side = vb.clone();
            if let Some(delta) = a_side.delta_for(&vb.digest()) {
                b_side.merge(&delta).unwrap();
            }
            prop_assert_eq!(&b_side, &a_side);
            prop_assert!(a_side.delta_for(&b_side.digest()).is_none());
            prop_assert!(a_side.digest().same_view(&b_side.digest()));
        }

        /// The membership and catalogue parts obey the CRDT laws.
        #[test]
        fn catalogue_merge_is_order_free(
            a in proptest::collection::vec(event_strategy(), 0..6),
            b in proptest::collection::vec(event_strategy(), 0..6),
        ) {
            let (va, vb) = (built(&a, 1), built(&b, 100));
            let mut ab = va.clone();
            ab.merge(&vb).unwrap();
            let mut ba = vb.clone();
            ba.merge(&va).unwrap();
            prop_assert_eq!(ab.membership(), ba.membership());
            prop_assert_eq!(ab.stores().collect::<Vec<_>>(), ba.stores().collect::<Vec<_>>());
            let mut again = ab.clone();
            prop_assert!(!again.merge(&ab).unwrap(), "merging a view into itself changes nothing");
        }
    }
}
