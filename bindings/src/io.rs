//! The JavaScript I/O the client uses (`io.js`): WebTransport sessions, fetch and timers.

use js_sys::Promise;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/io.js")]
extern "C" {
    /// Whether the runtime has WebTransport.
    #[wasm_bindgen(js_name = hasWebTransport)]
    pub(crate) fn has_web_transport() -> bool;
    /// Resolves after `ms` milliseconds.
    pub(crate) fn sleep(ms: f64) -> Promise;
    /// A monotonic clock, in milliseconds.
    #[wasm_bindgen(js_name = monotonicMs)]
    pub(crate) fn monotonic_ms() -> f64;
    /// The wall clock, in milliseconds since the Unix epoch.
    #[wasm_bindgen(js_name = wallMs)]
    pub(crate) fn wall_ms() -> f64;
    /// Fills `bytes` with random bytes.
    #[wasm_bindgen(js_name = randomFill)]
    pub(crate) fn random_fill(bytes: &mut [u8]);

    /// One client's WebTransport sessions, one per node.
    pub(crate) type Sessions;
    #[wasm_bindgen(constructor)]
    pub(crate) fn new() -> Sessions;
    /// Sends one frame on a new stream of the session to `url`; resolves the answer's bytes.
    #[wasm_bindgen(method)]
    pub(crate) fn call(this: &Sessions, url: &str, hashes: Vec<String>, frame: Vec<u8>, timeout_ms: f64) -> Promise;
    /// Closes every session.
    #[wasm_bindgen(method)]
    pub(crate) fn close(this: &Sessions);

    /// One HTTPS request; resolves `{ status, contentType, context, body }`. A write names its
    /// id, and a retry the node that may have applied it.
    #[wasm_bindgen(js_name = httpsCall)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn https_call(
        fetch: &JsValue,
        url: &str,
        method: &str,
        context: Option<String>,
        body: Option<Vec<u8>>,
        timeout_ms: f64,
        write_id: Option<String>,
        minter: Option<String>,
    ) -> Promise;
}
