// The npm package scripts/build-js makes (target/npm/quickv-wasm-*.tgz) installs into a new
// project without the network and loads in Node: its entry, types and both builds are there.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("../../", import.meta.url).pathname;
const npmDir = join(root, "target/npm");
const tarball = existsSync(npmDir) ? readdirSync(npmDir).find((f) => /^quickv-wasm-.*\.tgz$/.test(f)) : undefined;

test("npm install of the packed package, then require and import", { skip: tarball ? false : "no target/npm/quickv-wasm-*.tgz (scripts/build-js makes it)" }, () => {
  const project = mkdtempSync(join(tmpdir(), "quickv-npm-"));
  try {
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
    execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", join(npmDir, tarball)], { cwd: project, stdio: "ignore" });
    const installed = join(project, "node_modules/quickv-wasm");
    for (const file of ["package.json", "README.md", "node/quickv_wasm.cjs", "node/quickv_wasm_bg.wasm", "web/quickv_wasm.js", "web/quickv_wasm.d.ts"]) {
      assert.ok(existsSync(join(installed, file)), `${file} is in the package`);
    }
    const script = `
      const { keyToken, Client } = require("quickv-wasm");
      if (!/^[0-9a-f]{32}$/.test(keyToken("cart:42"))) process.exit(3);
      if (typeof Client.connect !== "function") process.exit(4);
      import("quickv-wasm").then((m) => { if (typeof m.Client?.connect !== "function" && typeof m.default?.Client?.connect !== "function") process.exit(5); });
    `;
    writeFileSync(join(project, "use.cjs"), script);
    execFileSync("node", ["use.cjs"], { cwd: project, stdio: "inherit" });
    const types = readFileSync(join(installed, "web/quickv_wasm.d.ts"), "utf8");
    assert.match(types, /class Client/);
    assert.match(types, /interface QuickvError/);
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
});
