//! Browsers' WebTransport sessions on the nodes' QUIC port (issue 11, 1.2): trusted by the hash
//! of a short-lived certificate each node publishes in the view, carrying the native frames, and
//! rotated before they expire.

use std::time::Duration;

use hyper::Method;
use quickv_core::identity::CertificateDigest;
use quickv_core::store::{Limits, StoreName};
use quickv_core::version::{CausalContext, Write};
use quickv_core::wire::{self, ErrorKind, Message, Request, Response};
use quickv_server::node::NodeConfig;
use quickv_server::node::bounds::Bounds;
use quickv_server::node::http::AllowedOrigins;

use super::http::call;
use super::support::Cluster;

/// Opens a WebTransport session to `url`, trusting only the certificates of `hashes`.
async fn session(url: &str, hashes: &[CertificateDigest]) -> Result<web_transport_quinn::Session, String> {
    session_from(url, hashes, None).await
}

/// The same, as a page of `origin` opens it (a browser names its page's origin).
async fn session_from(
    url: &str,
    hashes: &[CertificateDigest],
    origin: Option<&str>,
) -> Result<web_transport_quinn::Session, String> {
    let client = web_transport_quinn::ClientBuilder::new()
        .with_server_certificate_hashes(hashes.iter().map(|h| h.as_bytes().to_vec()).collect())
        .map_err(|e| e.to_string())?;
    let url = url::Url::parse(url).map_err(|e| e.to_string())?;
    let mut request = web_transport_quinn::proto::ConnectRequest::new(url);
    if let Some(origin) = origin {
        request.headers.insert("origin", origin.parse().map_err(|_| "bad origin".to_string())?);
    }
    tokio::time::timeout(Duration::from_secs(5), client.connect(request))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())
}

/// One request on a new stream of `session`, and its answer.
async fn ask(session: &web_transport_quinn::Session, id: u64, body: Request) -> Response {
    let (mut send, mut recv) = session.open_bi().await.unwrap();
    send.write_all(&wire::encode(&Message::Request { id, body })).await.unwrap();
    send.finish().unwrap();
    let bytes = recv.read_to_end(1 << 20).await.unwrap();
    match wire::decode(&bytes).unwrap() {
        Message::Response { id: answered, body } if answered == id => body,
        other => panic!("not the answer to {id}: {other:?}"),
    }
}

fn with_https(config: &mut NodeConfig) {
    config.http = Some("127.0.0.1:0".parse().unwrap());
}

/// Every node publishes its HTTPS address and browser certificate hash, in every view and in
/// `GET /v1/ring`; a session trusting that hash carries puts and gets as a caller's (not a
/// node's: node requests are refused); another hash, or another path, gets no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_reach_every_node_over_webtransport_by_its_published_certificate_hash() {
    let cluster = Cluster::start_tweaked(3, Limits::default(), Bounds::default(), with_https).await;
    let view = cluster.node(1).view();
    let mut hashes = Vec::new();
    for i in 0..3 {
        let id = quickv_core::identity::NodeId::new(&format!("n{i}")).unwrap();
        let entry = view.membership().node(&id).expect("every node is known");
        assert_eq!(entry.web.https(), Some(cluster.node(i).http_addr().unwrap().to_string().as_str()));
        assert_eq!(entry.web.webtransport().len(), 1, "one browser certificate at first");
        hashes.push(entry.web.webtransport()[0]);
    }
    assert!(hashes[0] != hashes[1] && hashes[1] != hashes[2], "each node its own certificate");

    // The ring as JavaScript reads it names each node's WebTransport URL and hashes.
    let ca = cluster.ca();
    let ring = call(cluster.node(0).http_addr().unwrap(), &ca, Method::GET, "/v1/ring", &[], b"").await;
    let json: serde_json::Value = serde_json::from_slice(&ring.body).unwrap();
    let n2 = json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "n2").unwrap().clone();
    let url = format!("https://{}/v1/webtransport", cluster.addrs[2]);
    assert_eq!(n2["webtransport"]["url"], url.as_str());
    let hex: String = hashes[2].as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(n2["webtransport"]["certificate_hashes"], serde_json::json!([hex]));
    assert_eq!(n2["https"], format!("https://{}", cluster.node(2).http_addr().unwrap()).as_str());

    // A put and a get over WebTransport, coordinated by the node, read back by the Rust client.
    let session = session(&url, &hashes[2..3]).await.expect("a session");
    let store = StoreName::default_store();
    let write = Write::put(b"from a browser".to_vec(), CausalContext::empty(), 0);
    let put = Request::CoordinatePut { store: store.clone(), key: b"wt-key".to_vec(), write, minter: None };
    assert!(matches!(ask(&session, 1, put).await, Response::State(Some(_))));
    let got = ask(&session, 2, Request::CoordinateGet { store: store.clone(), key: b"wt-key".to_vec() }).await;
    let Response::State(Some(state)) = got else { panic!("no state: {got:?}") };
    let values: Vec<&[u8]> = state.siblings.values().map(|v| v.as_ref()).collect();
    assert_eq!(values, vec![&b"from a browser"[..]]);
    let client = cluster.client().await;
    let read = client.store("default").await.unwrap().get(b"wt-key").await.unwrap();
    assert_eq!(read.values.iter().map(|v| v.as_ref().to_vec()).collect::<Vec<_>>(), vec![b"from a browser".to_vec()]);
    // A browser is a caller: node-to-node requests are refused.
    let sync = ask(&session, 3, Request::Sync { view: cluster.node(2).view() }).await;
    assert!(matches!(sync, Response::Error(ref e) if e.kind == ErrorKind::NotPermitted), "{sync:?}");
    session.close(0, b"done");

    // Another node's hash is not this node's certificate; another path is not served.
    assert!(session_of(&url, &hashes[0..1]).await.is_err(), "another hash gets no session");
    let elsewhere = format!("https://{}/elsewhere", cluster.addrs[2]);
    assert!(session_of(&elsewhere, &hashes[2..3]).await.is_err(), "another path gets no session");
    cluster.shutdown().await;
}

