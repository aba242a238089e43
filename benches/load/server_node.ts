/**
 * The Node server of the load test: the library's `createServer`, answering each
 * connection with the address it saw (`"ADDRESS PORT\n"`), then waiting for the client to
 * close. run.mjs bundles it with esbuild (the package name resolved through jsr.json's
 * exports) and runs `node --expose-gc` on the bundle.
 *
 * @module
 */

import { createServer } from "@proxy-protocol/edge/node";
import type net from "node:net";
import process from "node:process";
import { answer, counters, serveControl } from "./control.ts";

const c = counters();
const server = createServer({
  timeout: 60_000, // see server_deno.ts
  onError: (error) => {
    c.refused[error.code] = (c.refused[error.code] ?? 0) + 1;
  },
}, (socket) => {
  c.accepted++;
  c.open++;
  socket.write(answer(socket.remoteAddress, socket.remotePort));
  socket.on("data", () => {});
  socket.on("error", () => c.errors++);
  socket.on("close", () => c.open--);
});
server.maxConnections = 0; // the default: no cap (set to show it is not one)
server.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  serveControl({
    runtime: `node ${process.version}`,
    port: (server.address() as net.AddressInfo).port,
    counters: c,
    gc: () => {
      if (gc === undefined) return false;
      gc();
      gc();
      return true;
    },
  });
});
