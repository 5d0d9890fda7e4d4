//! The endpoint: one task per connection, one per request stream, feeding the driver.
//!
//! A connection is admitted only within the node's [`Bounds`](super::bounds::Bounds). A request is
//! read to the end of its stream within the read deadline, never more than the frame limit (a
//! longer one is stopped and refused unread), each chunk only once the node's byte budget has
//! room for it; it is decoded here, off the driver, and handed to the driver with a channel for
//! its answer, which is encoded here and written back on the same stream. The request keeps its
//! room in the budget until the answer is written. Whether the caller is a node is decided by the
//! handshake: a certificate of the cluster CA.
//!
//! A connection that negotiated WebTransport (ALPN `h3`: a browser, see
//! [`browser_cert`](super::browser_cert)) opens a WebTransport session at
//! [`WEBTRANSPORT_PATH`] within the read deadline, then carries the same requests on the
//! session's bidirectional streams, one request and its answer per stream, as a caller's.

use std::sync::Arc;

use quickv_core::identity::CertificateDigest;
use quickv_core::wire::{self, Message};
use tokio::sync::{mpsc, oneshot};

use super::bounds::{ConnectionSlot, Held, Room};
use super::browser_cert::WEBTRANSPORT_ALPN;
use super::driver::{Frame, Input};
use super::http::AllowedOrigins;

/// The digest of the certificate the peer presented in the handshake (which checked that it
/// chains to the cluster CA), if it presented one.
fn peer_certificate(connection: &quinn::Connection) -> Option<CertificateDigest> {
    let chain = connection.peer_identity()?.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    chain.first().map(|leaf| CertificateDigest::of(leaf))
}

/// The path browsers open their WebTransport sessions at: `https://HOST:PORT/v1/webtransport`.
pub const WEBTRANSPORT_PATH: &str = "/v1/webtransport";

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept(
    endpoint: quinn::Endpoint,
    inputs: mpsc::UnboundedSender<Input>,
    max_frame: usize,
    held: Arc<Held>,
    origins: Arc<AllowedOrigins>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let Some(slot) = held.admit(incoming.remote_address().ip()) else {
            tracing::debug!("connection from {} refused: too many connections", incoming.remote_address());
            incoming.refuse();
            continue;
        };
        let (inputs, held, origins) = (inputs.clone(), held.clone(), origins.clone());
        tokio::spawn(async move {
            let slot = Arc::new(slot);
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("handshake failed: {e}");
                    return;
                }
            };
            if negotiated(&connection).as_deref() == Some(WEBTRANSPORT_ALPN) {
                return serve_session(connection, inputs, max_frame, held, slot, &origins).await;
            }
            let peer = peer_certificate(&connection);
            while let Ok((send, recv)) = connection.accept_bi().await {
                let stream = Stream { peer, max_frame, held: held.clone(), slot: slot.clone() };
                tokio::spawn(serve_stream(inputs.clone(), send, recv, stream));
            }
        });
    }
}

/// The protocol the handshake negotiated (ALPN).
fn negotiated(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let data = connection.handshake_data()?.downcast::<quinn::crypto::rustls::HandshakeData>().ok()?;
    data.protocol
}

