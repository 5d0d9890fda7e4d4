// quickv from Node.js: the wasm client over HTTPS, against `quickv-node dev`.
//
//   cargo run --release -p quickv-server --bin quickv-node -- dev     # in another terminal
//   scripts/build-js                                                  # builds target/js-pkg
//   NODE_EXTRA_CA_CERTS=quickv-dev/ca.pem node bindings/examples/node.mjs
//
// NODE_EXTRA_CA_CERTS makes Node's fetch trust the cluster CA (or pass `fetch` to connect).
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Client } = require(process.env.QUICKV_JS_PKG ?? new URL("../../target/js-pkg/quickv_wasm.js", import.meta.url).pathname);
const seeds = (process.env.QUICKV_HTTPS_SEEDS ?? "https://127.0.0.1:8101,https://127.0.0.1:8102").split(",");

const client = await Client.connect({ seeds });
const text = (bytes) => new TextDecoder().decode(bytes);

await client.put("default", "cart:42", "apples");
await client.put("default", "cart:42", "pears"); // blind: a sibling of "apples"
const read = await client.get("default", "cart:42");
console.log(`cart:42 holds ${read.values.map(text).join(" and ")} (sent to ${client.lastRoute.nodes[0]} over ${client.transport})`);

await client.put("default", "cart:42", "apples, pears", read.context); // replaces both
console.log(`now: ${(await client.get("default", "cart:42")).values.map(text)}`);

const again = await client.get("default", "cart:42");
await client.delete("default", "cart:42", again.context);
console.log(`after delete: ${(await client.get("default", "cart:42")).values.length} values`);

try {
  await client.get("no-such-store", "k");
} catch (e) {
  console.log(`errors carry the HTTP API's codes: ${e.code} (${e.status}): ${e.message}`);
}
client.close();
