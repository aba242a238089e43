// Runs the test suite on Node against the published build: each tests/*.test.ts is bundled
// by esbuild with every package left external, so `@proxy-protocol/edge` resolves through
// package.json "exports" to dist/ (build it first), exactly as an npm user's import would.
// Usage: node .ci/test-node.mjs [test files...]
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";

const out = ".build/node-tests";
const files = process.argv.slice(2).length > 0 ? process.argv.slice(2) : [
  "tests",
  "tests/node",
  "tests/faults",
  "tests/cli",
  "tests/fuzz",
  "tests/hostile",
  "tests/hostile_edge",
]
  .flatMap((dir) =>
    readdirSync(dir)
      // tests/faults/bun_* and deno_* use their runtime's own adapter.
      .filter((f) => f.endsWith(".test.ts") && !/^(bun|deno)_/.test(f))
      .map((f) => `${dir}/${f}`)
  );

rmSync(out, { recursive: true, force: true });
await build({
  entryPoints: files,
  outdir: out,
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  packages: "external",
  outExtension: { ".js": ".mjs" },
  logLevel: "warning",
});
const compiled = readdirSync(out, { recursive: true, encoding: "utf8" })
  .filter((f) => f.endsWith(".test.mjs"))
  .map((f) => `${out}/${f}`);
const run = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...compiled], {
  stdio: "inherit",
});
process.exit(run.status ?? 1);
