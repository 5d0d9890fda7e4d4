// The wasm client (quickv-wasm's `Client`) in Node.js, over HTTPS (Node has no WebTransport),
// against a live local cluster of three `quickv-node` processes this test starts and stops by
// PID (bindings/js/cluster.mjs). Run by scripts/test-all, with the package built into
// target/js-pkg (wasm-bindgen --target nodejs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { startCluster } from "./cluster.mjs";

const require = createRequire(import.meta.url);
const pkg = process.env.QUICKV_JS_PKG ?? new URL("../../target/js-pkg/quickv_wasm.js", import.meta.url).pathname;
const { Client } = require(pkg);

let cluster;
const text = (bytes) => Buffer.from(bytes).toString();

before(async () => {
  cluster = await startCluster(3);
});

after(async () => {
  if (cluster) await cluster.stopAll();
});

const connect = (options = {}) => Client.connect({ seeds: cluster.seeds(), fetch: cluster.fetch, ...options });

test("put, get, siblings and delete round-trip, routed to the key's replicas", async () => {
  const client = await connect();
  assert.equal(client.transport, "https");
  const key = "cart:42 é/x";
  const first = await client.put("default", key, "apples");
  assert.equal(typeof first, "string");
  // The request went to a replica of the key: the first node of its preference list.
  const prefs = client.preferenceList("default", key);
  assert.equal(prefs.primaries.length, 3);
  assert.deepEqual(client.lastRoute.nodes, [prefs.primaries[0]]);
  assert.equal(text(client.lastRoute.key), key);

  const read = await client.get("default", key);
  assert.deepEqual(read.values.map(text), ["apples"]);
  assert.ok(read.context);

  // A blind write beside it: two siblings; a put with the read's context replaces both.
  await client.put("default", key, new TextEncoder().encode("pears"));
  const both = await client.get("default", key);
  assert.deepEqual(both.values.map(text).sort(), ["apples", "pears"]);
  await client.put("default", key, "plums", both.context);
  const one = await client.get("default", key);
  assert.deepEqual(one.values.map(text), ["plums"]);

  // Binary keys and values.
  const binary = Uint8Array.from([0, 255, 47, 37, 10]);
  await client.put("default", binary, Uint8Array.from([1, 2, 0, 3]));
  assert.deepEqual([...(await client.get("default", binary)).values[0]], [1, 2, 0, 3]);

  // A delete with the read's context removes the key; its context stays for the next write.
  await client.delete("default", key, one.context);
  const gone = await client.get("default", key);
  assert.deepEqual(gone.values, []);
  const absent = await client.get("default", "never-written");
  assert.deepEqual(absent, { values: [], context: null });
  client.close();
});

test("wrong argument types raise TypeError; bad requests raise errors with the API's codes", async () => {
  const client = await connect();
  assert.throws(() => client.get("default", 42), TypeError);
  assert.throws(() => client.get("default", { key: "x" }), TypeError);
  assert.throws(() => client.put("default", "k", 7), TypeError);
  assert.throws(() => client.delete("default", "k"), TypeError);
  await assert.rejects(Client.connect({}), TypeError);
  await assert.rejects(Client.connect({ seeds: "https://x" }), TypeError);
  await assert.rejects(connect({ transport: "carrier-pigeon" }), TypeError);
  await assert.rejects(connect({ transport: "webtransport" }), { code: "malformed" });

  await assert.rejects(client.get("nope", "k"), { name: "QuickvError", code: "unknown_store", status: 404 });
  await assert.rejects(client.put("default", "k", "v", "not-a-context"), { code: "invalid_context", status: 400 });
  await assert.rejects(client.get("default", ""), { code: "malformed", status: 400 });
  // A context sealed for another key is refused by the node, with its code.
  const ctx = await client.put("default", "a", "1");
  await assert.rejects(client.put("default", "b", "2", ctx), { code: "invalid_context", status: 400 });
  client.close();
  await assert.rejects(client.get("default", "a"), { code: "closed" });
});

test("a client loads the view from the ring JSON it is given", async () => {
  const ring = await cluster.ring(1);
  const client = await Client.connect({ ring, transport: "https", fetch: cluster.fetch });
  await client.put("default", "from-ring", "yes");
  assert.deepEqual((await client.get("default", "from-ring")).values.map(text), ["yes"]);
  await assert.rejects(Client.connect({ ring: { view: "!!!" } }), { code: "malformed" });
  client.close();
});

test("a write whose answer was lost is sent again to the node that took it, and applied once", async () => {
  // The first PUT reaches its node and is applied; its answer is lost (a reset connection).
  let lost = 0;
  const losing = async (url, init = {}) => {
    const res = await cluster.fetch(url, init);
    if (init.method === "PUT" && lost === 0) {
      lost++;
      await res.arrayBuffer();
      throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    }
    return res;
  };
  const client = await Client.connect({ seeds: cluster.seeds(), fetch: losing });
  const key = `lost-answer-${Date.now()}`;
  await client.put("default", key, "once");
  assert.equal(lost, 1);
  const prefs = client.preferenceList("default", key);
  assert.deepEqual(client.lastRoute.nodes, prefs.primaries.slice(0, 2), "sent again, through the next node");
  const read = await client.get("default", key);
  assert.deepEqual(read.values.map(text), ["once"], "applied once, not as two siblings");
  client.close();
});

test("the Node example runs against the cluster", async () => {
  const { execFileSync } = await import("node:child_process");
  const { join } = await import("node:path");
  const example = new URL("../examples/node.mjs", import.meta.url).pathname;
  const out = execFileSync(process.execPath, [example], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: join(cluster.dir, "ca.pem"), QUICKV_HTTPS_SEEDS: cluster.seeds().join(","), QUICKV_JS_PKG: pkg },
  }).toString();
  assert.match(out, /cart:42 holds (apples and pears|pears and apples)/);
  assert.match(out, /now: apples, pears/);
  assert.match(out, /after delete: 0 values/);
  assert.match(out, /unknown_store \(404\)/);
});

// Last: it stops a node.
test("with the first preference-list node stopped, requests fail over along the list", async () => {
  const client = await connect();
  const key = "failover-key";
  await client.put("default", key, "before");
  const prefs = client.preferenceList("default", key);
  const first = Number(prefs.primaries[0].slice(1)) - 1; // n1 -> 0
  await cluster.stop(first);
  const read = await client.get("default", key);
  assert.deepEqual(read.values.map(text), ["before"]);
  assert.deepEqual(client.lastRoute.nodes, prefs.primaries.slice(0, 2), "asked the first, then the second");
  // The node found down is asked last: the next write goes to the second at once.
  await client.put("default", key, "after", read.context);
  assert.deepEqual(client.lastRoute.nodes, [prefs.primaries[1]]);
  assert.deepEqual((await client.get("default", key)).values.map(text), ["after"]);
  client.close();
});
