//! The routes of the HTTPS API and what each becomes (see `docs/http-api.md`):
//!
//! | route | native request | success |
//! |---|---|---|
//! | `GET /v1/stores/{store}/keys/{key}` | `CoordinateGet` | 200, the value; 300 `multipart/mixed` with every sibling; 404 `not_found` when absent |
//! | `PUT /v1/stores/{store}/keys/{key}` | `CoordinatePut` (a put) | 204 |
//! | `DELETE /v1/stores/{store}/keys/{key}` | `CoordinatePut` (a delete) | 204 |
//! | `GET /v1/ring` | (the node's view) | 200, JSON: membership, ring version, stores, and the view as core decodes it |
//! | `GET /v1/stores` | (the node's view) | 200, JSON |
//! | `POST /v1/stores` | `CreateStore` | 200, JSON |
//!
//! The causal context travels in the `X-Quickv-Context` header: a read answers it (also with a
//! 404, when the key was deleted), a write takes it (optional for a put, required for a delete)
//! and answers the new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use quickv_core::cluster::ClusterView;
use quickv_core::identity::NodeId;
use quickv_core::membership::NodeStatus;
use quickv_core::store::{StoreConfig, StoreName};
use quickv_core::version::{CausalContext, SealedState, Write, WriteId};
use quickv_core::wire::{self, Message};
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use super::key_path::decode_segment;
use crate::node::bounds::{Bounds, ConnectionSlot, Held};
use crate::node::driver::{Frame, Input, Observed};

/// Bytes as lowercase hex (certificate hashes, for browsers' `serverCertificateHashes`).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The header that carries a key's causal context (base64url, as `quickv` prints it).
pub const CONTEXT_HEADER: &str = "x-quickv-context";

/// Which browser origins may call the API (CORS) and open WebTransport sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin (`Access-Control-Allow-Origin: *`); the default.
    #[default]
    Any,
    /// Only these origins (for example `https://app.example.com`).
    Only(Vec<String>),
}

impl AllowedOrigins {
    /// Whether a browser page of `origin` may call.
    pub(crate) fn allows(&self, origin: &[u8]) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::Only(list) => list.iter().any(|o| o.as_bytes() == origin),
        }
    }
}

/// What the routes need of the node.
pub(crate) struct Api {
    inputs: mpsc::UnboundedSender<Input>,
    observed: Arc<Observed>,
    /// The largest request body taken (the node's frame limit).
    max_body: usize,
    origins: AllowedOrigins,
    /// The node's bounds, shared with its QUIC endpoint.
    held: Arc<Held>,
    next_id: AtomicU64,
}

impl Api {
    pub(crate) fn new(
        inputs: mpsc::UnboundedSender<Input>,
        observed: Arc<Observed>,
        max_body: usize,
        origins: AllowedOrigins,
        held: Arc<Held>,
    ) -> Api {
        Api { inputs, observed, max_body, origins, held, next_id: AtomicU64::new(1) }
    }

    /// The bounds the node holds its callers to.
    pub(crate) fn bounds(&self) -> &Bounds {
        self.held.bounds()
    }

