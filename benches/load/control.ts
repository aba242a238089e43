/**
 * The control channel of the load test's servers (server_deno.ts, server_bun.ts,
 * server_node.ts): one JSON line on stdout at start, then one reply line per command read
 * from stdin. node:fs and node:process only, so it runs on all three runtimes.
 *
 *   stats  the app's counters, VmRSS, the JS heap and the open-file limit
 *   gc     a full collection (twice), where the runtime exposes one; then stats
 *
 * @module
 */

import { readFileSync } from "node:fs";
import process from "node:process";

/** The app's counters. */
export interface Counters {
  /** Connections handed to the app (header read). */
  accepted: number;
  /** Connections the app holds now. */
  open: number;
  /** Connections the library refused (its onError), by code. */
  refused: Record<string, number>;
  /** Socket errors the app saw. */
  errors: number;
}

/** Fresh counters. */
export function counters(): Counters {
  return { accepted: 0, open: 0, refused: {}, errors: 0 };
}

/** The open-file limit (soft) of this process, from /proc. */
export function nofile(): number {
  const limits = readFileSync("/proc/self/limits", "utf8");
  return Number(/Max open files\s+(\d+)/.exec(limits)?.[1] ?? NaN);
}

/** VmRSS in bytes, from /proc. */
export function rss(): number {
  const status = readFileSync("/proc/self/status", "utf8");
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? NaN) * 1024;
}

/**
 * The answer a connection gets: the address the server saw, `"ADDRESS PORT\n"`.
 *
 * @param address The client's address (from the header).
 * @param port Its port.
 */
export function answer(address: string | undefined, port: number | undefined): string {
  return `${address} ${port}\n`;
}

/**
 * Announces the server and answers commands until stdin ends.
 *
 * @param server The runtime, the port, the counters and a GC hook.
 */
export function serveControl(server: {
  runtime: string;
  port: number;
  counters: Counters;
  gc(): boolean;
}): void {
  const send = (value: unknown) => process.stdout.write(JSON.stringify(value) + "\n");
  const stats = () => {
    const { heapUsed, external } = process.memoryUsage();
    return { rss: rss(), heapUsed, external, ...server.counters };
  };
  send({
    ready: true,
    pid: process.pid,
    runtime: server.runtime,
    port: server.port,
    nofile: nofile(),
  });
  let pending = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const cmd = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (cmd === "stats") send(stats());
      else if (cmd === "gc") send({ gc: server.gc(), ...stats() });
      else send({ error: `unknown command ${JSON.stringify(cmd)}` });
    }
  });
  process.stdin.on("end", () => process.exit(0));
}
