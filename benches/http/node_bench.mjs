// HTTP throughput of serve() from ./node against Node's own servers, through HAProxy.
// Not a test: `node benches/http/node_bench.mjs` (knobs: ROUNDS=2 SECONDS=5 CONC=32
// MODES=native,ours,native-tls,ours-tls).
//
// wrk cannot send a PROXY header, so every server sits behind the same HAProxy (`mode tcp`,
// `nbthread 1`): `send-proxy-v2` for ours, plain for native (TLS is passed through: the
// server terminates it). The server is pinned to CPU 0, HAProxy and wrk to CPU 1; each mode
// runs in a fresh process per round, in alternating order. Figures: the median over rounds
// of requests/s and p99, the server's CPU per request (utime+stime from /proc), and ratios
// ours/native. See node_server.mjs for the modes.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const ROUNDS = Number(process.env.ROUNDS ?? 2);
const SECONDS = Number(process.env.SECONDS ?? 5);
const CONC = Number(process.env.CONC ?? 32);
const MODES = (process.env.MODES ?? "native,ours,native-tls,ours-tls").split(",");
const here = fileURLToPath(new URL(".", import.meta.url));
const root = join(here, "..", "..");

const dir = mkdtempSync(join(tmpdir(), "pp-node-bench-"));
const lib = join(dir, "node-lib.mjs");
await build({
  entryPoints: [join(root, "lib/node/mod.ts")],
  outfile: lib,
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  logLevel: "warning",
});

const run = (cmd, args) =>
  new Promise((resolve, reject) =>
    execFile(
      cmd,
      args,
      { maxBuffer: 1 << 20 },
      (e, out, err) => e ? reject(new Error(`${cmd}: ${e.message} ${err}`)) : resolve(out),
    )
  );

await run("openssl", [
  ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
  ...["-days", "1", "-subj", "/CN=localhost"],
  ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
]);

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** Waits until HAProxy accepts on `port` (up to 5 s). */
async function reachable(port) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`HAProxy did not listen on ${port}`);
}

function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
}

function ms(text) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  return Number(m[1]) * (m[2] === "us" ? 0.001 : m[2] === "s" ? 1000 : 1);
}

async function measure(mode) {
  const port = await freePort(), front = await freePort();
  const tls = mode.endsWith("-tls");
  const server = spawn("taskset", [
    ...["-c", "0", process.execPath, join(here, "node_server.mjs"), mode, String(port)],
    ...(tls ? [join(dir, "cert.pem"), join(dir, "key.pem")] : []),
  ], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, LIB: lib } });
  await new Promise((resolve, reject) => {
    let seen = "";
    server.stdout.on("data", (d) => {
      seen += d;
      if (seen.includes("ready")) resolve();
    });
    server.once("exit", () => reject(new Error(`${mode} exited`)));
  });
  const cfg = join(dir, `haproxy-${front}.cfg`);
  writeFileSync(
    cfg,
    `global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n` +
      `  timeout client 60s\n  timeout server 60s\nfrontend f\n  bind 127.0.0.1:${front}\n` +
      `  default_backend b\nbackend b\n  server s 127.0.0.1:${port}` +
      `${mode.startsWith("ours") ? " send-proxy-v2" : ""}\n`,
  );
  const haproxy = spawn("taskset", ["-c", "1", "haproxy", "-db", "-f", cfg], { stdio: "ignore" });
  await reachable(front);
  const url = `${tls ? "https" : "http"}://127.0.0.1:${front}/`;
  const wrk = (d) =>
    run("taskset", ["-c", "1", "wrk", "-t1", `-c${CONC}`, `-d${d}s`, "--latency", url]);
  try {
    await wrk(1); // warm-up
    const before = cpuTicks(server.pid);
    const out = await wrk(SECONDS);
    const ticks = cpuTicks(server.pid) - before;
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
    const p99 = ms(/ 99%\s+(\S+)/.exec(out)[1]);
    const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out);
    if (errors) console.error(`${mode}: ${errors[0]}`);
    return { rps, p99, cpuUs: (ticks * 10_000) / (rps * SECONDS) };
  } finally {
    haproxy.kill();
    server.kill();
    await Promise.all([haproxy, server].map((p) => new Promise((r) => p.once("exit", r))));
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const samples = new Map(MODES.map((m) => [m, []]));
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? MODES : [...MODES].reverse();
  for (const mode of order) {
    const s = await measure(mode);
    samples.get(mode).push(s);
    console.error(
      `round ${round + 1} ${mode}: ${s.rps.toFixed(0)} req/s, p99 ${s.p99.toFixed(2)} ms, ` +
        `${s.cpuUs.toFixed(1)} µs CPU/req`,
    );
  }
}
console.log(
  `\nNode ${process.version}, wrk -t1 -c${CONC} -d${SECONDS}s keep-alive, ${ROUNDS} rounds`,
);
console.log("| mode | requests/s | p99 ms | server CPU µs/req | vs native (rps, p99) |");
console.log("|---|---|---|---|---|");
const med = (mode, key) => median(samples.get(mode).map((s) => s[key]));
for (const mode of MODES) {
  const base = mode.replace("ours", "native");
  const rel = mode.startsWith("ours") && samples.has(base)
    ? `${(med(mode, "rps") / med(base, "rps")).toFixed(3)}, ${
      (med(mode, "p99") / med(base, "p99")).toFixed(2)
    }x`
    : "1";
  console.log(
    `| ${mode} | ${med(mode, "rps").toFixed(0)} | ${med(mode, "p99").toFixed(2)} | ${
      med(mode, "cpuUs").toFixed(1)
    } | ${rel} |`,
  );
}
