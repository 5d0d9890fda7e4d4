//! Requests in: who may ask what, the limits, the routing check, and where each request goes.

use alloc::format;
use core::time::Duration;

use super::Node;
use super::coordination::Job;
use super::refused_mints::MintAsked;
use super::replica::{Completion, ReplicaStep};
use crate::cluster::ViewError;
use crate::identity::CertificateDigest;
use crate::ring::RingVersion;
use crate::store::{LimitError, StoreConfig, StoreName};
use crate::token::Token;
use crate::version::Value;
use crate::wire::{ErrorKind, ErrorReply, Request, Response};

impl Node {
    /// Answers or starts work on one request that came in on `stream`.
    pub(super) fn handle_request(
        &mut self,
        now: Duration,
        stream: u64,
        peer: Option<CertificateDigest>,
        id: u64,
        routed: Option<RingVersion>,
        body: Request,
    ) {
        // A copy of a mint answered with an error gets the same error (see `refused_mints`).
        let asked = match (&body, peer) {
            (Request::Mint { write, .. }, Some(peer)) => Some(MintAsked { peer, id, write: write.id }),
            _ => None,
        };
        let dispatched = match asked.and_then(|a| self.refused_mints.recall(&a)) {
            Some(earlier) => Err(earlier),
            None => self.dispatch(now, stream, peer, id, routed, body),
        };
        match dispatched {
            Ok(Some(body)) => self.reply(stream, id, body),
            Ok(None) => {}
            Err(reply) => {
                if let Some(asked) = asked {
                    self.refused_mints.remember(asked, &reply);
                }
                if matches!(reply.kind, ErrorKind::TooLarge | ErrorKind::Malformed | ErrorKind::InvalidContext) {
                    self.stats.refused += 1;
                }
                self.reply(stream, id, Response::Error(reply));
            }
        }
    }

