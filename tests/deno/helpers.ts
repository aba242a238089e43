// What the Deno tests' servers do with a connection, written once.
import type { ProxyConn } from "@proxy-protocol/edge/deno";
import { report } from "../listen/client.ts";

/** Reads a connection until the client ends, then answers with the shared report. */
export async function reportSeen(conn: ProxyConn): Promise<void> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  try {
    let n: number | null;
    while ((n = await conn.read(buffer)) !== null) chunks.push(buffer.slice(0, n));
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
