// The shared listener cases (tests/listen/cases.ts) on the Bun.listen-shaped adapter.
// Runs under `bun test` only.
import { describe, it } from "node:test";
import { listen, type ProxySocket } from "@proxy-protocol/edge/bun";
import { defineListenerSuite, type Driver } from "../listen/cases.ts";
import { report } from "../listen/client.ts";

const driver: Driver = {
  families: true,
  seesCloseWhileValidating: true,
  start(options, hostname) {
    let accepted = 0;
    const chunks = new Map<ProxySocket, Uint8Array[]>();
    const open = new Set<ProxySocket>();
    let idle: (() => void) | undefined;
    const listener = listen({
      ...options,
      hostname,
      port: 0,
      socket: {
        open(socket) {
          accepted++;
          open.add(socket);
          chunks.set(socket, []);
        },
        data(socket, data) {
          chunks.get(socket)!.push(data);
        },
        end(socket) {
          socket.end(report(socket, socket.proxyHeader, chunks.get(socket)!));
        },
        close(socket) {
          open.delete(socket);
          chunks.delete(socket);
          if (open.size === 0) idle?.();
        },
      },
    });
    return Promise.resolve({
      port: listener.port,
      accepted: () => accepted,
      async close() {
        // As net.Server.close: stop accepting, and wait for the connections handed on.
        listener.stop(false);
        if (open.size > 0) await new Promise<void>((resolve) => idle = resolve);
      },
    });
  },
};

defineListenerSuite("bun listen", driver, {
  describe,
  it,
});