/// Serves a browser's WebTransport session: its CONNECT must come within the read deadline,
/// name [`WEBTRANSPORT_PATH`] and, when the node answers only some browser origins
/// (`--http-allow-origin`), come from a page of one of them (a CONNECT without an origin is not
/// a browser's: it goes on); then each bidirectional stream carries one request, as a caller's
/// (a browser presents no node certificate).
async fn serve_session(
    connection: quinn::Connection,
    inputs: mpsc::UnboundedSender<Input>,
    max_frame: usize,
    held: Arc<Held>,
    slot: Arc<ConnectionSlot>,
    origins: &AllowedOrigins,
) {
    let deadline = held.bounds().read_deadline;
    let request = match tokio::time::timeout(deadline, web_transport_quinn::Request::accept(connection.clone())).await {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => {
            tracing::debug!("WebTransport handshake failed: {e}");
            return;
        }
        Err(_) => {
            connection.close(0u32.into(), b"no WebTransport session in time");
            return;
        }
    };
    if request.url.path() != WEBTRANSPORT_PATH {
        let _ = request.reject(http::StatusCode::NOT_FOUND).await;
        return;
    }
    if let Some(origin) = request.headers.get(http::header::ORIGIN)
        && !origins.allows(origin.as_bytes())
    {
        tracing::debug!("WebTransport session from origin {origin:?} refused: not an allowed origin");
        let _ = request.reject(http::StatusCode::FORBIDDEN).await;
        return;
    }
    let session = match request.ok().await {
        Ok(session) => session,
        Err(e) => {
            tracing::debug!("WebTransport session refused: {e}");
            return;
        }
    };
    while let Ok((send, recv)) = session.accept_bi().await {
        let stream = Stream { peer: None, max_frame, held: held.clone(), slot: slot.clone() };
        tokio::spawn(serve_stream(inputs.clone(), send, recv, stream));
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

/// The two ends of a request's stream: a QUIC stream of a native caller, or a stream of a
/// WebTransport session.
trait RequestStream: Send + 'static {
    /// The next bytes, at most `max` (`None` at the end of the stream).
    fn chunk(&mut self, max: usize) -> impl Future<Output = Result<Option<bytes::Bytes>, ()>> + Send;
    /// Stops reading: the caller learns its request was not read to the end.
    fn stop(&mut self);
}

trait AnswerStream: Send + 'static {
    /// Writes the answer, ends the stream and waits until the caller has it (or is gone).
    fn answer(&mut self, bytes: Vec<u8>) -> impl Future<Output = ()> + Send;
}

impl RequestStream for quinn::RecvStream {
    async fn chunk(&mut self, max: usize) -> Result<Option<bytes::Bytes>, ()> {
        self.read_chunk(max, true).await.map(|c| c.map(|c| c.bytes)).map_err(drop)
    }
    fn stop(&mut self) {
        let _ = quinn::RecvStream::stop(self, 0u32.into());
    }
}

impl AnswerStream for quinn::SendStream {
    async fn answer(&mut self, bytes: Vec<u8>) {
        let _ = self.write_all(&bytes).await;
        let _ = self.finish();
        let _ = self.stopped().await;
    }
}

impl RequestStream for web_transport_quinn::RecvStream {
    async fn chunk(&mut self, max: usize) -> Result<Option<bytes::Bytes>, ()> {
        self.read_chunk(max, true).await.map(|c| c.map(|c| c.bytes)).map_err(drop)
    }
    fn stop(&mut self) {
        let _ = web_transport_quinn::RecvStream::stop(self, 0);
    }
}

impl AnswerStream for web_transport_quinn::SendStream {
    async fn answer(&mut self, bytes: Vec<u8>) {
        let _ = self.write_all(&bytes).await;
        let _ = self.finish();
        let _ = self.stopped().await;
    }
}

/// Reads one request to the end of its stream. Room in the byte budgets is taken before each
/// chunk is read, so what a stream holds is always counted.
async fn read_request(recv: &mut impl RequestStream, stream: &Stream) -> Result<(Vec<u8>, Vec<Room>), Unread> {
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
        match recv.chunk(want).await {
            Ok(Some(chunk)) => {
                len += chunk.len();
                if len > stream.max_frame {
                    return Err(Unread::TooLong);
                }
                chunks.push(chunk);
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
    mut send: impl AnswerStream,
    mut recv: impl RequestStream,
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
            recv.stop();
            (Frame::Oversized, Vec::new())
        }
        // Too slow, or gone: stop reading and free the room.
        Ok(Err(Unread::Gone)) | Err(_) => {
            recv.stop();
            return;
        }
    };
    let (reply, answer) = oneshot::channel::<Message>();
    if inputs.send(Input::Request { peer, frame, reply }).is_err() {
        return;
    }
    let Ok(message) = answer.await else { return };
    send.answer(wire::encode(&message)).await;
}
