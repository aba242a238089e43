// npm run bench: the codec benchmarks on Deno, Bun and Node (the built package), then Go's
// go-proxyproto on the same bytes, and a table of averages and ratios for RESULTS.md.
// Usage: node benches/run.mjs [--no-go]
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import os from "node:os";

const bin = "node_modules/.bin";
function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}`);
  }
  return r.stdout;
}
function version(cmd, args) {
  return sh(cmd, args).split("\n")[0].trim();
}

sh(process.execPath, [".ci/build.mjs"]);
await build({
  entryPoints: ["benches/codec_bench.ts"],
  outfile: ".build/benches/codec_bench.mjs",
  bundle: true,
  format: "esm",
  platform: "node",
  packages: "external",
  logLevel: "warning",
});

const runs = [
  [
    "deno",
    `${bin}/deno`,
    ["run", "-A", "benches/codec_bench.ts"],
    version(`${bin}/deno`, ["--version"]),
  ],
  ["bun", `${bin}/bun`, ["benches/codec_bench.ts"], `bun ${version(`${bin}/bun`, ["--version"])}`],
  // Node 20's parallel GC threads contend with the measuring thread on a 2-vCPU machine and
  // make results bimodal (see RESULTS.md); the headline Node run uses one GC thread, and a
  // second run with default flags is printed for reference.
  [
    "node",
    process.execPath,
    ["--single-threaded-gc", ".build/benches/codec_bench.mjs"],
    `node ${process.version} --single-threaded-gc`,
  ],
  [
    "node (default flags)",
    process.execPath,
    [".build/benches/codec_bench.mjs"],
    `node ${process.version}`,
  ],
];
// Each group of cases runs in a fresh process: one case's JIT and heap state (notably on
// Node 20, see RESULTS.md) must not skew the next.
const groups = [
  "decode v1 TCP4",
  "decode v1 TCP6",
  "decode v2 TCP4",
  "decode v2 TCP6",
  "decode v2 AWS",
  "encode v2 TCP4",
  "encode v1 TCP4",
  "encode v2 TCP6",
];
const results = {};
for (const [name, cmd, args, ver] of runs) {
  console.log(`\n### ${ver}\n`);
  results[name] = { ver, averages: {} };
  for (const group of groups) {
    const env = { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0", BENCH_GROUP: group };
    const out = sh(cmd, args, { env });
    let seen = false;
    for (const line of out.split("\n")) {
      if (line.startsWith("BENCH_JSON ")) {
        Object.assign(results[name].averages, JSON.parse(line.slice(11)).averages);
        seen = true;
      } else if (
        (line.startsWith("not timed") || line.startsWith("note:")) && group === groups[0]
      ) {
        console.log(line);
      }
    }
    if (!seen) throw new Error(`${name} / ${group}: no BENCH_JSON line`);
  }
}

let go = [];
if (!process.argv.includes("--no-go")) {
  const out = sh("bash", ["benches/go/run.sh"]);
  go = out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

const ours = "@proxy-protocol/edge";
const cases = [
  ...new Set(
    Object.values(results).flatMap((r) => Object.keys(r.averages).map((k) => k.split(" | ")[0])),
  ),
];
const goCase = {
  "decode v1 TCP4": "v1 TCP4 decode",
  "decode v1 TCP6": "v1 TCP6 decode",
  "decode v2 TCP4": "v2 TCP4 decode",
  "decode v2 TCP6 + TLVs + CRC32c": "v2 TCP6+TLVs decode",
  "decode v2 AWS NLB (CRC32c, VPC endpoint)": "v2 TCP4 AWS decode (CRC32c)",
  "encode v2 TCP4": "v2 TCP4 encode",
  "encode v1 TCP4": "v1 TCP4 encode",
};
const ns = (
  v,
) => (v === undefined ? "-" : v < 1000 ? `${v.toFixed(1)} ns` : `${(v / 1000).toFixed(2)} µs`);

console.log(
  `\n## Summary (${
    os.cpus()[0]?.model ?? "cpu"
  }, ${os.cpus().length} cores, ${os.platform()} ${os.release()})\n`,
);
console.log(
  "| case | runtime | ours | fastest JS peer | ours vs fastest JS peer | Go go-proxyproto | ours vs Go |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const c of cases) {
  for (const [name, r] of Object.entries(results)) {
    const mine = r.averages[`${c} | ${ours}`];
    let best, bestName;
    for (const [k, v] of Object.entries(r.averages)) {
      const [kc, lib] = k.split(" | ");
      if (kc === c && lib !== ours && (best === undefined || v < best)) (best = v, bestName = lib);
    }
    const g = go.find((x) => x.case === goCase[c]);
    const gv = g?.ns_per_op;
    console.log(
      `| ${c} | ${name} | ${ns(mine)} | ${
        best === undefined ? "-" : `${ns(best)} (${bestName})`
      } | ${best === undefined || mine === undefined ? "-" : `${(best / mine).toFixed(1)}x`} | ${
        gv === undefined ? (g?.error ? `rejects: ${g.error}` : "-") : ns(gv)
      } | ${gv === undefined || mine === undefined ? "-" : `${(gv / mine).toFixed(1)}x`} |`,
    );
  }
}
if (go.length > 0) console.log(`\nGo: ${go[0].runtime}, ${go[0].library}`);
