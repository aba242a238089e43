// The shared listener cases (tests/listen/cases.ts) on `createServer`: under Node (against
// the build), Deno and Bun, each through its own node:net.
import { describe, it } from "node:test";
import type net from "node:net";
import { createServer } from "@proxy-protocol/edge/node";
import { defineListenerSuite, type Driver } from "../listen/cases.ts";
import { reportSeen } from "./helpers.ts";

const driver: Driver = {
  families: true,
  seesCloseWhileValidating: true,
  async start(options, host) {
    let accepted = 0;
    const server = createServer(options, (socket) => {
      accepted++;
      reportSeen(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    return {
      port: (server.address() as net.AddressInfo).port,
      accepted: () => accepted,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  },
};

defineListenerSuite("node createServer", driver, {
  describe,
  it,
});
