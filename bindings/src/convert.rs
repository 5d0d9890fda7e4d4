//! Every conversion between JavaScript values and core types.

use js_sys::{Array, Object, Reflect, TypeError, Uint8Array};
use quickv_core::identity::NodeId;
use quickv_core::membership::{Membership, NodeInfo};
use quickv_core::ring::PreferenceList;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** A ring member as passed to `new Ring(...)`. */
export interface NodeSpec {
  id: string;
  address: string;
  zone: string;
  /** Positive relative weight. */
  capacity: number;
}
"#;

/// A key's replicas and fallbacks, by node id.
#[wasm_bindgen(js_name = PreferenceList)]
pub struct PreferenceListJs {
    primaries: Vec<String>,
    fallbacks: Vec<String>,
}

#[wasm_bindgen(js_class = PreferenceList)]
impl PreferenceListJs {
    /// The key's replicas, in order.
    #[wasm_bindgen(getter)]
    pub fn primaries(&self) -> Vec<String> {
        self.primaries.clone()
    }

    /// The nodes that stand in for unreachable replicas, in order.
    #[wasm_bindgen(getter)]
    pub fn fallbacks(&self) -> Vec<String> {
        self.fallbacks.clone()
    }
}

/// The bytes of a key or value given as a string (its UTF-8 bytes) or a `Uint8Array` (its
/// bytes); anything else throws a `TypeError` naming `what` (a number or an object would
/// otherwise stand for bytes nobody meant).
pub(crate) fn bytes(value: &JsValue, what: &str) -> Result<Vec<u8>, JsValue> {
    if let Some(text) = value.as_string() {
        return Ok(text.into_bytes());
    }
    if let Some(array) = value.dyn_ref::<Uint8Array>() {
        return Ok(array.to_vec());
    }
    let got = value.js_typeof().as_string().unwrap_or_default();
    let got = if value.is_null() { "null".to_owned() } else { got };
    Err(TypeError::new(&format!("{what} must be a string or a Uint8Array, not {got}")).into())
}

pub(crate) fn preference_list(prefs: &PreferenceList) -> PreferenceListJs {
    let ids = |v: &[NodeId]| v.iter().map(|n| n.to_string()).collect();
    PreferenceListJs { primaries: ids(prefs.primaries()), fallbacks: ids(prefs.fallbacks()) }
}

/// `[{ id, address, zone, capacity }]` into a membership.
pub(crate) fn membership(nodes: &JsValue) -> Result<Membership, JsError> {
    if !Array::is_array(nodes) {
        return Err(JsError::new("nodes must be an array of { id, address, zone, capacity }"));
    }
    let mut membership = Membership::new();
    for (i, node) in Array::from(nodes).iter().enumerate() {
        let text = |field: &str| -> Result<String, JsError> {
            Reflect::get(&node, &JsValue::from_str(field))
                .ok()
                .and_then(|v| v.as_string())
                .ok_or_else(|| JsError::new(&format!("nodes[{i}].{field} must be a string")))
        };
        let capacity = Reflect::get(&node, &JsValue::from_str("capacity"))
            .ok()
            .and_then(|v| v.as_f64())
            .filter(|c| c.fract() == 0.0 && *c >= 1.0 && *c <= f64::from(u32::MAX))
            .ok_or_else(|| JsError::new(&format!("nodes[{i}].capacity must be a whole number of at least 1")))?;
        let info = NodeInfo::new(&text("id")?, &text("address")?, &text("zone")?, capacity as u32)
            .map_err(|e| JsError::new(&format!("nodes[{i}]: {e}")))?;
        if membership.node(&info.id).is_some() {
            return Err(JsError::new(&format!("nodes[{i}]: duplicate id {}", info.id)));
        }
        membership.upsert(info).map_err(|e| JsError::new(&format!("nodes[{i}]: {e}")))?;
    }
    Ok(membership)
}

pub(crate) fn shares(shares: &[(NodeId, f64)]) -> Result<Object, JsError> {
    let out = Object::new();
    for (id, share) in shares {
        Reflect::set(&out, &JsValue::from_str(id.as_str()), &JsValue::from_f64(*share))
            .map_err(|_| JsError::new("could not build the shares object"))?;
    }
    Ok(out)
}