    /// Answers one request of the connection holding `slot` (never fails: an error is an
    /// answer too).
    pub(crate) async fn handle(&self, request: Request<Incoming>, slot: &ConnectionSlot) -> Response<Full<Bytes>> {
        let origin = request.headers().get(header::ORIGIN).cloned();
        let mut response = match self.route(request, slot).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        };
        self.cors(origin.as_ref(), response.headers_mut());
        response
    }

    async fn route(
        &self,
        request: Request<Incoming>,
        slot: &ConnectionSlot,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.strip_prefix("/v1/").unwrap_or("").split('/').collect();
        if request.method() == Method::OPTIONS {
            return Ok(preflight());
        }
        match (request.method().clone(), segments.as_slice()) {
            (Method::GET, ["ring"]) => Ok(self.ring()),
            (Method::GET, ["stores"]) => Ok(self.stores()),
            (Method::POST, ["stores"]) => self.create_store(request, slot).await,
            (method, ["stores", store, "keys", key]) => {
                let store = store_name(store)?;
                let key = decode_segment(key).map_err(|e| ApiError::malformed(format!("the key in the path: {e}")))?;
                match method {
                    Method::GET => self.get(store, key).await,
                    Method::PUT => self.put(store, key, request, slot).await,
                    Method::DELETE => self.delete(store, key, request.headers()).await,
                    _ => Err(not_allowed("GET, PUT, DELETE")),
                }
            }
            (_, ["stores"]) => Err(not_allowed("GET, POST")),
            (_, ["ring"]) => Err(not_allowed("GET")),
            _ => Err(ApiError::not_found(format!("no such resource: {path}"))),
        }
    }

    /// Hands a native request to the node's driver, as a QUIC stream's task does, and waits for
    /// the node's answer (a coordination always answers, within its replica timeouts).
    async fn ask(&self, body: wire::Request) -> Result<wire::Response, ApiError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let frame = Frame::Decoded(Message::Request { id, body });
        self.inputs.send(Input::Request { peer: None, frame, reply }).map_err(|_| ApiError::stopping())?;
        match answer.await {
            Ok(Message::Response { body: wire::Response::Error(e), .. }) => Err(e.into()),
            Ok(Message::Response { body, .. }) => Ok(body),
            Ok(other) => Err(unexpected(&other)),
            Err(_) => Err(ApiError::stopping()),
        }
    }

    async fn get(&self, store: StoreName, key: Vec<u8>) -> Result<Response<Full<Bytes>>, ApiError> {
        let state = match self.ask(wire::Request::CoordinateGet { store, key }).await? {
            wire::Response::State(state) => state,
            other => return Err(unexpected(&other)),
        };
        let state = match state {
            Some(state) if !state.siblings.is_absent() => state,
            // Absent: never written, or deleted (then the context says what the delete saw).
            absent => {
                let mut error = ApiError::not_found("the key is absent").into_response();
                if let Some(state) = absent {
                    set_context(error.headers_mut(), &state);
                }
                return Ok(error);
            }
        };
        let values: Vec<Bytes> = state.siblings.values().map(|v| Bytes::copy_from_slice(v.as_ref())).collect();
        let mut response = match values.as_slice() {
            [one] => octets(StatusCode::OK, one.clone()),
            several => multipart(several),
        };
        set_context(response.headers_mut(), &state);
        Ok(response)
    }

    async fn put(
        &self,
        store: StoreName,
        key: Vec<u8>,
        request: Request<Incoming>,
        slot: &ConnectionSlot,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let context = context_of(request.headers())?.unwrap_or_else(CausalContext::empty);
        let retry = Retry::of(request.headers())?;
        let value = self.body(request, slot).await?;
        let write = Write::put(value.to_vec(), context, wall_clock_ms());
        self.write(store, key, write, retry).await
    }

    async fn delete(
        &self,
        store: StoreName,
        key: Vec<u8>,
        headers: &HeaderMap,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let context = context_of(headers)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "context_required",
                format!("a delete needs the {CONTEXT_HEADER} header of a read: it removes the versions that read saw"),
            )
        })?;
        let retry = Retry::of(headers)?;
        self.write(store, key, Write::delete(context, wall_clock_ms()), retry).await
    }

    async fn write(
        &self,
        store: StoreName,
        key: Vec<u8>,
        write: Write,
        retry: Retry,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let write = match retry.id {
            Some(id) => write.with_id(id),
            None => write,
        };
        // A retry goes to the node that took the write, which recognises it by its id.
        let write = if retry.minter.is_some() { write.resend() } else { write };
        let minter = retry.minter;
        match self.ask(wire::Request::CoordinatePut { store, key, write, minter }).await? {
            wire::Response::State(Some(state)) => {
                let mut response = answer(StatusCode::NO_CONTENT, Bytes::new(), None);
                set_context(response.headers_mut(), &state);
                Ok(response)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// The node's view: what a client needs to route with core (the `view` field: a wire frame,
    /// `Response::Cluster`, base64url), and a summary of it for people and scripts.
    fn ring(&self) -> Response<Full<Bytes>> {
        use base64::Engine as _;
        let view = self.observed.view();
        let nodes: Vec<serde_json::Value> = view
            .membership()
            .nodes()
            .map(|n| {
                let hashes: Vec<String> = n.web.webtransport().iter().map(|h| hex(h.as_bytes())).collect();
                let webtransport = (!hashes.is_empty()).then(|| {
                    serde_json::json!({
                        "url": format!("https://{}{}", n.address, crate::node::endpoint::WEBTRANSPORT_PATH),
                        "certificate_hashes": hashes,
                    })
                });
                serde_json::json!({
                    "id": n.id.as_str(),
                    "address": n.address,
                    "zone": n.zone.as_str(),
                    "capacity": n.capacity,
                    "status": status_name(n.status),
                    "https": n.web.https().map(|a| format!("https://{a}")),
                    "webtransport": webtransport,
                })
            })
            .collect();
        let ring = view.routing_version().map(|v| {
            let partitions = view.ring().map_or(0, |r| r.partition_count());
            let members: Vec<&str> =
                view.ring().map(|r| r.nodes().iter().map(|n| n.id.as_str()).collect()).unwrap_or_default();
            serde_json::json!({
                "epoch": v.epoch,
                "digest": format!("{:016x}", v.digest),
                "partitions": partitions,
                "members": members,
            })
        });
        let stores = stores_json(&view);
        let frame =
            wire::encode(&Message::Response { id: 0, body: wire::Response::Cluster(ClusterView::clone(&view)) });
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(frame);
        let answer = serde_json::json!({
            "ring": ring,
            "changing": view.transition().is_some(),
            "nodes": nodes,
            "stores": stores,
            "view": encoded,
        });
        json(StatusCode::OK, &answer)
    }

    fn stores(&self) -> Response<Full<Bytes>> {
        json(StatusCode::OK, &serde_json::json!({ "stores": stores_json(&self.observed.view()) }))
    }

    async fn create_store(
        &self,
        request: Request<Incoming>,
        slot: &ConnectionSlot,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let body = self.body(request, slot).await?;
        let (name, config) = parse_store(&body)?;
        let existed = self.observed.view().store(&name) == Some(&config);
        match self.ask(wire::Request::CreateStore { name: name.clone(), config }).await? {
            wire::Response::Ack => {
                let mut answer = store_json(&name, &config);
                answer["created"] = serde_json::Value::Bool(!existed);
                Ok(json(StatusCode::OK, &answer))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// The whole request body, refused past the node's frame limit, read within the read
    /// deadline once room for it is held in the node's byte budgets (the length it declares,
    /// or the frame limit when it declares none).
    async fn body(&self, request: Request<Incoming>, slot: &ConnectionSlot) -> Result<Bytes, ApiError> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > self.max_body) {
            return Err(self.too_large());
        }
        let want = declared.unwrap_or(self.max_body).max(1);
        let deadline = self.bounds().read_deadline;
        let timed_out = || {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("the request was not sent within {} ms", deadline.as_millis()),
            )
        };
        let room = tokio::time::timeout(deadline, self.held.room(slot, want)).await;
        let _room = room.map_err(|_| timed_out())?.ok_or_else(ApiError::stopping)?;
        let limited = Limited::new(request.into_body(), want);
        let collected = tokio::time::timeout(deadline, limited.collect()).await.map_err(|_| timed_out())?;
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(self.too_large()),
            Err(e) => Err(ApiError::malformed(format!("the request body could not be read: {e}"))),
        }
    }

    fn too_large(&self) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over the {} bytes a request may carry", self.max_body),
        )
    }

    /// Adds the CORS headers for a caller from `origin`.
    fn cors(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let allowed = match (&self.origins, origin) {
            (AllowedOrigins::Any, _) => Some(HeaderValue::from_static("*")),
            (AllowedOrigins::Only(_), Some(origin)) => self.origins.allows(origin.as_bytes()).then(|| origin.clone()),
            (AllowedOrigins::Only(_), None) => None,
        };
        let Some(allowed) = allowed else { return };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(CONTEXT_HEADER));
        if matches!(self.origins, AllowedOrigins::Only(_)) {
            headers.insert(header::VARY, HeaderValue::from_static("origin"));
        }
    }
}

