//! The HTTPS API against in-process nodes: every route, siblings, contexts, the error codes and
//! CORS (`docs/http-api.md`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use quickv_client::{CausalContext, ClusterCa};
use quickv_core::store::Limits;
use quickv_server::node::NodeConfig;
use quickv_server::node::bounds::Bounds;
use quickv_server::node::http::{AllowedOrigins, CONTEXT_HEADER};

use super::support::Cluster;

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    fn context(&self) -> Option<String> {
        self.headers.get(CONTEXT_HEADER).map(|v| v.to_str().unwrap().to_owned())
    }

    /// The stable code of a JSON error.
    fn code(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        json["code"].as_str().unwrap().to_owned()
    }
}

/// A TLS connection (ALPN `http/1.1`) to the node's HTTPS port, trusting the cluster CA and
/// checking the name `quickv-node`.
async fn connect(addr: SocketAddr, ca: &ClusterCa) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    connect_as(addr, ca, "quickv-node").await.unwrap()
}

/// The same, checking `name` (a DNS name or an IP address) instead.
async fn connect_as(
    addr: SocketAddr,
    ca: &ClusterCa,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let provider = quickv_client::tls::provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

/// One request over a fresh HTTPS connection (HTTP/1.1) to `addr`, trusting the cluster CA.
pub(crate) async fn call(
    addr: SocketAddr,
    ca: &ClusterCa,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let stream = connect(addr, ca).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder().method(method).uri(path).header("host", "quickv-node");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Full::new(Bytes::copy_from_slice(body))).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

/// A request and the status and code it must be answered with.
type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], Vec<u8>, StatusCode, &'a str);