#[wasm_bindgen(typescript_custom_section)]
const CLIENT_TYPES: &str = r#"
/** What `Client.connect` takes. */
export interface ConnectOptions {
  /** HTTPS URLs of nodes (`https://127.0.0.1:8101`) to load the cluster view from. */
  seeds?: string[];
  /** The cluster view: the JSON of `GET /v1/ring` (or its `view` field), for callers that
   *  cannot fetch it from the nodes themselves (a browser served by the app's origin). */
  ring?: object | string;
  /** `"auto"` (default: WebTransport where the runtime has it), `"webtransport"` or `"https"`. */
  transport?: "auto" | "webtransport" | "https";
  /** The most a request to one node may take, in milliseconds (default 2000). */
  timeoutMs?: number;
  /** A `fetch` to use instead of the global one (custom TLS trust, for one). */
  fetch?: (input: string, init?: object) => Promise<Response>;
}

/** What `Client.get` resolves. */
export interface ReadResult {
  /** Every version of the value (several after concurrent writes; none when absent). */
  values: Uint8Array[];
  /** The context to pass to the next put or delete of the key (null: never written). */
  context: string | null;
}

/** Where the last request went. */
export interface Route {
  key: Uint8Array;
  /** The nodes asked, in order, by id. */
  nodes: string[];
}

/** The errors the client throws: a JS `Error` with the HTTP API's stable code. */
export interface QuickvError extends Error {
  code: string;
  status: number;
  retryable: boolean;
  minter?: string;
}
"#;

/// Bytes as lowercase hex (certificate hashes).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A failed request, as the client throws it: a JS `Error` (name `QuickvError`) with the stable
/// `code` and `status` of the HTTPS API (`docs/http-api.md`), `retryable`, and the `minter` of
/// a write that may or may not have been applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientError {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) retryable: bool,
    pub(crate) minter: Option<String>,
}

impl ClientError {
    pub(crate) fn new(status: u16, code: &str, message: &str) -> ClientError {
        let retryable = status == 503 || status == 500 || status == 408;
        ClientError { status, code: code.into(), message: message.into(), retryable, minter: None }
    }

    fn of_kind(kind: quickv_core::error::ErrorKind, message: String, minter: Option<String>) -> ClientError {
        let (status, code) = kind.code();
        ClientError { status, code: code.into(), message, retryable: kind.is_retryable(), minter }
    }

    pub(crate) fn from_get(error: &quickv_core::coordinator::GetError) -> ClientError {
        use quickv_core::coordinator::GetError;
        use quickv_core::error::ErrorKind;
        match error {
            GetError::Refused(refusal) => ClientError::of_kind(refusal.kind, refusal.message.clone(), None),
            other => ClientError::of_kind(ErrorKind::Unavailable, other.to_string(), None),
        }
    }

    pub(crate) fn from_put(error: &quickv_core::coordinator::PutError) -> ClientError {
        use quickv_core::coordinator::PutError;
        use quickv_core::error::ErrorKind;
        let minter = error.minter().map(|m| m.to_string());
        match error {
            PutError::Refused(refusal) => ClientError::of_kind(refusal.kind, refusal.message.clone(), None),
            PutError::Indeterminate { .. } => ClientError::of_kind(ErrorKind::Indeterminate, error.to_string(), minter),
            other => ClientError::of_kind(ErrorKind::Unavailable, other.to_string(), minter),
        }
    }
}

impl From<ClientError> for JsValue {
    fn from(e: ClientError) -> JsValue {
        let error = js_sys::Error::new(&e.message);
        error.set_name("QuickvError");
        let set = |name: &str, value: JsValue| {
            let _ = Reflect::set(&error, &JsValue::from_str(name), &value);
        };
        set("code", JsValue::from_str(&e.code));
        set("status", JsValue::from_f64(f64::from(e.status)));
        set("retryable", JsValue::from_bool(e.retryable));
        if let Some(minter) = &e.minter {
            set("minter", JsValue::from_str(minter));
        }
        error.into()
    }
}

/// A JSON error answer of the HTTPS API as the client throws it.
pub(crate) fn error_of_json(status: u16, body: &[u8]) -> ClientError {
    let json = js_sys::JSON::parse(&String::from_utf8_lossy(body)).unwrap_or(JsValue::UNDEFINED);
    let text = |name: &str| Reflect::get(&json, &JsValue::from_str(name)).ok().and_then(|v| v.as_string());
    let code = text("code").unwrap_or_else(|| "internal".into());
    let message = text("message").unwrap_or_else(|| format!("the node answered {status}"));
    let retryable = Reflect::get(&json, &JsValue::from_str("retryable")).ok().and_then(|v| v.as_bool());
    let mut error = ClientError::new(status, &code, &message);
    error.retryable = retryable.unwrap_or(error.retryable);
    error.minter = text("minter");
    error
}

