// The Bun adapter on real loopback sockets: framing, payload hand-over, health checks,
// large payloads and backpressure. Runs under `bun test`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { listen } from "@proxy-protocol/edge/bun";
import { decodeHeader, encodeHeader, encodeTlvs, fromHex } from "@proxy-protocol/edge";
import { bytes, concat, connect, send, serve, sleep, text } from "./helpers.ts";

const V1 = bytes("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n");
const V2 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 40000 },
  destination: { address: "2001:db8::1", port: 8443 },
  tlvs: encodeTlvs({ authority: "example.com", awsVpceId: "vpce-08d2bf15fac5001c9" }),
}, { checksum: true });

describe("bun listen: framing", () => {
  test("a v1 and a v2 header split at every byte offset", async () => {
    const server = serve();
    try {
      for (
        const [header, expected] of [
          [V1, {
            remoteAddress: "203.0.113.7",
            remotePort: 51234,
            localAddress: "10.0.0.5",
            localPort: 443,
          }],
          [V2, {
            remoteAddress: "2001:db8::7",
            remotePort: 40000,
            localAddress: "2001:db8::1",
            localPort: 8443,
          }],
        ] as const
      ) {
        const decoded = decodeHeader(header)!.header;
        const clients = [];
        for (let k = 1; k < header.length; k++) {
          const payload = `payload ${k}`;
          // All splits at once, 10 ms apart: measured with a plain Bun listener, 2 ms let
          // about a third of the two writes arrive as one read when ~50 clients run at once.
          clients.push(
            send(server.port, [
              header.subarray(0, k),
              concat([header.subarray(k), bytes(payload)]),
            ], { gap: 10 }),
          );
        }
        await Promise.all(clients);
        const seen = new Map<string, string>();
        for (let k = 1; k < header.length; k++) {
          const conn = await server.conns.next();
          await conn.finished;
          assert.deepEqual({
            remoteAddress: conn.remoteAddress,
            remotePort: conn.remotePort,
            localAddress: conn.localAddress,
            localPort: conn.localPort,
          }, expected);
          assert.deepEqual(conn.header, decoded);
          assert.equal(conn.socket.proxyHeader, conn.header);
          assert.equal(conn.socket.remoteFamily, header === V1 ? "IPv4" : "IPv6");
          const payload = text(concat(conn.chunks));
          assert.match(payload, /^payload \d+$/);
          seen.set(payload, payload);
        }
        assert.equal(seen.size, header.length - 1); // every split delivered its own payload
      }
      assert.equal(server.refusals.items.length, 0);
    } finally {
      server.stop();
    }
  });

  test("a v1 and a v2 header trickled a byte at a time", async () => {
    const server = serve();
    try {
      for (const header of [V1, V2]) {
        const parts: Uint8Array[] = [...header].map((b) => new Uint8Array([b]));
        parts.push(bytes("after"));
        await send(server.port, parts, { gap: 1 });
        const conn = await server.conns.next();
        await conn.finished;
        assert.deepEqual(conn.header, decodeHeader(header)!.header);
        assert.equal(text(concat(conn.chunks)), "after");
      }
    } finally {
      server.stop();
    }
  });

  test("header and payload in one write: the first data is a view into the chunk", async () => {
    for (const binaryType of ["buffer", "uint8array"] as const) {
      const server = serve({ socket: { binaryType } });
      try {
        const payload = bytes("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
        await send(server.port, [concat([V2, payload])]);
        const conn = await server.conns.next();
        await conn.finished;
        const first = conn.chunks[0]!;
        assert.deepEqual([...first], [...payload]);
        assert.equal(conn.events.filter((e) => e === "data").length, 1);
        // Bun gives each read its own ArrayBuffer starting at the chunk (checked with a probe
        // outside the adapter: byteOffset 0, byteLength the read's length). A view into the
        // chunk that held the header therefore starts right after the header in a buffer that
        // also holds the header; a copy would start at 0 and hold the payload only.
        assert.equal(first.byteOffset, V2.length);
        assert.equal(first.buffer.byteLength, V2.length + payload.length);
        assert.deepEqual(
          [...new Uint8Array(first.buffer, 0, V2.length)],
          [...V2],
        );
        // The type the user asked for, as Bun gives it.
        assert.equal(first.constructor.name, binaryType === "buffer" ? "Buffer" : "Uint8Array");
      } finally {
        server.stop();
      }
    }
  });

  test("header alone: open fires, data only for later bytes", async () => {
    const server = serve();
    try {
      await send(server.port, [V1, "later"], { gap: 20 });
      const conn = await server.conns.next();
      await conn.finished;
      assert.deepEqual(conn.events.slice(0, 2), ["open", "data"]);
      assert.equal(text(concat(conn.chunks)), "later");
    } finally {
      server.stop();
    }
  });

  test("a ~3000-byte v2 header with the default limit, and one over the limit", async () => {
    const big = (size: number) =>
      encodeHeader({
        version: 2,
        command: "PROXY",
        protocol: "TCP4",
        source: { address: "198.51.100.9", port: 1234 },
        destination: { address: "10.1.2.3", port: 80 },
        tlvs: encodeTlvs({ others: [{ type: 0x04, value: new Uint8Array(size).fill(0x5a) }] }),
      });
    const server = serve();
    try {
      const large = big(3000);
      assert.ok(large.length > 3000 && large.length <= 4096);
      // In three writes, so that the reader gathers it.
      await send(server.port, [
        large.subarray(0, 1000),
        large.subarray(1000, 2000),
        concat([large.subarray(2000), bytes("ok")]),
      ]);
      const conn = await server.conns.next();
      await conn.finished;
      assert.equal(conn.remoteAddress, "198.51.100.9");
      assert.equal(text(concat(conn.chunks)), "ok");

      const tooLong = big(5000);
      const client = await send(server.port, [tooLong.subarray(0, 100), tooLong.subarray(100)], {
        end: false,
      });
      const { error, peer } = await server.refusals.next();
      assert.equal(error.code, "HEADER_TOO_LONG");
      assert.equal(peer?.remoteAddress, "127.0.0.1");
      assert.equal(peer?.remotePort, client.localPort);
      await client.closed; // refused connections are closed
    } finally {
      server.stop();
    }
    const strict = serve({ maxHeaderLength: 1024 });
    try {
      await send(strict.port, [big(3000)], { end: false });
      assert.equal((await strict.refusals.next()).error.code, "HEADER_TOO_LONG");
    } finally {
      strict.stop();
    }
  });
});

describe("bun listen: health checks", () => {
  const localV2 = encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" });
  // AWS NLB: LOCAL with a TCP4 address block of 12 bytes.
  const nlb = fromHex(
    "0d0a0d0a000d0a515549540a" + "20" + "11" + "000c" + "0a000001" + "0a000002" + "1f90" + "0050",
  );
  for (
    const [name, header, version] of [
      ["v2 LOCAL", localV2, 2],
      ["v1 UNKNOWN", bytes("PROXY UNKNOWN\r\n"), 1],
      ["v2 LOCAL with a 12-byte address block (AWS NLB)", nlb, 2],
    ] as const
  ) {
    test(`${name} reports the socket's own addresses`, async () => {
      const server = serve();
      try {
        const client = await send(server.port, [concat([header, bytes("hc")])]);
        const conn = await server.conns.next();
        await conn.finished;
        assert.equal(conn.header?.command, "LOCAL");
        assert.equal(conn.header?.version, version);
        assert.equal(conn.remoteAddress, "127.0.0.1");
        assert.equal(conn.remotePort, client.localPort);
        assert.equal(conn.localAddress, "127.0.0.1");
        assert.equal(conn.localPort, server.port);
        assert.equal(text(concat(conn.chunks)), "hc");
      } finally {
        server.stop();
      }
    });
  }
});

describe("bun listen: large payloads", () => {
  test("1 MB after the header arrives byte-exact", async () => {
    const server = serve();
    try {
      const payload = new Uint8Array(1 << 20);
      for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 11)) & 0xff;
      await send(server.port, [concat([V1, payload.subarray(0, 1000)]), payload.subarray(1000)]);
      const conn = await server.conns.next();
      await conn.finished;
      const got = concat(conn.chunks);
      assert.equal(got.length, payload.length);
      assert.ok(Buffer.from(got).equals(Buffer.from(payload)));
    } finally {
      server.stop();
    }
  });

  /**
   * An echo server that writes every chunk `repeat` times, handling short writes as Bun
   * asks: keep what write() did not take and write it again on drain.
   */
  async function echo(size: number, repeat: number) {
    const pending = new Map<object, Uint8Array[]>();
    const stats = { partial: 0, drains: 0 };
    const sizes: number[] = [];
    const flush = (socket: { write(b: Uint8Array): number }, queue: Uint8Array[]) => {
      while (queue.length > 0) {
        const head = queue[0]!;
        const n = socket.write(head);
        if (n < head.length) {
          stats.partial++;
          queue[0] = head.subarray(Math.max(n, 0));
          return;
        }
        queue.shift();
      }
    };
    const listener = listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(socket) {
          pending.set(socket, []);
        },
        data(socket, data) {
          const queue = pending.get(socket)!;
          const idle = queue.length === 0;
          sizes.push(data.length);
          for (let i = 0; i < repeat; i++) queue.push(data);
          if (idle) flush(socket, queue);
        },
        drain(socket) {
          stats.drains++;
          flush(socket, pending.get(socket)!);
        },
      },
    });
    try {
      const client = await connect(listener.port);
      const payload = new Uint8Array(size);
      for (let i = 0; i < size; i++) payload[i] = (i * 13 + (i >> 12)) & 0xff;
      client.socket.pause(); // let the server's writes back up
      client.socket.write(concat([V2, payload]));
      await sleep(100);
      client.socket.resume();
      const deadline = Date.now() + 5000;
      while (client.received().length < size * repeat && Date.now() < deadline) await sleep(5);
      const echoed = client.received();
      assert.equal(echoed.length, size * repeat);
      // Each chunk the server got came back `repeat` times in a row.
      const expected = concat(sizes.flatMap((n, i) => {
        const from = sizes.slice(0, i).reduce((a, b) => a + b, 0);
        return Array(repeat).fill(payload.subarray(from, from + n));
      }));
      assert.ok(Buffer.from(echoed).equals(Buffer.from(expected)));
      client.socket.end();
      await client.closed;
      return { ...stats, echoed };
    } finally {
      listener.stop(true);
    }
  }

  test("a 1 MB echo arrives byte-exact (short writes handled as Bun asks)", async () => {
    await echo(1 << 20, 1);
  });

  test("backpressure is Bun's: write() returns less than asked, then drain fires", async () => {
    // Loopback takes ~4 MB before write() falls short: echo the 1 MB 6 times.
    const { partial, drains, echoed } = await echo(1 << 20, 6);
    assert.ok(partial > 0, "write() returned less than asked at least once");
    assert.ok(drains > 0, "drain fired");
    assert.equal(echoed.length, 6 << 20);
  });
});

