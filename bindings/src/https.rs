//! The HTTPS way to the nodes (Node.js and edge runtimes, which have no WebTransport): each
//! request goes to the HTTPS API (`docs/http-api.md`) of the key's preference-list nodes, in
//! order, the first that answers coordinating it; a node that cannot be reached, or that answers
//! a retryable error, passes the request to the next.
//!
//! A write that reached a node but got no answer may have been applied there: its next attempts
//! name it by its id and go to that node only (see [`write`]), so it is applied once, as over
//! WebTransport.

use quickv_core::cluster::ClusterView;
use quickv_core::coordinator::ReplicaFailure;
use quickv_core::identity::NodeId;
use quickv_core::ring::PreferenceList;
use quickv_core::store::StoreName;
use quickv_core::version::CausalContext;
use quickv_core::wire::{self, Message, Response};
use wasm_bindgen_futures::JsFuture;

use crate::client::Inner;
use crate::convert::{self, Answer, ClientError};
use crate::io;

/// Why a request got no answer: `sent` when it may have reached the node (it may have acted on
/// it), and what went wrong.
struct NoAnswer {
    sent: bool,
    message: String,
}

/// One request to `url`; a write names its id and, sent again, the node that may have applied
/// it (`retry`).
async fn call(
    inner: &Inner,
    url: &str,
    method: &str,
    (context, body): (Option<String>, Option<Vec<u8>>),
    retry: (Option<String>, Option<String>),
) -> Result<Answer, NoAnswer> {
    let timeout_ms = inner.timeout().as_secs_f64() * 1000.0 * 3.0;
    let promise = io::https_call(inner.fetch(), url, method, context, body, timeout_ms, retry.0, retry.1);
    let answer = JsFuture::from(promise)
        .await
        .map_err(|e| NoAnswer { sent: !convert::failed_to_connect(&e), message: convert::failure_message(&e) })?;
    Ok(convert::https_answer(&answer))
}

/// The view a seed (`https://host:port`) serves at `GET /v1/ring`.
pub(crate) async fn ring(inner: &Inner, seed: &str) -> Result<ClusterView, ClientError> {
    let url = format!("{}/v1/ring", seed.trim_end_matches('/'));
    let answer = call(inner, &url, "GET", (None, None), (None, None)).await.map_err(|e| {
        ClientError::new(503, "unavailable", &format!("cannot load the ring from {seed}: {}", e.message))
    })?;
    if answer.status != 200 {
        return Err(error_of(&answer));
    }
    convert::view_of_ring_json(&answer.body)
        .map_err(|_| ClientError::new(502, "malformed", &format!("{url} answered no cluster view")))
}

/// The URL of `key` in `store` at the node's HTTPS address.
fn key_url(https: &str, store: &StoreName, key: &[u8]) -> String {
    format!("https://{https}/v1/stores/{}/keys/{}", percent(store.as_str().as_bytes()), percent(key))
}

