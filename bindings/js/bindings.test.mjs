// The generated package as a Node user sees it. Run by scripts/test-all after
// `wasm-bindgen --target nodejs --out-dir target/js-pkg ...`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const pkg = process.env.QUICKV_WASM_PKG ?? new URL("../../target/js-pkg/", import.meta.url).pathname;
const require = createRequire(import.meta.url);
const { keyToken, keyTokenOfText, Ring } = require(`${pkg}/quickv_wasm.js`);

const nodes = [
  { id: "a", address: "10.0.0.1:7100", zone: "z1", capacity: 1 },
  { id: "b", address: "10.0.0.2:7100", zone: "z2", capacity: 2 },
  { id: "c", address: "10.0.0.3:7100", zone: "z3", capacity: 1 },
  { id: "d", address: "10.0.0.4:7100", zone: "z1", capacity: 4 },
];

test("keyToken is MD5 of the key bytes", () => {
  assert.equal(keyToken(new Uint8Array()), "d41d8cd98f00b204e9800998ecf8427e");
  assert.equal(keyTokenOfText("cart:42"), keyToken(new TextEncoder().encode("cart:42")));
});

test("keys are strings (their UTF-8 bytes) or Uint8Arrays; other types throw a TypeError", () => {
  const bytes = new TextEncoder().encode("café:42");
  assert.equal(keyToken("café:42"), keyToken(bytes));
  const ring = new Ring(nodes, 8);
  assert.deepEqual(ring.preferenceList("café:42", 3).primaries, ring.preferenceList(bytes, 3).primaries);
  for (const wrong of [42, null, undefined, {}, [1, 2], new ArrayBuffer(2)]) {
    assert.throws(() => keyToken(wrong), TypeError);
    assert.throws(() => ring.preferenceList(wrong, 3), /key must be a string or a Uint8Array/);
  }
});

test("preference lists hold distinct nodes in distinct zones", () => {
  const ring = new Ring(nodes, 12);
  assert.equal(ring.partitionCount, 4096);
  for (let i = 0; i < 200; i++) {
    const { primaries, fallbacks } = ring.preferenceList(new TextEncoder().encode(`k${i}`), 3, 1);
    assert.equal(primaries.length, 3);
    assert.equal(new Set(primaries).size, 3);
    const zones = primaries.map((id) => nodes.find((n) => n.id === id).zone);
    assert.equal(new Set(zones).size, 3);
    assert.equal(fallbacks.length, 1);
    assert.ok(!primaries.includes(fallbacks[0]));
  }
});

test("shares follow capacity", () => {
  const shares = new Ring(nodes).shares();
  assert.ok(Math.abs(shares.d / shares.a - 4) < 0.01);
  const total = Object.values(shares).reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(total - 1) < 1e-9);
});

test("bad input throws an Error with a clear message", () => {
  assert.throws(() => new Ring("nope"), /must be an array/);
  assert.throws(() => new Ring([{ id: "x", address: "h:1", zone: "z", capacity: 1.5 }]), /capacity must be a whole number/);
  assert.throws(() => new Ring([]), /no node/);
});

test("TypeScript types are shipped", () => {
  const dts = readFileSync(`${pkg}/quickv_wasm.d.ts`, "utf8");
  assert.match(dts, /export interface NodeSpec/);
  assert.match(dts, /preferenceList\(key: string \| Uint8Array, n: number, fallbacks\?: number/);
  assert.match(dts, /keyToken\(key: string \| Uint8Array\): string/);
});
