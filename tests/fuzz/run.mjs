// `npm run fuzz`: a million cases per target on each runtime (Deno, Bun, Node), in worker
// processes (tests/fuzz/worker.ts) that share the machine's cores. A failing case is
// written to tests/fuzz/fixtures/ (replayed by tests/fuzz/fuzz.test.ts); a worker that
// makes no progress for --stall seconds, or dies, is killed and its range run again a
// case at a time to find the case, which becomes a fixture too. Exits non-zero on any
// failure. See FUZZING.md.
//
// Usage: node tests/fuzz/run.mjs [--cases N] [--runtime deno,bun,node] [--seed S]
//          [--target header,tlv,datagram,accept] [--jobs J] [--shard N] [--stall S] [--bound MS]
//          [--fixtures DIR] [--simulate-hang I]
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, platform, release } from "node:os";
import { build } from "esbuild";

const args = {};
for (let i = 2; i < process.argv.length; i++) {
  const m = /^--([a-z-]+)(?:=(.*))?$/.exec(process.argv[i]);
  if (m === null) throw new Error(`unknown argument ${process.argv[i]}`);
  args[m[1]] = m[2] ?? (process.argv[i + 1]?.startsWith("--") ? "" : process.argv[++i] ?? "");
}
const cases = Number(args.cases ?? 1_000_000);
const seed = args.seed !== undefined ? Number(args.seed) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const runtimes = (args.runtime ?? "deno,bun,node").split(",");
const targets = (args.target ?? "header,tlv,datagram,accept").split(",");
const jobs = Number(args.jobs ?? availableParallelism());
const shardSize = Number(args.shard ?? 50_000);
const stallSeconds = Number(args.stall ?? 60);
const bound = String(args.bound ?? 250);
const FIXTURES = args.fixtures ?? "tests/fuzz/fixtures";
// Checks the watchdog: the worker never finishes case --simulate-hang I.
const passOn = args["simulate-hang"] !== undefined
  ? ["--simulate-hang", args["simulate-hang"]]
  : [];

for (const r of runtimes) {
  if (!["deno", "bun", "node"].includes(r)) throw new Error(`unknown runtime ${r}`);
}

/** The command that runs the worker on a runtime. */
async function command(runtime) {
  if (runtime === "deno") return ["node_modules/.bin/deno", ["run", "-A", "tests/fuzz/worker.ts"]];
  if (runtime === "bun") return ["node_modules/.bin/bun", ["tests/fuzz/worker.ts"]];
  // Node runs TypeScript through esbuild, the library from the working tree's source (the
  // same modules Deno and Bun run), so that no stale dist/ is fuzzed.
  await build({
    entryPoints: ["tests/fuzz/worker.ts"],
    outfile: ".build/fuzz/worker.mjs",
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    alias: { "@proxy-protocol/edge": "./mod.ts" },
    logLevel: "warning",
  });
  return [process.execPath, [".build/fuzz/worker.mjs"]];
}

function version(runtime) {
  const bin = runtime === "node" ? process.execPath : `node_modules/.bin/${runtime}`;
  const out = spawnSync(bin, ["--version"], { encoding: "utf8" }).stdout.trim();
  return `${runtime} ${out.split("\n")[0].replace(/^deno /, "").replace(/^v/, "").split(" ")[0]}`;
}

let failed = 0;
const written = [];

function writeFixture(text, target, index, runtime, note = "") {
  mkdirSync(FIXTURES, { recursive: true });
  const path = `${FIXTURES}/${target}-s${seed}-i${index}.hex`;
  const stamp = `# runtime: ${runtime}, ${new Date().toISOString().slice(0, 10)}${note}\n`;
  writeFileSync(path, stamp + text);
  written.push(path);
  return path;
}

/**
 * Runs one worker over [from, from + count); resolves with its `done` line (or undefined
 * if it died or stalled), calling `onLine` for every line it writes.
 */