fn preflight() -> Response<Full<Bytes>> {
    let mut response = answer(StatusCode::NO_CONTENT, Bytes::new(), None);
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, PUT, DELETE, POST, OPTIONS"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, x-quickv-context, x-quickv-write-id, x-quickv-minter"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

fn status_name(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Joining => "joining",
        NodeStatus::Up => "up",
        NodeStatus::Leaving => "leaving",
        NodeStatus::Removed => "removed",
        // A state this build does not know yet.
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}

fn not_allowed(allowed: &'static str) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("allowed here: {allowed}"))
}

fn unexpected(answer: &dyn std::fmt::Debug) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("the node answered unexpectedly: {answer:?}"))
}

fn store_name(segment: &str) -> Result<StoreName, ApiError> {
    let bytes = decode_segment(segment).map_err(|e| ApiError::malformed(format!("the store in the path: {e}")))?;
    let name = String::from_utf8(bytes).map_err(|_| ApiError::malformed("the store name is not UTF-8"))?;
    StoreName::new(&name).map_err(|e| ApiError::malformed(format!("store name {name:?}: {e}")))
}

/// The context a request carries, if any.
fn context_of(headers: &HeaderMap) -> Result<Option<CausalContext>, ApiError> {
    let Some(value) = headers.get(CONTEXT_HEADER) else { return Ok(None) };
    let text = value.to_str().map_err(|_| ApiError::malformed(format!("the {CONTEXT_HEADER} header is not text")))?;
    let context = text.trim().parse::<CausalContext>().map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_context", format!("the {CONTEXT_HEADER} header: {e}"))
    })?;
    Ok(Some(context))
}

