// Serves the browser example: the page, the wasm package built for the web
// (`wasm-bindgen --target web --out-dir target/js-web ...`, see bindings/README.md) and
// /ring.json, the cluster view a node answers at GET /v1/ring (fetched trusting the cluster CA:
// the browser then trusts each node by its certificate hash, in the view).
//
//   node bindings/examples/browser/serve.mjs [--port 8080] [--node https://127.0.0.1:8101,https://127.0.0.1:8102] [--ca quickv-dev/ca.pem]
import http from "node:http";
import https from "node:https";
import { readFileSync, existsSync } from "node:fs";
import { join, normalize, extname } from "node:path";
import { parseArgs } from "node:util";

const here = new URL(".", import.meta.url).pathname;
const root = join(here, "../../..");

/** Starts the server; resolves it once it listens. Setting `server.ring` serves that view
 *  instead of the node's (a test's stale view). */
export function serve({ port = 8080, node = "https://127.0.0.1:8101", ca, pkg = join(root, "target/js-web") }) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/ring.json" && server.ring) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(server.ring));
      return;
    }
    if (path === "/ring.json") {
      // The first node (of `node`: one URL or a list) that answers.
      const nodes = Array.isArray(node) ? [...node] : [node];
      const next = (last) => {
        const url = nodes.shift();
        if (!url) {
          res.writeHead(502, { "content-type": "application/json" });
          res.end(JSON.stringify({ code: "unavailable", message: `no node answered: ${last}` }));
          return;
        }
        https
          .get(`${url}/v1/ring`, { ca }, (ring) => {
            res.writeHead(ring.statusCode, { "content-type": "application/json" });
            ring.pipe(res);
          })
          .on("error", next);
      };
      next("none given");
      return;
    }
    const file =
      path === "/" || path === "/index.html"
        ? join(here, "index.html")
        : path.startsWith("/pkg/")
          ? join(pkg, normalize(path.slice("/pkg/".length)).replace(/^(\.\.[/\\])+/, ""))
          : null;
    if (!file || !existsSync(file)) {
      res.writeHead(404);
      res.end("not found");
      return;
    }
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: "8080" },
      node: { type: "string", default: "https://127.0.0.1:8101,https://127.0.0.1:8102,https://127.0.0.1:8103" },
      ca: { type: "string", default: "quickv-dev/ca.pem" },
    },
  });
  const server = await serve({ port: Number(values.port), node: values.node.split(","), ca: readFileSync(values.ca) });
  console.log(`open http://127.0.0.1:${server.address().port}/ in a browser with WebTransport (Chromium, Firefox)`);
}
