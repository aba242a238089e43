// npm run bench:conn: the per-connection cost of the listeners against the same server
// without the library, on Deno, Bun and Node. Each server process (server_*.ts) opens a
// plain listener and the library's, running the same app; this driver alternates which one
// the Go load generator (loadgen/) measures, A B B A, in several processes, with the
// server pinned to one CPU and the load generator to the other, and prints the median
// ratio (ours / raw) with its min-max spread. See README.md.
//
// Knobs (environment): ROUNDS=2 (A B B A rounds per process), PROCS=2 (processes per
// runtime and scenario; idle uses 2*PROCS, alternating targets), SECONDS=3 (per
// measurement), CONC=32 (short-connection workers), IDLE_N=2000, BULK_CONNS=2,
// HEADER=v2 (short and bulk: v1 | v2 | v2aws), RUNTIMES=deno,bun,node,
// SCENARIOS=short,idle,bulk, SERVER_CPU=0, CLIENT_CPU=1.
import { bundleNode } from "../bundle_node.mjs";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const out = path.join(here, ".out");
const bin = path.join(root, "node_modules/.bin");

const env = process.env;
const num = (name, dflt) => (env[name] === undefined ? dflt : Number(env[name]));
const ROUNDS = num("ROUNDS", 2);
const PROCS = num("PROCS", 2);
const SECONDS = num("SECONDS", 3);
const CONC = num("CONC", 32);
const IDLE_N = num("IDLE_N", 2000);
const BULK_CONNS = num("BULK_CONNS", 2);
const HEADER = env.HEADER ?? "v2";
const RUNTIMES = (env.RUNTIMES ?? "deno,bun,node").split(",");
const SCENARIOS = (env.SCENARIOS ?? "short,idle,bulk").split(",");
const SERVER_CPU = env.SERVER_CPU ?? "0";
const CLIENT_CPU = env.CLIENT_CPU ?? "1";
const IDLE_VARIANTS = [
  { name: "v2", header: "v2", payload: 0 },
  { name: "v2aws + 32 KiB", header: "v2aws", payload: 32 * 1024 },
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (...args) => console.error("[bench:conn]", ...args);

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    process.stderr.write((r.stdout ?? "") + (r.stderr ?? ""));
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}`);
  }
  return r.stdout.trim();
}

// --- Build -------------------------------------------------------------------------------

mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, ".gitignore"), "*\n");
sh("go", ["build", "-o", path.join(out, "loadgen"), "."], {
  cwd: path.join(here, "loadgen"),
  env: { ...env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=mod" },
});
const LOADGEN = path.join(out, "loadgen");

// Node runs a bundle of the sources (the package name resolved through jsr.json).
if (RUNTIMES.includes("node")) {
  await bundleNode({
    entryPoints: [path.join(here, "server_node.ts")],
    outfile: path.join(out, "server_node.mjs"),
  });
}

const COMMANDS = {
  deno: [
    path.join(bin, "deno"),
    "run",
    "-A",
    "--v8-flags=--expose-gc",
    path.join(here, "server_deno.ts"),
  ],
  bun: [path.join(bin, "bun"), path.join(here, "server_bun.ts")],
  node: [process.execPath, "--expose-gc", path.join(out, "server_node.mjs")],
};

// --- Processes ----------------------------------------------------------------------------

/** Reads a child's stdout as JSON lines, one awaited at a time. */
function lineReader(stream) {
  let pending = "";
  const lines = [];
  const waiting = [];
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (waiting.length > 0) waiting.shift().resolve(line);
      else lines.push(line);
    }
  });
  stream.on("end", () => {
    for (const w of waiting.splice(0)) w.reject(new Error("stream ended"));
  });
  return () =>
    lines.length > 0
      ? Promise.resolve(lines.shift())
      : new Promise((resolve, reject) => waiting.push({ resolve, reject }));
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", resolve));
}

const CLK_TCK = Number(sh("getconf", ["CLK_TCK"]));

class Server {
  static async start(runtime) {
    const [cmd, ...args] = COMMANDS[runtime];
    const child = spawn("taskset", ["-c", SERVER_CPU, cmd, ...args], {
      cwd: root,
      stdio: ["pipe", "pipe", "inherit"],
    });
    const s = new Server(child);
    s.info = JSON.parse(await s.next());
    // taskset execs the runtime: same pid.
    if (s.info.pid !== child.pid) throw new Error(`pid ${s.info.pid} != ${child.pid}`);
    return s;
  }
  constructor(child) {
    this.child = child;
    this.next = lineReader(child.stdout);
  }
  async cmd(line) {
    this.child.stdin.write(line + "\n");
    return JSON.parse(await this.next());
  }
  /** The whole process's CPU time (all threads, exited ones too), in seconds. */
  cpu() {
    const stat = readFileSync(`/proc/${this.child.pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  }
  async stop() {
    this.child.stdin.end();
    const t = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited(this.child);
    clearTimeout(t);
  }
}

