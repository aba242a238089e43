// Builds the npm package: dist/*.js (esbuild, ESM) and dist/**/*.d.ts (tsc).
// Usage: node .ci/build.mjs
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { entries as list } from "./entries.mjs";

// dist/<name>.js for every entry point in jsr.json's "exports".
const entries = Object.fromEntries(list().map((e) => [e.name, e.source]));
// Declarations: Deno's entry uses Deno's own types, which tsc does not have; package.json
// points its "types" at the source, which Deno reads.
const declared = list().filter((e) => e.runtime !== "deno").map((e) => e.source);

rmSync("dist", { recursive: true, force: true });
await build({
  entryPoints: entries,
  outdir: "dist",
  bundle: true,
  format: "esm",
  // "node" keeps `node:` imports external; the codec itself touches no runtime API. Code
  // shared by the entries goes to one chunk, so there is one ProxyProtocolError class.
  platform: "node",
  splitting: true,
  target: "es2022",
  sourcemap: true,
  legalComments: "inline",
  logLevel: "warning",
});
execFileSync("node_modules/.bin/tsc", [
  ...declared,
  "--declaration",
  "--emitDeclarationOnly",
  "--outDir",
  "dist",
  "--rootDir",
  ".",
  "--target",
  "es2022",
  "--module",
  "nodenext",
  "--moduleResolution",
  "nodenext",
  "--strict",
  "--exactOptionalPropertyTypes",
  "--noUncheckedIndexedAccess",
  "--allowImportingTsExtensions",
  "--rewriteRelativeImportExtensions",
  "--skipLibCheck",
  "--types",
  "node",
], { stdio: "inherit" });
// Declarations keep the sources' `.ts` specifiers; point them at the emitted `.js` names.
for (const file of readdirSync("dist", { recursive: true, encoding: "utf8" })) {
  if (!file.endsWith(".d.ts")) continue;
  const path = `dist/${file}`;
  const text = readFileSync(path, "utf8");
  writeFileSync(path, text.replace(/(from\s+"\.{1,2}\/[^"]*)\.ts"/g, '$1.js"'));
}
// dist/cli.js is package.json's "bin": it starts with a hashbang (the library files do not).
writeFileSync("dist/cli.js", "#!/usr/bin/env node\n" + readFileSync("dist/cli.js", "utf8"));
console.log(`built dist/ from ${Object.values(entries).join(", ")}`);
