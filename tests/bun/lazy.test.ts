// The shared lazy cases (tests/listen/lazy.ts) on the Bun.listen-shaped adapter. Runs
// under `bun test` only.
import { describe, it } from "node:test";
import { listen, type ProxySocket } from "@proxy-protocol/edge/bun";
import { answer, defineLazySuite, GREETING, type LazyDriver, outcomeOf } from "../listen/lazy.ts";

const driver: LazyDriver = {
  start(options) {
    let accepted = 0;
    const settled: (string | null)[] = [];
    const open = new Set<ProxySocket>();
    let idle: (() => void) | undefined;
    const listener = listen({
      ...options,
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(socket) {
          accepted++;
          open.add(socket);
          outcomeOf(socket.proxyHeaderSettled).then((outcome) => settled.push(outcome));
          socket.write(GREETING);
        },
        data(socket, data) {
          socket.end(answer(socket.remoteAddress, data));
        },
        close(socket) {
          open.delete(socket);
          if (open.size === 0) idle?.();
        },
      },
    });
    return Promise.resolve({
      port: listener.port,
      accepted: () => accepted,
      settled,
      async close() {
        listener.stop(false);
        if (open.size > 0) await new Promise<void>((resolve) => idle = resolve);
      },
    });
  },
};

defineLazySuite("bun listen", driver, { describe, it });
