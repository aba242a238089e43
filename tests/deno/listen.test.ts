// The Deno adapter on real loopback sockets. Deno.test, with its op and resource sanitizers
// on, so any socket, timer or pending read a test leaves behind fails it.
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
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
} from "@proxy-protocol/edge";

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

/** Waits until `errors` has `n` entries (the refusal is reported asynchronously). */
async function errorsReach(errors: ProxyProtocolError[], n: number): Promise<void> {
  for (let i = 0; i < 200 && errors.length < n; i++) await sleep(5);
  assert.equal(errors.length, n, `errors: ${errors.map((e) => e.code).join(", ")}`);
}

async function assertClosedByServer(conn: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(16);
  try {
    assert.equal(await conn.read(buf), null);
  } catch (error) {
    assert.ok(error instanceof Deno.errors.ConnectionReset, String(error));
  }
}

Deno.test(
  "deno listen: headers split at every offset and trickled byte by byte",
  sanitize,
  async () => {
    await withListener({}, async ({ listener, port }) => {
      for (const header of [V1, V2]) {
        const whole = concatBytes([header, PAYLOAD]);
        for (let k = 0; k <= whole.length; k++) {
          const c = await client(port, [whole.subarray(0, k), whole.subarray(k)], 2);
          const conn = await listener.accept();
          const expected = header === V1 ? "203.0.113.7" : "2001:db8::7";
          assert.equal(conn.remoteAddr.hostname, expected, `split at ${k}`);
          assert.equal(conn.remoteAddr.port, 51234);
          assert.equal(conn.localAddr.port, 443);
          assert.deepEqual(await readN(conn, PAYLOAD.length), PAYLOAD, `split at ${k}`);
          conn.close();
          c.close();
        }
        const c = await client(
          port,
          [...concatBytes([header, PAYLOAD])].map((b) => Uint8Array.of(b)),
          1,
        );
        const conn = await listener.accept();
        assert.equal(conn.proxyHeader?.version, header === V1 ? 1 : 2);
        assert.deepEqual(await readN(conn, PAYLOAD.length), PAYLOAD, "trickled");
        conn.close();
        c.close();
      }
    });
  },
);

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

Deno.test("deno listen: a large v2 header, and one over maxHeaderLength", sanitize, async () => {
  const big = encodeHeader({
    ...v2Header,
    tlvs: encodeTlvs({ others: [{ type: 0xf0, value: new Uint8Array(3000) }] }),
  });
  await withListener({}, async ({ listener, port, errors }) => {
    const c = await client(port, [concatBytes([big, PAYLOAD])]);
    const conn = await listener.accept();
    assert.equal(conn.proxyHeader?.tlvs[0]?.value.length, 3000);
    assert.deepEqual(await readN(conn, PAYLOAD.length), PAYLOAD);
    conn.close();
    c.close();
    assert.equal(errors.length, 0);
  });
  await withListener({ maxHeaderLength: 1024 }, async ({ port, errors }) => {
    const c = await client(port, [concatBytes([big, PAYLOAD])]);
    await errorsReach(errors, 1);
    assert.equal(errors[0]!.code, "HEADER_TOO_LONG");
    await assertClosedByServer(c);
    c.close();
  });
});

Deno.test("deno listen: the policy x trust matrix", sanitize, async () => {
  type Outcome = "header" | "socket" | ProxyProtocolErrorCode;
  const matrix: [Partial<ListenOptions>, boolean, Outcome][] = [
    [{ policy: "require" }, true, "header"],
    [{ policy: "require" }, false, "HEADER_REQUIRED"],
    [{ policy: "optional" }, true, "header"],
    [{ policy: "optional" }, false, "socket"],
    [{ policy: "ignore" }, true, "socket"],
    [{ policy: "ignore" }, false, "socket"],
    [{ policy: "reject" }, true, "HEADER_FORBIDDEN"],
    [{ policy: "reject" }, false, "socket"],
    [{ policy: "skip" }, false, "socket"],
    [{ policy: () => "optional" }, true, "header"],
    [{ trust: ["127.0.0.1"] }, true, "header"],
    [{ trust: ["::1", "127.0.0.0/8"] }, true, "header"],
    [{ trust: ["10.0.0.0/8"] }, true, "UNTRUSTED_SOURCE"],
    [{ trust: ["10.0.0.0/8"], untrusted: "deny" }, false, "UNTRUSTED_SOURCE"],
    [{ trust: ["10.0.0.0/8"], untrusted: "reject" }, true, "HEADER_FORBIDDEN"],
    [{ trust: ["10.0.0.0/8"], untrusted: "reject" }, false, "socket"],
    [{ trust: ["10.0.0.0/8"], untrusted: "ignore" }, true, "socket"],
    [{ trust: ["10.0.0.0/8"], untrusted: "skip" }, false, "socket"],
  ];
  for (const [options, withHeader, outcome] of matrix) {
    const label = `${JSON.stringify(options)} ${withHeader ? "with" : "without"} header`;
    await withListener(options, async ({ listener, port, errors }) => {
      const c = await client(port, [withHeader ? concatBytes([V1, PAYLOAD]) : PAYLOAD]);
      if (outcome === "header" || outcome === "socket") {
        const conn = await listener.accept();
        const expected = outcome === "header" ? "203.0.113.7" : "127.0.0.1";
        assert.equal(conn.remoteAddr.hostname, expected, label);
        assert.equal(conn.proxyHeader === null, outcome === "socket", label);
        const skipped = options.policy === "skip" || options.untrusted === "skip";
        assert.deepEqual(await readN(conn, PAYLOAD.length), PAYLOAD, label);
        if (skipped) assert.equal(withHeader, false, "skip cases send no header");
        conn.close();
      } else {
        await errorsReach(errors, 1);
        assert.equal(errors[0]!.code, outcome, label);
        await assertClosedByServer(c);
      }
      c.close();
    });
  }
});

