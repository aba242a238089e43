// The `metrics` option on Bun's `listen`: the shared mix (tests/listen/metrics.ts).
import { it } from "node:test";
import { ListenerMetrics } from "@proxy-protocol/edge";
import { listen, type ProxySocketHandler } from "@proxy-protocol/edge/bun";
import { checkMetricsMix } from "../listen/metrics.ts";

const echo: ProxySocketHandler<undefined> = {
  data(socket, data) {
    socket.write(data);
  },
  end(socket) {
    socket.end();
  },
};

it("bun: metrics count accepted, refused, open, header time and payload bytes", async () => {
  const metrics = new ListenerMetrics();
  const a = listen({ hostname: "127.0.0.1", port: 0, metrics, socket: echo });
  const b = listen({
    hostname: "127.0.0.1",
    port: 0,
    metrics,
    trust: ["10.0.0.0/8"],
    socket: echo,
  });
  try {
    await checkMetricsMix(metrics, a.port, b.port);
  } finally {
    a.stop(true);
    b.stop(true);
  }
});
