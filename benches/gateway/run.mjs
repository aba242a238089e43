// The gateway beside HAProxy doing the same job (accept-proxy in, send-proxy-v2 out), in
// front of the same upstream (upstream/, Go), driven by the same client (benches/conn/loadgen,
// Go): bulk throughput, short-connection rate and p99 latency, at 1 and 2 workers/threads.
// Usage: node benches/gateway/run.mjs [runtime ...]   (deno bun node; default all three;
//   `deno:node` or `bun:node` runs that runtime's gateway on its node:net glue,
//   PROXY_PROTOCOL_GLUE=node, to compare)
// Env: SECONDS (per measurement, default 5), ROUNDS (alternations, default 2),
//   PIN (default 1): with `taskset`, at one worker/thread the proxy (gateway or HAProxy) runs on
//   CPU 0 and the client and the upstream on CPU 1; at two, all of them share CPUs 0-1 (the
//   same for HAProxy and the gateway). PIN=0 for no pinning.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

const SECONDS = Number(process.env.SECONDS ?? 5);
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const PIN = process.env.PIN !== "0";
const runtimes = process.argv.slice(2).length ? process.argv.slice(2) : ["deno", "bun", "node"];
mkdirSync(".build", { recursive: true });
execFileSync("go", ["build", "-o", "../../../.build/upstream", "."], {
  cwd: "benches/gateway/upstream",
});
execFileSync("go", ["build", "-o", "../../../.build/loadgen", "."], {
  cwd: "benches/conn/loadgen",
});
execFileSync("node", [".ci/build.mjs"], { stdio: "ignore" });

const UP = { short: 9101, bulk: 9102 };
const FRONT = 9200;
const procs = [];
// taskset's CPU list for the proxy and for the client + upstream, by workers.
const cpus = (role, workers) => workers === 1 ? (role === "proxy" ? "0" : "1") : "0-1";
const pinned = (cpu, cmd, args) => PIN ? ["taskset", ["-c", cpu, cmd, ...args]] : [cmd, args];
const startProc = (cmd, args, env) => {
  const p = spawn(cmd, args, {
    stdio: ["ignore", "ignore", "inherit"],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  procs.push(p);
  return p;
};
process.on("exit", () => procs.forEach((p) => p.kill("SIGKILL")));
// The upstreams live for the whole run: re-pinned (taskset -p) when the worker count changes.
const upstreams = [
  startProc(
    ...pinned("1", ".build/upstream", ["-addr", `127.0.0.1:${UP.short}`, "-mode", "short"]),
  ),
  startProc(...pinned("1", ".build/upstream", ["-addr", `127.0.0.1:${UP.bulk}`, "-mode", "bulk"])),
];
const repin = (workers) => {
  if (!PIN) return;
  for (const u of upstreams) {
    execFileSync("taskset", ["-a", "-c", "-p", cpus("client", workers), String(u.pid)], {
      stdio: "ignore",
    });
  }
};

function gatewayCmd(spec, mode, workers) {
  const [runtime, glue] = spec.split(":");
  const args = [
    "gateway",
    "--listen",
    `127.0.0.1:${FRONT}`,
    "--upstream",
    `127.0.0.1:${UP[mode]}`,
    "--workers",
    String(workers),
    "--log-level",
    "error",
  ];
  const env = glue === undefined ? undefined : { PROXY_PROTOCOL_GLUE: glue };
  // --unstable-net: Deno.listen's reusePort, for --workers 2 on Deno's own sockets.
  const deno = ["run", "-A", "--unstable-net", "cli/mod.ts"];
  if (runtime === "deno") return ["node_modules/.bin/deno", [...deno, ...args], env];
  if (runtime === "bun") return ["node_modules/.bin/bun", ["cli/mod.ts", ...args], env];
  return ["node", ["dist/cli.js", ...args], env];
}

function haproxyCmd(mode, threads) {
  const cfg = `.build/haproxy-${mode}-${threads}.cfg`;
  writeFileSync(
    cfg,
    `global
  nbthread ${threads}
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:${FRONT} accept-proxy
  default_backend b
backend b
  server u 127.0.0.1:${UP[mode]} send-proxy-v2
`,
  );
  return ["haproxy", ["-f", cfg, "-db"]];
}

async function measure([cmd, args, env], mode, workers) {
  const p = startProc(...pinned(cpus("proxy", workers), cmd, args), env);
  await sleep(cmd === "haproxy" ? 300 : 1200);
  const lg = mode === "short"
    ? ["-mode", "short", "-c", "32", "-size", "100"]
    : ["-mode", "bulk", "-c", "2"];
  const loadgen = (more, options) => {
    const [c, a] = pinned(cpus("client", workers), ".build/loadgen", [...lg, ...more]);
    return execFileSync(c, a, options);
  };
  // Warm up, then measure.
  loadgen([
    "-addr",
    `127.0.0.1:${FRONT}`,
    "-header",
    "v1",
    "-d",
    "1",
  ]);
  const out = loadgen([
    "-addr",
    `127.0.0.1:${FRONT}`,
    "-header",
    "v1",
    "-d",
    String(SECONDS),
  ], { encoding: "utf8" });
  p.kill("SIGTERM");
  await new Promise((r) => p.once("exit", r));
  return JSON.parse(out.trim().split("\n").pop());
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
for (const workers of (process.env.WORKERS ?? "1,2").split(",").map(Number)) {
  repin(workers);
  for (const runtime of runtimes) {
    const r = { workers, runtime, rate: [], p99: [], bulk: [] };
    for (let round = 0; round < ROUNDS; round++) {
      // A B B A: alternate which goes first.
      const order = round % 2 === 0 ? ["gw", "hap"] : ["hap", "gw"];
      for (const who of order) {
        const short = await measure(
          who === "gw" ? gatewayCmd(runtime, "short", workers) : haproxyCmd("short", workers),
          "short",
          workers,
        );
        const bulk = await measure(
          who === "gw" ? gatewayCmd(runtime, "bulk", workers) : haproxyCmd("bulk", workers),
          "bulk",
          workers,
        );
        (r[who] ??= []).push({ short, bulk });
      }
    }
    const pick = (who, f) => median(r[who].map(f));
    const row = {
      workers,
      runtime,
      gwRate: pick("gw", (m) => m.short.rate ?? m.short.connsPerSec),
      hapRate: pick("hap", (m) => m.short.rate ?? m.short.connsPerSec),
      gwP99: pick("gw", (m) => m.short.p99us),
      hapP99: pick("hap", (m) => m.short.p99us),
      gwBulk: pick("gw", (m) => m.bulk.bytesPerSec ?? m.bulk.rate),
      hapBulk: pick("hap", (m) => m.bulk.bytesPerSec ?? m.bulk.rate),
      raw: r,
    };
    rows.push(row);
    console.log(JSON.stringify({ ...row, raw: undefined }));
  }
}
writeFileSync(`.build/gateway-bench-${Date.now()}.json`, JSON.stringify(rows, null, 2));
process.exit(0);
