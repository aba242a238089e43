// The load test of issue 10: 10,000 concurrent connections, each declaring its own address
// in its PROXY header, each answer checked to carry that address, zero errors, and the
// server's memory after they close, through the library's listener and through the CLI
// gateway, on Deno, Bun and Node. Not part of `npm test`. See benches/RESULTS.md.
//
// Usage: node benches/load/run.mjs [--runtime deno|bun|node|all] [--target listener|gateway|all]
//          [--connections 10000] [--warmup 500] [--rounds 2] [--workers auto|N] [--dialers 256]
//
// The client is Go (loadgen/, standard library, built offline into .out/): it opens every
// connection at once and holds them until all are established; then each sends its header
// (v1 TCP4, v2 TCP4, v2 TCP6, v1 TCP6 in turn; source 10.a.b.c or 2001:db8::a:b, its port
// from its index), reads the answer "ADDRESS PORT\n" and checks it; once all have answered,
// all close. listener: server_<runtime>.ts (the library's listener answers with the address it
// saw). gateway: gateway_gc.ts (the CLI's main, as `proxy-protocol gateway` runs it) in front
// of loadgen's upstream mode, which decodes the gateway's outgoing header and answers with
// the address in it. Memory is the server's VmRSS (the gateway's: all its processes) at
// baseline (after a warm-up round and a full GC), with all connections established, with
// all answered, the highest seen (sampled every 50 ms), after they closed, and after a full
// GC; and the JS heap (used + external) at baseline, all answered, and after GC. With
// --rounds 2 (the default) the whole round runs again in the same process: RSS after the
// second round's GC against the first's tells memory kept for reuse from memory leaked.
import { bundleNode } from "../bundle_node.mjs";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const out = path.join(here, ".out");
const bin = path.join(root, "node_modules/.bin");

const { values: flags } = parseArgs({
  options: {
    runtime: { type: "string", default: "all" },
    target: { type: "string", default: "all" },
    connections: { type: "string", default: "10000" },
    warmup: { type: "string", default: "500" },
    workers: { type: "string", default: "auto" },
    dialers: { type: "string", default: "256" },
    rounds: { type: "string", default: "2" },
  },
});
const RUNTIMES = flags.runtime === "all" ? ["deno", "bun", "node"] : flags.runtime.split(",");
const TARGETS = flags.target === "all" ? ["listener", "gateway"] : flags.target.split(",");
const N = Number(flags.connections);
const WARMUP = Number(flags.warmup);
const ROUNDS = Number(flags.rounds);
for (const r of RUNTIMES) if (!["deno", "bun", "node"].includes(r)) usage(`runtime ${r}`);
for (const t of TARGETS) if (!["listener", "gateway"].includes(t)) usage(`target ${t}`);
if (!(N > 0) || !(WARMUP >= 0) || !(ROUNDS >= 1)) usage("--connections / --warmup / --rounds");

function usage(what) {
  console.error(`bad ${what}; see the usage at the top of benches/load/run.mjs`);
  process.exit(2);
}

const log = (...args) => console.error("[load]", ...args);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;
const mib = (bytes) => (bytes / MiB).toFixed(1);

// --- Build -------------------------------------------------------------------------------

mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, ".gitignore"), "*\n");
{
  const r = spawnSync("go", ["build", "-o", path.join(out, "loadgen"), "."], {
    cwd: path.join(here, "loadgen"),
    env: { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=mod" },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`go build: ${r.stderr}`);
}
const LOADGEN = path.join(out, "loadgen");

if (RUNTIMES.includes("node")) {
  // Node runs bundles of the sources (the package name resolved through jsr.json).
  await bundleNode({
    entryPoints: {
      server_node: path.join(here, "server_node.ts"),
      gateway_node: path.join(here, "gateway_gc.ts"),
    },
    outdir: out,
    outExtension: { ".js": ".mjs" },
    logLevel: "error",
  });
}

const SERVERS = {
  deno: [path.join(bin, "deno"), "run", "-A", "--v8-flags=--expose-gc", "server_deno.ts"],
  bun: [path.join(bin, "bun"), "server_bun.ts"],
  node: [process.execPath, "--expose-gc", path.join(out, "server_node.mjs")],
};
// --unstable-net: Deno.listen's reusePort for --workers (else Deno's workers fall back to
// node:net); DENO_V8_FLAGS reaches the forked workers, --v8-flags does not.
const GATEWAYS = {
  deno: [path.join(bin, "deno"), "run", "-A", "--unstable-net", "gateway_gc.ts"],
  bun: [path.join(bin, "bun"), "gateway_gc.ts"],
  node: [process.execPath, "--expose-gc", path.join(out, "gateway_node.mjs")],
};

// --- Processes ----------------------------------------------------------------------------

/** Lines of a stream, one awaited at a time (or matched). */
function lines(stream) {
  const seen = [];
  const waiters = [];
  let pending = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      seen.push(line);
      for (const w of [...waiters]) {
        if (w.match(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  let taken = 0;
  return {
    seen,
    /** The next line not yet taken. */
    next(ms = 120_000) {
      const i = taken++;
      return this.find((_, at) => at === i, ms);
    },
    /** The first line (from now or before) for which `match` holds. */
    find(match, ms = 120_000) {
      const at = seen.findIndex((l, i) => match(l, i));
      if (at >= 0) return Promise.resolve(seen[at]);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such line within ${ms} ms`)), ms);
        waiters.push({
          match: (l) => match(l, seen.length - 1),
          resolve: (l) => (clearTimeout(timer), resolve(l)),
        });
      });
    },
  };
}

const children = new Set();
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

function start(cmd, args, options = {}) {
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], ...options });
  children.add(child);
  child.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  child.out = lines(child.stdout);
  child.err = lines(child.stderr);
  return child;
}

function status(pid) {
  return readFileSync(`/proc/${pid}/status`, "utf8");
}

function vmRss(pid) {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(status(pid))[1]) * 1024;
  } catch {
    return 0;
  }
}

function nofileOf(pid) {
  return Number(/Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, "utf8"))[1]);
}

/** `pid` and every process under it. */
function tree(pid) {
  const out = [pid];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let kids = "";
    try {
      kids = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8");
    } catch {
      continue;
    }
    for (const kid of kids.trim().split(/\s+/).filter(Boolean)) out.push(...tree(Number(kid)));
  }
  return out;
}

/** Samples the highest RSS (summed over `pids()`) every 50 ms until stopped. */
function sampler(pids) {
  let peak = 0;
  const take = () => {
    peak = Math.max(peak, pids().reduce((sum, pid) => sum + vmRss(pid), 0));
  };
  take();
  const timer = setInterval(take, 50);
  return {
    stop() {
      clearInterval(timer);
      take();
      return peak;
    },
  };
}

/** The kernel's listen-queue counters (this network namespace): overflows drop a SYN or ACK. */
function listenDrops() {
  const lines = readFileSync("/proc/net/netstat", "utf8").split("\n");
  const at = lines.findIndex((l) => l.startsWith("TcpExt:"));
  const keys = lines[at].split(/\s+/), values = lines[at + 1].split(/\s+/);
  return Number(values[keys.indexOf("ListenDrops")]);
}

async function freePort() {
  const s = net.createServer();
  await new Promise((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

function get(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => body += d);
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
  });
}

/** One client round of `n` connections: established → hook → answered → hook → closed. */
async function round(port, n, hooks = {}) {
  const client = start(LOADGEN, [
    "-mode",
    "client",
    "-addr",
    `127.0.0.1:${port}`,
    "-n",
    String(n),
    "-dial",
    flags.dialers,
  ]);
  client.stderr.on("data", (d) => process.stderr.write(d));
  const established = JSON.parse(await client.out.next());
  await hooks.established?.(established);
  client.stdin.write("go\n");
  const answered = JSON.parse(await client.out.next());
  await hooks.answered?.(answered);
  client.stdin.write("close\n");
  const closed = JSON.parse(await client.out.next());
  client.stdin.end();
  await client.exited;
  children.delete(client);
  const errors = answered.errors;
  return { established, answered, closed, errors };
}

/** Waits until `open()` resolves to 0. */
async function drained(open, ms = 60_000) {
  const deadline = Date.now() + ms;
  let now;
  while ((now = await open()) !== 0) {
    if (Date.now() > deadline) throw new Error(`still ${now} open after ${ms} ms`);
    await sleep(100);
  }
}

// --- Targets ------------------------------------------------------------------------------

/** The library's listener in a server child, measured through its control channel. */
async function listener(runtime) {
  const [cmd, ...args] = SERVERS[runtime];
  const server = start(cmd, args, { cwd: here });
  server.stderr.on("data", (d) => process.stderr.write(d));
  const ready = JSON.parse(await server.out.next());
  const control = async (command) => {
    server.stdin.write(command + "\n");
    return JSON.parse(await server.out.next());
  };
  return {
    runtime: ready.runtime,
    port: ready.port,
    pids: () => [ready.pid],
    nofile: { [ready.pid]: ready.nofile },
    need: N + 64,
    open: async () => (await control("stats")).open,
    async memory() {
      const s = await control("stats");
      return { rss: s.rss, heap: s.heapUsed + s.external };
    },
    async gc() {
      const s = await control("gc");
      return { rss: vmRss(ready.pid), heap: s.heapUsed + s.external, gc: s.gc };
    },
    async problems() {
      const s = await control("stats");
      return { refused: s.refused, errors: s.errors };
    },
    async stop() {
      server.stdin.end();
      await server.exited;
    },
  };
}

/** The CLI gateway (gateway_gc.ts) in front of loadgen's upstream. */
async function gateway(runtime) {
  const upstream = start(LOADGEN, ["-mode", "upstream", "-addr", "127.0.0.1:0"]);
  const upstreamAddr = JSON.parse(await upstream.out.next()).addr;
  const limit = Number(spawnSync("bash", ["-c", "ulimit -n"], { encoding: "utf8" }).stdout);
  // Two descriptors a relayed connection (the client's, the upstream's), and some spare.
  const workers = flags.workers === "auto"
    ? Math.ceil((2 * N + 200) / limit)
    : Number(flags.workers);
  const [port, metricsPort] = [await freePort(), await freePort()];
  const [cmd, ...args] = GATEWAYS[runtime];
  const child = start(cmd, [
    ...args,
    "gateway",
    "--listen",
    `127.0.0.1:${port}`,
    "--upstream",
    upstreamAddr,
    "--metrics",
    `127.0.0.1:${metricsPort}`,
    "--timeout",
    "60000", // see server_deno.ts
    "--max-connections",
    String(Math.max(10_000, N + 1000)),
    "--workers",
    String(workers),
    "--log-level",
    "warn",
  ], { cwd: here, env: { ...process.env, DENO_V8_FLAGS: "--expose-gc" } });
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  for (let i = 0;; i++) {
    try {
      if ((await get(metricsUrl)).includes("connections_open")) break;
    } catch {
      // not yet
    }
    if (i > 300) throw new Error(`the gateway did not start: ${child.err.seen.join("\n")}`);
    await sleep(100);
  }
  await sleep(300); // the workers, when there are several, are all up once metrics answer
  const pids = () => tree(child.pid);
  const metric = async (name) => {
    const m = new RegExp(`^${name} (\\d+)$`, "m").exec(await get(metricsUrl));
    return m === null ? 0 : Number(m[1]);
  };
  const heapAfterGc = async () => {
    const all = pids();
    const since = child.err.seen.length;
    for (const pid of all) process.kill(pid, "SIGUSR2");
    const got = new Map();
    await child.err.find((line, i) => {
      if (i < since || !line.includes('"load-gc"')) return false;
      const j = JSON.parse(line);
      got.set(j.pid, j);
      return got.size >= all.length;
    }, 10_000);
    return [...got.values()];
  };
  return {
    runtime: `${runtime} gateway, ${workers} worker${workers > 1 ? "s" : ""}`,
    workers,
    port,
    pids,
    get nofile() {
      return Object.fromEntries(pids().map((pid) => [pid, nofileOf(pid)]));
    },
    need: Math.ceil((2 * N) / workers) + 64,
    open: () => metric("proxy_protocol_connections_open"),
    memory() {
      return Promise.resolve({
        rss: pids().reduce((s, pid) => s + vmRss(pid), 0),
        heap: undefined,
      });
    },
    async gc() {
      const heaps = await heapAfterGc();
      return {
        rss: pids().reduce((s, pid) => s + vmRss(pid), 0),
        heap: heaps.reduce((s, h) => s + h.heapUsed + h.external, 0),
        gc: heaps.every((h) => h.gc),
      };
    },
    async problems() {
      const text = await get(metricsUrl);
      const refused = {};
      for (const m of text.matchAll(/connections_refused_total\{code="([A-Z0-9_]+)"\} (\d+)/g)) {
        refused[m[1]] = Number(m[2]);
      }
      const failures = [...text.matchAll(/upstream_connect_failures_total\{[^}]*\} (\d+)/g)]
        .reduce((s, m) => s + Number(m[1]), 0);
      const warnings = child.err.seen.filter((l) => /"level":"(warn|error)"/.test(l));
      const upstreamErrors = upstream.err.seen;
      const kinds = {};
      for (const l of warnings) {
        const { msg, code, error, message } = JSON.parse(l);
        const key = [msg, code, error ?? message].filter(Boolean).join(": ");
        kinds[key] = (kinds[key] ?? 0) + 1;
      }
      for (const l of upstreamErrors) kinds[l] = (kinds[l] ?? 0) + 1;
      return {
        refused,
        errors: failures + warnings.length + upstreamErrors.length,
        kinds,
      };
    },
    async stop() {
      child.kill("SIGTERM");
      await child.exited;
      upstream.kill("SIGTERM");
      await upstream.exited;
    },
  };
}

// --- One run ------------------------------------------------------------------------------

async function measure(runtime, targetName) {
  const target = targetName === "listener" ? await listener(runtime) : await gateway(runtime);
  try {
    for (const [pid, limit] of Object.entries(target.nofile)) {
      if (limit < target.need) {
        throw new Error(`pid ${pid}: ulimit -n ${limit} < ${target.need} needed`);
      }
    }
    log(`${target.runtime}: ulimit -n ${JSON.stringify(target.nofile)} (needs ${target.need})`);
    // Warm-up (the same round, smaller), then a full GC: the baseline.
    if (WARMUP > 0) {
      const w = await round(target.port, WARMUP);
      if (w.errors !== 0) throw new Error(`warm-up: ${JSON.stringify(w.answered)}`);
      await drained(target.open);
    }
    await sleep(500);
    const baseline = await target.gc();
    log(`${target.runtime}: baseline RSS ${mib(baseline.rss)} MiB, heap ${mib(baseline.heap)} MiB`);
    const rounds = [];
    const drops0 = listenDrops();
    for (let k = 1; k <= ROUNDS; k++) {
      const peak = sampler(target.pids);
      const points = {};
      const r = await round(target.port, N, {
        established: async (e) => {
          points.established = await target.memory();
          log(
            `${target.runtime}, round ${k}: ${e.n} established in ${e.ms} ms ` +
              `(${e.errors} errors), RSS ${mib(points.established.rss)} MiB`,
          );
        },
        answered: async (a) => {
          points.answered = await target.memory();
          points.open = await target.open();
          log(
            `${target.runtime}, round ${k}: ${a.answered} answered in ${a.ms} ms ` +
              `(${a.errors} errors), ${points.open} open, RSS ${mib(points.answered.rss)} MiB`,
          );
        },
      });
      const t0 = Date.now();
      await drained(target.open);
      const closeMs = Date.now() - t0;
      const peakRss = peak.stop();
      await sleep(1000);
      const afterClose = await target.memory();
      const afterGc = await target.gc();
      log(
        `${target.runtime}, round ${k}: ${r.errors} client errors; RSS MiB baseline ` +
          `${mib(baseline.rss)}, peak ${mib(peakRss)}, after close ${mib(afterClose.rss)}, ` +
          `after GC ${mib(afterGc.rss)}; heap MiB ${mib(baseline.heap)} -> ${mib(afterGc.heap)}`,
      );
      rounds.push({ r, points, closeMs, peakRss, afterClose, afterGc });
    }
    const problems = await target.problems();
    const drops = listenDrops() - drops0;
    const clientErrors = rounds.reduce((sum, x) => sum + x.r.errors, 0);
    const [first] = rounds;
    const last = rounds[rounds.length - 1];
    const result = {
      runtime,
      target: targetName,
      label: target.runtime,
      workers: target.workers ?? 1,
      connections: N,
      rounds: ROUNDS,
      errors: clientErrors + problems.errors +
        Object.values(problems.refused).reduce((a, b) => a + b, 0),
      clientErrors: rounds.map((x) => x.r.answered.kinds ?? {}),
      firstError: rounds.map((x) => x.r.answered.first).find(Boolean),
      refused: problems.refused,
      serverErrors: problems.errors,
      serverErrorKinds: problems.kinds,
      listenDrops: drops,
      answered: rounds.map((x) => x.r.answered.answered),
      openAtPeak: rounds.map((x) => x.points.open),
      establishMs: rounds.map((x) => x.r.established.ms),
      answerMs: rounds.map((x) => x.r.answered.ms),
      closeMs: rounds.map((x) => x.closeMs),
      rss: {
        baseline: baseline.rss,
        established: first.points.established.rss,
        answered: first.points.answered.rss,
        peak: first.peakRss,
        afterClose: first.afterClose.rss,
        afterGc: first.afterGc.rss,
        lastPeak: last.peakRss,
        lastAfterGc: last.afterGc.rss,
      },
      heap: {
        baseline: baseline.heap,
        answered: first.points.answered.heap,
        afterGc: first.afterGc.heap,
        lastAfterGc: last.afterGc.heap,
      },
      gc: rounds.every((x) => x.afterGc.gc),
    };
    log(
      `${target.runtime}: errors ${result.errors} (refused ${JSON.stringify(result.refused)}; ` +
        `client ${JSON.stringify(result.clientErrors)} ${result.firstError ?? ""}; server ` +
        `${JSON.stringify(problems.kinds ?? {})}); the kernel dropped ${drops} SYN/ACKs ` +
        `at full listen queues (all processes, all rounds)`,
    );
    return result;
  } finally {
    await target.stop();
  }
}

// --- Main ---------------------------------------------------------------------------------

const started = new Date();
const machine = `${os.cpus().length} x ${os.cpus()[0]?.model}, Linux ${os.release()}, ` +
  `${mib(os.totalmem())} MiB`;
log(`${N} connections (warm-up ${WARMUP}); ${machine}`);
const results = [];
for (const target of TARGETS) {
  for (const runtime of RUNTIMES) {
    try {
      results.push(await measure(runtime, target));
    } catch (error) {
      log(`${runtime} ${target}: FAILED: ${error.stack ?? error}`);
      results.push({ runtime, target, failed: String(error.message ?? error) });
    }
  }
}
const file = path.join(out, `results-${started.toISOString().replace(/[:.]/g, "-")}.json`);
writeFileSync(file, JSON.stringify({ started, machine, N, WARMUP, results }, null, 2));
log(`raw results: ${path.relative(root, file)}`);

// A Markdown table for RESULTS.md.
const row = (cells) => `| ${cells.join(" | ")} |`;
console.log(row([
  "target",
  "runtime",
  "errors",
  "all established",
  "all answered",
  "RSS baseline",
  "all established",
  "all answered",
  "peak",
  "after close",
  "after GC",
  "round 2: peak, after GC",
  "listen drops",
  "heap+ext baseline → answered → after GC (round 2)",
]));
console.log(row(Array(14).fill("---")));
for (const r of results) {
  if (r.failed) {
    console.log(row([r.target, r.runtime, `failed: ${r.failed}`, ...Array(11).fill("")]));
    continue;
  }
  const m = (x) => x === undefined ? "-" : mib(x);
  console.log(row([
    r.target,
    r.label,
    String(r.errors),
    r.establishMs.map((ms) => `${ms}`).join(", ") + " ms",
    r.answerMs.map((ms) => `${ms}`).join(", ") + " ms",
    m(r.rss.baseline),
    m(r.rss.established),
    m(r.rss.answered),
    m(r.rss.peak),
    m(r.rss.afterClose),
    m(r.rss.afterGc),
    r.rounds > 1 ? `${m(r.rss.lastPeak)}, ${m(r.rss.lastAfterGc)}` : "-",
    String(r.listenDrops),
    `${m(r.heap.baseline)} → ${m(r.heap.answered)} → ${m(r.heap.afterGc)} (${
      m(r.heap.lastAfterGc)
    })`,
  ]));
}
process.exit(results.every((r) => !r.failed && r.errors === 0) ? 0 : 1);