    /// The answer at once (`Some`), or `None` when the answer comes later.
    fn dispatch(
        &mut self,
        now: Duration,
        stream: u64,
        peer: Option<CertificateDigest>,
        id: u64,
        routed: Option<RingVersion>,
        body: Request,
    ) -> Result<Option<Response>, ErrorReply> {
        let from_node = peer.is_some();
        let done = Completion::Reply { stream, id, peer };
        // A node that left serves nothing but what tells others so.
        let tells = matches!(body, Request::Status | Request::Cluster | Request::Gossip { .. } | Request::Sync { .. });
        if self.has_left() && !tells {
            return Err(ErrorReply::new(
                ErrorKind::Unavailable,
                format!("node {} has left the cluster: send the request to another node", self.id),
            ));
        }
        if matches!(
            body,
            Request::Get { .. } | Request::Mint { .. } | Request::CoordinateGet { .. } | Request::CoordinatePut { .. }
        ) {
            self.foreground_seen(now);
        }
        match body {
            Request::Get { store, key } => {
                let config = self.replica_checks(now, peer, &store, &key, routed)?;
                self.enqueue(store, key, config, ReplicaStep::Read, done);
                Ok(None)
            }
            // Replica writes come from nodes only: a plain caller asks a node to coordinate.
            Request::Mint { store, key, write, hint_for } => {
                nodes_only(from_node)?;
                let config = match self.replica_checks(now, peer, &store, &key, routed) {
                    // The key's queue tells whether a copy of it was applied already.
                    Err(stale) if stale.kind == ErrorKind::StaleRing => {
                        let config = self.store_config(&store)?;
                        let step = ReplicaStep::StaleMint { write: write.id, stale };
                        self.enqueue(store, key, config, step, done);
                        return Ok(None);
                    }
                    checked => checked?,
                };
                self.check_value(write.payload.value().map(Value::as_ref))?;
                self.enqueue_hinted(store, key, config, ReplicaStep::Mint(write), done, hint_for);
                Ok(None)
            }
            Request::Replicate { store, key, siblings, hint_for } => {
                nodes_only(from_node)?;
                let config = self.replica_checks(now, peer, &store, &key, routed)?;
                siblings.values().try_for_each(|v| self.check_value(Some(v.as_ref())))?;
                self.enqueue_hinted(store, key, config, ReplicaStep::Merge(siblings), done, hint_for);
                Ok(None)
            }
            Request::CoordinateGet { store, key } => {
                self.stats.coordinated += 1;
                let config = self.store_config(&store)?;
                self.check_key(&key)?;
                self.coordinate(now, stream, id, store, key, config, Job::Get, true)?;
                Ok(None)
            }
            Request::CoordinatePut { store, key, write, minter } => {
                self.stats.coordinated += 1;
                let config = self.store_config(&store)?;
                self.check_key(&key)?;
                self.check_value(write.payload.value().map(Value::as_ref))?;
                // A write the caller did not name gets a name here, so that its sends to the
                // replicas are one write.
                let write = if write.id.is_none() { write.with_id(self.new_write_id()) } else { write };
                self.coordinate(now, stream, id, store, key, config, Job::Put { write, minter }, true)?;
                Ok(None)
            }
            Request::CreateStore { name, config } => self.create_store(now, stream, from_node, id, name, config),
            Request::DropStore { name } => self.drop_store(now, stream, id, name),
            Request::Cluster => Ok(Some(Response::Cluster(self.view.clone()))),
            Request::Join { node } => {
                nodes_only(from_node)?;
                // A new node still joining knows no cluster: taking a join would found a second
                // one with the joiner (found by the simulation with `elastic`: a node joining
                // through a spare that had not got in yet). A member restarting from its saved
                // view knows its cluster and takes joins.
                if !self.joined && self.view.ring().is_none() {
                    return Err(ErrorReply::new(
                        ErrorKind::Unavailable,
                        "this node has not joined a cluster yet: join through a member",
                    ));
                }
                self.join(now, peer, node)?;
                Ok(Some(Response::Cluster(self.view.clone())))
            }
            Request::Sync { view } => {
                nodes_only(from_node)?;
                let address = self.address_of(peer);
                if self.view.partition_bits() != view.partition_bits() {
                    let reason = ViewError::PartitionMismatch(self.view.partition_bits(), view.partition_bits());
                    return Err(ErrorReply::new(ErrorKind::Malformed, format!("{reason}")));
                }
                self.merge_from(now, &address, &view);
                Ok(Some(Response::Ack))
            }
            Request::Gossip { from, digest } => {
                nodes_only(from_node)?;
                Ok(Some(self.gossip_round(now, peer, &from, &digest)))
            }
            Request::Status => Ok(Some(Response::Status(alloc::boxed::Box::new(self.status(now))))),
            Request::TreeBuckets { store, ring, bucket, digests } => {
                let from = self.member_of(peer)?;
                Ok(Some(self.tree_buckets(&from, &store, ring, bucket, &digests)?))
            }
            Request::TreeLeaves { store, ring, partitions } => {
                nodes_only(from_node)?;
                self.tree_leaves(stream, id, store, ring, &partitions)
            }
            Request::TombstoneCheck { store, key } => {
                nodes_only(from_node)?;
                let config = self.store_config(&store)?;
                self.check_key(&key)?;
                self.enqueue(store, key, config, ReplicaStep::Held, done);
                Ok(None)
            }
            Request::CommitRing { plan } => self.commit_ring(now, stream, id, plan),
            Request::Leave { node } => self.leave(now, stream, id, node),
            Request::RemoveNode { node } => self.remove_node(now, stream, id, node),
            Request::Ping { store, key, payload } => {
                self.replica_checks(now, peer, &store, &key, routed)?;
                self.check_value(Some(&payload))?;
                Ok(Some(Response::Ack))
            }
            Request::Collect { store, key, siblings } => {
                nodes_only(from_node)?;
                let config = self.store_config(&store)?;
                self.check_key(&key)?;
                self.enqueue(store, key, config, ReplicaStep::Remove { expect: siblings, primary: true }, done);
                Ok(None)
            }
        }
    }

