// The wasm client in headless Chromium (Debian's chromium and chromium-driver, driven over
// WebDriver; QUIC left on): the example page (bindings/examples/browser) connects over
// WebTransport with the nodes' certificate hashes, puts and gets against a live cluster of
// three `quickv-node` processes, and reports what it read and where its requests went; the
// value it wrote is then read by the Rust client (the `quickv` tool). With QUICKV_BROWSER_BENCH=N
// the page also times N puts and gets over WebTransport and over HTTPS and the test prints the
// medians. Skipped (with a message) unless CHROMEDRIVER names a driver and target/js-web holds
// the package built for the web; scripts/test-all sets both up.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createHash, X509Certificate } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, until, bin } from "./cluster.mjs";
import { serve } from "../examples/browser/serve.mjs";

const root = new URL("../../", import.meta.url).pathname;
const driverBin = process.env.CHROMEDRIVER;
const chromium = process.env.CHROMIUM ?? "/usr/bin/chromium";
const webPkg = join(root, "target/js-web");
const skip =
  !driverBin || !existsSync(driverBin)
    ? "CHROMEDRIVER is not set to a chromedriver (scripts/test-all installs chromium-driver)"
    : !existsSync(join(webPkg, "quickv_wasm.js"))
      ? "target/js-web has no web build of the package (scripts/test-all builds it)"
      : false;
const quickv = join(bin, "../quickv");

let cluster, server, driver, driverUrl, profile;

/** One WebDriver command. */
async function webdriver(method, path, body) {
  const res = await fetch(`${driverUrl}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`WebDriver ${method} ${path}: ${JSON.stringify(json.value)}`);
  return json.value;
}

/** base64 SHA-256 of a certificate's public key: Chromium's --ignore-certificate-errors-spki-list. */
function spkiHash(pemFile) {
  const cert = new X509Certificate(readFileSync(pemFile));
  return createHash("sha256").update(cert.publicKey.export({ type: "spki", format: "der" })).digest("base64");
}

before(async () => {
  if (skip) return;
  cluster = await startCluster(3);
  // Every node, in order: the first that answers serves the view (the tests stop nodes).
  server = await serve({ port: 0, node: [0, 1, 2, 3].map((i) => cluster.https(i)), ca: cluster.ca, pkg: webPkg });
  const port = 30000 + Math.floor(Math.random() * 20000);
  driver = spawn(driverBin, [`--port=${port}`], { stdio: "ignore" });
  driverUrl = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${driverUrl}/status`)).ok, 20000, "chromedriver");
  profile = mkdtempSync(join(tmpdir(), "quickv-chromium-"));
});

