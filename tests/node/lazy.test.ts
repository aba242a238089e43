// The shared lazy cases (tests/listen/lazy.ts) on `createServer`: under Node (against the
// build), Deno and Bun, each through its own node:net.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type net from "node:net";
import { createServer, type ProxySocket } from "@proxy-protocol/edge/node";
import { answer, defineLazySuite, GREETING, type LazyDriver, outcomeOf } from "../listen/lazy.ts";

const driver: LazyDriver = {
  async start(options) {
    let accepted = 0;
    const settled: (string | null)[] = [];
    const server = createServer(options, (socket: ProxySocket) => {
      accepted++;
      outcomeOf(socket.proxyHeaderSettled).then((outcome) => settled.push(outcome));
      socket.on("error", () => {});
      socket.write(GREETING);
      socket.once("data", (data: Uint8Array) => socket.end(answer(socket.remoteAddress, data)));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
      port: (server.address() as net.AddressInfo).port,
      accepted: () => accepted,
      settled,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  },
};

defineLazySuite("node createServer", driver, { describe, it });

describe("node serve", () => {
  it("refuses lazy: HTTP clients speak first", async () => {
    const { serve } = await import("@proxy-protocol/edge/node");
    const http = await import("node:http");
    assert.throws(() => serve(http.createServer(), { lazy: true }), TypeError);
  });
});