/// The header that names a write (32 hex digits, not all zero): every attempt of one write
/// carries the same, so that a retry is recognised and applied once.
pub const WRITE_ID_HEADER: &str = "x-quickv-write-id";

/// The header that sends a write again to the node that may have applied it (the `minter` of a
/// failed attempt's error): that node only applies it, or answers it had.
pub const MINTER_HEADER: &str = "x-quickv-minter";

/// What a write's headers say of its attempts.
struct Retry {
    id: Option<WriteId>,
    minter: Option<NodeId>,
}

impl Retry {
    fn of(headers: &HeaderMap) -> Result<Retry, ApiError> {
        let text = |name: &str| -> Result<Option<&str>, ApiError> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str().map(str::trim).map_err(|_| ApiError::malformed(format!("the {name} header is not text")))
                })
                .transpose()
        };
        let id = match text(WRITE_ID_HEADER)? {
            Some(hex) => {
                let id = (hex.len() == 32)
                    .then(|| u128::from_str_radix(hex, 16).ok())
                    .flatten()
                    .filter(|&id| id != 0)
                    .ok_or_else(|| {
                        ApiError::malformed(format!("the {WRITE_ID_HEADER} header must be 32 hex digits, not all zero"))
                    })?;
                Some(WriteId(id))
            }
            None => None,
        };
        let minter = match text(MINTER_HEADER)? {
            Some(name) => {
                Some(NodeId::new(name).map_err(|e| ApiError::malformed(format!("the {MINTER_HEADER} header: {e}")))?)
            }
            None => None,
        };
        if minter.is_some() && id.is_none() {
            return Err(ApiError::malformed(format!(
                "a retry ({MINTER_HEADER}) must name its write ({WRITE_ID_HEADER})"
            )));
        }
        Ok(Retry { id, minter })
    }
}

fn set_context(headers: &mut HeaderMap, state: &SealedState) {
    if let Ok(value) = HeaderValue::from_str(&state.context().to_string()) {
        headers.insert(CONTEXT_HEADER, value);
    }
}

fn octets(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    answer(status, body, Some("application/octet-stream"))
}

/// An answer with `status`, `body`, and its `Content-Type` if it has one.
fn answer(status: StatusCode, body: Bytes, content_type: Option<&'static str>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Some(kind) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    }
    response
}

