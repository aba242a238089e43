// The shared lazy cases (tests/listen/lazy.ts) on the Deno adapter, as Deno.test cases
// with the op and resource sanitizers on; then what only the Deno adapter has: a lazy
// connection read through `readable`, and closed by the application before its header.
import assert from "node:assert/strict";
import { listen, type ProxyConn } from "@proxy-protocol/edge/deno";
import type { ProxyProtocolError } from "@proxy-protocol/edge";
import { connect, decode, until } from "../listen/client.ts";
import { answer, defineLazySuite, GREETING, type LazyDriver, outcomeOf } from "../listen/lazy.ts";
import { sanitized } from "./registrar.ts";

const encoder = new TextEncoder();

/** Greets, then reads the first payload (which reads the header) and answers it. */
async function greet(conn: ProxyConn, settled: (string | null)[]): Promise<void> {
  let outcome: Promise<string | null> | undefined;
  try {
    await conn.write(encoder.encode(GREETING));
    outcome = outcomeOf(conn.proxyHeaderSettled);
    const buffer = new Uint8Array(1024);
    const n = await conn.read(buffer);
    if (n !== null) {
      await conn.write(encoder.encode(answer(conn.remoteAddr.hostname, buffer.subarray(0, n))));
    }
  } catch {
    // refused (proxyHeaderSettled says why), or the client went away
  } finally {
    if (outcome !== undefined) settled.push(await outcome);
    conn.close();
  }
}

const driver: LazyDriver = {
  start(options) {
    const listener = listen({ ...options, hostname: "127.0.0.1", port: 0 });
    let accepted = 0;
    const settled: (string | null)[] = [];
    const open = new Set<Promise<void>>();
    const loop = (async () => {
      for await (const conn of listener) {
        accepted++;
        const done: Promise<void> = greet(conn, settled).finally(() => open.delete(done));
        open.add(done);
      }
    })();
    return Promise.resolve({
      port: listener.addr.port,
      accepted: () => accepted,
      settled,
      async close() {
        listener.close();
        await listener.finished();
        await loop;
        await Promise.all(open);
      },
    });
  },
};

defineLazySuite("deno listen", driver, sanitized);

const HEADER = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 25\r\n";

Deno.test("deno listen: lazy: readable reads the header on its first read", async () => {
  await using listener = listen({ hostname: "127.0.0.1", port: 0, lazy: true });
  const client = await connect(listener.addr.port);
  const conn = await listener.accept();
  assert.equal(conn.proxyHeader, null);
  assert.equal(conn.remoteAddr.port, client.localPort); // the socket's own, for now
  await conn.write(encoder.encode(GREETING));
  await until(() => decode(client.received()) === GREETING);
  client.socket.end(HEADER + "EHLO x\r\n");
  const payload = await new Response(conn.readable).text();
  assert.equal(payload, "EHLO x\r\n");
  assert.equal(conn.remoteAddr.hostname, "203.0.113.7");
  assert.equal(conn.localAddr.port, 25);
  assert.equal((await conn.proxyHeaderSettled)?.command, "PROXY");
  await client.closed; // reading `readable` to its end closed the connection, as in Deno
});

Deno.test("deno listen: lazy: closed by the application before its header", async () => {
  const errors: ProxyProtocolError[] = [];
  await using listener = listen({
    hostname: "127.0.0.1",
    port: 0,
    lazy: true,
    onError: (e) => void errors.push(e),
  });
  const client = await connect(listener.addr.port);
  const conn = await listener.accept();
  await conn.write(encoder.encode("421 busy\r\n"));
  conn.close();
  conn.close(); // a second close is harmless
  await client.closed;
  assert.equal(decode(client.received()), "421 busy\r\n");
  assert.deepEqual(errors.map((e) => e.code), ["CONNECTION_CLOSED"]);
  await assert.rejects(conn.proxyHeaderSettled, { code: "CONNECTION_CLOSED" });
  await assert.rejects(conn.read(new Uint8Array(8)), { code: "CONNECTION_CLOSED" });
});