fn with_http(config: &mut NodeConfig) {
    config.http = Some("127.0.0.1:0".parse().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_puts_gets_and_deletes_with_siblings_and_contexts() {
    let cluster = Cluster::start_tweaked(3, Limits::default(), Bounds::default(), with_http).await;
    let (ca, http) = (cluster.ca(), cluster.node(0).http_addr().expect("an HTTPS address"));
    let key = "/v1/stores/default/keys/cart%3A42";

    let put = call(http, &ca, Method::PUT, key, &[], b"apples").await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    assert!(put.context().is_some(), "a write answers the new context");
    let read = call(http, &ca, Method::GET, "/v1/stores/default/keys/cart:42", &[], b"").await;
    assert_eq!((read.status, &read.body[..]), (StatusCode::OK, &b"apples"[..]));
    assert_eq!(read.headers["content-type"], "application/octet-stream");

    // A blind write beside it: two siblings, answered 300 multipart/mixed.
    assert_eq!(call(http, &ca, Method::PUT, key, &[], b"pears").await.status, StatusCode::NO_CONTENT);
    let read = call(http, &ca, Method::GET, key, &[], b"").await;
    assert_eq!(read.status, StatusCode::MULTIPLE_CHOICES);
    let kind = read.headers["content-type"].to_str().unwrap().to_owned();
    let boundary = kind.strip_prefix("multipart/mixed; boundary=").expect("multipart");
    let text = String::from_utf8(read.body.to_vec()).unwrap();
    let parts: Vec<&str> = text.split(&format!("--{boundary}")).filter(|p| p.contains("\r\n\r\n")).collect();
    let mut values: Vec<&str> = parts.iter().map(|p| p.split("\r\n\r\n").nth(1).unwrap().trim_end()).collect();
    values.sort();
    assert_eq!(values, ["apples", "pears"]);

    // A write with the read's context replaces both; the Rust client reads it.
    let context = read.context().unwrap();
    let put = call(http, &ca, Method::PUT, key, &[(CONTEXT_HEADER, &context)], b"plums").await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    let versions = store.get("cart:42").await.unwrap();
    assert_eq!(versions.values.iter().map(|v| v.as_ref().to_vec()).collect::<Vec<_>>(), vec![b"plums".to_vec()]);

    // Keys are bytes: percent-encoded, a slash included; what the Rust client writes, HTTP reads.
    store.put(b"\x00\xffa/b".to_vec(), b"bytes".to_vec(), &CausalContext::empty()).await.unwrap();
    let read = call(http, &ca, Method::GET, "/v1/stores/default/keys/%00%FFa%2Fb", &[], b"").await;
    assert_eq!((read.status, &read.body[..]), (StatusCode::OK, &b"bytes"[..]));

    // A delete needs the context of a read; then the key is absent (404, with the context).
    let context = call(http, &ca, Method::GET, key, &[], b"").await.context().unwrap();
    let refused = call(http, &ca, Method::DELETE, key, &[], b"").await;
    assert_eq!((refused.status, refused.code()), (StatusCode::BAD_REQUEST, "context_required".into()));
    let deleted = call(http, &ca, Method::DELETE, key, &[(CONTEXT_HEADER, &context)], b"").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = call(http, &ca, Method::GET, key, &[], b"").await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "not_found".into()));
    assert!(gone.context().is_some(), "a deleted key's context comes with the 404");
    assert!(store.get("cart:42").await.unwrap().is_absent());

    // Stores: listed, created once, refused with other settings.
    let listed = call(http, &ca, Method::GET, "/v1/stores", &[], b"").await;
    let json: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(json["stores"][0]["name"], "default");
    let create = br#"{"name":"carts","n":3,"r":2,"w":2,"quorum":"strict"}"#;
    let created = call(http, &ca, Method::POST, "/v1/stores", &[], create).await;
    let json: serde_json::Value = serde_json::from_slice(&created.body).unwrap();
    assert_eq!((created.status, &json["created"], &json["quorum"]), (StatusCode::OK, &true.into(), &"strict".into()));
    let again = call(http, &ca, Method::POST, "/v1/stores", &[], create).await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&again.body).unwrap()["created"], false);
    let other = call(http, &ca, Method::POST, "/v1/stores", &[], br#"{"name":"carts","n":3,"r":1,"w":2}"#).await;
    assert_eq!((other.status, other.code()), (StatusCode::CONFLICT, "store_conflict".into()));

    // The ring: membership and version for people, and the view itself for core to route with.
    let ring = call(http, &ca, Method::GET, "/v1/ring", &[], b"").await;
    let json: serde_json::Value = serde_json::from_slice(&ring.body).unwrap();
    let mut addresses: Vec<&str> =
        json["nodes"].as_array().unwrap().iter().map(|n| n["address"].as_str().unwrap()).collect();
    addresses.sort();
    let mut expected: Vec<String> = cluster.addrs.iter().map(|a| a.to_string()).collect();
    expected.sort();
    assert_eq!(addresses, expected);
    assert!(json["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "up"));
    use base64::Engine as _;
    let frame = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(json["view"].as_str().unwrap()).unwrap();
    let Ok(quickv_core::wire::Message::Response { body: quickv_core::wire::Response::Cluster(view), .. }) =
        quickv_core::wire::decode(&frame)
    else {
        panic!("the view field is not a cluster frame");
    };
    let version = view.routing_version().expect("a ring");
    assert_eq!(Some(version), cluster.node(0).view().routing_version());
    assert_eq!(json["ring"]["epoch"], version.epoch);
    assert!(view.store(&quickv_core::store::StoreName::new("carts").unwrap()).is_some());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_errors_carry_stable_codes_and_change_nothing() {
    let limits = Limits { max_key: 64, max_value: 1024 };
    let mut cluster = Cluster::start_tweaked(3, limits, Bounds::default(), with_http).await;
    let (ca, http) = (cluster.ca(), cluster.node(0).http_addr().unwrap());
    let cases: [Case<'_>; 9] = [
        (Method::GET, "/v1/stores/nostore/keys/a", &[], vec![], StatusCode::NOT_FOUND, "unknown_store"),
        (Method::GET, "/v1/stores/default/keys/a%zz", &[], vec![], StatusCode::BAD_REQUEST, "malformed"),
        (
            Method::PUT,
            "/v1/stores/default/keys/a",
            &[(CONTEXT_HEADER, "garbage!")],
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_context",
        ),
        (Method::PUT, "/v1/stores/default/keys/a", &[], vec![b'v'; 2048], StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        (
            Method::PUT,
            &format!("/v1/stores/default/keys/{}", "k".repeat(100)),
            &[],
            b"x".to_vec(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (Method::POST, "/v1/stores", &[], b"not json".to_vec(), StatusCode::BAD_REQUEST, "malformed"),
        (Method::PATCH, "/v1/stores/default/keys/a", &[], vec![], StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (Method::GET, "/v2/anything", &[], vec![], StatusCode::NOT_FOUND, "not_found"),
        (Method::GET, "/v1/stores/default/keys/", &[], vec![], StatusCode::BAD_REQUEST, "malformed"),
    ];
    for (method, path, headers, body, status, code) in cases {
        let answer = call(http, &ca, method.clone(), path, headers, &body).await;
        assert_eq!((answer.status, answer.code()), (status, code.to_owned()), "{method} {path}");
        assert_eq!(answer.headers["content-type"], "application/json");
    }
    // Nothing was written by any of them.
    let client = cluster.client().await;
    assert!(client.store("default").await.unwrap().get("a").await.unwrap().is_absent());

    // Not enough replicas: a strict store of W=3 with a node stopped answers 503, retryable.
    let strict = br#"{"name":"all","n":3,"r":2,"w":3,"quorum":"strict"}"#;
    assert_eq!(call(http, &ca, Method::POST, "/v1/stores", &[], strict).await.status, StatusCode::OK);
    cluster.stop(2).await;
    let answer = call(http, &ca, Method::PUT, "/v1/stores/all/keys/k", &[], b"v").await;
    assert_eq!((answer.status, answer.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into()));
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["retryable"], true);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_answers_browser_origins_it_allows() {
    fn only(config: &mut NodeConfig) {
        config.http = Some("127.0.0.1:0".parse().unwrap());
        config.http_origins = AllowedOrigins::Only(vec!["https://app.example".into()]);
    }
    let cluster = Cluster::start_tweaked(1, Limits::default(), Bounds::default(), only).await;
    let (ca, http) = (cluster.ca(), cluster.node(0).http_addr().unwrap());
    let preflight = [("origin", "https://app.example"), ("access-control-request-method", "PUT")];
    let answer = call(http, &ca, Method::OPTIONS, "/v1/stores/default/keys/a", &preflight, b"").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(answer.headers["access-control-allow-origin"], "https://app.example");
    assert!(answer.headers["access-control-allow-methods"].to_str().unwrap().contains("PUT"));
    assert!(answer.headers["access-control-allow-headers"].to_str().unwrap().contains(CONTEXT_HEADER));
    let read = call(http, &ca, Method::GET, "/v1/stores", &[("origin", "https://app.example")], b"").await;
    assert_eq!(read.headers["access-control-expose-headers"], CONTEXT_HEADER);
    let other = call(http, &ca, Method::GET, "/v1/stores", &[("origin", "https://evil.example")], b"").await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(other.headers.get("access-control-allow-origin").is_none(), "an origin not allowed gets no CORS grant");

    // The node's certificate also names the address it is dialled at (as fetch checks it).
    assert!(connect_as(http, &ca, "127.0.0.1").await.is_ok(), "the certificate names 127.0.0.1");
    assert!(connect_as(http, &ca, "127.0.0.2").await.is_err(), "and not another address");
    cluster.shutdown().await;
}

/// Slow or oversized callers are held to the node's bounds: headers not sent within the read
/// deadline close the connection, a body not sent within it is answered 408 `timeout`, a body
/// declared over the frame limit 413 at once; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_callers_are_held_to_the_nodes_bounds() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bounds = Bounds { read_deadline: std::time::Duration::from_millis(300), ..Bounds::default() };
    let cluster = Cluster::start_tweaked(3, Limits::default(), bounds, with_http).await;
    let (ca, http) = (cluster.ca(), cluster.node(0).http_addr().unwrap());
    let answer_within = |limit: u64| std::time::Duration::from_secs(limit);

    // Headers that never end: the node closes the connection.
    let mut slow = connect(http, &ca).await;
    slow.write_all(b"GET /v1/stores HTTP/1.1\r\nhost: quickv-node\r\n").await.unwrap();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(answer_within(5), slow.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the node kept a connection whose headers never came");

    // A body shorter than it said: 408 timeout.
    let mut short = connect(http, &ca).await;
    let head = "PUT /v1/stores/default/keys/slow HTTP/1.1\r\nhost: quickv-node\r\ncontent-length: 10\r\n\r\nabc";
    short.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(answer_within(5), short.read(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 408") && text.contains("\"code\":\"timeout\""), "{text}");

    // A body declared over the frame limit: 413 before any of it is read.
    let huge = format!("{}", 64 * 1024 * 1024);
    let answer = call(http, &ca, Method::PUT, "/v1/stores/default/keys/huge", &[("content-length", &huge)], b"").await;
    assert_eq!((answer.status, answer.code()), (StatusCode::PAYLOAD_TOO_LARGE, "too_large".into()));

    let client = cluster.client().await;
    let store = client.store("default").await.unwrap();
    for key in ["slow", "huge"] {
        assert!(store.get(key).await.unwrap().is_absent(), "{key} was written");
    }
    cluster.shutdown().await;
}

/// A write named by `X-Quickv-Write-Id` that failed naming its minter (W=3 with a node stopped:
/// applied at the minter, not acknowledged) is sent again with `X-Quickv-Minter` once the node
/// is back: it completes, and the key holds the value once, not as two siblings. Malformed ids,
/// and a retry that names no write, are refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_writes_named_by_an_id_are_retried_at_their_minter_and_applied_once() {
    use quickv_server::node::http::{MINTER_HEADER, WRITE_ID_HEADER};
    let mut cluster = Cluster::start_tweaked(3, Limits::default(), Bounds::default(), with_http).await;
    let (ca, http) = (cluster.ca(), cluster.node(0).http_addr().unwrap());
    let strict = br#"{"name":"all","n":3,"r":2,"w":3,"quorum":"strict"}"#;
    assert_eq!(call(http, &ca, Method::POST, "/v1/stores", &[], strict).await.status, StatusCode::OK);
    let id = "0123456789abcdef0123456789abcdef";
    for (headers, what) in [
        (&[(WRITE_ID_HEADER, "xyz")][..], "not hex"),
        (&[(WRITE_ID_HEADER, "00000000000000000000000000000000")], "zero"),
        (&[(MINTER_HEADER, "n0")], "a retry naming no write"),
        (&[(WRITE_ID_HEADER, id), (MINTER_HEADER, "not a name")], "a minter that is no name"),
    ] {
        let answer = call(http, &ca, Method::PUT, "/v1/stores/all/keys/k", headers, b"v").await;
        assert_eq!((answer.status, answer.code()), (StatusCode::BAD_REQUEST, "malformed".into()), "{what}");
    }
    cluster.stop(2).await;
    let first = call(http, &ca, Method::PUT, "/v1/stores/all/keys/k", &[(WRITE_ID_HEADER, id)], b"once").await;
    assert_eq!((first.status, first.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into()));
    let json: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    let minter = json["minter"].as_str().expect("the failure names the node that applied the write").to_owned();
    cluster.restart(2).await;
    cluster.settle().await;
    let retry = [(WRITE_ID_HEADER, id), (MINTER_HEADER, minter.as_str())];
    let again = call(http, &ca, Method::PUT, "/v1/stores/all/keys/k", &retry, b"once").await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&again.body));
    let read = call(http, &ca, Method::GET, "/v1/stores/all/keys/k", &[], b"").await;
    assert_eq!((read.status, &read.body[..]), (StatusCode::OK, &b"once"[..]), "one version, not two siblings");
    cluster.shutdown().await;
}