    /// The id of the member presenting `certificate`: only a node of the view may compare its
    /// trees with this node's.
    fn member_of(&self, certificate: Option<CertificateDigest>) -> Result<crate::identity::NodeId, ErrorReply> {
        nodes_only(certificate.is_some())?;
        self.view
            .membership()
            .nodes()
            .find(|n| n.certificate == certificate)
            .map(|n| n.id.clone())
            .ok_or_else(|| ErrorReply::new(ErrorKind::NotPermitted, "the sender is not a member of this node's view"))
    }

    /// The checks every replica request passes: the store exists, the key is within limits, and
    /// a request routed with another ring than this node's (an older one, or another of the same
    /// epoch) is answered `StaleRing` naming this node's ring, for the caller to refresh its view
    /// here and route again. A request routed with a newer ring is served, and this node catches
    /// up with the sender. Counts requests for keys this node is not a primary of (`misrouted`).
    fn replica_checks(
        &mut self,
        now: Duration,
        peer: Option<CertificateDigest>,
        store: &StoreName,
        key: &[u8],
        routed: Option<RingVersion>,
    ) -> Result<StoreConfig, ErrorReply> {
        self.stats.replica_requests += 1;
        let config = self.store_config(store)?;
        self.check_key(key)?;
        let Some(mine) = self.view.routing_version() else { return Ok(config) };
        let replica = self
            .view
            .write_plan(Token::of(key), &config, 0)
            .is_some_and(|plan| plan.prefs.primaries().iter().take(plan.config.n()).any(|p| *p == self.id));
        if !replica {
            self.stats.misrouted += 1;
        }
        match routed {
            Some(theirs) if theirs.epoch < mine.epoch || theirs.epoch == mine.epoch && theirs.digest != mine.digest => {
                self.stats.stale_routed += 1;
                Err(ErrorReply::new(
                    ErrorKind::StaleRing,
                    format!(
                        "routed with ring {theirs}; this node's ring is {mine}: refresh the cluster view from this node and route again"
                    ),
                ))
            }
            Some(theirs) if theirs.epoch > mine.epoch => {
                // The sender knows a later ring: pull it (one round per peer at a time).
                if let Some(sender) = self.member_of(peer).ok().filter(|id| *id != self.id) {
                    self.gossip_with(now, &sender, super::cluster_sync::Round::Pull);
                }
                Ok(config)
            }
            _ => Ok(config),
        }
    }

    /// The address of the node of the view presenting `certificate` (for reports).
    fn address_of(&self, certificate: Option<CertificateDigest>) -> alloc::string::String {
        let node = self.view.membership().nodes().find(|n| certificate.is_some() && n.certificate == certificate);
        node.map(|n| n.address.clone()).unwrap_or_default()
    }

    pub(super) fn store_config(&self, store: &StoreName) -> Result<StoreConfig, ErrorReply> {
        self.view
            .store(store)
            .copied()
            .ok_or_else(|| ErrorReply::new(ErrorKind::UnknownStore, format!("store {store} does not exist")))
    }

    fn check_key(&self, key: &[u8]) -> Result<(), ErrorReply> {
        self.config.limits.check_key(key).map_err(|e| {
            let kind = if e == LimitError::EmptyKey { ErrorKind::Malformed } else { ErrorKind::TooLarge };
            ErrorReply::new(kind, format!("{e}"))
        })
    }

    fn check_value(&self, value: Option<&[u8]>) -> Result<(), ErrorReply> {
        let Some(value) = value else { return Ok(()) };
        self.config.limits.check_value(value).map_err(|e| ErrorReply::new(ErrorKind::TooLarge, format!("{e}")))
    }
}

fn nodes_only(from_node: bool) -> Result<(), ErrorReply> {
    if from_node {
        Ok(())
    } else {
        Err(ErrorReply::new(
            ErrorKind::NotPermitted,
            "only cluster nodes (with a certificate of the cluster CA) may send this",
        ))
    }
}