Deno.test("deno listen: a silent client times out while others are served", sanitize, async () => {
  await withListener({ timeout: 300 }, async ({ listener, port, errors }) => {
    const silent = await client(port, []);
    await sleep(50);
    const started = Date.now();
    const c = await client(port, [concatBytes([V2, PAYLOAD])]);
    const conn = await listener.accept();
    assert.ok(Date.now() - started < 250, "served before the silent client timed out");
    assert.deepEqual(await readN(conn, PAYLOAD.length), PAYLOAD);
    conn.close();
    c.close();
    await errorsReach(errors, 1);
    assert.equal(errors[0]!.code, "TIMEOUT");
    await assertClosedByServer(silent);
    silent.close();
  });
});

Deno.test(
  "deno listen: malformed headers are reported and the next client is served",
  sanitize,
  async () => {
    const bad: [Uint8Array, ProxyProtocolErrorCode][] = [
      [text("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), "INVALID_ADDRESS"],
      [text("GET / HTTP/1.1\r\n\r\n"), "HEADER_REQUIRED"],
      [text("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"), "INVALID_PORT"],
      [
        (() => {
          const b = V2.slice();
          b[20]! ^= 1;
          return b;
        })(),
        "CHECKSUM_MISMATCH",
      ],
    ];
    await withListener({}, async ({ listener, port, errors }) => {
      for (const [i, [bytes, code]] of bad.entries()) {
        const c = await client(port, [bytes]);
        await errorsReach(errors, i + 1);
        assert.equal(errors[i]!.code, code);
        assert.ok(errors[i] instanceof ProxyProtocolError);
        await assertClosedByServer(c);
        c.close();
        const ok = await client(port, [concatBytes([V1, PAYLOAD])]);
        const conn = await listener.accept();
        assert.equal(conn.remoteAddr.hostname, "203.0.113.7");
        conn.close();
        ok.close();
      }
    });
  },
);

Deno.test(
  "deno listen: LOCAL health checks keep the socket's own addresses",
  sanitize,
  async () => {
    const checks = [
      encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" }),
      text("PROXY UNKNOWN\r\n"),
      // AWS NLB: LOCAL with an address block.
      encodeHeader({
        version: 2,
        command: "LOCAL",
        protocol: "TCP4",
        source: { address: "10.0.0.1", port: 1 },
        destination: { address: "10.0.0.2", port: 2 },
      }),
    ];
    await withListener({}, async ({ listener, port }) => {
      for (const check of checks) {
        const c = await client(port, [check]);
        const conn = await listener.accept();
        assert.equal(conn.proxyHeader?.command, "LOCAL");
        assert.equal(conn.remoteAddr.hostname, "127.0.0.1");
        assert.equal(conn.remoteAddr.port, (c.localAddr as Deno.NetAddr).port);
        assert.equal(conn.localAddr.port, port);
        conn.close();
        c.close();
      }
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

Deno.test(
  "deno listen: resets before and during the header never stop the accept loop",
  sanitize,
  async () => {
    await withListener({}, async ({ listener, port }) => {
      for (let i = 0; i < 20; i++) {
        const c = await client(port, i % 2 === 0 ? [] : [V1.subarray(0, 10)]);
        c.close();
      }
      const c = await client(port, [concatBytes([V1, PAYLOAD])]);
      const conn = await listener.accept();
      assert.equal(conn.remoteAddr.hostname, "203.0.113.7");
      conn.close();
      c.close();
    });
    // A throwing onError must not stop it either.
    await withListener({
      onError: () => {
        throw new Error("boom");
      },
    }, async ({ listener, port }) => {
      const bad = await client(port, [text("nope\r\n")]);
      await assertClosedByServer(bad);
      bad.close();
      const c = await client(port, [V1]);
      const conn = await listener.accept();
      assert.equal(conn.remoteAddr.port, 51234);
      conn.close();
      c.close();
    });
  },
);

Deno.test("deno listen: validate, for await, close and bad options", sanitize, async () => {
  await withListener({
    validate: async (h) => {
      await sleep(5);
      return h.source?.address !== "203.0.113.7";
    },
  }, async ({ listener, port, errors }) => {
    const refused = await client(port, [V1]);
    await errorsReach(errors, 1);
    assert.equal(errors[0]!.code, "VALIDATION_FAILED");
    await assertClosedByServer(refused);
    refused.close();
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