/// The `code` of a JSON error answer, if it is one.
pub(crate) fn error_code(body: &[u8]) -> Option<String> {
    let json = js_sys::JSON::parse(&String::from_utf8_lossy(body)).ok()?;
    Reflect::get(&json, &JsValue::from_str("code")).ok()?.as_string()
}

/// The values of a `300 Multiple Choices` answer (`multipart/mixed`, each part with its
/// `Content-Length`: `docs/http-api.md`).
pub(crate) fn siblings_of_multipart(content_type: &str, body: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
    let bad = |why: &str| ClientError::new(502, "malformed", &format!("undecodable siblings answer: {why}"));
    let boundary = content_type.split("boundary=").nth(1).map(str::trim).ok_or_else(|| bad("no boundary"))?;
    let delimiter = format!("--{boundary}");
    let mut values = Vec::new();
    let mut rest = body;
    loop {
        rest = rest.strip_prefix(delimiter.as_bytes()).ok_or_else(|| bad("missing boundary"))?;
        if rest.starts_with(b"--") {
            return Ok(values);
        }
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("part without headers"))?;
        let headers = String::from_utf8_lossy(&rest[..end]);
        let length = headers
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
            })
            .ok_or_else(|| bad("part without Content-Length"))?;
        let start = end + 4;
        let value = rest.get(start..start + length).ok_or_else(|| bad("part shorter than its length"))?;
        values.push(value.to_vec());
        rest = rest[start + length..].strip_prefix(b"\r\n").ok_or_else(|| bad("part not followed by CRLF"))?;
    }
}

/// What `Client.connect` was given.
pub(crate) struct ConnectOptions {
    pub(crate) seeds: Vec<String>,
    pub(crate) ring: Option<JsValue>,
    pub(crate) transport: Option<String>,
    pub(crate) timeout: std::time::Duration,
    pub(crate) fetch: JsValue,
}

