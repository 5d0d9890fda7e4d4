//! Serving requests: one task per connection, one per request stream.
//!
//! A request is read to the end of its stream, refused above the frame limit, decoded, checked
//! and answered on the same stream. Nothing a caller sends can crash the node: a frame that does
//! not decode or breaks a limit gets an `Error` answer naming what is wrong and changes nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use quickv_client::drive::{self, Target};
use quickv_core::coordinator::{GetError, PutError};
use quickv_core::store::{StoreConfig, StoreName};
use quickv_core::version::Value;
use quickv_core::wire::{self, ErrorKind, ErrorReply, Message, Request, Response};

use super::Shared;
use super::peers::PeerCaller;
use crate::replica::ReplicaError;

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("handshake failed: {e}");
                    return;
                }
            };
            // Callers without a certificate are clients; a certificate, verified against the
            // cluster CA during the handshake, makes the caller a node.
            let from_node = connection.peer_identity().is_some();
            while let Ok((send, recv)) = connection.accept_bi().await {
                tokio::spawn(serve_stream(shared.clone(), send, recv, from_node));
            }
        });
    }
}

async fn serve_stream(shared: Arc<Shared>, mut send: quinn::SendStream, mut recv: quinn::RecvStream, from_node: bool) {
    let max_frame = frame_limit(&shared);
    let answer = match recv.read_to_end(max_frame).await {
        Ok(frame) => handle_frame(&shared, &frame, from_node).await,
        Err(quinn::ReadToEndError::TooLong) => {
            let _ = recv.stop(0u32.into());
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            refusal(
                0,
                ErrorKind::TooLarge,
                format!("request is larger than the frame limit of {max_frame} bytes (max_value + max_key)"),
            )
        }
        Err(_) => return,
    };
    let _ = send.write_all(&wire::encode(&answer)).await;
    let _ = send.finish();
    let _ = send.stopped().await;
}

fn frame_limit(shared: &Shared) -> usize {
    shared.config.limits.max_frame()
}

fn refusal(id: u64, kind: ErrorKind, message: impl Into<String>) -> Message {
    Message::Response { id, body: Response::Error(ErrorReply::new(kind, message)) }
}

async fn handle_frame(shared: &Arc<Shared>, frame: &[u8], from_node: bool) -> Message {
    let (id, epoch, body) = match wire::decode(frame) {
        Ok(Message::Request { id, body }) => (id, None, body),
        Ok(Message::Routed { id, epoch, body }) => (id, Some(epoch), body),
        Ok(Message::Response { id, .. }) => {
            return refusal(id, ErrorKind::Malformed, "expected a request, got a response");
        }
        Err(e) => {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            return refusal(0, ErrorKind::Malformed, format!("malformed request: {e}"));
        }
    };
    let body = match handle(shared, body, epoch, from_node).await {
        Ok(body) => body,
        Err(reply) => {
            if matches!(reply.kind, ErrorKind::TooLarge | ErrorKind::Malformed | ErrorKind::InvalidContext) {
                shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            }
            Response::Error(reply)
        }
    };
    Message::Response { id, body }
}

/// Answers one request.
async fn handle(
    shared: &Arc<Shared>,
    body: Request,
    epoch: Option<u64>,
    from_node: bool,
) -> Result<Response, ErrorReply> {
    match body {
        Request::Get { .. } | Request::Mint { .. } | Request::Replicate { .. } => {
            shared.stats.replica_requests.fetch_add(1, Ordering::Relaxed);
            check_routing(shared, &body, epoch)?;
            replica_op(shared, body).await
        }
        Request::CoordinateGet { store, key } => {
            shared.stats.coordinated.fetch_add(1, Ordering::Relaxed);
            let target = target(shared, store, key)?;
            let caller = Arc::new(PeerCaller::new(shared.clone()));
            match drive::get(caller, target).await {
                Ok(state) => Ok(Response::State(Some(state))),
                Err(GetError::Refused(reply)) => Err(reply),
                Err(e) => Err(ErrorReply::new(ErrorKind::Unavailable, e.to_string())),
            }
        }
        Request::CoordinatePut { store, key, write } => {
            shared.stats.coordinated.fetch_add(1, Ordering::Relaxed);
            check_value(shared, write.payload.value())?;
            let target = target(shared, store, key)?;
            let caller = Arc::new(PeerCaller::new(shared.clone()));
            match drive::put(caller, target, write).await {
                Ok(outcome) => Ok(Response::State(Some(outcome.siblings))),
                Err(PutError::Refused(reply)) => Err(reply),
                Err(e) => Err(ErrorReply::new(ErrorKind::Unavailable, e.to_string())),
            }
        }
        Request::CreateStore { name, config } => create_store(shared, name, config).await,
        Request::Cluster => Ok(Response::Cluster(shared.view())),
        Request::Join { node } => {
            nodes_only(from_node)?;
            shared.update_view(|view| {
                let changed = view.upsert_node(node).unwrap_or(false);
                (changed, ())
            });
            Ok(Response::Cluster(shared.view()))
        }
        Request::Sync { view: theirs } => {
            nodes_only(from_node)?;
            let merged = shared.update_view(|view| match view.merge(&theirs) {
                Ok(changed) => (changed, Ok(())),
                Err(e) => (false, Err(e)),
            });
            merged.map_err(|e| ErrorReply::new(ErrorKind::Malformed, e.to_string()))?;
            Ok(Response::Cluster(shared.view()))
        }
        Request::Gossip { membership } => {
            nodes_only(from_node)?;
            shared.update_view(|view| {
                let mut changed = false;
                for node in membership.nodes() {
                    changed |= view.upsert_node(node.clone()).unwrap_or(false);
                }
                (changed, ())
            });
            Ok(Response::Membership(shared.topology().view().membership().clone()))
        }
    }
}

