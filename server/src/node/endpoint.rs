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

use quickv_core::identity::CertificateDigest;
use quickv_core::wire::{self, Message};
use tokio::sync::{mpsc, oneshot};

use super::bounds::{ConnectionSlot, Held, Room};
use super::driver::{Frame, Input};

/// The digest of the certificate the peer presented in the handshake (which checked that it
/// chains to the cluster CA), if it presented one.
fn peer_certificate(connection: &quinn::Connection) -> Option<CertificateDigest> {
    let chain = connection.peer_identity()?.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    chain.first().map(|leaf| CertificateDigest::of(leaf))
}

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
            let slot = Arc::new(slot);
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("handshake failed: {e}");
                    return;
                }
            };
            let peer = peer_certificate(&connection);
            while let Ok((send, recv)) = connection.accept_bi().await {
                let stream = Stream { peer, max_frame, held: held.clone(), slot: slot.clone() };
                tokio::spawn(serve_stream(inputs.clone(), send, recv, stream));
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

/// What a stream's task knows of its connection.
struct Stream {
    /// The digest of the node certificate the caller presented (checked against the CA in the
    /// handshake), if it presented one.
    peer: Option<CertificateDigest>,
    max_frame: usize,
    held: Arc<Held>,
    slot: Arc<ConnectionSlot>,
}

/// The most read at once from one stream.
const CHUNK: usize = 64 * 1024;

/// Reads one request to the end of its stream. Room in the byte budgets is taken before each
/// chunk is read, so what a stream holds is always counted.
async fn read_request(recv: &mut quinn::RecvStream, stream: &Stream) -> Result<(Vec<u8>, Vec<Room>), Unread> {
    let mut chunks = Vec::new();
    let mut room = Vec::new();
    let (mut len, mut reserved) = (0usize, 0usize);
    loop {
        // One byte past the frame limit is enough to know a request is too long.
        let want = CHUNK.min(stream.max_frame + 1 - len);
        if len + want > reserved {
            let more = len + want - reserved;
            room.push(stream.held.room(&stream.slot, more).await.ok_or(Unread::Gone)?);
            reserved += more;
        }
        match recv.read_chunk(want, true).await {
            Ok(Some(chunk)) => {
                len += chunk.bytes.len();
                if len > stream.max_frame {
                    return Err(Unread::TooLong);
                }
                chunks.push(chunk.bytes);
            }
            Ok(None) => {
                let mut bytes = Vec::with_capacity(len);
                chunks.iter().for_each(|c| bytes.extend_from_slice(c));
                return Ok((bytes, room));
            }
            Err(_) => return Err(Unread::Gone),
        }
    }
}

async fn serve_stream(
    inputs: mpsc::UnboundedSender<Input>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    stream: Stream,
) {
    let (peer, deadline) = (stream.peer, stream.held.bounds().read_deadline);
    let read = tokio::time::timeout(deadline, read_request(&mut recv, &stream)).await;
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
    if inputs.send(Input::Request { peer, frame, reply }).is_err() {
        return;
    }
    let Ok(message) = answer.await else { return };
    let _ = send.write_all(&wire::encode(&message)).await;
    let _ = send.finish();
    let _ = send.stopped().await;
}
