// Tests what users install: packs the npm tarball, installs it into a scratch project
// outside the repository, and on Node (ESM import and require), Bun and Deno (through
// node_modules) imports every entry point, decodes a header, and serves one connection
// through that runtime's adapter.
// Usage: node .ci/test-package.mjs (after node .ci/build.mjs)
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { entries } from "./entries.mjs";

const repo = process.cwd();
/** "PROXY UNKNOWN\r\n" as hex, for the bin's decode command. */
const LOCAL_V1_HEX = Buffer.from("PROXY UNKNOWN\r\n").toString("hex");
const bin = (name) => path.join(repo, "node_modules/.bin", name);
const scratch = mkdtempSync(path.join(os.tmpdir(), "proxy-protocol-package-"));
const run = (cmd, args, options = {}) =>
  execFileSync(cmd, args, {
    cwd: scratch,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    ...options,
  });

try {
  const tarball = run("npm", ["pack", "--silent", "--pack-destination", scratch], { cwd: repo })
    .trim().split("\n").pop();
  writeFileSync(
    path.join(scratch, "package.json"),
    JSON.stringify({ name: "scratch", private: true, type: "module" }),
  );
  run("npm", [
    "install",
    "--offline",
    "--no-audit",
    "--no-fund",
    "--silent",
    path.join(scratch, tarball),
  ]);
  const keys = entries().map((e) => e.key);
  const specifiers = keys.map((
    k,
  ) => (k === "." ? "@proxy-protocol/edge" : `@proxy-protocol/edge${k.slice(1)}`));

  // What every runtime checks: each entry imports, the codec decodes, ProxyProtocolError is
  // one class across entries.
  const common = `
const specifiers = ${JSON.stringify(specifiers)};
const modules = [];
for (const s of specifiers) modules.push(await import(s));
const codec = modules[0];
const header = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\\r\\n";
const decoded = codec.decodeHeader(new TextEncoder().encode(header));
if (decoded?.header.source?.address !== "203.0.113.7") throw new Error("decode failed");
for (const m of modules) {
  // Entries that export the class (not ./cli) share one.
  if ("ProxyProtocolError" in m && m.ProxyProtocolError !== codec.ProxyProtocolError) {
    throw new Error("two error classes");
  }
}
const check = (got) => {
  if (got !== "hello 203.0.113.7:51234") throw new Error("served " + JSON.stringify(got));
};
`;
  const talk = `
async function talk(port) {
  const net = await import("node:net");
  return await new Promise((resolve, reject) => {
    let got = "";
    const c = net.connect(port, "127.0.0.1", () => c.end(header));
    c.on("data", (d) => got += d).on("end", () => resolve(got)).on("error", reject);
  });
}
`;
  const scripts = {
    "node-esm.mjs": `${common}${talk}
const { createServer } = await import("@proxy-protocol/edge/node");
const server = createServer({}, (s) => s.end("hello " + s.remoteAddress + ":" + s.remotePort));
await new Promise((r) => server.listen(0, "127.0.0.1", r));
check(await talk(server.address().port));
server.close();
console.log("node esm: " + specifiers.length + " entries, served");
`,
    "node-cjs.cjs": `
const specifiers = ${JSON.stringify(specifiers)};
const modules = specifiers.map((s) => require(s));
const d = modules[0].decodeHeader(new TextEncoder().encode("PROXY UNKNOWN\\r\\n"));
if (d?.header.command !== "LOCAL") throw new Error("decode failed");
if (typeof modules[3].createServer !== "function") throw new Error("no createServer");
console.log("node require: " + specifiers.length + " entries");
`,
    "bun.mjs": `${common}${talk}
const { listen } = await import("@proxy-protocol/edge/bun");
const listener = listen({ hostname: "127.0.0.1", port: 0, socket: {
  open(s) { s.end("hello " + s.remoteAddress + ":" + s.remotePort); }, data() {},
} });
check(await talk(listener.port));
listener.stop(true);
console.log("bun: " + specifiers.length + " entries, served");
`,
    "deno.mjs": `${common}
const { listen } = await import("@proxy-protocol/edge/deno");
const listener = listen({ hostname: "127.0.0.1", port: 0 });
const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
await client.write(new TextEncoder().encode(header));
const conn = await listener.accept();
await conn.write(new TextEncoder().encode("hello " + conn.remoteAddr.hostname + ":" + conn.remoteAddr.port));
conn.close();
check(await new Response(client.readable).text());
listener.close();
console.log("deno: " + specifiers.length + " entries, served");
`,
  };
  for (const [name, text] of Object.entries(scripts)) writeFileSync(path.join(scratch, name), text);
  const out = [
    run(process.execPath, ["node-esm.mjs"]),
    run(process.execPath, ["node-cjs.cjs"]),
    run(bin("bun"), ["bun.mjs"]),
    run(bin("deno"), ["run", "-A", "--node-modules-dir=manual", "deno.mjs"]),
    // The command line as a user runs it: the package's bin, on Node.
    run(path.join(scratch, "node_modules/.bin/proxy-protocol"), ["decode", LOCAL_V1_HEX]),
  ];
  if (JSON.parse(out.at(-1)).command !== "LOCAL") throw new Error(`the bin said ${out.at(-1)}`);
  out[out.length - 1] = "bin: proxy-protocol decode gave LOCAL\n";
  process.stdout.write(`installed ${tarball} in ${scratch}\n${out.join("")}`);
} catch (error) {
  process.stderr.write(`${error.stdout ?? ""}${error.stderr ?? ""}\n`);
  console.error(`test-package failed in ${scratch}: ${error.message}`);
  process.exitCode = 1;
} finally {
  if (process.exitCode !== 1) rmSync(scratch, { recursive: true, force: true });
}
