//! Requests over QUIC: one bidirectional stream per request, pooled connections.
//!
//! A request is one frame ([`quickv_core::wire`]) written to a new stream, which the sender then
//! finishes; the answer is one frame read to the end of the stream, refused above
//! [`Transport::max_frame`]. Connections are opened on first use and kept, one per address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quickv_core::ring::RingVersion;
use quickv_core::wire::{self, DecodeError, MAX_FRAME, Message, Request, Response};

use crate::tls::NODE_SERVER_NAME;

/// How long an idle connection is kept open.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The endpoint settings of a node: its stateless-reset key and the key its connection ids are
/// checked with are derived from `node_key` (the node's private key), so the same node, restarted,
/// recognises the connection ids its earlier process issued and resets those connections at once:
/// a caller's pooled connection fails on its next packet instead of waiting for the idle timeout,
/// and the caller reconnects.
pub fn endpoint_config(node_key: &[u8]) -> quinn::EndpointConfig {
    use ring::hmac;
    let derive = hmac::Key::new(hmac::HMAC_SHA256, node_key);
    let reset = hmac::sign(&derive, b"quickv stateless reset key v1");
    let cids = hmac::sign(&derive, b"quickv connection id key v1");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cids.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(hmac::Key::new(hmac::HMAC_SHA256, reset.as_ref())));
    config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
    config
}

/// The QUIC transport settings shared by nodes and clients.
pub fn transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config.max_concurrent_bidi_streams(1024u32.into());
    config.max_concurrent_uni_streams(0u32.into());
    config.keep_alive_interval(Some(IDLE_TIMEOUT / 3));
    // Unwrap-free: 30 s always fits an idle timeout.
    config.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    config.stream_receive_window((8u32 * 1024 * 1024).into());
    config.receive_window((32u32 * 1024 * 1024).into());
    config
}

/// Why one request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No connection could be made.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The stream failed (the node closed it, the connection dropped).
    #[error("request to {addr} failed: {reason}")]
    Stream {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// No answer within the time allowed.
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    /// The answer was over the frame limit.
    #[error("answer from {0} is larger than the frame limit")]
    TooLarge(SocketAddr),
    /// The answer could not be decoded.
    #[error("answer from {addr} is malformed: {error}")]
    Malformed {
        /// The address.
        addr: SocketAddr,
        /// The decoding error.
        error: DecodeError,
    },
}

/// A QUIC endpoint that sends requests and pools connections.
#[derive(Debug)]
pub struct Transport {
    endpoint: quinn::Endpoint,
    connections: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Option<quinn::Connection>>>>>,
    next_id: AtomicU64,
    max_frame: usize,
    timeout: Duration,
}

impl Transport {
    /// A transport over an endpoint whose default client configuration is set.
    pub fn new(endpoint: quinn::Endpoint, timeout: Duration) -> Transport {
        Transport {
            endpoint,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            max_frame: MAX_FRAME,
            timeout,
        }
    }

    /// A client-only endpoint bound to an ephemeral port of `bind`'s address family.
    pub fn client(config: quinn::ClientConfig, bind: SocketAddr, timeout: Duration) -> std::io::Result<Transport> {
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(config);
        Ok(Transport::new(endpoint, timeout))
    }

