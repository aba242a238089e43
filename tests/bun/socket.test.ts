// What only the Bun adapter has (the shared cases are in listen.test.ts): Bun's handlers
// and socket, binaryType and views, events around the header phase, short writes, drain
// and backpressure, socket.data, and listen's option checks. Runs under `bun test`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { listen } from "@proxy-protocol/edge/bun";
import { encodeHeader, encodeTlvs } from "@proxy-protocol/edge";
import { concat, connect, decode, delay, send, serve, text, until } from "./helpers.ts";

const V1 = text("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n");
const V2 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 40000 },
  destination: { address: "2001:db8::1", port: 8443 },
  tlvs: encodeTlvs({ authority: "example.com", awsVpceId: "vpce-08d2bf15fac5001c9" }),
}, { checksum: true });

describe("bun listen: framing", () => {
  test("header and payload in one write: the first data is a view into the chunk", async () => {
    for (const binaryType of ["buffer", "uint8array"] as const) {
      const server = serve({ socket: { binaryType } });
      try {
        const payload = text("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
        await send(server.port, [concat(V2, payload)]);
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
      assert.equal(decode(concat(...conn.chunks)), "later");
    } finally {
      server.stop();
    }
  });
});

describe("bun listen: writes and backpressure", () => {
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
      client.socket.write(concat(V2, payload));
      await delay(100);
      client.socket.resume();
      const deadline = Date.now() + 5000;
      while (client.received().length < size * repeat && Date.now() < deadline) await delay(5);
      const echoed = client.received();
      assert.equal(echoed.length, size * repeat);
      // Each chunk the server got came back `repeat` times in a row.
      const expected = concat(...sizes.flatMap((n, i) => {
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
          seen.push(socket.data.n, decode(data));
          socket.end("bye");
        },
      },
    });
    try {
      assert.equal(listener.hostname, "127.0.0.1");
      assert.ok(listener.port > 0);
      assert.equal(listener.data.n, 1);
      const client = await send(listener.port, [concat(V1, text("x"))], { end: false });
      await client.closed;
      assert.equal(decode(client.received()), "bye");
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
      const client = await send(listener.port, [concat(V1, text("x"))], { end: false });
      await client.closed;
      await delay(10);
      assert.deepEqual(events, ["open", "error app bug", "close"]);
    } finally {
      listener.stop(true);
    }
  });
});

describe("bun listen: events around the header phase", () => {
  test("optional: a client that ends mid-header is served with the bytes it sent", async () => {
    const server = serve({ policy: "optional" });
    try {
      await send(server.port, [V1.subarray(0, 15)]);
      const conn = await server.conns.next();
      await conn.finished;
      assert.equal(conn.remoteAddress, "127.0.0.1");
      assert.equal(decode(concat(...conn.chunks)), decode(V1.subarray(0, 15)));
      assert.deepEqual(conn.events.slice(0, 3), ["open", "data", "end"]);
      await conn.closed;
    } finally {
      server.stop();
    }
  });

  test("an async validate: data sent meanwhile comes after open, in order", async () => {
    const calls: unknown[] = [];
    const server = serve({
      async validate(header, peer) {
        calls.push(header.source?.address, peer.remoteAddress);
        await delay(100);
        return true;
      },
    });
    try {
      const client = await send(server.port, [concat(V1, text("a")), "b", "c"], {
        gap: 20,
        end: false,
      });
      await delay(20);
      client.socket.write("d");
      const conn = await server.conns.next();
      assert.equal(conn.remoteAddress, "203.0.113.7");
      await until(() => decode(concat(...conn.chunks)) === "abcd");
      assert.equal(conn.events[0], "open");
      client.socket.write("e");
      client.socket.end();
      await conn.finished;
      assert.equal(decode(concat(...conn.chunks)), "abcde");
      assert.deepEqual(calls, ["203.0.113.7", "127.0.0.1"]);
    } finally {
      server.stop();
    }
  });

  test("allowHalfOpen: a FIN during an async validate comes after open and the data", async () => {
    const server = serve({
      allowHalfOpen: true,
      validate: () => delay(50).then(() => true),
      socket: {
        end(socket) {
          socket.end("reply after FIN");
        },
      },
    });
    try {
      const client = await send(server.port, [concat(V1, text("req"))]);
      const conn = await server.conns.next();
      await conn.closed;
      // The socket was paused while validate ran; Bun may report it writable (`drain`)
      // once it is resumed.
      assert.deepEqual(conn.events.filter((e) => e !== "drain"), ["open", "data", "end", "close"]);
      assert.equal(decode(concat(...conn.chunks)), "req");
      await client.closed;
      assert.equal(decode(client.received()), "reply after FIN");
    } finally {
      server.stop();
    }
  });
});
