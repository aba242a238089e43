// Bundles a bench's Node server for Node: the package's own name (`@proxy-protocol/edge` and
// its subpaths) is resolved through jsr.json's "exports", the single list of entry points,
// to the sources. Shared by benches/conn and benches/load.
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const PKG = "@proxy-protocol/edge";
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const jsr = JSON.parse(readFileSync(path.join(root, "jsr.json"), "utf8"));
const exportsMap = typeof jsr.exports === "string" ? { ".": jsr.exports } : jsr.exports;

/**
 * esbuild with the self-reference resolved; `options` are esbuild's (entry points, outfile
 * or outdir, ...).
 */
export function bundleNode(options) {
  return build({
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    logLevel: "warning",
    ...options,
    plugins: [{
      name: "self-reference",
      setup(b) {
        b.onResolve({ filter: /^@proxy-protocol\/edge(\/.*)?$/ }, (args) => {
          const sub = "." + args.path.slice(PKG.length);
          const target = exportsMap[sub];
          if (target === undefined) return { errors: [{ text: `jsr.json exports no ${sub}` }] };
          return { path: path.resolve(root, target) };
        });
      },
    }],
  });
}
