/**
 * The Bun server of the load test: the library's `listen`, answering each connection with
 * the address it saw (`"ADDRESS PORT\n"`), then waiting for the client to close. Run by
 * run.mjs: `bun server_bun.ts`.
 *
 * @module
 */

import { listen } from "@proxy-protocol/edge/bun";
import { answer, counters, serveControl } from "./control.ts";

const c = counters();
const listener = listen({
  hostname: "127.0.0.1",
  port: 0,
  timeout: 60_000, // see server_deno.ts
  onError: (error) => {
    c.refused[error.code] = (c.refused[error.code] ?? 0) + 1;
  },
  socket: {
    open(socket) {
      c.accepted++;
      c.open++;
      socket.write(answer(socket.remoteAddress, socket.remotePort));
    },
    data() {},
    close() {
      c.open--;
    },
    error() {
      c.errors++;
    },
  },
});

const bun = (globalThis as unknown as { Bun: { version: string; gc(force: boolean): void } }).Bun;
serveControl({
  runtime: `bun ${bun.version}`,
  port: listener.port,
  counters: c,
  gc: () => {
    bun.gc(true);
    bun.gc(true);
    return true;
  },
});
