//! The endpoint: one task per connection, one per request stream, feeding the driver.
//!
//! A connection is admitted only within the node's [`Bounds`](super::bounds::Bounds). A request is
//! read to the end of its stream within the read deadline, never more than the frame limit (a
//! longer one is stopped and refused unread), each chunk only once the node's byte budget has
//! room for it; it is decoded here, off the driver, and handed to the driver with a channel for
//! its answer, which is encoded here and written back on the same stream. The request keeps its
//! room in the budget until the answer is written. Whether the caller is a node is decided by the
//! handshake: a certificate of the cluster CA.

use std::sync::Arc;

use quickv_core::wire::{self, Message};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::bounds::Held;
use super::driver::{Frame, Input};

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept(
    endpoint: quinn::Endpoint,
    inputs: mpsc::UnboundedSender<Input>,
    max_frame: usize,
    held: Arc<Held>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let Some(slot) = held.admit(incoming.remote_address().ip()) else {
            tracing::debug!("connection from {} refused: too many connections", incoming.remote_address());
            incoming.refuse();
            continue;
        };
        let (inputs, held) = (inputs.clone(), held.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("handshake failed: {e}");
                    return;
                }
            };
            let from_node = connection.peer_identity().is_some();
            while let Ok((send, recv)) = connection.accept_bi().await {
                tokio::spawn(serve_stream(inputs.clone(), send, recv, from_node, max_frame, held.clone()));
            }
        });
    }
}

/// Why a request was not read.
enum Unread {
    /// Over the frame limit.
    TooLong,
    /// The stream failed or the deadline passed.
    Gone,
}

/// Reads one request to the end of its stream, taking room in the byte budget for each chunk.
async fn read_request(
    recv: &mut quinn::RecvStream,
    max_frame: usize,
    held: &Held,
) -> Result<(Vec<u8>, Vec<OwnedSemaphorePermit>), Unread> {
    let mut bytes = Vec::new();
    let mut room = Vec::new();
    loop {
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.bytes.len() > max_frame {
                    return Err(Unread::TooLong);
                }
                room.push(held.room(chunk.bytes.len()).await.ok_or(Unread::Gone)?);
                bytes.extend_from_slice(&chunk.bytes);
            }
            Ok(None) => return Ok((bytes, room)),
            Err(_) => return Err(Unread::Gone),
        }
    }
}

async fn serve_stream(
    inputs: mpsc::UnboundedSender<Input>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    from_node: bool,
    max_frame: usize,
    held: Arc<Held>,
) {
    let deadline = held.bounds().read_deadline;
    let read = tokio::time::timeout(deadline, read_request(&mut recv, max_frame, &held)).await;
    let (frame, _room) = match read {
        Ok(Ok((bytes, room))) => match wire::decode(&bytes) {
            Ok(message) => (Frame::Decoded(message), room),
            Err(_) => (Frame::Undecodable(bytes), room),
        },
        Ok(Err(Unread::TooLong)) => {
            let _ = recv.stop(0u32.into());
            (Frame::Oversized, Vec::new())
        }
        // Too slow, or gone: stop reading and free the room.
        Ok(Err(Unread::Gone)) | Err(_) => {
            let _ = recv.stop(0u32.into());
            return;
        }
    };
    let (reply, answer) = oneshot::channel::<Message>();
    if inputs.send(Input::Request { from_node, frame, reply }).is_err() {
        return;
    }
    let Ok(message) = answer.await else { return };
    let _ = send.write_all(&wire::encode(&message)).await;
    let _ = send.finish();
    let _ = send.stopped().await;
}
