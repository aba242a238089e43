/**
 * The Deno server of the load test: the library's `listen`, answering each connection with
 * the address it saw (`"ADDRESS PORT\n"`), then reading until the client closes. Run by
 * run.mjs: `deno run -A --v8-flags=--expose-gc server_deno.ts`.
 *
 * @module
 */

import { listen, type ProxyConn } from "@proxy-protocol/edge/deno";
import { answer, counters, serveControl } from "./control.ts";

const c = counters();
const encoder = new TextEncoder();
const scratch = new Uint8Array(1024);

async function handle(conn: ProxyConn): Promise<void> {
  c.accepted++;
  c.open++;
  try {
    await conn.write(encoder.encode(answer(conn.remoteAddr.hostname, conn.remoteAddr.port)));
    while ((await conn.read(scratch)) !== null) {
      // the client sends nothing more; read until it closes
    }
  } catch {
    c.errors++;
  } finally {
    c.open--;
    try {
      conn.close();
    } catch {
      // closed already
    }
  }
}

const listener = listen({
  hostname: "127.0.0.1",
  port: 0,
  // The client holds every connection open until all are established before any sends
  // its header: more than the default 10 s may pass.
  timeout: 60_000,
  onError: (error) => {
    c.refused[error.code] = (c.refused[error.code] ?? 0) + 1;
  },
});
(async () => {
  for await (const conn of listener) handle(conn);
})();

const gc = (globalThis as { gc?: () => void }).gc;
serveControl({
  runtime: `deno ${Deno.version.deno}`,
  port: listener.addr.port,
  counters: c,
  gc: () => {
    if (gc === undefined) return false;
    gc();
    gc();
    return true;
  },
});