function runWorker(cmd, target, from, count, extra, onLine) {
  return new Promise((resolve) => {
    const child = spawn(cmd[0], [
      ...cmd[1],
      ...["--target", target, "--seed", String(seed), "--from", String(from)],
      ...["--count", String(count), "--bound", bound, ...passOn, ...extra],
    ], { stdio: ["ignore", "pipe", "pipe"] });
    let buffer = "", done, last = Date.now(), lastCase = from - 1, stderr = "", stalled = false;
    /** With --trace: the case started last. */
    let current = -1;
    const watchdog = setInterval(() => {
      if (Date.now() - last > stallSeconds * 1000) {
        child.kill("SIGKILL");
        stalled = true;
      }
    }, 1000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (data) => {
      last = Date.now();
      buffer += data;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let msg;
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.type === "done") done = msg;
        if (msg.type === "case") (current = msg.index, lastCase = msg.index - 1);
        if (msg.type === "progress") lastCase = from + msg.done - 1;
        onLine(msg);
      }
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (data) => (stderr = (stderr + data).slice(-4000)));
    child.on("close", (code, signal) => {
      clearInterval(watchdog);
      resolve({ done, code, signal, stalled, lastCase, current, stderr });
    });
  });
}

/**
 * A worker stalled or died in [from, from + count): run the range again a case at a time
 * (with a trace line before each) to find the case, and write it as a fixture.
 */
async function hunt(cmd, runtime, target, from, count, why, onLine) {
  console.log(`  ${runtime} ${target}: ${why} in [${from}, ${from + count}); finding the case`);
  const r = await runWorker(cmd, target, from, count, ["--trace"], onLine);
  const index = r.done === undefined ? r.current : -1;
  if (index < 0) {
    console.log(`  ${runtime} ${target}: the range passed when run again (${why} not reproduced)`);
    failed++;
    return r.done?.cases ?? 0;
  }
  const dump = spawnSync(cmd[0], [
    ...cmd[1],
    ...["--dump", "--target", target, "--seed", String(seed), "--from", String(index)],
  ], { encoding: "utf8" });
  const c = JSON.parse(dump.stdout.trim().split("\n").pop());
  const what = r.stalled
    ? `hang: no progress for ${stallSeconds} s`
    : `crash: ${r.signal ?? r.code}`;
  const fixture = [
    `# ${what} (${r.stderr.trim().split("\n").pop() ?? ""})`,
    `# target: ${target}`,
    `# kind: ${c.kind}`,
    `# params: ${JSON.stringify(c.params)}`,
    `# found: seed ${seed} index ${index}`,
    c.hex,
    "",
  ].join("\n");
  const path = writeFixture(fixture, target, index, runtime);
  console.log(`  ${runtime} ${target}: case ${index} ${what}; written to ${path}\n${c.text}`);
  failed++;
  return index - from;
}

/** Runs `tasks` (functions returning promises) `jobs` at a time. */
async function pool(tasks) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(jobs, tasks.length) }, async () => {
    while (next < tasks.length) await tasks[next++]();
  }));
}

/**
 * The commit and the uncommitted changes of the code the workers load (mod.ts, lib/*.ts,
 * lib/connection/): a run is of one version of that code.
 */
function codeVersion() {
  const git = (...a) => spawnSync("git", a, { encoding: "utf8" }).stdout?.trim() ?? "";
  const paths = ["--", "mod.ts", ":(glob)lib/*.ts", "lib/connection"];
  const changed = git("status", "--porcelain", ...paths);
  const diff = changed === "" ? "" : git("diff", "HEAD", ...paths);
  return `${git("rev-parse", "--short", "HEAD") || "no git"}` +
    (changed === ""
      ? ""
      : ` + uncommitted changes (${changed.split("\n").length} files, diff ${diff.length} chars)`);
}
const codeAtStart = codeVersion();