/// Serves a replica request (get, mint, replicate) from this node's storage. Also called
/// directly, without the network, when this node coordinates and is itself a replica.
pub(crate) async fn replica_op(shared: &Arc<Shared>, body: Request) -> Result<Response, ErrorReply> {
    match body {
        Request::Get { store, key } => {
            store_config(shared, &store)?;
            shared.config.limits.check_key(&key).map_err(too_large)?;
            Ok(Response::State(shared.replica.get(&store, &key).await.map_err(internal)?))
        }
        Request::Mint { store, key, write, hint_for: _ } => {
            let config = store_config(shared, &store)?;
            shared.config.limits.check_key(&key).map_err(too_large)?;
            check_value(shared, write.payload.value())?;
            let state = shared.replica.mint(&store, &key, &write, config.conflicts()).await.map_err(internal)?;
            Ok(Response::State(Some(state)))
        }
        Request::Replicate { store, key, siblings, hint_for: _ } => {
            let config = store_config(shared, &store)?;
            shared.config.limits.check_key(&key).map_err(too_large)?;
            siblings.values().try_for_each(|v| check_value(shared, Some(v)))?;
            shared.replica.merge(&store, &key, &siblings, config.conflicts()).await.map_err(internal)?;
            Ok(Response::Ack)
        }
        _ => Err(ErrorReply::new(ErrorKind::Malformed, "not a replica request")),
    }
}

/// A request routed with an older ring, for a key this node holds no replica of in its own
/// ring, is answered `StaleRing` so the sender refreshes. Counts requests for keys this node is
/// not a primary of (`misrouted`).
fn check_routing(shared: &Shared, body: &Request, epoch: Option<u64>) -> Result<(), ErrorReply> {
    let (Request::Get { store, key } | Request::Mint { store, key, .. } | Request::Replicate { store, key, .. }) = body
    else {
        return Ok(());
    };
    let topology = shared.topology();
    let view = topology.view();
    let (Some(ring), Some(config)) = (view.ring(), view.store(store)) else { return Ok(()) };
    let prefs = ring.preference_list(quickv_core::token::Token::of(key), config.n(), 3);
    if !prefs.is_primary(&shared.id) {
        shared.stats.misrouted.fetch_add(1, Ordering::Relaxed);
    }
    let known = prefs.is_primary(&shared.id) || prefs.fallbacks().contains(&shared.id);
    match epoch {
        Some(epoch) if epoch < ring.epoch() && !known => Err(ErrorReply::new(
            ErrorKind::StaleRing,
            format!(
                "routed with ring epoch {epoch}; this node is at epoch {} and holds no replica of the key",
                ring.epoch()
            ),
        )),
        _ => Ok(()),
    }
}

async fn create_store(shared: &Arc<Shared>, name: StoreName, config: StoreConfig) -> Result<Response, ErrorReply> {
    let created = shared.update_view(|view| match view.create_store(name.clone(), config) {
        Ok(created) => (created, Ok(())),
        Err(e) => (false, Err(e)),
    });
    created.map_err(|e| ErrorReply::new(ErrorKind::StoreConflict, e.to_string()))?;
    Ok(Response::Ack)
}

fn target(shared: &Shared, store: StoreName, key: Vec<u8>) -> Result<Target, ErrorReply> {
    let config = store_config(shared, &store)?;
    shared.config.limits.check_key(&key).map_err(too_large)?;
    let prefs = shared
        .topology()
        .preference_list(&key, config.n(), 3)
        .ok_or_else(|| ErrorReply::new(ErrorKind::Unavailable, "the cluster has no ring yet"))?;
    Ok(Target { store, config, key, prefs, timeout: shared.config.replica_timeout })
}

fn store_config(shared: &Shared, store: &StoreName) -> Result<StoreConfig, ErrorReply> {
    shared
        .topology()
        .view()
        .store(store)
        .copied()
        .ok_or_else(|| ErrorReply::new(ErrorKind::UnknownStore, format!("store {store} does not exist")))
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

fn check_value(shared: &Shared, value: Option<&Value>) -> Result<(), ErrorReply> {
    value.map_or(Ok(()), |v| shared.config.limits.check_value(v.as_ref()).map_err(too_large))
}

fn too_large(e: quickv_core::store::LimitError) -> ErrorReply {
    ErrorReply::new(ErrorKind::TooLarge, e.to_string())
}

fn internal(e: ReplicaError) -> ErrorReply {
    match e {
        ReplicaError::Context(e) => ErrorReply::new(ErrorKind::InvalidContext, format!("invalid causal context: {e}")),
        other => {
            tracing::error!("replica operation failed: {other}");
            ErrorReply::new(ErrorKind::Internal, other.to_string())
        }
    }
}
