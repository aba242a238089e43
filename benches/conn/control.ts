/**
 * The control channel shared by the benchmark servers (server_deno.ts, server_bun.ts,
 * server_node.ts): one JSON line on stdout at start, then one command per stdin line, one
 * reply line each. Written with node:fs and node:process only, so it runs on all three.
 *
 *   mode short|idle|bulk  the app's work for connections accepted from now on
 *   stats                 per-listener counters, VmRSS, heap and the process's CPU time
 *   gc                    a full collection (twice), where the runtime exposes one
 *   quit                  exits
 *
 * @module
 */

import { readFileSync } from "node:fs";
import process from "node:process";

/** What the app does with a connection. */
export type Mode = "short" | "idle" | "bulk";

/** One listener's counters. */
export interface Stats {
  /** Connections the app has seen. */
  accepted: number;
  /** Connections the app holds now. */
  open: number;
  /** Payload bytes the app has read. */
  bytes: number;
  /** Connection errors the app saw. */
  errors: number;
  /** Connections the library refused (its onError). */
  refused: number;
}

/** Fresh counters. */
export function newStats(): Stats {
  return { accepted: 0, open: 0, bytes: 0, errors: 0, refused: 0 };
}

/** The request and reply size of the short scenario. */
export const SIZE = 100;

/** The 100-byte reply. */
export const REPLY: Uint8Array = new Uint8Array(SIZE).fill(0x62);

/** VmRSS in bytes and utime + stime in clock ticks, from /proc/self. */
export function procStats(): { rss: number; cpuTicks: number } {
  const status = readFileSync("/proc/self/status", "utf8");
  const rss = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? NaN) * 1024;
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of proc(5), counted from field 3 (state) here.
  const cpuTicks = Number(fields[11]) + Number(fields[12]);
  return { rss, cpuTicks };
}

/** What a server gives {@linkcode serveControl}. */
export interface Server {
  /** The runtime and its version. */
  runtime: string;
  /** The plain listener's port and counters. */
  raw: { port: number; stats: Stats };
  /** The library's listener's port and counters. */
  ours: { port: number; stats: Stats };
  /** Sets the app's work. */
  setMode(mode: Mode): void;
  /** Runs a full GC, or returns false where none is exposed. */
  gc(): boolean;
}

/**
 * Announces the server on stdout and answers commands from stdin until it ends.
 *
 * @param server The ports, counters and hooks.
 */
export function serveControl(server: Server): void {
  const send = (value: unknown) => process.stdout.write(JSON.stringify(value) + "\n");
  send({
    ready: true,
    pid: process.pid,
    runtime: server.runtime,
    raw: server.raw.port,
    ours: server.ours.port,
  });
  let pending = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      const [cmd, arg] = line.split(/\s+/);
      if (cmd === "mode" && (arg === "short" || arg === "idle" || arg === "bulk")) {
        server.setMode(arg);
        send({ ok: true });
      } else if (cmd === "stats") {
        const { heapUsed, external } = process.memoryUsage();
        send({
          ...procStats(),
          heap: { heapUsed, external },
          raw: server.raw.stats,
          ours: server.ours.stats,
        });
      } else if (cmd === "gc") {
        send({ ok: server.gc() });
      } else if (cmd === "quit") {
        process.exit(0);
      } else {
        send({ ok: false, error: `unknown command ${JSON.stringify(line)}` });
      }
    }
  });
  process.stdin.on("end", () => process.exit(0));
}
