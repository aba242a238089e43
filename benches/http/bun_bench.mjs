// HTTP throughput of Bun servers behind HAProxy: Bun.serve (a), Bun's node:http (b), this
// library's serve with a v2 header per connection (c), and Bun's node:http behind ./node's
// serve, emit("connection") (d). HAProxy (mode tcp, nbthread 1) is in front of all four,
// with send-proxy-v2 for (c) and (d) only. wrk keep-alive. Not a test: run by hand,
// `node benches/http/bun_bench.mjs`; prints a markdown table. See bun_bench.md.
//
// Knobs: SECONDS=5 CONC=32 ROUNDS=2 TLS_TOO=1 SERVER_CPU=0 CLIENT_CPU=1
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import net from "node:net";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const env = (name, value) => process.env[name] ?? value;
const SECONDS = Number(env("SECONDS", "5"));
const CONC = Number(env("CONC", "32"));
const ROUNDS = Number(env("ROUNDS", "2"));
const SERVER_CPU = env("SERVER_CPU", "0");
const CLIENT_CPU = env("CLIENT_CPU", "1");
const NAMES = {
  a: "Bun.serve",
  b: "Bun node:http",
  c: "ours: serve (relay), v2 header",
  d: "./node serve(http.Server) on Bun, v2 header",
};

const dir = mkdtempSync(join(tmpdir(), "bun-bench-"));
const cert = join(dir, "cert.pem"), key = join(dir, "key.pem");
execFileSync("openssl", [
  "req",
  "-x509",
  "-newkey",
  "ec",
  "-pkeyopt",
  "ec_paramgen_curve:prime256v1",
  "-nodes",
  "-days",
  "1",
  "-subj",
  "/CN=localhost",
  "-keyout",
  key,
  "-out",
  cert,
], { stdio: "ignore" });

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

async function startServer(tls) {
  const child = spawn("taskset", [
    "-c",
    SERVER_CPU,
    join(root, "node_modules/.bin/bun"),
    join(here, "bun_server.ts"),
  ], {
    cwd: root,
    env: { ...process.env, ...(tls ? { TLS: `${cert},${key}` } : {}) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const ports = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) resolve(JSON.parse(line));
    });
    child.once("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  return { child, ports };
}

async function startHaproxy(ports) {
  const front = {};
  let config =
    `global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n`;
  for (const [name, port] of Object.entries(ports)) {
    front[name] = await freePort();
    const send = name === "c" || name === "d" ? " send-proxy-v2" : "";
    config += `frontend f_${name}\n  bind 127.0.0.1:${front[name]}\n  default_backend b_${name}\n`;
    config += `backend b_${name}\n  server s 127.0.0.1:${port}${send}\n`;
  }
  const file = join(dir, "haproxy.cfg");
  writeFileSync(file, config);
  const child = spawn("taskset", ["-c", CLIENT_CPU, "haproxy", "-db", "-f", file], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  await sleep(500);
  return { child, front };
}

function wrk(url, seconds) {
  const out = execFileSync("taskset", [
    "-c",
    CLIENT_CPU,
    "wrk",
    "-t1",
    `-c${CONC}`,
    `-d${seconds}s`,
    "--latency",
    url,
  ], { encoding: "utf8" });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(out);
  const scale = { us: 0.001, ms: 1, s: 1000 }[p99[2]];
  const errors = /Non-2xx|Socket errors/.test(out);
  return { rps, p99: Number(p99[1]) * scale, errors: errors ? out : "" };
}

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function measure(tls) {
  const { child, ports } = await startServer(tls);
  const haproxy = await startHaproxy(ports);
  const scheme = tls ? "https" : "http";
  const url = (name) => `${scheme}://127.0.0.1:${haproxy.front[name]}/`;
  const results = { a: [], b: [], c: [], d: [] };
  try {
    for (const name of Object.keys(results)) wrk(url(name), 2); // warm-up
    const order = ["a", "b", "c", "d"];
    for (let round = 0; round < ROUNDS; round++) {
      const seq = round % 2 === 0
        ? [...order, ...[...order].reverse()]
        : [...order].reverse().concat(order);
      for (const name of seq) {
        const r = wrk(url(name), SECONDS);
        if (r.errors) console.error(`${name}: ${r.errors}`);
        results[name].push(r);
        console.error(
          `${tls ? "tls " : ""}${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99.toFixed(2)} ms`,
        );
      }
    }
  } finally {
    haproxy.child.kill();
    child.kill();
  }
  return results;
}

const lines = [];
for (const tls of env("TLS_TOO", "1") === "1" ? [false, true] : [false]) {
  const r = await measure(tls);
  const rps = Object.fromEntries(
    Object.entries(r).map(([k, v]) => [k, median(v.map((x) => x.rps))]),
  );
  const p99 = Object.fromEntries(
    Object.entries(r).map(([k, v]) => [k, median(v.map((x) => x.p99))]),
  );
  lines.push(
    `\n### ${tls ? "HTTPS (TLS after the header)" : "HTTP"}: wrk -c${CONC}, ${SECONDS}s x ${
      ROUNDS * 2
    } per server, medians\n`,
  );
  lines.push("| server | req/s | p99 ms | req/s vs (b) | p99 vs (b) | req/s vs (a) |");
  lines.push("|---|---|---|---|---|---|");
  for (const k of ["a", "b", "c", "d"]) {
    const spread = r[k].map((x) => x.rps.toFixed(0)).join(", ");
    lines.push(
      `| (${k}) ${NAMES[k]} | ${rps[k].toFixed(0)} (${spread}) | ${p99[k].toFixed(2)} | ${
        (rps[k] / rps.b).toFixed(2)
      } | ${(p99[k] / p99.b).toFixed(2)} | ${(rps[k] / rps.a).toFixed(2)} |`,
    );
  }
}
rmSync(dir, { recursive: true, force: true });
console.log(lines.join("\n"));
