// The one list of entry points: jsr.json's "exports". Everything else that names entry
// points (deno.json, package.json, the npm build, the static checks) is derived from it or
// checked against it by .ci/check-package.mjs.
import { readFileSync } from "node:fs";

/** The runtime whose globals an entry may use; the others are runtime-neutral. */
const RUNTIMES = new Set(["deno", "bun", "node"]);

/**
 * @returns {{ key: string, source: string, name: string, runtime: string | undefined }[]}
 *   `key` "./node", `source` "./lib/node/mod.ts", `name` "node" (the dist/ file's name).
 */
export function entries() {
  const jsr = JSON.parse(readFileSync(new URL("../jsr.json", import.meta.url), "utf8"));
  return Object.entries(jsr.exports).map(([key, source]) => {
    const name = key === "." ? "mod" : key.slice(2);
    return { key, source, name, runtime: RUNTIMES.has(name) ? name : undefined };
  });
}

/** What package.json's "exports" must say for an entry. */
export function packageExport(entry) {
  return {
    // Deno's types come with Deno, not @types/node: the source is its declaration.
    types: entry.runtime === "deno"
      ? entry.source
      : `./dist/${entry.source.replace(/^\.\//, "").replace(/\.ts$/, ".d.ts")}`,
    bun: entry.source,
    default: `./dist/${entry.name}.js`,
  };
}

// `node .ci/entries.mjs`: the sources, one a line (for deno check and deno doc --lint).
if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(entries().map((e) => e.source).join(" "));
}
