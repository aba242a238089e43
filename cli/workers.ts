/**
 * `--workers N`: N processes serve one port. On Node a `node:cluster` primary shares its
 * listening socket; on Deno and Bun, whose `node:cluster` does not share one, each worker is
 * a `child_process.fork` that listens with `reusePort` and the kernel spreads connections.
 * The primary serves the metrics (the workers' figures summed, asked over IPC) and passes
 * SIGINT/SIGTERM on as a drain. Internal.
 *
 * @module
 */

import cluster from "node:cluster";
import { type ChildProcess, fork } from "node:child_process";
import net from "node:net";
import process from "node:process";
import { ListenerMetrics, type MetricsSnapshot } from "../lib/connection/metrics.ts";
import { endpoint, EXIT, formatEndpoint, type Io, Logger, onShutdown } from "./_common.ts";
import type { GatewayConfig, RunningGateway } from "./gateway.ts";
import { serveMetrics } from "./metrics.ts";

const WORKER = "PROXY_PROTOCOL_WORKER";
const LISTEN = "PROXY_PROTOCOL_LISTEN";
const isNode = !("Deno" in globalThis) && process.versions.bun === undefined;

/** This process's worker number, when it is a worker. */
export function workerIndex(): number | undefined {
  const v = process.env[WORKER];
  return v === undefined ? undefined : Number(v);
}

/** The address a worker listens on: the primary's choice (a port 0 made concrete). */
export function workerListen(config: GatewayConfig): string {
  return process.env[LISTEN] ?? config.listen;
}

type Message =
  | { type: "ready"; listen: string }
  | { type: "metrics"; id: number; snapshot?: MetricsSnapshot }
  | { type: "shutdown" };

/** In a worker: answers the primary's metrics requests and its shutdown. */
export function serveWorker(gateway: RunningGateway): void {
  const send = (m: Message) => process.send?.(m);
  process.on("message", (m: Message) => {
    if (m?.type === "metrics") {
      send({ type: "metrics", id: m.id, snapshot: gateway.listener.metrics.toJSON() });
    } else if (m?.type === "shutdown") {
      gateway.stop();
    }
  });
  send({ type: "ready", listen: formatEndpoint(gateway.listener.address) });
}

interface Worker {
  send(m: Message): void;
  on(event: "message", f: (m: Message) => void): void;
  once(event: "exit", f: (code: number | null) => void): void;
}

/** Runs the gateway in `n` worker processes and waits for them. */
export async function runWorkers(
  n: number,
  config: GatewayConfig,
  io: Io,
  args: string[],
  level: string | undefined,
): Promise<number> {
  const log = new Logger(level, io.stderr, { command: "gateway", role: "primary" });
  let listen = config.listen;
  const at = endpoint(listen, "--listen");
  if (!isNode && at.port === 0) {
    // reusePort workers must agree on a port: take a free one now.
    at.port = await freePort(at.host);
    listen = formatEndpoint(at);
  }
  const script = process.argv[1]!;
  const workers: Worker[] = [];
  const exits: Promise<number | null>[] = [];
  for (let i = 0; i < n; i++) {
    const env = { ...process.env, [WORKER]: String(i + 1), [LISTEN]: listen };
    let w: Worker;
    if (isNode) {
      cluster.setupPrimary({ exec: script, args });
      const cw = cluster.fork(env);
      w = {
        send: (m) => cw.send(m),
        on: (e, f) => cw.on(e, f),
        once: (_e, f) => cw.once("exit", (code) => f(code)),
      };
    } else {
      const child: ChildProcess = fork(script, args, { env, stdio: "inherit" });
      w = {
        send: (m) => child.connected && child.send(m),
        on: (e, f) => child.on(e, f),
        once: (_e, f) => child.once("exit", (code) => f(code)),
      };
    }
    workers.push(w);
    exits.push(new Promise((resolve) => w.once("exit", resolve)));
  }
  const pending = new Map<number, (s: MetricsSnapshot) => void>();
  let ids = 0;
  let ready = 0;
  let readyDone!: () => void;
  const allReady = new Promise<void>((resolve) => readyDone = resolve);
  for (const w of workers) {
    w.on("message", (m) => {
      if (m?.type === "ready") {
        listen = m.listen; // port 0 made concrete (node:cluster shares one socket)
        if (++ready === n) readyDone();
      }
      if (m?.type === "metrics" && m.snapshot) pending.get(m.id)?.(m.snapshot);
    });
  }
  const allExited = Promise.all(exits);
  const first = await Promise.race([allReady.then(() => "ready"), allExited.then(() => "exited")]);
  if (first === "exited") {
    log.log("error", "workers exited before they were ready");
    return EXIT.FAILURE;
  }
  const metricsServer = config.metrics === undefined ? undefined : await serveMetrics(
    endpoint(config.metrics, "--metrics"),
    async () => {
      const total = new ListenerMetrics();
      const answers = await Promise.all(
        workers.map((w) =>
          new Promise<MetricsSnapshot | undefined>((resolve) => {
            const id = ++ids;
            const timer = setTimeout(() => resolve(undefined), 1000);
            pending.set(id, (s) => {
              clearTimeout(timer);
              pending.delete(id);
              resolve(s);
            });
            w.send({ type: "metrics", id });
          })
        ),
      );
      for (const s of answers) if (s) total.add(s);
      return total.prometheus();
    },
    log,
  );
  log.log("info", "gateway ready", {
    listen,
    workers: n,
    upstreams: config.upstreams.map(formatEndpoint),
    send: config.send === 0 ? "none" : `v${config.send}`,
  });
  const off = onShutdown((signal) => {
    log.log("info", "shutting down", { signal, workers: n });
    for (const w of workers) w.send({ type: "shutdown" });
  });
  const codes = await allExited;
  off();
  await metricsServer?.close();
  log.log("info", "stopped", { codes });
  return codes.every((c) => c === 0) ? EXIT.OK : EXIT.FAILURE;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
