// HTTP throughput of serve() from ./deno against Deno's own servers, through HAProxy.
// Not a test: `deno run -A benches/http/deno_bench.ts` (knobs: ROUNDS=2 SECONDS=5 CONC=32
// MODES=native,node,ours,emit,native-tls,ours-tls).
//
// wrk cannot send a PROXY header, so every server sits behind the same HAProxy (`mode tcp`,
// `nbthread 1`): `send-proxy-v2` for ours and emit, plain for native and node. The server is
// pinned to CPU 0, HAProxy and wrk to CPU 1; each mode runs in a fresh process per round, in
// alternating order. Figures: the median over rounds of requests/s and p99, the server's CPU
// per request (utime+stime from /proc), and ratios. See deno_server.ts for the modes.
const ROUNDS = Number(Deno.env.get("ROUNDS") ?? 2);
const SECONDS = Number(Deno.env.get("SECONDS") ?? 5);
const CONC = Number(Deno.env.get("CONC") ?? 32);
const MODES = (Deno.env.get("MODES") ?? "native,node,ours,emit,native-tls,ours-tls").split(",");
const here = new URL(".", import.meta.url).pathname;
const deno = Deno.execPath();

interface Sample {
  rps: number;
  p99: number;
  cpuUs: number;
}

const dir = await Deno.makeTempDir();
await run("openssl", [
  ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
  ...["-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
  ...["-addext", "basicConstraints=critical,CA:FALSE"],
  ...["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`],
]);

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr;
  l.close();
  return port;
}

function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
}

function ms(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text)!;
  return Number(m[1]) * (m[2] === "us" ? 0.001 : m[2] === "s" ? 1000 : 1);
}

async function measure(mode: string): Promise<Sample> {
  const port = freePort(), front = freePort();
  const tls = mode.endsWith("-tls");
  const server = new Deno.Command("taskset", {
    args: [
      ...["-c", "0", deno, "run", "-A", `${here}deno_server.ts`, mode, String(port)],
      ...(tls ? [`${dir}/cert.pem`, `${dir}/key.pem`] : []),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${mode} exited`);
    seen += value;
  }
  const proxied = mode.startsWith("ours") || mode === "emit";
  const cfg = `${dir}/haproxy-${front}.cfg`;
  Deno.writeTextFileSync(
    cfg,
    `global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n` +
      `  timeout client 60s\n  timeout server 60s\nfrontend f\n  bind 127.0.0.1:${front}\n` +
      `  default_backend b\nbackend b\n  server s 127.0.0.1:${port}` +
      `${proxied ? " send-proxy-v2" : ""}\n`,
  );
  const haproxy = new Deno.Command("taskset", {
    args: ["-c", "1", "haproxy", "-db", "-f", cfg],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0;; i++) { // until HAProxy listens
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port: front })).close();
      break;
    } catch (error) {
      if (i === 100) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const url = `${tls ? "https" : "http"}://127.0.0.1:${front}/`;
  const wrk = (d: number) =>
    run("taskset", ["-c", "1", "wrk", "-t1", `-c${CONC}`, `-d${d}s`, "--latency", url]);
  try {
    await wrk(1); // warm-up
    const before = cpuTicks(server.pid);
    const out = await wrk(SECONDS);
    const ticks = cpuTicks(server.pid) - before;
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)![1]);
    const p99 = ms(/ 99%\s+(\S+)/.exec(out)![1]!);
    const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out);
    if (errors) console.error(`${mode}: ${errors[0]}`);
    return { rps, p99, cpuUs: (ticks * 10_000) / (rps * SECONDS) };
  } finally {
    haproxy.kill();
    await haproxy.status;
    server.kill();
    await reader.cancel();
    await server.status;
  }
}

const samples = new Map<string, Sample[]>(MODES.map((m) => [m, []]));
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? MODES : [...MODES].reverse();
  for (const mode of order) {
    const s = await measure(mode);
    samples.get(mode)!.push(s);
    console.error(
      `round ${round + 1} ${mode}: ${s.rps.toFixed(0)} req/s, p99 ${s.p99.toFixed(2)} ms, ` +
        `${s.cpuUs.toFixed(1)} µs CPU/req`,
    );
  }
}
await Deno.remove(dir, { recursive: true });

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const med = (mode: string, key: keyof Sample) =>
  samples.has(mode) ? median(samples.get(mode)!.map((s) => s[key])) : NaN;
const ratio = (a: string, b: string, key: keyof Sample = "rps") =>
  samples.has(a) && samples.has(b) ? (med(a, key) / med(b, key)).toFixed(2) : "-";

console.log(
  `\n${ROUNDS} rounds x ${SECONDS} s, wrk -t1 -c${CONC} keep-alive, HAProxy in front\n`,
);
console.log("| server | req/s | p99 ms | server CPU µs/req | req/s vs node | vs native |");
console.log("|---|---|---|---|---|---|");
for (const mode of MODES) {
  const base = mode.endsWith("-tls") ? "native-tls" : "native";
  console.log(
    `| ${mode} | ${med(mode, "rps").toFixed(0)} | ${med(mode, "p99").toFixed(2)} | ` +
      `${med(mode, "cpuUs").toFixed(1)} | ${mode.endsWith("-tls") ? "-" : ratio(mode, "node")} | ` +
      `${ratio(mode, base)} |`,
  );
}
console.log(
  `\nours/node p99: ${ratio("ours", "node", "p99")}; ours-tls/native-tls: ` +
    `${ratio("ours-tls", "native-tls")}; emit/ours: ${ratio("emit", "ours")}`,
);
