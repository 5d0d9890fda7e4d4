//! The store catalogue: creates, decided by one node (the claimant), and drops.
//!
//! Every create is decided by the [claimant](crate::cluster::ClusterView::claimant), the member
//! with the smallest id: a node that is not the claimant sends a caller's create on to it and
//! relays its answer. So of racing creates of one name with different settings exactly one is
//! told "created", the others `StoreConflict` naming both settings, and no node serves a store
//! with settings no caller was told. Creates need the claimant to be reachable; reads and writes
//! of existing stores never involve it.

use alloc::format;
use alloc::string::ToString;
use core::time::Duration;

use super::{AfterSave, Node, Purpose};
use crate::coordinator::ReplicaFailure;
use crate::store::{StoreConfig, StoreName};
use crate::wire::{ErrorKind, ErrorReply, Request, Response};

impl Node {
    /// A store create: decided here if this node is the claimant, sent on to the claimant if
    /// not (so that of racing creates of one name exactly one wins).
    pub(super) fn create_store(
        &mut self,
        now: Duration,
        stream: u64,
        from_node: bool,
        id: u64,
        name: StoreName,
        config: StoreConfig,
    ) -> Result<Option<Response>, ErrorReply> {
        config.validate().map_err(|e| ErrorReply::new(ErrorKind::Malformed, format!("{e}")))?;
        // A node still joining knows only itself: it would take itself for the claimant.
        if !self.joined {
            return Err(ErrorReply::new(ErrorKind::Unavailable, "this node is still joining the cluster"));
        }
        let claimant = self.view.claimant().cloned();
        match claimant {
            Some(claimant) if claimant == self.id => self.decide_create(now, stream, id, name, config),
            // One hop only: views that disagree on the claimant settle within a sync or two.
            Some(claimant) if from_node => Err(ErrorReply::new(
                ErrorKind::Unavailable,
                format!("store creates are decided by {claimant} (this node's view): try again"),
            )),
            Some(claimant) => {
                let Some(destination) = self.destination(&claimant) else {
                    return Err(ErrorReply::new(ErrorKind::Unavailable, "the claimant is not in the membership"));
                };
                let body = Request::CreateStore { name: name.clone(), config };
                self.send_request(now, destination, body, false, Purpose::Create { stream, id, name, config });
                Ok(None)
            }
            None => Err(ErrorReply::new(ErrorKind::Unavailable, "the cluster has no members yet")),
        }
    }

    /// The claimant's answer to a create sent on for a caller: relayed; an acknowledged store is
    /// added to this node's view too (the claimant decided its settings), so the caller's next
    /// view from this node has it.
    pub(super) fn claimant_answer(
        &mut self,
        now: Duration,
        stream: u64,
        id: u64,
        name: StoreName,
        config: StoreConfig,
        answer: Result<Response, ReplicaFailure>,
    ) {
        let claimant = self.view.claimant().map(|c| c.to_string()).unwrap_or_default();
        let body = match answer {
            Ok(Response::Ack) => {
                // Saved (and spread) before the caller hears of it.
                let added = self.view.create_store(name, config).unwrap_or(false);
                if let Some(response) = self.ack_once_saved(now, stream, id, added) {
                    self.reply(stream, id, response);
                }
                return;
            }
            Ok(other) => other,
            Err(ReplicaFailure::Unavailable) => Response::Error(ErrorReply::new(
                ErrorKind::Unavailable,
                format!("store creates are decided by {claimant}, which cannot be reached: try again later"),
            )),
            Err(_) => Response::Error(ErrorReply::new(
                ErrorKind::Indeterminate,
                format!(
                    "no answer from {claimant}, which decides store creates: the store may or may not have been \
                     created; create it again with the same settings to find out"
                ),
            )),
        };
        self.reply(stream, id, body);
    }

    /// The claimant decides a create.
    fn decide_create(
        &mut self,
        now: Duration,
        stream: u64,
        id: u64,
        name: StoreName,
        config: StoreConfig,
    ) -> Result<Option<Response>, ErrorReply> {
        let exists = self.view.store(&name).is_some();
        let new = !exists && !self.view.was_dropped(&name);
        if let (Err(why), false) = (config.fit(self.view.membership().nodes().count()), exists) {
            return Err(ErrorReply::new(ErrorKind::Malformed, format!("store {name} refused: {why}")));
        }
        let max = self.config.max_stores;
        if new && self.view.stores().count() >= max {
            return Err(ErrorReply::new(
                ErrorKind::TooLarge,
                format!("the cluster has {max} stores, the most it takes (max_stores)"),
            ));
        }
        let created = self
            .view
            .create_store(name, config)
            .map_err(|e| ErrorReply::new(ErrorKind::StoreConflict, format!("{e}")))?;
        Ok(self.ack_once_saved(now, stream, id, created))
    }

    /// A drop, decided here: a dropped store's entry wins every merge, so a drop needs no
    /// claimant (a create the claimant decided before it learnt of the drop is dropped too).
    pub(super) fn drop_store(
        &mut self,
        now: Duration,
        stream: u64,
        id: u64,
        name: StoreName,
    ) -> Result<Option<Response>, ErrorReply> {
        let dropped =
            self.view.drop_store(&name).map_err(|e| ErrorReply::new(ErrorKind::UnknownStore, format!("{e}")))?;
        Ok(self.ack_once_saved(now, stream, id, dropped))
    }

    /// Asks storage to delete the data of every dropped store not purged since this start.
    pub(super) fn purge_dropped(&mut self) {
        let dropped: alloc::vec::Vec<StoreName> =
            self.view.dropped_stores().filter(|name| !self.purged.contains(*name)).cloned().collect();
        for store in dropped {
            self.purged.insert(store.clone());
            self.issue_io(super::Io::DropData { store }, super::IoOwner::Nobody);
        }
    }

    /// After a catalogue change: the caller hears `Ack` only once the view holding it is on disk
    /// (at once when nothing changed).
    pub(super) fn ack_once_saved(&mut self, now: Duration, stream: u64, id: u64, changed: bool) -> Option<Response> {
        if !changed {
            return Some(Response::Ack);
        }
        let save = self.view_changed(now);
        self.after_save.entry(save).or_default().push(AfterSave { stream, id, body: Response::Ack });
        None
    }
}
