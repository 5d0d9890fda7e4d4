// The JavaScript side of quickv-wasm's I/O: WebTransport sessions (browsers), fetch (everywhere)
// and timers. Only I/O lives here; what to send, where and what an answer means is decided in
// Rust by core's machines (src/client.rs, src/drive.rs).

/** Whether this runtime has WebTransport (browsers; not Node or most edge runtimes). */
export function hasWebTransport() {
  return typeof globalThis.WebTransport === "function";
}

/** A promise resolved after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Milliseconds on a monotonic clock. */
export function monotonicMs() {
  return globalThis.performance ? globalThis.performance.now() : Date.now();
}

/** Milliseconds since the Unix epoch (last-writer-wins timestamps). */
export function wallMs() {
  return Date.now();
}

/** Fills `bytes` with random bytes (write ids). */
export function randomFill(bytes) {
  if (globalThis.crypto && globalThis.crypto.getRandomValues) {
    globalThis.crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
}

const hexBytes = (hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));

/** The WebTransport sessions of one client, one per node URL, opened on first use. */
export class Sessions {
  constructor() {
    this.open = new Map();
  }

  session(url, hashes) {
    let entry = this.open.get(url);
    if (!entry) {
      const transport = new globalThis.WebTransport(url, {
        serverCertificateHashes: hashes.map((h) => ({ algorithm: "sha-256", value: hexBytes(h) })),
      });
      entry = { transport, ready: transport.ready.then(() => transport) };
      // A session that fails or closes is opened again on next use.
      const forget = () => {
        if (this.open.get(url) === entry) this.open.delete(url);
      };
      transport.closed.then(forget, forget);
      entry.ready.catch(forget);
      this.open.set(url, entry);
    }
    return entry.ready;
  }

  /**
   * Sends one request frame on a new stream of the session to `url` and resolves the answer
   * frame. Rejects with `{ connect: true }` if no session could be opened (the node never saw
   * the request), else with `{ connect: false }`; both after at most `timeoutMs`.
   */
  async call(url, hashes, frame, timeoutMs) {
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => reject({ connect: false, message: `no answer from ${url} in ${timeoutMs} ms` }), timeoutMs);
    });
    try {
      let transport;
      try {
        transport = await Promise.race([this.session(url, hashes), expired]);
      } catch (e) {
        throw { connect: true, message: `cannot open a WebTransport session to ${url}: ${e && e.message ? e.message : e}` };
      }
      const exchange = async () => {
        const stream = await transport.createBidirectionalStream();
        const writer = stream.writable.getWriter();
        await writer.write(frame);
        await writer.close();
        const reader = stream.readable.getReader();
        const chunks = [];
        let length = 0;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          chunks.push(value);
          length += value.length;
        }
        const answer = new Uint8Array(length);
        let at = 0;
        for (const c of chunks) {
          answer.set(c, at);
          at += c.length;
        }
        return answer;
      };
      try {
        return await Promise.race([exchange(), expired]);
      } catch (e) {
        throw e && e.connect !== undefined ? e : { connect: false, message: `${url}: ${e && e.message ? e.message : e}` };
      }
    } finally {
      clearTimeout(timer);
    }
  }

  close() {
    for (const { transport } of this.open.values()) {
      try {
        transport.close();
      } catch {
        // Already closed.
      }
    }
    this.open.clear();
  }
}

/** Error codes (Node's, undici's) that say no connection was made: the request never left. */
const CONNECT_CODES = new Set([
  "ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_CONNECT", "ERR_TLS_CERT_ALTNAME_INVALID", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "CERT_HAS_EXPIRED",
]);

/**
 * Whether a failed fetch never reached the server: its error (or the error's cause) names a
 * connection failure. A runtime that says nothing of why (browsers) counts as not reached; a
 * request that timed out, or whose connection broke later, may have been acted on.
 */
function neverSent(e) {
  const code = (e && (e.code || (e.cause && e.cause.code))) || undefined;
  if (e && e.name === "AbortError") return false;
  if (code === undefined) return !(e && e.cause);
  return CONNECT_CODES.has(code);
}

/**
 * One HTTPS request with `fetchFn` (the global fetch unless the caller gave one): resolves
 * `{ status, contentType, context, body }` (body a Uint8Array). Rejects with `{ connect }`,
 * true when the request never reached the node (see `neverSent`), when it got no answer in
 * `timeoutMs` or failed. A write carries its id and, sent again, the node it may have reached.
 */
export async function httpsCall(fetchFn, url, method, context, body, timeoutMs, writeId, minter) {
  const headers = {};
  if (context) headers["x-quickv-context"] = context;
  if (body) headers["content-type"] = "application/octet-stream";
  if (writeId) headers["x-quickv-write-id"] = writeId;
  if (minter) headers["x-quickv-minter"] = minter;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await (fetchFn || globalThis.fetch)(url, { method, headers, body: body || undefined, signal: controller.signal });
    const bytes = new Uint8Array(await response.arrayBuffer());
    return {
      status: response.status,
      contentType: response.headers.get("content-type") || "",
      context: response.headers.get("x-quickv-context"),
      body: bytes,
    };
  } catch (e) {
    const connect = !controller.signal.aborted && neverSent(e);
    throw { connect, message: `${method} ${url}: ${e && e.message ? e.message : e}` };
  } finally {
    clearTimeout(timer);
  }
}
