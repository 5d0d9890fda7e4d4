//! Old owners shed what they lost (issue 9, 2.2): once a ring change is committed, each node
//! scans its storage (the scan that also finds the tombstones it now collects) and removes the
//! records of keys it is no longer a replica of. The change was committed only once every
//! gainer had been found level with every current replica of the partitions it gains, and
//! writes during the change went to both rings' replicas, so the new replicas hold every
//! acknowledged write.
//!
//! A record stays when this node holds a hint of the key (its copy is the hint's), when the key
//! is this node's again in a change under way, and when it holds a version this node minted
//! (in this incarnation): removing it would let a later mint of the key here (as a fallback, or
//! as a replica again) claim to have seen that version, which lives on at the replicas, and
//! supersede it. Fallbacks keep such copies for the same reason (see [`super::handoff`]);
//! per-key actors (Riak's key epochs) would let both go.

use alloc::vec::Vec;

use super::Node;
use super::replica::{Completion, ReplicaStep};
use crate::store::StoreName;
use crate::token::Token;
use crate::version::KeyRecord;

impl Node {
    /// After any change of the view: once a ring change is committed (a committed ring this
    /// node has not scanned for yet), scans storage for what the new ring changes here, in one
    /// scan: the records of keys this node lost go (see the module docs), and the tombstones it
    /// now collects are tracked (a node that became the first primary of keys received their
    /// tombstones during the change, when it did not collect them, and the former collector
    /// gives them up: found by the simulation with `elastic`, where tombstones stayed for good
    /// after a leave). At start the scan that builds the trees does both.
    pub(super) fn ring_committed(&mut self) {
        let ring = self.view.ring().map(crate::ring::Ring::version);
        if self.view.transition().is_some() || ring == self.scanned_ring {
            return;
        }
        self.scanned_ring = ring;
        self.scrub_and_shed();
    }

    /// Removes `key`'s record if this node lost the key (see the module docs); the removal is
    /// a replica step that checks again, in the key's queue, that the record is unchanged and
    /// the node still no replica.
    pub(super) fn shed_record(&mut self, store: &StoreName, key: Vec<u8>, record: KeyRecord) {
        let Ok(config) = self.store_config(store) else { return };
        let name = (store.clone(), key);
        let minted_here = record.siblings.history().counter(&self.actor) > 0;
        if minted_here || self.holds_any_hint(&name) || self.is_replica_or_pending_owner(&name, &config) {
            return;
        }
        self.stats.records_shed += 1;
        let step = ReplicaStep::Remove { expect: record.siblings, primary: false };
        self.enqueue(name.0, name.1, config, step, Completion::Nothing);
    }

    /// Whether this node is a replica of `key`: a primary in its ring, or one of the key's
    /// pending owners in the ring change under way.
    pub(super) fn is_replica_or_pending_owner(
        &self,
        key: &(StoreName, Vec<u8>),
        config: &crate::store::StoreConfig,
    ) -> bool {
        match self.view.write_plan(Token::of(&key.1), config, 0) {
            Some(plan) => plan.prefs.primaries().contains(&self.id),
            None => true,
        }
    }
}
