// The hostile suite (suite.ts) on `createServer`: under Node (against the build), Deno and
// Bun, each through its own node:net.
import { describe, it } from "node:test";
import type net from "node:net";
import { createServer } from "@proxy-protocol/edge/node";
import { reportSeen } from "../node/helpers.ts";
import { defineHostileSuite, printSizes } from "./suite.ts";

printSizes("node_listen.test.ts");

defineHostileSuite("node createServer", {
  app: "tcp",
  async start(options) {
    const addresses: string[] = [];
    const server = createServer(options, (socket) => {
      addresses.push(socket.remoteAddress ?? "");
      reportSeen(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
      port: (server.address() as net.AddressInfo).port,
      addresses,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  },
}, { describe, it });
