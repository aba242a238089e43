/**
 * The Node side of the per-connection benchmark: a plain `net.createServer` and the
 * library's `createServer`, in one process, running the same app (see control.ts for the
 * control channel). run.mjs bundles it with esbuild (the package name resolved through
 * jsr.json's exports) and runs `node --expose-gc` on the bundle.
 *
 * @module
 */

import { createServer } from "@proxy-protocol/edge/node";
import net from "node:net";
import process from "node:process";
import { type Mode, newStats, REPLY, serveControl, SIZE, type Stats } from "./control.ts";

let mode: Mode = "short";

/** The app: short = read 100 B, reply 100 B, close; idle and bulk = read until EOF. */
function app(stats: Stats): (socket: net.Socket) => void {
  return (socket) => {
    stats.accepted++;
    stats.open++;
    let got = mode === "short" ? 0 : -1;
    socket.on("data", (data: Uint8Array) => {
      stats.bytes += data.length;
      if (got < 0) return;
      got += data.length;
      if (got >= SIZE) {
        got = -1;
        socket.end(REPLY);
      }
    });
    socket.on("error", () => {
      stats.errors++;
    });
    socket.on("close", () => {
      stats.open--;
    });
  };
}

const rawStats = newStats();
const ourStats = newStats();
const raw = net.createServer(app(rawStats));
const ours = createServer({
  onError: () => {
    ourStats.refused++;
  },
}, app(ourStats));
const listening = (server: net.Server) =>
  new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port))
  );
const [rawPort, ourPort] = await Promise.all([listening(raw), listening(ours)]);

const gc = (globalThis as { gc?: () => void }).gc;
serveControl({
  runtime: `node ${process.version}`,
  raw: { port: rawPort, stats: rawStats },
  ours: { port: ourPort, stats: ourStats },
  setMode: (m) => mode = m,
  gc: () => {
    if (gc === undefined) return false;
    gc();
    gc();
    return true;
  },
});