const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${platform()} ${release()}`;
console.log(
  `fuzz: ${cases} cases per target (${targets.join(", ")}) per runtime (${runtimes.join(", ")}),` +
    ` seed ${seed}, ${jobs} jobs, shards of ${shardSize}, bound ${bound} ms, stall ${stallSeconds} s`,
);
console.log(`machine: ${machine}\ncode: ${codeAtStart}`);
const summary = [];
for (const runtime of runtimes) {
  const cmd = await command(runtime);
  const v = version(runtime);
  const started = Date.now();
  const perTarget = Object.fromEntries(targets.map((t) => [t, { cases: 0, ms: 0, failures: 0 }]));
  const tasks = [];
  for (const target of targets) {
    for (let from = 0; from < cases; from += shardSize) {
      const count = Math.min(shardSize, cases - from);
      const onLine = (msg) => {
        if (msg.type !== "failure") return;
        failed++;
        perTarget[target].failures++;
        const path = writeFixture(msg.fixture, target, msg.index, msg.runtime);
        console.log(`  FAILURE ${msg.runtime} ${target} #${msg.index}, written to ${path}`);
        console.log(msg.message.length > 3000 ? msg.message.slice(0, 3000) + "…" : msg.message);
      };
      tasks.push(async () => {
        const r = await runWorker(cmd, target, from, count, [], onLine);
        if (r.done !== undefined) {
          perTarget[target].cases += r.done.cases;
          perTarget[target].ms += r.done.ms;
          return;
        }
        const why = r.stalled
          ? `no progress for ${stallSeconds} s`
          : `worker died (${r.signal ?? r.code})`;
        if (r.stderr) console.log(r.stderr);
        perTarget[target].cases += r.lastCase + 1 - from;
        const start = r.lastCase + 1;
        perTarget[target].failures++;
        perTarget[target].cases += await hunt(
          cmd,
          runtime,
          target,
          start,
          from + count - start,
          why,
          onLine,
        );
      });
    }
  }
  let reported = 0;
  const ticker = setInterval(() => {
    const sum = Object.values(perTarget).reduce((a, t) => a + t.cases, 0);
    if (sum !== reported) {
      console.log(
        `  ${v}: ${sum} / ${cases * targets.length} cases, ${
          ((Date.now() - started) / 1000).toFixed(0)
        } s`,
      );
      reported = sum;
    }
  }, 30_000);
  await pool(tasks);
  clearInterval(ticker);
  const wall = (Date.now() - started) / 1000;
  summary.push({ runtime: v, wall, perTarget });
  console.log(`${v}: ${wall.toFixed(0)} s wall`);
  for (const [t, s] of Object.entries(perTarget)) {
    console.log(
      `  ${t.padEnd(8)} ${String(s.cases).padStart(8)} cases, ${
        (s.ms / 1000).toFixed(0)
      } s in workers, ${s.failures} failures`,
    );
  }
}

const codeAtEnd = codeVersion();
if (codeAtEnd !== codeAtStart) {
  console.log(`WARNING: the code changed during the run: ${codeAtStart} -> ${codeAtEnd}`);
  failed++;
}
mkdirSync(".build/fuzz", { recursive: true });
writeFileSync(
  ".build/fuzz/last-run.json",
  JSON.stringify(
    { date: new Date().toISOString(), seed, cases, jobs, machine, summary, failed },
    null,
    2,
  ),
);
console.log(
  "\n| runtime | target | cases | time in workers (s) | failures |\n|---|---|---:|---:|---:|",
);
for (const { runtime, perTarget } of summary) {
  for (const [t, s] of Object.entries(perTarget)) {
    console.log(`| ${runtime} | ${t} | ${s.cases} | ${(s.ms / 1000).toFixed(0)} | ${s.failures} |`);
  }
}
for (const { runtime, wall } of summary) console.log(`${runtime}: ${wall.toFixed(0)} s wall`);
if (written.length > 0) console.log(`fixtures written: ${written.join(", ")}`);
console.log(failed === 0 ? `no failures (seed ${seed})` : `${failed} failures (seed ${seed})`);
process.exit(failed === 0 ? 0 : 1);