    /// Largest answer accepted.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Sends `body` to `addr`, routed with `ring` if given, and waits for the answer.
    ///
    /// A request the node coordinates (`CoordinateGet`, `CoordinatePut`) waits for the node's own
    /// replicas, so its answer may take three times the timeout.
    pub async fn call(
        &self,
        addr: SocketAddr,
        ring: Option<RingVersion>,
        body: Request,
    ) -> Result<Response, CallError> {
        let timeout = match body {
            Request::CoordinateGet { .. } | Request::CoordinatePut { .. } => self.timeout.saturating_mul(3),
            _ => self.timeout,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let message = match ring {
            Some(ring) => Message::Routed { id, ring, body },
            None => Message::Request { id, body },
        };
        let bytes = self.send_frame_within(addr, &wire::encode(&message), timeout).await?;
        match wire::decode(&bytes) {
            Ok(Message::Response { id: got, body }) if got == id => Ok(body),
            // Id 0 answers a request the node could not read (for example over the frame limit).
            Ok(Message::Response { id: 0, body: body @ Response::Error(_) }) => Ok(body),
            Ok(_) => Err(CallError::Malformed {
                addr,
                error: DecodeError::Invalid("answer is not the response to the request"),
            }),
            Err(error) => Err(CallError::Malformed { addr, error }),
        }
    }

    /// Sends one encoded request frame to `addr` on a stream of its own and returns the answer's
    /// bytes. Connecting may take half the transport's timeout (so that a coordinator whose replica
    /// timeout is the same hears "no connection" before it gives up on the replica), the exchange
    /// the whole timeout. The caller matches and decodes the answer.
    ///
    /// [`CallError::Connect`] means the request never left (no connection, no stream): the node
    /// did not act on it. Any other error comes after the request may have reached the node.
    pub async fn send_frame(&self, addr: SocketAddr, frame: &[u8]) -> Result<Vec<u8>, CallError> {
        self.send_frame_within(addr, frame, self.timeout).await
    }

    async fn send_frame_within(&self, addr: SocketAddr, frame: &[u8], timeout: Duration) -> Result<Vec<u8>, CallError> {
        let connecting = tokio::time::timeout(self.timeout / 2, self.connection(addr)).await;
        let not_in_time = || CallError::Connect { addr, reason: "no connection in time".into() };
        let connection = connecting.map_err(|_| not_in_time())??;
        let answer = tokio::time::timeout(timeout, self.exchange(addr, connection.clone(), frame)).await;
        answer.map_err(|_| {
            // The node may have restarted or gone away without a word, and QUIC would notice only
            // at the idle timeout: later calls open a fresh connection. (Requests still in flight
            // on this one go on; the connection closes once they are done.)
            self.forget(addr, &connection);
            CallError::Timeout(addr)
        })?
    }

    async fn exchange(
        &self,
        addr: SocketAddr,
        connection: quinn::Connection,
        frame: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        let stream_error = |e: &dyn std::fmt::Display| CallError::Stream { addr, reason: e.to_string() };
        let result = async {
            let (mut send, mut recv) = connection
                .open_bi()
                .await
                .map_err(|e| CallError::Connect { addr, reason: format!("cannot open a stream: {e}") })?;
            send.write_all(frame).await.map_err(|e| stream_error(&e))?;
            send.finish().map_err(|e| stream_error(&e))?;
            recv.read_to_end(self.max_frame).await.map_err(|e| match e {
                quinn::ReadToEndError::TooLong => CallError::TooLarge(addr),
                other => stream_error(&other),
            })
        }
        .await;
        if result.is_err() && connection.close_reason().is_some() {
            self.forget(addr, &connection);
        }
        result
    }

    async fn connection(&self, addr: SocketAddr) -> Result<quinn::Connection, CallError> {
        let slot = {
            let mut map = self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            map.entry(addr).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(connection.clone());
        }
        let connect_error = |e: &dyn std::fmt::Display| CallError::Connect { addr, reason: e.to_string() };
        let connecting = self.endpoint.connect(addr, NODE_SERVER_NAME).map_err(|e| connect_error(&e))?;
        let connection = connecting.await.map_err(|e| connect_error(&e))?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    fn forget(&self, addr: SocketAddr, connection: &quinn::Connection) {
        let map = self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = map.get(&addr)
            && let Ok(mut slot) = slot.try_lock()
            && slot.as_ref().is_some_and(|c| c.stable_id() == connection.stable_id())
        {
            *slot = None;
        }
    }

    /// Closes every connection and the endpoint.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"closing");
    }
}
