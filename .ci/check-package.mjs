// Fails when the lists that must agree do not: jsr.json's "exports" (the one list of entry
// points), deno.json's, package.json's "exports" and "files", and the rule that runtime
// APIs (Deno.*, Bun.*, node:*) appear only in their runtime's folder.
// Usage: node .ci/check-package.mjs
import { readdirSync, readFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import { entries, packageExport } from "./entries.mjs";

const read = (path) => JSON.parse(readFileSync(path, "utf8"));
const problems = [];
const jsr = read("jsr.json"), deno = read("deno.json"), pkg = read("package.json");

if (!isDeepStrictEqual(deno.exports, jsr.exports)) {
  problems.push(`deno.json exports ${JSON.stringify(deno.exports)} differ from jsr.json's`);
}
const expected = Object.fromEntries(entries().map((e) => [e.key, packageExport(e)]));
expected["./package.json"] = "./package.json";
if (!isDeepStrictEqual(pkg.exports, expected)) {
  problems.push(
    `package.json exports should be ${JSON.stringify(expected, null, 2)}\n` +
      `but are ${JSON.stringify(pkg.exports, null, 2)}`,
  );
}
// Every file an export or bin names must be published.
const files = (pkg.files ?? []).map((f) => f.replace(/^\.\//, ""));
const targets = [];
const walk = (v) => typeof v === "string" ? targets.push(v) : v && Object.values(v).forEach(walk);
walk(pkg.exports);
walk(pkg.bin);
for (const target of new Set(targets)) {
  const t = target.replace(/^\.\//, "");
  if (t === "package.json") continue;
  if (!files.some((f) => t === f || t.startsWith(f.endsWith("/") ? f : `${f}/`))) {
    problems.push(`package.json names ${target}, which "files" does not publish`);
  }
}
for (const key of ["name", "version", "license"]) {
  if (jsr[key] !== pkg[key] || deno[key] !== pkg[key]) {
    problems.push(`"${key}" differs between jsr.json, deno.json and package.json`);
  }
}

// Runtime APIs only in their runtime's folder: lib/deno (Deno.*), lib/bun (Bun.*),
// lib/node and the runtime folders that use node:* (node:net, node:tls ...). The command
// line (cli/) is a program, not a library module: it may use all three.
const RULES = [
  { api: /\bDeno\./, name: "Deno.*", allowed: ["lib/deno/", "cli/"] },
  { api: /\bBun\./, name: "Bun.*", allowed: ["lib/bun/", "cli/"] },
  {
    api: /from\s+["']node:|import\(\s*["']node:/,
    name: "node:*",
    allowed: ["lib/node/", "lib/deno/", "lib/bun/", "cli/"],
  },
];
const sources = [
  "mod.ts",
  ...readdirSync("cli", { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts")).map((f) => `cli/${f}`),
  ...readdirSync("lib", { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts")).map((f) => `lib/${f}`),
];
for (const file of sources) {
  // Code only: JSDoc examples may show any runtime.
  const code = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  for (const rule of RULES) {
    if (rule.api.test(code) && !rule.allowed.some((dir) => file.startsWith(dir))) {
      problems.push(`${file} uses ${rule.name}, allowed only under ${rule.allowed.join(", ")}`);
    }
  }
}

if (problems.length > 0) {
  console.error(`check-package: ${problems.length} problem(s)\n- ${problems.join("\n- ")}`);
  process.exit(1);
}
console.log(
  `check-package: ${entries().length} entry points agree; runtime APIs stay in their folders`,
);
