//! Frames of wire version 1 (before write ids), still decoded: a write or version they carry
//! reads as having [`WriteId::NONE`](crate::version::WriteId::NONE), and its contexts and states
//! as unsealed (see [`v2`](super::v2)). Nodes send today's version only.

use alloc::vec::Vec;

use serde::Deserialize;

use super::{
    DecodeError, ErrorKind, ErrorReply, Message as Current, Request as CurrentRequest, Response as CurrentResponse,
};
use crate::cluster::ClusterView;
use crate::identity::NodeId;
use crate::membership::{Membership, NodeInfo};
use crate::store::{StoreConfig, StoreName};
use crate::version::SealedState;
use crate::version::v1::{Siblings, Write};

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
}

#[derive(Debug, Deserialize)]
pub(super) enum Response {
    State(Option<Siblings>),
    Ack,
    #[allow(dead_code)]
    Membership(Membership),
    Error(Refusal),
    Cluster(ClusterView),
}

/// An error reply without a minter.
#[derive(Debug, Deserialize)]
pub(super) struct Refusal {
    kind: ErrorKind,
    message: alloc::string::String,
}

fn state(siblings: Siblings) -> Result<crate::version::Siblings, DecodeError> {
    siblings.into_current().map_err(|_| DecodeError::Invalid("malformed sibling state"))
}

impl Message {
    /// The message in today's form.
    pub(super) fn into_current(self) -> Result<Current, DecodeError> {
        Ok(match self {
            Message::Request { id, body } => Current::Request { id, body: body.into_current()? },
            Message::Routed { .. } => return Err(DecodeError::RoutedBeforeDigests(1)),
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
                CurrentRequest::Replicate { store, key, siblings: state(siblings)?, hint_for }
            }
            Request::CoordinateGet { store, key } => CurrentRequest::CoordinateGet { store, key },
            Request::CoordinatePut { store, key, write } => {
                CurrentRequest::CoordinatePut { store, key, write: write.into(), minter: None }
            }
            Request::CreateStore { name, config } => CurrentRequest::CreateStore { name, config },
            // Whole-membership gossip is no longer spoken (refused as of another version).
            Request::Gossip { .. } => return Err(DecodeError::GossipBeforeDigests(1)),
            Request::Join { node } => CurrentRequest::Join { node },
            Request::Cluster => CurrentRequest::Cluster,
            Request::Sync { view } => CurrentRequest::Sync { view },
        })
    }
}

impl Response {
    fn into_current(self) -> Result<CurrentResponse, DecodeError> {
        Ok(match self {
            Response::State(siblings) => {
                CurrentResponse::State(siblings.map(state).transpose()?.map(SealedState::unsealed))
            }
            Response::Ack => CurrentResponse::Ack,
            Response::Membership(_) => return Err(DecodeError::GossipBeforeDigests(1)),
            Response::Error(e) => CurrentResponse::Error(ErrorReply::new(e.kind, e.message)),
            Response::Cluster(view) => CurrentResponse::Cluster(view),
        })
    }
}