pub(crate) fn connect_options(options: &JsValue) -> Result<ConnectOptions, JsValue> {
    if !options.is_object() {
        return Err(TypeError::new("Client.connect takes an options object: { seeds } or { ring }").into());
    }
    let field = |name: &str| Reflect::get(options, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
    let seeds = match field("seeds") {
        v if v.is_undefined() => Vec::new(),
        v if Array::is_array(&v) => Array::from(&v)
            .iter()
            .map(|s| s.as_string().ok_or_else(|| JsValue::from(TypeError::new("seeds must be strings (HTTPS URLs)"))))
            .collect::<Result<_, _>>()?,
        _ => return Err(TypeError::new("seeds must be an array of HTTPS URLs").into()),
    };
    let ring = Some(field("ring")).filter(|v| !v.is_undefined() && !v.is_null());
    if seeds.is_empty() && ring.is_none() {
        return Err(TypeError::new("Client.connect needs seeds (HTTPS URLs of nodes) or a ring").into());
    }
    let transport = match field("transport") {
        v if v.is_undefined() => None,
        v => Some(v.as_string().ok_or_else(|| JsValue::from(TypeError::new("transport must be a string")))?),
    };
    let timeout = match field("timeoutMs") {
        v if v.is_undefined() => std::time::Duration::from_secs(2),
        v => match v.as_f64() {
            Some(ms) if ms.is_finite() && ms >= 1.0 => std::time::Duration::from_secs_f64(ms / 1000.0),
            _ => return Err(TypeError::new("timeoutMs must be a number of milliseconds, at least 1").into()),
        },
    };
    let fetch = field("fetch");
    if !fetch.is_undefined() && !fetch.is_function() {
        return Err(TypeError::new("fetch must be a function").into());
    }
    Ok(ConnectOptions { seeds, ring, transport, timeout, fetch })
}

/// The cluster view in the JSON of `GET /v1/ring` (its `view` field), or that field alone.
pub(crate) fn view_of_ring(ring: &JsValue) -> Result<quickv_core::cluster::ClusterView, JsValue> {
    let encoded = match ring.as_string() {
        Some(text) => text,
        None => Reflect::get(ring, &JsValue::from_str("view"))
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(|| JsValue::from(TypeError::new("ring must be the JSON of GET /v1/ring or its view field")))?,
    };
    crate::https::view_of_frame(&encoded)
        .map_err(|e| ClientError::new(400, "malformed", &format!("invalid ring: {e}")).into())
}

/// `{ values, context }` of a read.
pub(crate) fn read_result(values: &[Vec<u8>], context: Option<&str>) -> JsValue {
    let out = Object::new();
    let array: Array = values.iter().map(|v| JsValue::from(Uint8Array::from(v.as_slice()))).collect();
    let _ = Reflect::set(&out, &JsValue::from_str("values"), &array);
    let context = context.map_or(JsValue::NULL, JsValue::from_str);
    let _ = Reflect::set(&out, &JsValue::from_str("context"), &context);
    out.into()
}

/// `{ key, nodes }` of a route.
pub(crate) fn route(route: &crate::client::Route) -> JsValue {
    let out = Object::new();
    let _ = Reflect::set(&out, &JsValue::from_str("key"), &Uint8Array::from(route.key.as_slice()));
    let nodes: Array = route.nodes.iter().map(|n| JsValue::from_str(n.as_str())).collect();
    let _ = Reflect::set(&out, &JsValue::from_str("nodes"), &nodes);
    out.into()
}

/// What a node's HTTPS API answered (`io.js`'s `httpsCall`).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) context: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// The `{ status, contentType, context, body }` `httpsCall` resolves.
pub(crate) fn https_answer(answer: &JsValue) -> Answer {
    let field = |name: &str| Reflect::get(answer, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
    Answer {
        status: field("status").as_f64().unwrap_or(0.0) as u16,
        content_type: field("contentType").as_string().unwrap_or_default(),
        context: field("context").as_string(),
        body: frame_bytes(&field("body")),
    }
}

/// The bytes of a `Uint8Array` the I/O resolved (an answer frame or body).
pub(crate) fn frame_bytes(value: &JsValue) -> Vec<u8> {
    value.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec).unwrap_or_default()
}

/// The cluster view in the body of a `GET /v1/ring` answer.
pub(crate) fn view_of_ring_json(body: &[u8]) -> Result<quickv_core::cluster::ClusterView, JsValue> {
    let json = js_sys::JSON::parse(&String::from_utf8_lossy(body))?;
    view_of_ring(&json)
}

/// Whether a rejection of the I/O (`Sessions.call`, `httpsCall`) says the request never reached
/// the node (no connection).
pub(crate) fn failed_to_connect(failure: &JsValue) -> bool {
    Reflect::get(failure, &JsValue::from_str("connect")).ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

/// The message of a rejection of the I/O.
pub(crate) fn failure_message(failure: &JsValue) -> String {
    Reflect::get(failure, &JsValue::from_str("message"))
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_else(|| "request failed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The siblings answer the HTTPS API writes (`multipart/mixed`, parts with their lengths)
    /// reads back byte for byte, boundary-like and binary bytes included; a damaged one is an
    /// error, not a wrong value.
    #[test]
    fn multipart_siblings_read_back_byte_for_byte() {
        let b = "quickv-sibling-0000000000000001";
        let values: [&[u8]; 3] = [b"apples", b"--quickv-sibling-0000000000000000\r\n\r\n", &[0, 13, 10, 255]];
        let mut body = Vec::new();
        for v in values {
            body.extend_from_slice(format!("--{b}\r\nContent-Type: application/octet-stream\r\n").as_bytes());
            body.extend_from_slice(format!("Content-Length: {}\r\n\r\n", v.len()).as_bytes());
            body.extend_from_slice(v);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        let content_type = format!("multipart/mixed; boundary={b}");
        let read = siblings_of_multipart(&content_type, &body).unwrap();
        assert_eq!(read, values.iter().map(|v| v.to_vec()).collect::<Vec<_>>());
        assert!(siblings_of_multipart("multipart/mixed", &body).is_err(), "no boundary");
        assert!(siblings_of_multipart(&content_type, &body[..body.len() - 20]).is_err(), "cut short");
        let mut lying = body.clone();
        let at = lying.windows(16).position(|w| w == b"Content-Length: ").unwrap() + 16;
        lying[at] = b'9';
        assert!(siblings_of_multipart(&content_type, &lying).is_err(), "a length past its part");
    }
}