/// Every byte but the unreserved characters of RFC 3986 as `%XX` (`docs/http-api.md`).
fn percent(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key's nodes that serve HTTPS, with their addresses: in preference order, those the
/// client holds down last.
fn candidates(inner: &Inner, prefs: &PreferenceList) -> Vec<(NodeId, String)> {
    let table = inner.view();
    let down = inner.health().held_down(prefs);
    let (later, first): (Vec<_>, Vec<_>) = prefs
        .primaries()
        .iter()
        .chain(prefs.fallbacks())
        .filter_map(|id| {
            let https = table.view().membership().node(id)?.web.https()?.to_owned();
            Some((id.clone(), https))
        })
        .partition(|(id, _)| down.contains(id));
    first.into_iter().chain(later).collect()
}

/// The error a node's JSON error answer describes.
fn error_of(answer: &Answer) -> ClientError {
    convert::error_of_json(answer.status, &answer.body)
}

/// Whether an error answer lets the next node try: the node could not serve it now.
fn passes_on(answer: &Answer) -> bool {
    answer.status == 503 || answer.status == 500 || answer.status == 408
}

/// Reads `key` from the first of its nodes that answers. Returns the read and the nodes asked.
pub(crate) async fn get(
    inner: &Inner,
    prefs: &PreferenceList,
    store: &StoreName,
    key: &[u8],
) -> (Result<(Vec<Vec<u8>>, Option<String>), ClientError>, Vec<NodeId>) {
    let mut asked = Vec::new();
    let mut last = ClientError::new(503, "unavailable", "no node of the key serves HTTPS");
    for (node, https) in candidates(inner, prefs) {
        asked.push(node.clone());
        let answer = match call(inner, &key_url(&https, store, key), "GET", (None, None), (None, None)).await {
            Ok(answer) => answer,
            Err(e) => {
                inner.health().heard(&node, Some(&ReplicaFailure::Unavailable));
                last = ClientError::new(503, "unavailable", &e.message);
                continue;
            }
        };
        inner.health().heard(&node, None);
        // An empty context (a key never written) reads as none, as over WebTransport.
        let context = answer.context.clone().filter(|c| c.parse::<CausalContext>().is_ok_and(|c| !c.is_empty()));
        let read = match answer.status {
            200 => Ok((vec![answer.body.clone()], context)),
            300 => convert::siblings_of_multipart(&answer.content_type, &answer.body).map(|v| (v, context)),
            // Absent (a deleted key's answer carries its context).
            404 if convert::error_code(&answer.body).as_deref() == Some("not_found") => Ok((Vec::new(), context)),
            _ if passes_on(&answer) => {
                last = error_of(&answer);
                continue;
            }
            _ => Err(error_of(&answer)),
        };
        return (read, asked);
    }
    (Err(last), asked)
}

/// Writes (or, without a value, deletes) `key` at the first of its nodes that takes it.
/// Returns the context of the new state and the nodes asked.
///
/// Every attempt names the write by one id (`write_id`). Once an attempt may have been applied
/// (it reached a node and got no answer, or the node's error names the write's minter), the
/// attempts after it send the write again to that node only (through whichever node answers):
/// it applies the write, or answers that it had. So a write is applied once, as over
/// WebTransport; if that node stays away, the write fails naming it (`indeterminate`).
pub(crate) async fn write(
    inner: &Inner,
    prefs: &PreferenceList,
    (store, key): (&StoreName, &[u8]),
    (value, context): (Option<Vec<u8>>, Option<String>),
    write_id: String,
) -> (Result<String, ClientError>, Vec<NodeId>) {
    let method = if value.is_some() { "PUT" } else { "DELETE" };
    let mut asked = Vec::new();
    let mut last = ClientError::new(503, "unavailable", "no node of the key serves HTTPS");
    let mut minter: Option<String> = None;
    for (node, https) in candidates(inner, prefs) {
        asked.push(node.clone());
        let url = key_url(&https, store, key);
        let retry = (Some(write_id.clone()), minter.clone());
        let answer = match call(inner, &url, method, (context.clone(), value.clone()), retry).await {
            Ok(answer) => answer,
            Err(e) => {
                inner.health().heard(&node, Some(&ReplicaFailure::Unavailable));
                if e.sent && minter.is_none() {
                    // The node took the write, maybe: it is the one to ask again.
                    minter = Some(node.to_string());
                }
                last = ClientError::new(503, "unavailable", &e.message);
                if let Some(node) = &minter {
                    last = ClientError::new(503, "indeterminate", &e.message);
                    last.minter = Some(node.clone());
                }
                continue;
            }
        };
        inner.health().heard(&node, None);
        match answer.status {
            204 | 200 => return (Ok(answer.context.unwrap_or_default()), asked),
            _ if passes_on(&answer) => {
                last = error_of(&answer);
                minter = minter.or_else(|| last.minter.clone());
            }
            _ => return (Err(error_of(&answer)), asked),
        }
    }
    (Err(last), asked)
}

/// Decodes the `view` field of `GET /v1/ring` (a native `Response::Cluster` frame, base64url).
pub(crate) fn view_of_frame(encoded: &str) -> Result<ClusterView, String> {
    use base64::Engine as _;
    let frame = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim())
        .map_err(|_| "the view is not base64url".to_string())?;
    match wire::decode(&frame) {
        Ok(Message::Response { body: Response::Cluster(view), .. }) => Ok(view),
        Ok(_) => Err("the view is not a cluster view frame".into()),
        Err(e) => Err(format!("the view does not decode: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_encoded_but_for_unreserved_characters() {
        assert_eq!(percent(b"cart:42"), "cart%3A42");
        assert_eq!(percent(b"a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(percent(&[0, 255, b'/', b'%']), "%00%FF%2F%25");
        assert_eq!(percent("é".as_bytes()), "%C3%A9");
        let store = StoreName::default_store();
        assert_eq!(key_url("127.0.0.1:8101", &store, b"k/1"), "https://127.0.0.1:8101/v1/stores/default/keys/k%2F1");
    }

    /// The `view` field of `GET /v1/ring` decodes to the view it encodes; other text does not.
    #[test]
    fn ring_views_decode_from_their_frames() {
        use base64::Engine as _;
        let mut view = ClusterView::new(4);
        view.upsert_node(quickv_core::membership::NodeInfo::new("n1", "127.0.0.1:7101", "z", 1).unwrap()).unwrap();
        let frame = wire::encode(&Message::Response { id: 0, body: Response::Cluster(view.clone()) });
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&frame);
        assert_eq!(view_of_frame(&encoded), Ok(view));
        assert!(view_of_frame("!!").unwrap_err().contains("base64url"));
        let other = wire::encode(&Message::Response { id: 0, body: Response::Ack });
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&other);
        assert!(view_of_frame(&other).unwrap_err().contains("not a cluster view"));
    }
}
