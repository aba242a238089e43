/**
 * The Bun side of the per-connection benchmark: a plain `Bun.listen` listener and the
 * library's `listen`, in one process, running the same app (see control.ts for the
 * control channel). Run by run.mjs: `bun server_bun.ts`. Declares the little of Bun it
 * uses, so that it type-checks without Bun's types.
 *
 * @module
 */

import { listen } from "@proxy-protocol/edge/bun";
import { type Mode, newStats, REPLY, serveControl, SIZE, type Stats } from "./control.ts";

interface Socket {
  data: number;
  end(data?: Uint8Array): number;
}

interface Handlers {
  open(socket: Socket): void;
  data(socket: Socket, data: Uint8Array): void;
  end(socket: Socket): void;
  close(socket: Socket): void;
  error(socket: Socket, error: Error): void;
}

interface BunLike {
  version: string;
  listen(options: {
    hostname: string;
    port: number;
    data: number;
    socket: Handlers;
  }): { port: number };
  gc(force: boolean): void;
}

const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;

let mode: Mode = "short";

/**
 * The app, one set of handlers per listener: short = read 100 B, reply 100 B, close (the
 * socket's `data` counts the bytes, -1 once replied); idle and bulk = read until EOF.
 */
function handlers(stats: Stats): Handlers {
  return {
    open(socket) {
      stats.accepted++;
      stats.open++;
      socket.data = 0;
    },
    data(socket, data) {
      stats.bytes += data.length;
      if (mode !== "short" || socket.data < 0) return;
      socket.data += data.length;
      if (socket.data >= SIZE) {
        socket.data = -1;
        socket.end(REPLY);
      }
    },
    end(socket) {
      socket.end();
    },
    close() {
      stats.open--;
    },
    error() {
      stats.errors++;
    },
  };
}

const rawStats = newStats();
const ourStats = newStats();
const raw = Bun.listen({ hostname: "127.0.0.1", port: 0, data: 0, socket: handlers(rawStats) });
const ours = listen<number>({
  hostname: "127.0.0.1",
  port: 0,
  data: 0,
  socket: handlers(ourStats),
  onError: () => {
    ourStats.refused++;
  },
});

serveControl({
  runtime: `bun ${Bun.version}`,
  raw: { port: raw.port, stats: rawStats },
  ours: { port: ours.port, stats: ourStats },
  setMode: (m) => mode = m,
  gc: () => {
    Bun.gc(true);
    Bun.gc(true);
    return true;
  },
});
