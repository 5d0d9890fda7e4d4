// A local cluster for the JS tests: `quickv-node` processes on loopback (the binary in
// QUICKV_NODE_BIN or target/debug/quickv-node), each with its HTTPS API, started and stopped by
// PID. Not a test file: the tests import it.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import https from "node:https";

const root = new URL("../../", import.meta.url).pathname;
export const bin = process.env.QUICKV_NODE_BIN ?? join(root, "target/debug/quickv-node");

/**
 * A `fetch` for Node that trusts `ca` (the cluster CA, PEM): enough of the Fetch API for the
 * client (status, headers.get, arrayBuffer, an abort signal).
 */
export function fetchTrusting(ca) {
  return (url, init = {}) =>
    new Promise((resolve, reject) => {
      const req = https.request(url, { method: init.method ?? "GET", headers: init.headers ?? {}, ca }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const body = Buffer.concat(chunks);
          resolve({
            status: res.statusCode,
            headers: { get: (name) => res.headers[name.toLowerCase()] ?? null },
            arrayBuffer: async () => body.buffer.slice(body.byteOffset, body.byteOffset + body.length),
          });
        });
        res.on("error", reject);
      });
      req.on("error", reject);
      if (init.signal) init.signal.addEventListener("abort", () => req.destroy(new Error("aborted")));
      req.end(init.body ? Buffer.from(init.body) : undefined);
    });
}

/** Polls `check` every 100 ms until it returns true; throws after `ms`. */
export async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not yet.
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts `count` nodes (`quickv-node run`, one process each) in a new cluster folder; resolves
 * once the first node's ring holds them all. Node i (0-based) is `n{i+1}`, QUIC on base + i,
 * HTTPS on base + 1000 + i.
 */
export async function startCluster(count = 3) {
  const dir = mkdtempSync(join(tmpdir(), "quickv-js-"));
  const base = 20000 + Math.floor(Math.random() * 20000);
  execFileSync(bin, ["init", "--dir", dir], { stdio: "ignore" });
  const ca = readFileSync(join(dir, "ca.pem"));
  const cluster = {
    dir,
    ca,
    base,
    procs: [],
    fetch: fetchTrusting(ca),
    https: (i) => `https://127.0.0.1:${base + 1000 + i}`,
    seeds: () => cluster.procs.map((_, i) => cluster.https(i)),
    async ring(i = 0) {
      const res = await cluster.fetch(`${cluster.https(i)}/v1/ring`);
      return JSON.parse(Buffer.from(await res.arrayBuffer()).toString());
    },
    /** Stops node i by its PID and waits for it to exit. */
    async stop(i) {
      const proc = cluster.procs[i];
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGKILL");
      await exited;
    },
    /** Starts node i, joining through node 0 unless it is node 0. */
    start(i) {
      const args = ["run", "--dir", join(dir, `n${i + 1}`), "--ca-dir", dir, "--listen", `127.0.0.1:${base + i}`];
      args.push("--http", `127.0.0.1:${base + 1000 + i}`, "--zone", `z${i + 1}`);
      if (i > 0) args.push("--seeds", `127.0.0.1:${base}`);
      const proc = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
      proc.stderr.resume();
      cluster.procs[i] = proc;
    },
    /** Starts one more node and waits until every node's ring holds it. */
    async addNode() {
      cluster.start(cluster.procs.length);
      await cluster.settled();
    },
    /** Waits until every running node's ring holds every node, with no ring change under way. */
    async settled() {
      const count = cluster.procs.length;
      await until(async () => {
        const rings = await Promise.all(cluster.procs.map((_, i) => cluster.ring(i)));
        const settled = (r) =>
          r.ring && !r.changing && r.ring.members.length === count && r.nodes.length === count && r.nodes.every((n) => n.status === "up" && n.https);
        return rings.every(settled) && rings.every((r) => r.ring.digest === rings[0].ring.digest);
      }, 60000, `${count} nodes in the ring`);
    },
    async stopAll() {
      for (let i = 0; i < cluster.procs.length; i++) await cluster.stop(i);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (let i = 0; i < count; i++) cluster.start(i);
  await cluster.settled();
  return cluster;
}
