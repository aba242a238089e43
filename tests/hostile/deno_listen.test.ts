// The hostile suite (suite.ts) on the Deno adapter, each scenario a Deno.test with the op
// and resource sanitizers on. Runs under `deno test` only.
import { listen, type ProxyConn } from "@proxy-protocol/edge/deno";
import { report } from "../listen/client.ts";
import { sanitized } from "../deno/registrar.ts";
import { defineHostileSuite, printSizes } from "./suite.ts";

printSizes("deno_listen.test.ts");

/** Reads a connection until the client ends, then answers with the shared report. */
async function reportSeen(conn: ProxyConn): Promise<void> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) chunks.push(buffer.slice(0, n));
    const reply = new TextEncoder().encode(report(
      {
        remoteAddress: conn.remoteAddr.hostname,
        remotePort: conn.remoteAddr.port,
        localAddress: conn.localAddr.hostname,
        localPort: conn.localAddr.port,
      },
      conn.proxyHeader,
      chunks,
    ));
    for (let at = 0; at < reply.length;) at += await conn.write(reply.subarray(at));
  } catch {
    // the client went away
  } finally {
    conn[Symbol.dispose]();
  }
}

defineHostileSuite("deno listen", {
  app: "tcp",
  start(options) {
    const listener = listen({ ...options, hostname: "127.0.0.1", port: 0 });
    const addresses: string[] = [];
    const open = new Set<Promise<void>>();
    const loop = (async () => {
      for await (const conn of listener) {
        addresses.push(conn.remoteAddr.hostname);
        const done: Promise<void> = reportSeen(conn).finally(() => open.delete(done));
        open.add(done);
      }
    })();
    return Promise.resolve({
      port: listener.addr.port,
      addresses,
      async close() {
        listener.close();
        await listener.finished();
        await loop;
        await Promise.all(open);
      },
    });
  },
}, { describe: sanitized.describe, it: (name, _options, fn) => sanitized.it(name, fn) });