/// Several siblings: `300 Multiple Choices`, one `multipart/mixed` part per value, each
/// `application/octet-stream` with its length (as Riak answers siblings).
fn multipart(values: &[Bytes]) -> Response<Full<Bytes>> {
    let boundary = boundary_for(values);
    let mut body = Vec::new();
    for value in values {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
        body.extend_from_slice(format!("Content-Length: {}\r\n\r\n", value.len()).as_bytes());
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut response = octets(StatusCode::MULTIPLE_CHOICES, Bytes::from(body));
    if let Ok(value) = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// A boundary that occurs in none of `values`.
fn boundary_for(values: &[Bytes]) -> String {
    (0u64..)
        .map(|n| format!("quickv-sibling-{n:016x}"))
        .find(|b| !values.iter().any(|v| v.windows(b.len()).any(|w| w == b.as_bytes())))
        .unwrap_or_default()
}

pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    answer(status, Bytes::from(value.to_string()), Some("application/json"))
}

/// Every store of `view`, as `GET /v1/stores` lists them.
fn stores_json(view: &ClusterView) -> Vec<serde_json::Value> {
    view.stores().map(|(name, config)| store_json(name, config)).collect()
}

fn store_json(name: &StoreName, config: &StoreConfig) -> serde_json::Value {
    serde_json::json!({
        "name": name.as_str(),
        "n": config.n(),
        "r": config.r(),
        "w": config.w(),
        "quorum": config.quorum_kind().to_string(),
        "conflicts": config.conflicts().to_string(),
    })
}

/// A store to create: `{"name": "carts", "n": 3, "r": 2, "w": 2, "quorum": "sloppy",
/// "conflicts": "siblings"}` (`quorum` and `conflicts` optional: `sloppy`, `siblings`).
fn parse_store(body: &[u8]) -> Result<(StoreName, StoreConfig), ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::malformed(format!("the body is not JSON: {e}")))?;
    let field = |name: &str| value.get(name);
    let number = |name: &str| -> Result<u8, ApiError> {
        field(name)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| ApiError::malformed(format!("\"{name}\" must be a number from 0 to 255")))
    };
    let text = |name: &str, default: &'static str| -> Result<String, ApiError> {
        match field(name) {
            None => Ok(default.to_owned()),
            Some(v) => {
                v.as_str().map(str::to_owned).ok_or_else(|| ApiError::malformed(format!("\"{name}\" must be a string")))
            }
        }
    };
    let name = text("name", "")?;
    let name = StoreName::new(&name).map_err(|e| ApiError::malformed(format!("store name {name:?}: {e}")))?;
    let quorum = text("quorum", "sloppy")?.parse().map_err(|e| ApiError::malformed(format!("{e}")))?;
    let conflicts = text("conflicts", "siblings")?.parse().map_err(|e| ApiError::malformed(format!("{e}")))?;
    let config = StoreConfig::new(number("n")?, number("r")?, number("w")?, quorum, conflicts)
        .map_err(|e| ApiError::malformed(format!("{e}")))?;
    Ok((name, config))
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_to_create_is_read_from_json_and_bad_fields_are_named() {
        let (name, config) = parse_store(br#"{"name":"carts","n":3,"r":2,"w":2}"#).unwrap();
        assert_eq!(name.as_str(), "carts");
        assert_eq!(config, StoreConfig::quorum());
        let (_, lww) = parse_store(br#"{"name":"c","n":1,"r":1,"w":1,"quorum":"strict","conflicts":"lww"}"#).unwrap();
        assert_eq!(lww.to_string(), "n=1 r=1 w=1 quorum=strict conflicts=lww");
        for (body, says) in [
            (&br#"{"name":"c","n":3,"r":2}"#[..], "\"w\""),
            (br#"{"name":"c","n":300,"r":2,"w":2}"#, "\"n\""),
            (br#"{"name":"c","n":3,"r":2,"w":2,"quorum":"maybe"}"#, "maybe"),
            (br#"not json"#, "not JSON"),
        ] {
            let e = parse_store(body).unwrap_err();
            assert_eq!(e.code, "malformed");
            assert!(e.message.contains(says), "{}", e.message);
        }
    }

    #[test]
    fn a_multipart_boundary_never_occurs_in_a_value() {
        let tricky = Bytes::from_static(b"--quickv-sibling-0000000000000000 inside");
        let boundary = boundary_for(&[tricky.clone(), Bytes::from_static(b"b")]);
        assert_ne!(boundary, "quickv-sibling-0000000000000000");
        assert!(!tricky.windows(boundary.len()).any(|w| w == boundary.as_bytes()));
    }
}
