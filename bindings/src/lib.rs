//! # quickv-wasm: quickv for JavaScript
//!
//! A smart client for browsers, Node.js and edge runtimes, built from [`quickv_core`]: it
//! computes each key's replicas exactly as the nodes and the Rust client do, and in a browser
//! runs core's own coordinators over WebTransport (see `client.rs` and `bindings/README.md`).
//!
//! ```js
//! const client = await Client.connect({ seeds: ["https://127.0.0.1:8101"] }); // or { ring }
//! await client.put("default", "cart:42", "apples");
//! const { values, context } = await client.get("default", "cart:42");
//! await client.delete("default", "cart:42", context);
//! ```
//!
//! Routing alone, without a cluster:
//!
//! ```js
//! import { keyToken, Ring } from "quickv-wasm";
//! const ring = new Ring([
//!   { id: "a", address: "10.0.0.1:7100", zone: "z1", capacity: 1 },
//!   { id: "b", address: "10.0.0.2:7100", zone: "z2", capacity: 2 },
//!   { id: "c", address: "10.0.0.3:7100", zone: "z3", capacity: 1 },
//! ]);
//! const { primaries, fallbacks } = ring.preferenceList("cart:42", 3, 2); // or a Uint8Array
//! ```
//!
//! Keys and values are strings (their UTF-8 bytes) or `Uint8Array`s; any other type throws a
//! `TypeError`. The layers: `client.rs` (the API, routing, retries), `drive.rs` (core's
//! coordinators over WebTransport), `https.rs` (the nodes' HTTPS API, for runtimes without
//! WebTransport), `io.rs` + `io.js` (the I/O, in JavaScript), and `convert.rs`, where every
//! conversion between JS values and Rust types lives; errors become JS exceptions (`TypeError`
//! for a wrong type, else an `Error` named `QuickvError` with the HTTPS API's stable code).

mod client;
mod convert;
mod drive;
mod https;
mod io;

pub use client::Client;

use quickv_core::ring::{DEFAULT_PARTITION_BITS, Ring as CoreRing};
use quickv_core::token::Token;
use wasm_bindgen::prelude::*;

pub use convert::PreferenceListJs;

/// The 128-bit ring token of a key (MD5 of its bytes), as 32 lowercase hex digits. The key is a
/// string (its UTF-8 bytes) or a `Uint8Array`; anything else throws a `TypeError`.
#[wasm_bindgen(js_name = keyToken)]
pub fn key_token(
    #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] key: &JsValue,
) -> Result<String, JsValue> {
    Ok(Token::of(&convert::bytes(key, "key")?).to_string())
}

/// The ring token of a text key (its UTF-8 bytes); the same as `keyToken` with a string.
#[wasm_bindgen(js_name = keyTokenOfText)]
pub fn key_token_of_text(key: &str) -> String {
    Token::of(key.as_bytes()).to_string()
}

/// A ring built from a list of nodes, as the cluster builds its first ring.
#[wasm_bindgen]
pub struct Ring {
    inner: CoreRing,
}

#[wasm_bindgen]
impl Ring {
    /// Builds a ring from `nodes` (`[{ id, address, zone, capacity }]`) with
    /// `2^partitionBits` partitions (default 16).
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "NodeSpec[]")] nodes: &JsValue,
        #[wasm_bindgen(js_name = partitionBits)] partition_bits: Option<u8>,
    ) -> Result<Ring, JsError> {
        let membership = convert::membership(nodes)?;
        let inner = CoreRing::build(&membership, partition_bits.unwrap_or(DEFAULT_PARTITION_BITS))?;
        Ok(Ring { inner })
    }

    /// The `n` replicas of `key` (a string or a `Uint8Array`; anything else throws a
    /// `TypeError`) and up to `fallbacks` fallback nodes (default `n`).
    #[wasm_bindgen(js_name = preferenceList)]
    pub fn preference_list(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] key: &JsValue,
        n: usize,
        fallbacks: Option<usize>,
    ) -> Result<PreferenceListJs, JsValue> {
        let token = Token::of(&convert::bytes(key, "key")?);
        let prefs = self.inner.preference_list(token, n, fallbacks.unwrap_or(n));
        Ok(convert::preference_list(&prefs))
    }

    /// Each node's share of the ring, as `{ id: fraction }`.
    #[wasm_bindgen(unchecked_return_type = "Record<string, number>")]
    pub fn shares(&self) -> Result<js_sys::Object, JsError> {
        convert::shares(&self.inner.shares())
    }

    /// Number of partitions.
    #[wasm_bindgen(getter, js_name = partitionCount)]
    pub fn partition_count(&self) -> usize {
        self.inner.partition_count()
    }
}