async function loadgen(args) {
  const child = spawn("taskset", ["-c", CLIENT_CPU, LOADGEN, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let text = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (d) => text += d);
  await exited(child);
  if (child.exitCode !== 0) throw new Error(`loadgen ${args.join(" ")} exited ${child.exitCode}`);
  return JSON.parse(text.trim().split("\n").pop());
}

/** Opens idle connections; resolves once they are all open and written. */
async function idleOpen(port, n, variant, raw) {
  const child = spawn("taskset", [
    "-c",
    CLIENT_CPU,
    LOADGEN,
    "-mode",
    "idle",
    "-addr",
    `127.0.0.1:${port}`,
    "-n",
    String(n),
    "-header",
    raw ? "none" : variant.header,
    "-payload",
    String(variant.payload),
  ], { stdio: ["pipe", "pipe", "inherit"] });
  const ready = JSON.parse(await lineReader(child.stdout)());
  return {
    ready,
    async close() {
      child.stdin.end("\n");
      await exited(child);
    },
  };
}

async function waitStats(server, pred, what, ms = 30_000) {
  const until = Date.now() + ms;
  for (;;) {
    const st = await server.cmd("stats");
    if (pred(st)) return st;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(st)}`);
    await sleep(50);
  }
}

// --- Scenarios ----------------------------------------------------------------------------

const ORDERS = [["raw", "ours", "ours", "raw"], ["ours", "raw", "raw", "ours"]];

function loadArgs(scenario, port, header, seconds) {
  const common = ["-addr", `127.0.0.1:${port}`, "-header", header, "-d", String(seconds)];
  return scenario === "short"
    ? ["-mode", "short", "-c", String(CONC), ...common]
    : ["-mode", "bulk", "-c", String(BULK_CONNS), ...common];
}

async function measure(server, scenario, target, seconds) {
  const port = server.info[target];
  const header = target === "raw" ? "none" : HEADER;
  const c0 = server.cpu();
  const r = await loadgen(loadArgs(scenario, port, header, seconds));
  await sleep(100); // the server's last closes
  const cpu = server.cpu() - c0;
  // short: per connection; bulk: per byte.
  const units = scenario === "short" ? r.conns : r.bytes;
  return {
    target,
    ...r,
    cpu,
    cpuPerUnit: cpu / units,
    util: cpu / r.seconds,
    clientUtil: r.clientCpu / r.seconds,
  };
}

/** short or bulk: ROUNDS rounds of A B B A in each of PROCS processes. */
async function rateScenario(runtime, scenario) {
  const rounds = [];
  for (let p = 0; p < PROCS; p++) {
    const server = await Server.start(runtime);
    try {
      await server.cmd(`mode ${scenario}`);
      for (const t of ["raw", "ours"]) await measure(server, scenario, t, 1); // warm-up
      for (let r = 0; r < ROUNDS; r++) {
        const order = ORDERS[(p + r) % 2];
        const samples = [];
        for (const target of order) samples.push(await measure(server, scenario, target, SECONDS));
        const sum = (t, key) =>
          samples.filter((s) => s.target === t).reduce((a, s) => a + s[key], 0);
        const units = scenario === "short" ? "conns" : "bytes";
        const round = {
          proc: p,
          order: order.join(" "),
          samples,
          rateRatio: (sum("ours", units) / sum("ours", "seconds")) /
            (sum("raw", units) / sum("raw", "seconds")),
          cpuRatio: (sum("ours", "cpu") / sum("ours", units)) /
            (sum("raw", "cpu") / sum("raw", units)),
          errors: sum("raw", "errors") + sum("ours", "errors"),
        };
        rounds.push(round);
        log(
          `${runtime} ${scenario} p${p} r${r} [${round.order}] rate ${
            round.rateRatio.toFixed(3)
          } cpu ${round.cpuRatio.toFixed(3)}`,
          samples.map((s) =>
            `${s.target}:${(s.rate / (scenario === "short" ? 1 : 1 << 20)).toFixed(0)}/s@${
              (s.util * 100).toFixed(0)
            }%/${(s.clientUtil * 100).toFixed(0)}%`
          ).join(" "),
        );
      }
      const st = await server.cmd("stats");
      if (st.ours.refused || st.ours.errors || st.raw.errors) {
        log(`${runtime} ${scenario}: app/library errors`, JSON.stringify(st));
      }
    } finally {
      await server.stop();
    }
  }
  return rounds;
}

async function gcStats(server) {
  await server.cmd("gc");
  await sleep(300);
  await server.cmd("gc");
  await sleep(100);
  return server.cmd("stats");
}

/** One idle measurement in a fresh process: RSS before and after N idle connections. */
async function idleOnce(runtime, variant, target) {
  const server = await Server.start(runtime);
  try {
    // Warm both listeners identically: short connections, then idle ones like the real run.
    await server.cmd("mode short");
    for (const t of ["raw", "ours"]) await measure(server, "short", t, 0.5);
    await server.cmd("mode idle");
    for (const t of ["raw", "ours"]) {
      const lg = await idleOpen(server.info[t], 50, variant, t === "raw");
      await waitStats(server, (st) => st[t].open === lg.ready.conns, "warm-up idle");
      await lg.close();
      await waitStats(server, (st) => st[t].open === 0, "warm-up close");
    }
    const before = await gcStats(server);
    const lg = await idleOpen(server.info[target], IDLE_N, variant, target === "raw");
    const n = lg.ready.conns;
    const want = before[target].bytes + n * variant.payload;
    await waitStats(
      server,
      (st) => st[target].open === n && st[target].bytes >= want,
      `${n} idle connections`,
    );
    const after = await gcStats(server);
    await lg.close();
    const d = (key) => (after[key] - before[key]) / n;
    return {
      target,
      conns: n,
      errors: lg.ready.errors,
      rssPerConn: d("rss"),
      heapPerConn: (after.heap.heapUsed - before.heap.heapUsed) / n,
      externalPerConn: (after.heap.external - before.heap.external) / n,
      rssBefore: before.rss,
      rssAfter: after.rss,
    };
  } finally {
    await server.stop();
  }
}

async function idleScenario(runtime) {
  const res = {};
  for (const variant of IDLE_VARIANTS) {
    const runs = { raw: [], ours: [] };
    for (let p = 0; p < 2 * PROCS; p++) {
      const target = ORDERS[0][p % 4];
      const r = await idleOnce(runtime, variant, target);
      runs[target].push(r);
      log(
        `${runtime} idle ${variant.name} p${p} ${target}: ${
          (r.rssPerConn / 1024).toFixed(2)
        } KiB/conn` +
          ` RSS, ${(r.heapPerConn / 1024).toFixed(2)} KiB heap, ${
            (r.externalPerConn / 1024).toFixed(2)
          } KiB external (${r.conns} conns)`,
      );
    }
    const diffs = runs.ours.map((o, i) => o.rssPerConn - runs.raw[i].rssPerConn);
    res[variant.name] = { runs, diffs };
  }
  return res;
}

// --- Report -------------------------------------------------------------------------------

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
function spread(xs, fmt) {
  if (xs.length === 0) return "-";
  return `${fmt(median(xs))} [${fmt(Math.min(...xs))}, ${fmt(Math.max(...xs))}]`;
}
const ratio = (x) => x.toFixed(2);
const kib = (x) => `${x >= 0 ? "+" : ""}${(x / 1024).toFixed(2)}`;
const kibAbs = (x) => (x / 1024).toFixed(2);

/** A hash of the library's sources, to tell whether they changed during the run. */
function sourceHash() {
  const h = createHash("sha256");
  const files = [path.join(root, "jsr.json"), path.join(root, "mod.ts")];
  for (const f of readdirSync(path.join(root, "lib"), { recursive: true })) {
    if (String(f).endsWith(".ts")) files.push(path.join(root, "lib", String(f)));
  }
  for (const f of files.sort()) {
    h.update(f);
    try {
      h.update(readFileSync(f));
    } catch {
      // moved away meanwhile
    }
  }
  return h.digest("hex").slice(0, 12);
}

function machine() {
  const first = (cmd, args) => {
    try {
      return sh(cmd, args).split("\n")[0];
    } catch {
      return "?";
    }
  };
  return {
    date: new Date().toISOString(),
    nproc: first("nproc", []),
    cpu: os.cpus()[0]?.model ?? "?",
    kernel: os.release(),
    deno: first(path.join(bin, "deno"), ["--version"]),
    bun: `bun ${first(path.join(bin, "bun"), ["--version"])}`,
    node: `node ${process.version}`,
    go: first("go", ["version"]),
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(" "),
    commit: first("git", ["-C", root, "rev-parse", "--short", "HEAD"]),
    sources: sourceHash(),
    top: first("sh", [
      "-c",
      "ps -eo pcpu,comm --sort=-pcpu --no-headers | head -5 | awk '{printf \"%s %s%%; \", $2, $1}'",
    ]),
  };
}

const startInfo = machine();
log("machine", JSON.stringify(startInfo));
log(
  `ROUNDS=${ROUNDS} PROCS=${PROCS} SECONDS=${SECONDS} CONC=${CONC} IDLE_N=${IDLE_N} ` +
    `BULK_CONNS=${BULK_CONNS} HEADER=${HEADER}`,
);
const t0 = Date.now();
const results = {};
for (const runtime of RUNTIMES) {
  results[runtime] = {};
  for (const scenario of SCENARIOS) {
    results[runtime][scenario] = scenario === "idle"
      ? await idleScenario(runtime)
      : await rateScenario(runtime, scenario);
  }
}
const endInfo = machine();
writeFileSync(
  path.join(out, `results-${startInfo.date.replace(/[:.]/g, "-")}.json`),
  JSON.stringify({ startInfo, endInfo, results }, null, 1),
);

const col = (f) => RUNTIMES.map((rt) => f(results[rt]));
const rows = [];
const row = (label, cells, goal) => rows.push(`| ${label} | ${cells.join(" | ")} | ${goal} |`);
const values = (r, scenario, key) => (r[scenario] ?? []).map((x) => x[key]);
const allSamples = (r, scenario, target) =>
  (r[scenario] ?? []).flatMap((x) => x.samples.filter((s) => s.target === target));
if (SCENARIOS.includes("short")) {
  row(
    `short conns (${HEADER} + 100 B, 100 B reply): rate, ours / raw`,
    col((r) => spread(values(r, "short", "rateRatio"), ratio)),
    ">= 0.95",
  );
  row(
    "short conns: server CPU per conn, ours / raw",
    col((r) => spread(values(r, "short", "cpuRatio"), ratio)),
    "<= 1.10",
  );
}
if (SCENARIOS.includes("idle")) {
  for (const v of IDLE_VARIANTS) {
    row(
      `idle conns (${v.name}): RSS per conn, ours - raw (KiB)`,
      col((r) => spread(r.idle[v.name].diffs, kib)),
      "<= +1",
    );
  }
}
if (SCENARIOS.includes("bulk")) {
  row(
    `bulk (${BULK_CONNS} conns, bytes after the header): throughput, ours / raw`,
    col((r) => spread(values(r, "bulk", "rateRatio"), ratio)),
    ">= 0.98",
  );
  row(
    "bulk: server CPU per byte, ours / raw",
    col((r) => spread(values(r, "bulk", "cpuRatio"), ratio)),
    "",
  );
}

const detail = [];
const drow = (label, f) => detail.push(`| ${label} | ${col(f).join(" | ")} |`);
const med = (xs, fmt) => (xs.length ? fmt(median(xs)) : "-");
if (SCENARIOS.includes("short")) {
  for (const t of ["raw", "ours"]) {
    drow(
      `short ${t}: conns/s`,
      (r) => med(allSamples(r, "short", t).map((s) => s.rate), (x) => x.toFixed(0)),
    );
    drow(
      `short ${t}: server CPU µs/conn (server busy %)`,
      (r) => {
        const s = allSamples(r, "short", t);
        return `${med(s.map((x) => x.cpuPerUnit * 1e6), (x) => x.toFixed(1))} (${
          med(s.map((x) => x.util * 100), (x) => x.toFixed(0))
        }%)`;
      },
    );
    drow(`short ${t}: latency p50 / p99 µs`, (r) => {
      const s = allSamples(r, "short", t);
      return `${med(s.map((x) => x.p50us), String)} / ${med(s.map((x) => x.p99us), String)}`;
    });
  }
  drow(
    "short: client errors",
    (r) => String(values(r, "short", "errors").reduce((a, b) => a + b, 0)),
  );
}
if (SCENARIOS.includes("idle")) {
  for (const v of IDLE_VARIANTS) {
    for (const t of ["raw", "ours"]) {
      drow(
        `idle ${v.name} ${t}: KiB/conn RSS, heap, external`,
        (r) => {
          const runs = r.idle[v.name].runs[t];
          return ["rssPerConn", "heapPerConn", "externalPerConn"].map((k) =>
            med(runs.map((x) => x[k]), kibAbs)
          ).join(", ");
        },
      );
    }
  }
}
if (SCENARIOS.includes("bulk")) {
  for (const t of ["raw", "ours"]) {
    drow(
      `bulk ${t}: MiB/s (server busy %)`,
      (r) => {
        const s = allSamples(r, "bulk", t);
        return `${med(s.map((x) => x.rate / (1 << 20)), (x) => x.toFixed(0))} (${
          med(s.map((x) => x.util * 100), (x) => x.toFixed(0))
        }%)`;
      },
    );
  }
}

const names = RUNTIMES.map((rt) => ({ deno: "Deno", bun: "Bun", node: "Node" })[rt] ?? rt);
console.log(`
## Per-connection cost (benches/conn)

${startInfo.date}, ${
  ((Date.now() - t0) / 60000).toFixed(1)
} min. ${startInfo.nproc} CPUs (${startInfo.cpu}), Linux ${startInfo.kernel}; ${startInfo.deno}, ${startInfo.bun}, ${startInfo.node}, ${startInfo.go}.
Server pinned to CPU ${SERVER_CPU}, load generator to CPU ${CLIENT_CPU}. Load average ${startInfo.loadavg} at the start, ${endInfo.loadavg} at the end; busiest processes at the start: ${startInfo.top}
ROUNDS=${ROUNDS} PROCS=${PROCS} SECONDS=${SECONDS} CONC=${CONC} IDLE_N=${IDLE_N} BULK_CONNS=${BULK_CONNS}.
Commit ${startInfo.commit}, library sources ${startInfo.sources}${
  endInfo.sources === startInfo.sources
    ? ""
    : ` at the start and ${endInfo.sources} at the end: THEY CHANGED DURING THE RUN`
}.
Cells: median [min, max] over ${
  ROUNDS * PROCS
} A B B A rounds (idle: over ${PROCS} pairs of fresh processes).

| measure | ${names.join(" | ")} | goal |
|---|${names.map(() => "---").join("|")}|---|
${rows.join("\n")}

| detail (medians) | ${names.join(" | ")} |
|---|${names.map(() => "---").join("|")}|
${detail.join("\n")}
`);