after(async () => {
  if (driver && driver.exitCode === null) driver.kill("SIGTERM");
  if (server) server.close();
  if (cluster) await cluster.stopAll();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** Loads the page in a fresh headless Chromium and resolves what it reports. */
async function runPage(query) {
  // The HTTPS API's certificates come from the cluster CA, which Chromium does not know: the
  // HTTPS timings trust the nodes' keys by hash. WebTransport needs nothing of the kind: the
  // page trusts each node by the certificate hash in the view.
  const spki = cluster.procs.map((_, i) => spkiHash(join(cluster.dir, `n${i + 1}`, "node.pem")));
  const args = [
    "--headless",
    "--no-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    `--user-data-dir=${join(profile, String(Date.now()))}`,
    `--ignore-certificate-errors-spki-list=${spki.join(",")}`,
  ];
  const session = await webdriver("POST", "/session", {
    capabilities: { alwaysMatch: { browserName: "chrome", "goog:chromeOptions": { binary: chromium, args } } },
  });
  const id = session.sessionId;
  try {
    await webdriver("POST", `/session/${id}/url`, { url: `http://127.0.0.1:${server.address().port}/${query}` });
    let result = null;
    await until(async () => {
      result = await webdriver("POST", `/session/${id}/execute/sync`, { script: "return window.quickvResult ?? null", args: [] });
      return result !== null;
    }, 120000, "the page's result");
    return result;
  } finally {
    await webdriver("DELETE", `/session/${id}`).catch(() => {});
  }
}

test("the browser puts and gets over WebTransport at the key's replicas, and Rust reads what it wrote", { skip }, async () => {
  const key = `browser:${Date.now()}`;
  const result = await runPage(`?key=${encodeURIComponent(key)}`);
  assert.equal(result.ok, true, result.error);
  assert.equal(result.transport, "webtransport");
  assert.deepEqual(result.read, [result.value], "the value round-trips");
  assert.ok(result.context && result.putContext);
  // The put went to one replica (which coordinated it); the get asked the replicas itself.
  assert.equal(result.primaries.length, 3);
  assert.ok(result.primaries.includes(result.putRoute[0]), `put sent to ${result.putRoute}`);
  assert.ok(result.getRoute.length >= 2 && result.getRoute.every((n) => result.primaries.includes(n)), `get asked ${result.getRoute}`);
  // The Rust client reads the value the browser wrote.
  const read = execFileSync(quickv, ["--seeds", `127.0.0.1:${cluster.base}`, "--ca", join(cluster.dir, "ca.pem"), "get", key], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  assert.equal(read.toString(), result.value);
});

test("a browser that loaded a view before a node joined is told it is stale and loads it again", { skip }, async () => {
  server.ring = await cluster.ring(0);
  const before = server.ring.ring.epoch;
  try {
    await cluster.addNode();
    const result = await runPage(`?key=stale-${Date.now()}`);
    assert.equal(result.ok, true, result.error);
    assert.deepEqual(result.read, [result.value]);
    assert.equal(result.epochs[0], before, "the page connected with the old view");
    assert.ok(result.epochs[1] > before, `the client loaded the new view: ${result.epochs}`);
    assert.equal(result.primaries.length, 3);
  } finally {
    server.ring = null;
  }
});

test("with the key's first replica stopped, the browser's coordinators go on with the others", { skip }, async () => {
  // Where the key lives, by the same core in Node.
  const { createRequire } = await import("node:module");
  const { Client } = createRequire(import.meta.url)(join(root, "target/js-pkg/quickv_wasm.js"));
  // A key whose first replica is n1: the node the servers here ask first (the hardest case).
  const local = await Client.connect({ ring: await cluster.ring(0), transport: "https", fetch: cluster.fetch });
  let n = 0;
  while (local.preferenceList("default", `failover-${n}`).primaries[0] !== "n1") n++;
  const key = `failover-${n}`;
  const first = "n1";
  local.close();
  // The page gets the view from before the stop (the node the server asks may be the one stopped).
  server.ring = await cluster.ring(0);
  await cluster.stop(Number(first.slice(1)) - 1);
  let result;
  try {
    result = await runPage(`?key=${encodeURIComponent(key)}`);
  } finally {
    server.ring = null;
  }
  assert.equal(result.ok, true, result.error);
  assert.deepEqual(result.read, [result.value]);
  assert.equal(result.putRoute[0], first, "the put went to the first replica first");
  assert.ok(result.putRoute.length >= 2, `then to the next: ${result.putRoute}`);
  // The put found it down: the get that follows asks the others (and the fallback) instead.
  assert.ok(!result.getRoute.includes(first), `the get skipped the replica found down: ${result.getRoute}`);
  assert.ok(result.getRoute.length >= 2);
});

test("browser latency, WebTransport against HTTPS (QUICKV_BROWSER_BENCH rounds)", { skip: skip || !process.env.QUICKV_BROWSER_BENCH }, async () => {
  const rounds = Number(process.env.QUICKV_BROWSER_BENCH);
  const runs = [];
  for (let i = 0; i < Number(process.env.QUICKV_BROWSER_RUNS ?? 3); i++) {
    const result = await runPage(`?bench=${rounds}`);
    assert.equal(result.ok, true, result.error);
    runs.push({ webtransport: result.webtransport, https: result.https });
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const of = (way, op) => median(runs.map((r) => r[way][op])).toFixed(2);
  console.log(`browser latency, ${runs.length} runs of ${rounds} sequential ops, median of the runs' medians (ms):`);
  console.log(`  put: webtransport ${of("webtransport", "put_ms")}  https ${of("https", "put_ms")}`);
  console.log(`  get: webtransport ${of("webtransport", "get_ms")}  https ${of("https", "get_ms")}`);
  console.log(`  runs: ${JSON.stringify(runs)}`);
});
