// The nodes' HTTPS API as JavaScript in Node sees it (docs/http-api.md), against a live local
// cluster this test starts (`quickv-node dev`, the binary in QUICKV_NODE_BIN or
// target/debug/quickv-node) and stops by its PID. Run by scripts/test-all.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import https from "node:https";

const root = new URL("../../", import.meta.url).pathname;
const bin = process.env.QUICKV_NODE_BIN ?? join(root, "target/debug/quickv-node");
const base = 20000 + Math.floor(Math.random() * 20000);
const port = base + 1000;
let dir, node, ca;

/** One request; resolves { status, headers, body } (body a Buffer). */
function request(method, path, { body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: "127.0.0.1", port, path, method, headers, ca, servername: "quickv-node", timeout: 10000 },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer in time`)));
    req.on("error", reject);
    req.end(body);
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "quickv-js-"));
  node = spawn(bin, ["dev", "--dir", join(dir, "c"), "--base-port", String(base)], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  node.stdout.on("data", (d) => (out += d));
  node.stderr.resume();
  const deadline = Date.now() + 60000;
  while (!out.includes("HTTPS API")) {
    assert.ok(Date.now() < deadline, `quickv-node dev did not start: ${out}`);
    assert.equal(node.exitCode, null, `quickv-node dev exited: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  ca = readFileSync(join(dir, "c", "ca.pem"));
});

after(() => {
  if (node && node.exitCode === null) node.kill("SIGTERM");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("put, get, siblings and delete over HTTPS", async () => {
  const key = `/v1/stores/default/keys/${encodeURIComponent("cart:42 é")}`;
  const put = await request("PUT", key, { body: "apples" });
  assert.equal(put.status, 204);
  assert.ok(put.headers["x-quickv-context"]);
  const read = await request("GET", key);
  assert.equal(read.status, 200);
  assert.equal(read.body.toString(), "apples");

  // A blind write beside it: two siblings, multipart.
  assert.equal((await request("PUT", key, { body: "pears" })).status, 204);
  const both = await request("GET", key);
  assert.equal(both.status, 300);
  const boundary = both.headers["content-type"].split("boundary=")[1];
  const values = both.body
    .toString()
    .split(`--${boundary}`)
    .filter((p) => p.includes("\r\n\r\n"))
    .map((p) => p.split("\r\n\r\n")[1].replace(/\r\n$/, ""))
    .sort();
  assert.deepEqual(values, ["apples", "pears"]);

  // The read's context replaces both; a delete with the next read's context removes the key.
  const context = both.headers["x-quickv-context"];
  assert.equal((await request("PUT", key, { body: "plums", headers: { "x-quickv-context": context } })).status, 204);
  const one = await request("GET", key);
  assert.equal(one.body.toString(), "plums");
  const del = await request("DELETE", key, { headers: { "x-quickv-context": one.headers["x-quickv-context"] } });
  assert.equal(del.status, 204);
  const gone = await request("GET", key);
  assert.equal(gone.status, 404);
  assert.equal(JSON.parse(gone.body).code, "not_found");
});

test("binary keys and values, and errors with stable codes", async () => {
  const bytes = Buffer.from([0, 1, 0xfe, 0xff]);
  const key = "/v1/stores/default/keys/" + [...Buffer.from([0x00, 0x2f, 0xff])].map((b) => "%" + b.toString(16).padStart(2, "0")).join("");
  assert.equal((await request("PUT", key, { body: bytes })).status, 204);
  const read = await request("GET", key);
  assert.deepEqual(read.body, bytes);

  const cases = [
    ["GET", "/v1/stores/nostore/keys/a", {}, 404, "unknown_store"],
    ["GET", "/v1/stores/default/keys/a%zz", {}, 400, "malformed"],
    ["DELETE", "/v1/stores/default/keys/a", {}, 400, "context_required"],
    ["PUT", "/v1/stores/default/keys/a", { headers: { "x-quickv-context": "garbage!" }, body: "x" }, 400, "invalid_context"],
  ];
  for (const [method, path, options, status, code] of cases) {
    const answer = await request(method, path, options);
    assert.equal(answer.status, status, `${method} ${path}`);
    assert.equal(JSON.parse(answer.body).code, code, `${method} ${path}`);
  }
});

test("the ring and the stores as the node knows them", async () => {
  const ring = JSON.parse((await request("GET", "/v1/ring")).body);
  assert.equal(ring.nodes.length, 3);
  assert.ok(ring.nodes.every((n) => n.status === "up" && n.address.startsWith("127.0.0.1:")));
  assert.ok(ring.ring.epoch >= 1);
  assert.match(ring.view, /^[A-Za-z0-9_-]+$/);
  const stores = JSON.parse((await request("GET", "/v1/stores")).body).stores;
  assert.deepEqual(stores.map((s) => s.name), ["default"]);
});

test("fetch in Node reaches a node by its address, trusting the cluster CA", () => {
  // NODE_EXTRA_CA_CERTS is read as Node starts, so the fetch runs in a child process.
  const script = `fetch("https://127.0.0.1:${port}/v1/stores").then(async (r) => console.log(r.status, await r.text()))`;
  const out = execFileSync(process.execPath, ["-e", script], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, "c", "ca.pem") },
    timeout: 20000,
  }).toString();
  assert.match(out, /^200 \{"stores":\[/);
});
