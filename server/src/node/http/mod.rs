//! The node's HTTPS API (`docs/http-api.md`), for callers that cannot speak QUIC: JavaScript in
//! Node.js and edge runtimes, `curl`, anything with an HTTP client.
//!
//! HTTP/1.1 and HTTP/2 over TLS 1.3, on a TCP port of its own (`--http ADDR`), presenting the node's
//! certificate (issued by the cluster CA for the name `quickv-node`: a caller trusts `ca.pem` and
//! checks that name). Each request becomes the native request it stands for and goes to the
//! node's driver exactly as a request read from a QUIC stream does, so the node coordinates it
//! with core's machines: this module only converts ([`api`]). Requests carry no client
//! certificate: an HTTP caller is a plain caller, never a node.
//!
//! The node's [`Bounds`](super::bounds::Bounds) hold here as on QUIC, in the same budgets: a
//! TCP connection takes a connection slot (refused past `connections` or
//! `connections_per_address`), a request body takes room in the byte budgets before it is read,
//! a caller has `read_deadline` to send a request's headers and again its body (`408` then), and
//! an HTTP/2 connection has at most `streams_per_connection` requests open.

mod api;
mod error;
mod key_path;

use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) use api::Api;
pub use api::{AllowedOrigins, CONTEXT_HEADER, MINTER_HEADER, WRITE_ID_HEADER};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::bounds::{ConnectionSlot, Held};

/// How long a TLS handshake may take.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// The TLS settings of the HTTPS port: the node's certificate, no client certificates, ALPN
/// `h2` and `http/1.1`.
pub(crate) fn tls_config(
    identity: &quickv_net::tls::NodeIdentity,
) -> Result<Arc<rustls::ServerConfig>, quickv_net::tls::TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(quickv_net::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the API on `listener` until the task is aborted: a task per connection, each
/// admitted within the node's bounds (`held`).
pub(crate) async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, api: Arc<Api>, held: Arc<Held>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!("https: accept failed: {e}");
                continue;
            }
        };
        let Some(slot) = held.admit(peer.ip()) else {
            tracing::debug!("https: connection from {peer} refused: too many connections");
            continue;
        };
        let (acceptor, api) = (acceptor.clone(), api.clone());
        tokio::spawn(async move { connection(acceptor, tcp, peer, api, Arc::new(slot)).await });
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    api: Arc<Api>,
    slot: Arc<ConnectionSlot>,
) {
    let bounds = *api.bounds();
    let tls = match tokio::time::timeout(HANDSHAKE.min(bounds.read_deadline), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return tracing::debug!("https: handshake with {peer} failed: {e}"),
        Err(_) => return tracing::debug!("https: handshake with {peer} timed out"),
    };
    let service = service_fn(move |request| {
        let (api, slot) = (api.clone(), slot.clone());
        async move { Ok::<_, std::convert::Infallible>(api.handle(request, &slot).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(bounds.read_deadline);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(bounds.streams_per_connection);
    if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
        tracing::debug!("https: connection from {peer} ended: {e}");
    }
}