async fn session_of(url: &str, hashes: &[CertificateDigest]) -> Result<(), String> {
    session_of_origin(url, hashes, None).await
}

/// Whether a session opened as a page of `origin` serves a request.
async fn session_of_origin(url: &str, hashes: &[CertificateDigest], origin: Option<&str>) -> Result<(), String> {
    let session = session_from(url, hashes, origin).await?;
    // The handshake may pass and the session still be refused: ask.
    let (mut send, mut recv) = session.open_bi().await.map_err(|e| e.to_string())?;
    let get = Request::CoordinateGet { store: StoreName::default_store(), key: b"k".to_vec() };
    send.write_all(&wire::encode(&Message::Request { id: 1, body: get })).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    recv.read_to_end(1 << 20).await.map(drop).map_err(|e| e.to_string())
}

fn short_lived(config: &mut NodeConfig) {
    // The next certificate is published at 8 s and served from 12 s: room for a slow machine.
    config.browser_cert_lifetime = Duration::from_secs(16);
}

/// Browser certificates rotate: at half their lifetime the next one is published beside the
/// one served (every node learns both), from three quarters the next one is served, and the old
/// one leaves the view before it expires. A restarted node publishes what it did before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_certificates_rotate_with_old_and_new_published_together() {
    let mut cluster = Cluster::start_tweaked(2, Limits::default(), Bounds::default(), short_lived).await;
    let n0 = quickv_core::identity::NodeId::new("n0").unwrap();
    let published =
        |cluster: &Cluster| cluster.node(1).view().membership().node(&n0).unwrap().web.webtransport().to_vec();
    let first = published(&cluster);
    assert_eq!(first.len(), 1);
    let url = format!("https://{}/v1/webtransport", cluster.addrs[0]);
    // Wait for both to be published (at 8 s), as n1 sees n0's entry.
    let mut both = Vec::new();
    for _ in 0..400 {
        both = published(&cluster);
        if both.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(both.len(), 2, "old and new published together");
    assert_eq!(both[0], first[0], "the old one first");
    assert!(session_of(&url, &first).await.is_ok(), "the old one is still served");
    // From 12 s the new one is served; soon after, the old one is no longer published.
    let mut served_new = false;
    for _ in 0..200 {
        if session_of(&url, &both[1..]).await.is_ok() {
            served_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served_new, "the new certificate is served");
    let mut gone = false;
    for _ in 0..100 {
        if published(&cluster) == both[1..] {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the old hash leaves the view: {:?}", published(&cluster));
    // A restart keeps the certificates (the node folder holds them).
    let before = cluster.node(0).view().membership().node(&n0).unwrap().web.clone();
    cluster.stop(0).await;
    cluster.restart(0).await;
    let after = cluster.node(0).view().membership().node(&n0).unwrap().web.clone();
    // (The next rotation may have come meanwhile: the one served before is still published.)
    let served = before.webtransport().last().unwrap();
    assert!(after.webtransport().contains(served), "a restart publishes what the node did before: {after:?}");
    cluster.shutdown().await;
}

fn only_app_origin(config: &mut NodeConfig) {
    config.http_origins = AllowedOrigins::Only(vec!["https://app.example".into()]);
}

/// A node that answers only some browser origins (`--http-allow-origin`) takes WebTransport
/// sessions from pages of those origins only; a session that names no origin is no browser's
/// and goes on, as over the native protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webtransport_sessions_come_only_from_allowed_origins() {
    let cluster = Cluster::start_tweaked(1, Limits::default(), Bounds::default(), only_app_origin).await;
    let n0 = quickv_core::identity::NodeId::new("n0").unwrap();
    let hashes = cluster.node(0).view().membership().node(&n0).unwrap().web.webtransport().to_vec();
    let url = format!("https://{}/v1/webtransport", cluster.addrs[0]);
    assert!(session_of_origin(&url, &hashes, Some("https://app.example")).await.is_ok());
    assert!(session_of_origin(&url, &hashes, Some("https://evil.example")).await.is_err(), "another origin");
    assert!(session_of_origin(&url, &hashes, None).await.is_ok(), "no origin: not a browser");
    cluster.shutdown().await;
}
