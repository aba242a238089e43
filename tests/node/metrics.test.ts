// The `metrics` option on `createServer` (under Node, Deno and Bun, each through its own
// node:net): the shared mix (tests/listen/metrics.ts), and lazy sockets.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ListenerMetrics } from "@proxy-protocol/edge";
import type { ProxySocket } from "@proxy-protocol/edge/node";
import { checkMetricsMix } from "../listen/metrics.ts";
import { send, until } from "../listen/client.ts";
import { serve } from "./helpers.ts";

function echo(socket: ProxySocket): void {
  socket.on("error", () => {});
  socket.on("data", (d) => socket.write(d));
  socket.on("end", () => socket.end());
}

describe("node: metrics", () => {
  it("counts accepted, refused, open, header time and payload bytes", async () => {
    const metrics = new ListenerMetrics();
    const a = await serve({ metrics }, echo);
    const b = await serve({ metrics, trust: ["10.0.0.0/8"] }, echo);
    try {
      await checkMetricsMix(metrics, a.port, b.port);
      assert.equal(a.refusals.length + b.refusals.length, 3);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("lazy: a connection counts once its header is in; one closed before it is refused", async () => {
    const metrics = new ListenerMetrics();
    const s = await serve({ metrics, lazy: true }, (socket) => {
      socket.write("220 ready\r\n");
      echo(socket);
    });
    try {
      const good = await send(s.port, ["PROXY TCP4 203.0.113.7 10.0.0.5 51234 25\r\n", "EHLO x"]);
      await good.closed;
      const gone = await send(s.port, ["PROXY TCP4 203.0"]);
      await gone.closed;
      await until(() => metrics.open === 0 && metrics.refused.size === 1);
      assert.equal(metrics.accepted, 1);
      assert.deepEqual(Object.fromEntries(metrics.refused), { CONNECTION_CLOSED: 1 });
      assert.equal(metrics.bytesIn, 6);
      assert.equal(metrics.bytesOut, "220 ready\r\n".length + 6);
    } finally {
      await s.close();
    }
  });
});
