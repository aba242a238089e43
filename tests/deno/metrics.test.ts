// The `metrics` option on Deno's `listen`: the shared mix (tests/listen/metrics.ts). Deno's
// connections count their close, not their bytes.
import { ListenerMetrics } from "@proxy-protocol/edge";
import { listen, type ProxyConn, type ProxyListener } from "@proxy-protocol/edge/deno";
import { checkMetricsMix } from "../listen/metrics.ts";

/** Echoes each connection until the client ends, then closes it. */
async function echoAll(listener: ProxyListener): Promise<void> {
  const served: Promise<void>[] = [];
  for await (const conn of listener) served.push(echoOne(conn));
  await Promise.all(served);
}

async function echoOne(conn: ProxyConn): Promise<void> {
  const buffer = new Uint8Array(1024);
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) await conn.write(buffer.subarray(0, n));
  } catch {
    // reset
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "deno: metrics count accepted, refused, open and header time",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    const metrics = new ListenerMetrics();
    const a = listen({ hostname: "127.0.0.1", port: 0, metrics });
    const b = listen({ hostname: "127.0.0.1", port: 0, metrics, trust: ["10.0.0.0/8"] });
    const loops = [echoAll(a), echoAll(b)];
    try {
      await checkMetricsMix(metrics, a.addr.port, b.addr.port, { bytes: false });
    } finally {
      a.close();
      b.close();
      await Promise.all(loops);
    }
  },
});
