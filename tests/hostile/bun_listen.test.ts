// The hostile suite (suite.ts) on the Bun.listen-shaped adapter. Runs under `bun test` only.
import { describe, it } from "node:test";
import { listen, type ProxySocket } from "@proxy-protocol/edge/bun";
import { report } from "../listen/client.ts";
import { defineHostileSuite, printSizes } from "./suite.ts";

printSizes("bun_listen.test.ts");

defineHostileSuite("bun listen", {
  app: "tcp",
  start(options) {
    const addresses: string[] = [];
    const chunks = new Map<ProxySocket, Uint8Array[]>();
    let idle: (() => void) | undefined;
    const listener = listen({
      ...options,
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(socket) {
          addresses.push(socket.remoteAddress);
          chunks.set(socket, []);
        },
        data(socket, data) {
          chunks.get(socket)!.push(data);
        },
        end(socket) {
          socket.end(report(socket, socket.proxyHeader, chunks.get(socket)!));
        },
        close(socket) {
          chunks.delete(socket);
          if (chunks.size === 0) idle?.();
        },
      },
    });
    return Promise.resolve({
      port: listener.port,
      addresses,
      async close() {
        // As net.Server.close: stop accepting, and wait for the connections handed on.
        listener.stop(false);
        if (chunks.size > 0) await new Promise<void>((resolve) => idle = resolve);
      },
    });
  },
}, { describe, it });