describe("bun listen: the listener", () => {
  test("socket.data starts from options.data, as in Bun; handlers see Bun's socket", async () => {
    const seen: unknown[] = [];
    const listener = listen<{ n: number }>({
      hostname: "127.0.0.1",
      port: 0,
      data: { n: 1 },
      socket: {
        open(socket) {
          seen.push(socket.data.n);
          socket.data = { n: 2 };
          seen.push(typeof socket.write, typeof socket.flush, typeof socket.end);
        },
        data(socket, data) {
          seen.push(socket.data.n, text(data));
          socket.end("bye");
        },
      },
    });
    try {
      assert.equal(listener.hostname, "127.0.0.1");
      assert.ok(listener.port > 0);
      assert.equal(listener.data.n, 1);
      const client = await send(listener.port, [concat([V1, bytes("x")])], { end: false });
      await client.closed;
      assert.equal(text(client.received()), "bye");
      assert.deepEqual(seen, [1, "function", "function", "function", 2, "x"]);
    } finally {
      listener.stop(true);
    }
  });

  test("bad options throw synchronously", () => {
    const socket = {};
    assert.throws(
      () => listen({ hostname: "127.0.0.1", port: 0, socket, timeout: 1000 }),
      RangeError,
    );
    assert.throws(
      () => listen({ hostname: "127.0.0.1", port: 0, socket, trust: ["10.0.0.0/33"] }),
      TypeError,
    );
    assert.throws(
      () => listen({ hostname: "127.0.0.1", port: 0, socket, policy: "maybe" as "require" }),
      TypeError,
    );
    assert.throws(
      () => listen({ hostname: "127.0.0.1", port: 0, socket, tls: {} as never }),
      /tls is not supported/,
    );
  });

  test("a throw in open goes to error and closes the connection, as in Bun", async () => {
    const events: string[] = [];
    const listener = listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open() {
          events.push("open");
          throw new Error("app bug");
        },
        data() {
          events.push("data");
        },
        error(_socket, error) {
          events.push(`error ${error.message}`);
        },
        close() {
          events.push("close");
        },
      },
    });
    try {
      const client = await send(listener.port, [concat([V1, bytes("x")])], { end: false });
      await client.closed;
      await sleep(10);
      assert.deepEqual(events, ["open", "error app bug", "close"]);
    } finally {
      listener.stop(true);
    }
  });
});
