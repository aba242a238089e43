// The Deno adapter. The shared listener cases (tests/listen/cases.ts) run as Deno.test
// cases with the op and resource sanitizers on (node:test's it under Deno has none), so
// any socket, timer or pending read a case leaves behind fails it; then what only the
// Deno adapter has: Deno.Conn's read, readable and write, for await, close.
import assert from "node:assert/strict";
import {
  listen,
  type ListenOptions,
  type ProxyConn,
  type ProxyListener,
} from "@proxy-protocol/edge/deno";
import {
  concatBytes,
  encodeHeader,
  encodeTlvs,
  type ProxyHeaderInit,
  type ProxyProtocolError,
} from "@proxy-protocol/edge";
import { defineListenerSuite, type Driver } from "../listen/cases.ts";
import { reportSeen } from "./helpers.ts";
import { sanitized } from "./registrar.ts";

const driver: Driver = {
  families: false,
  seesCloseWhileValidating: false,
  start(options, hostname) {
    const listener = listen({ ...options, hostname, port: 0 });
    let accepted = 0;
    const open = new Set<Promise<void>>();
    const loop = (async () => {
      for await (const conn of listener) {
        accepted++;
        const done: Promise<void> = reportSeen(conn).finally(() => open.delete(done));
        open.add(done);
      }
    })();
    return Promise.resolve({
      port: listener.addr.port,
      accepted: () => accepted,
      async close() {
        listener.close();
        await listener.finished();
        await loop;
        await Promise.all(open);
      },
    });
  },
};

defineListenerSuite("deno listen", driver, sanitized);

const sanitize = { sanitizeOps: true, sanitizeResources: true };
const text = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const v2Header: ProxyHeaderInit = {
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 51234 },
  destination: { address: "2001:db8::1", port: 443 },
  tlvs: encodeTlvs({ authority: "example.com", alpn: "h2" }),
};
const V2 = encodeHeader(v2Header, { checksum: true });
const V1 = text("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n");
const PAYLOAD = text("hello, proxied world\n");

interface Harness {
  listener: ProxyListener;
  errors: ProxyProtocolError[];
  port: number;
}

async function withListener(
  options: Partial<ListenOptions>,
  fn: (h: Harness) => Promise<void>,
): Promise<void> {
  const errors: ProxyProtocolError[] = [];
  await using listener = listen({
    hostname: "127.0.0.1",
    port: 0,
    timeout: 2000,
    allowShortTimeout: true,
    onError: (e) => void errors.push(e),
    ...options,
  });
  await fn({ listener, errors, port: listener.addr.port });
}

/** Connects, writes each part (pausing between them), and returns the client. */
async function client(port: number, parts: Uint8Array[], pause = 0): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  for (const [i, part] of parts.entries()) {
    if (part.length > 0) await conn.write(part);
    if (pause > 0 && i < parts.length - 1) await sleep(pause);
  }
  return conn;
}

async function readN(conn: ProxyConn | Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let have = 0;
  while (have < n) {
    const got = await conn.read(out.subarray(have));
    if (got === null) break;
    have += got;
  }
  return out.subarray(0, have);
}

Deno.test(
  "deno listen: header and payload in one write; readable and read see the same payload",
  sanitize,
  async () => {
    await withListener({}, async ({ listener, port }) => {
      const c1 = await client(port, [concatBytes([V2, PAYLOAD])]);
      const conn1 = await listener.accept();
      assert.equal(conn1.remoteAddr.hostname, "2001:db8::7");
      assert.deepEqual(conn1.proxyHeader?.tlvs.map((t) => t.type), [0x03, 0x01, 0x02]);
      assert.deepEqual(await readN(conn1, PAYLOAD.length), PAYLOAD);
      conn1.close();
      c1.close();

      const c2 = await client(port, [concatBytes([V1, PAYLOAD])]);
      const conn2 = await listener.accept();
      const reader = conn2.readable.getReader();
      const { value } = await reader.read();
      assert.deepEqual(value, PAYLOAD);
      reader.releaseLock();
      conn2.close();
      c2.close();
    });
  },
);

Deno.test(
  "deno listen: 1 MB after the header arrives byte-exact and echoes back",
  sanitize,
  async () => {
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    await withListener({}, async ({ listener, port }) => {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      const sending = (async () => {
        await c.write(V2);
        let at = 0;
        while (at < big.length) at += await c.write(big.subarray(at, at + 65536));
      })();
      const conn = await listener.accept();
      const echo = (async () => {
        const buf = new Uint8Array(65536);
        let total = 0;
        while (total < big.length) {
          const n = await conn.read(buf);
          if (n === null) break;
          let at = 0;
          while (at < n) at += await conn.write(buf.subarray(at, n));
          total += n;
        }
      })();
      const back = await readN(c, big.length);
      await Promise.all([sending, echo]);
      assert.equal(back.length, big.length);
      assert.deepEqual(back, big);
      conn.close();
      c.close();
    });
  },
);

Deno.test("deno listen: for await, close and bad options", sanitize, async () => {
  await withListener({}, async ({ listener, port }) => {
    const c = await client(port, [V2, PAYLOAD]);
    for await (const conn of listener) {
      assert.equal(conn.remoteAddr.hostname, "2001:db8::7");
      assert.deepEqual(await readN(conn, PAYLOAD.length), PAYLOAD);
      conn.close();
      break;
    }
    c.close();
  });
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const pending = listener.accept();
  listener.close();
  await assert.rejects(pending, Deno.errors.BadResource);
  await listener.finished();
  assert.throws(() => listen({ port: 0, timeout: 1000 }), RangeError);
  assert.throws(() => listen({ port: 0, trust: ["10.0.0.0/33"] }), TypeError);
  const asConn: Deno.Conn = null as unknown as ProxyConn; // ProxyConn is a Deno.Conn
  void asConn;
});

Deno.test(
  "deno listen: readable hands on bytes read while looking for a header, then the socket's",
  sanitize,
  async () => {
    await withListener({ policy: "optional" }, async ({ listener, port }) => {
      const first = text("GET / HTTP/1.1\r\n");
      const c = await client(port, [first]);
      const conn = await listener.accept();
      assert.equal(conn.proxyHeader, null);
      const later = text("Host: example\r\n\r\n");
      await c.write(later);
      c.closeWrite();
      const chunks: Uint8Array[] = [];
      for await (const chunk of conn.readable) chunks.push(chunk);
      assert.deepEqual(concatBytes(chunks), concatBytes([first, later]));
      // As with Deno's own conns, reading `readable` to its end closed the socket.
      assert.throws(() => conn.close(), Deno.errors.BadResource);
      c.close();
    });
  },
);
