//! Frames of wire version 2 (before sealed contexts), still decoded: a write's context (a bare
//! version vector) reads as unsealed, so nodes refuse it until the caller reads the key again;
//! a state answered reads as unsealed too. Nodes send today's version only.

use alloc::vec::Vec;

use serde::Deserialize;

use super::{DecodeError, ErrorReply, Message as Current, Request as CurrentRequest, Response as CurrentResponse};
use crate::cluster::ClusterView;
use crate::identity::NodeId;
use crate::membership::{Membership, NodeInfo};
use crate::store::{StoreConfig, StoreName};
use crate::version::v2::Write;
use crate::version::{SealedState, Siblings};

#[derive(Debug, Deserialize)]
pub(super) enum Message {
    Request {
        id: u64,
        body: Request,
    },
    Response {
        id: u64,
        body: Response,
    },
    // Decoded only to be refused with a clear error.
    #[allow(dead_code)]
    Routed {
        id: u64,
        epoch: u64,
        body: Request,
    },
}

#[derive(Debug, Deserialize)]
pub(super) enum Request {
    Get {
        store: StoreName,
        key: Vec<u8>,
    },
    Mint {
        store: StoreName,
        key: Vec<u8>,
        write: Write,
        hint_for: Option<NodeId>,
    },
    Replicate {
        store: StoreName,
        key: Vec<u8>,
        siblings: Siblings,
        hint_for: Option<NodeId>,
    },
    CoordinateGet {
        store: StoreName,
        key: Vec<u8>,
    },
    CoordinatePut {
        store: StoreName,
        key: Vec<u8>,
        write: Write,
        minter: Option<NodeId>,
    },
    CreateStore {
        name: StoreName,
        config: StoreConfig,
    },
    // Decoded only to be refused with a clear error.
    #[allow(dead_code)]
    Gossip {
        membership: Membership,
    },
    Join {
        node: NodeInfo,
    },
    Cluster,
    Sync {
        view: ClusterView,
    },
    DropStore {
        name: StoreName,
    },
}

#[derive(Debug, Deserialize)]
pub(super) enum Response {
    State(Option<Siblings>),
    Ack,
    #[allow(dead_code)]
    Membership(Membership),
    Error(ErrorReply),
    Cluster(ClusterView),
}

impl Message {
    /// The message in today's form.
    pub(super) fn into_current(self) -> Result<Current, DecodeError> {
        Ok(match self {
            Message::Request { id, body } => Current::Request { id, body: body.into_current()? },
            Message::Routed { .. } => return Err(DecodeError::RoutedBeforeDigests(2)),
            Message::Response { id, body } => Current::Response { id, body: body.into_current()? },
        })
    }
}

impl Request {
    fn into_current(self) -> Result<CurrentRequest, DecodeError> {
        Ok(match self {
            Request::Get { store, key } => CurrentRequest::Get { store, key },
            Request::Mint { store, key, write, hint_for } => {
                CurrentRequest::Mint { store, key, write: write.into(), hint_for }
            }
            Request::Replicate { store, key, siblings, hint_for } => {
                CurrentRequest::Replicate { store, key, siblings, hint_for }
            }
            Request::CoordinateGet { store, key } => CurrentRequest::CoordinateGet { store, key },
            Request::CoordinatePut { store, key, write, minter } => {
                CurrentRequest::CoordinatePut { store, key, write: write.into(), minter }
            }
            Request::CreateStore { name, config } => CurrentRequest::CreateStore { name, config },
            // Whole-membership gossip is no longer spoken (refused as of another version).
            Request::Gossip { .. } => return Err(DecodeError::GossipBeforeDigests(2)),
            Request::Join { node } => CurrentRequest::Join { node },
            Request::Cluster => CurrentRequest::Cluster,
            Request::Sync { view } => CurrentRequest::Sync { view },
            Request::DropStore { name } => CurrentRequest::DropStore { name },
        })
    }
}

impl Response {
    fn into_current(self) -> Result<CurrentResponse, DecodeError> {
        Ok(match self {
            Response::State(siblings) => CurrentResponse::State(siblings.map(SealedState::unsealed)),
            Response::Ack => CurrentResponse::Ack,
            Response::Membership(_) => return Err(DecodeError::GossipBeforeDigests(2)),
            Response::Error(e) => CurrentResponse::Error(e),
            Response::Cluster(view) => CurrentResponse::Cluster(view),
        })
    }
}
