// The Bun adapter's refusals: policy and trust, timeouts, malformed headers, clients that
// leave early, validate. Runs under `bun test`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { encodeHeader, ProxyProtocolError } from "@proxy-protocol/edge";
import type { ProxyListenOptions } from "@proxy-protocol/edge/bun";
import { bytes, concat, connect, send, serve, sleep, text, until } from "./helpers.ts";

const HEADER = bytes("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n");
const REQUEST = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

type Options = Omit<ProxyListenOptions<undefined>, "hostname" | "port" | "socket">;

/** Served with the header's addresses, the socket's own, or refused with a code. */
type Outcome =
  | { served: "header" | "socket"; payload: string; proxyHeader: boolean }
  | { refused: string };

async function outcome(options: Options, withHeader: boolean): Promise<Outcome> {
  const server = serve(options);
  try {
    const client = await send(
      server.port,
      [withHeader ? concat([HEADER, bytes(REQUEST)]) : bytes(REQUEST)],
      { end: false },
    );
    const result = await Promise.race([
      server.conns.next().then((conn) => ({ conn })),
      server.refusals.next().then((refusal) => ({ refusal })),
    ]);
    if ("refusal" in result) {
      await client.closed; // refused connections are closed
      assert.ok(result.refusal.error instanceof ProxyProtocolError);
      assert.equal(server.conns.items.length, 0);
      return { refused: result.refusal.error.code };
    }
    const conn = result.conn;
    client.socket.end();
    await conn.finished;
    if (conn.remoteAddress === "203.0.113.7") {
      assert.equal(conn.remotePort, 51234);
    } else {
      assert.equal(conn.remoteAddress, "127.0.0.1");
      assert.equal(conn.remotePort, client.localPort);
    }
    client.socket.destroy();
    return {
      served: conn.remoteAddress === "203.0.113.7" ? "header" : "socket",
      payload: text(concat(conn.chunks)),
      proxyHeader: conn.header !== null,
    };
  } finally {
    server.stop();
  }
}

const withHeaderBytes = text(HEADER) + REQUEST;

describe("bun listen: policy and trust", () => {
  const cases: [Options, Outcome, Outcome][] = [
    // [options, with a header, without one]
    [
      { policy: "require" },
      { served: "header", payload: REQUEST, proxyHeader: true },
      { refused: "HEADER_REQUIRED" },
    ],
    [
      { policy: "optional" },
      { served: "header", payload: REQUEST, proxyHeader: true },
      { served: "socket", payload: REQUEST, proxyHeader: false },
    ],
    [
      { policy: "ignore" },
      { served: "socket", payload: REQUEST, proxyHeader: false },
      { served: "socket", payload: REQUEST, proxyHeader: false },
    ],
    [
      { policy: "reject" },
      { refused: "HEADER_FORBIDDEN" },
      { served: "socket", payload: REQUEST, proxyHeader: false },
    ],
    [
      { policy: "skip" },
      { served: "socket", payload: withHeaderBytes, proxyHeader: false },
      { served: "socket", payload: REQUEST, proxyHeader: false },
    ],
    // Trusted: the policy applies.
    [
      { trust: ["127.0.0.1"] },
      { served: "header", payload: REQUEST, proxyHeader: true },
      { refused: "HEADER_REQUIRED" },
    ],
    [
      { trust: ["127.0.0.0/8", "::1"], untrusted: "deny", policy: "optional" },
      { served: "header", payload: REQUEST, proxyHeader: true },
      { served: "socket", payload: REQUEST, proxyHeader: false },
    ],
    // Untrusted: never an address from a header.
    [
      { trust: ["10.0.0.0/8"] },
      { refused: "UNTRUSTED_SOURCE" },
      { refused: "UNTRUSTED_SOURCE" },
    ],
    [
      { trust: ["10.0.0.0/8"], untrusted: "deny" },
      { refused: "UNTRUSTED_SOURCE" },
      { refused: "UNTRUSTED_SOURCE" },
    ],
    [
      { trust: ["10.0.0.0/8"], untrusted: "reject" },
      { refused: "HEADER_FORBIDDEN" },
      { served: "socket", payload: REQUEST, proxyHeader: false },
    ],
    [
      { trust: ["10.0.0.0/8"], untrusted: "ignore" },
      { served: "socket", payload: REQUEST, proxyHeader: false },
      { served: "socket", payload: REQUEST, proxyHeader: false },
    ],
    [
      { trust: ["10.0.0.0/8"], untrusted: "skip" },
      { served: "socket", payload: withHeaderBytes, proxyHeader: false },
      { served: "socket", payload: REQUEST, proxyHeader: false },
    ],
    // A policy function of the peer.
    [
      { policy: (peer) => peer.remoteAddress === "127.0.0.1" ? "optional" : "require" },
      { served: "header", payload: REQUEST, proxyHeader: true },
      { served: "socket", payload: REQUEST, proxyHeader: false },
    ],
  ];
  for (const [options, withHeader, without] of cases) {
    const name = JSON.stringify(options, (_k, v) => typeof v === "function" ? "fn" : v);
    test(`${name}: with a header`, async () => {
      assert.deepEqual(await outcome(options, true), withHeader);
    });
    test(`${name}: without a header`, async () => {
      assert.deepEqual(await outcome(options, false), without);
    });
  }

  test("IPv6: trust ::1, the peer and the header's TCP6 addresses", async () => {
    const server = serve({ trust: ["::1/128"] }, "::1");
    try {
      const header = bytes("PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n");
      const client = await send(server.port, [concat([header, bytes("v6")])], { host: "::1" });
      const conn = await server.conns.next();
      await conn.finished;
      assert.equal(conn.remoteAddress, "2001:db8::7");
      assert.equal(conn.socket.remoteFamily, "IPv6");
      assert.equal(text(concat(conn.chunks)), "v6");
      client.socket.destroy();
      // The same peer without a header is refused, and reported with its real address.
      await send(server.port, ["GET /"], { host: "::1", end: false });
      const { error, peer } = await server.refusals.next();
      assert.equal(error.code, "HEADER_REQUIRED");
      assert.equal(peer?.remoteAddress, "::1");
    } finally {
      server.stop();
    }
  });

  test("a throwing policy function refuses the connection", async () => {
    const boom = new Error("policy bug");
    const server = serve({
      policy: () => {
        throw boom;
      },
    });
    try {
      const client = await send(server.port, [HEADER], { end: false });
      const { error } = await server.refusals.next();
      assert.ok(error instanceof ProxyProtocolError);
      assert.equal(error.cause, boom);
      await client.closed;
      assert.equal(server.conns.items.length, 0);
    } finally {
      server.stop();
    }
  });
});

describe("bun listen: timeouts and bad clients", () => {
  test("a silent client times out while another is served", async () => {
    const server = serve({ timeout: 300, allowShortTimeout: true });
    try {
      const start = Date.now();
      const silent = await connect(server.port);
      await sleep(50);
      const other = await send(server.port, [concat([HEADER, bytes("hi")])]);
      const conn = await server.conns.next();
      await conn.finished;
      assert.equal(text(concat(conn.chunks)), "hi");
      assert.ok(Date.now() - start < 300, "served before the silent one timed out");
      const { error, peer } = await server.refusals.next();
      assert.equal(error.code, "TIMEOUT");
      assert.equal(peer?.remotePort, silent.localPort);
      assert.ok(Date.now() - start >= 290);
      await silent.closed;
      other.socket.destroy();
      assert.equal(server.conns.items.length, 1);
    } finally {
      server.stop();
    }
  });

  test("a header cut short is timed out too", async () => {
    const server = serve({ timeout: 200, allowShortTimeout: true });
    try {
      const client = await send(server.port, [HEADER.subarray(0, 20)], { end: false });
      assert.equal((await server.refusals.next()).error.code, "TIMEOUT");
      await client.closed;
    } finally {
      server.stop();
    }
  });

  test("malformed headers report their code and the next client is served", async () => {
    const server = serve();
    try {
      const v2 = encodeHeader({
        version: 2,
        command: "PROXY",
        protocol: "TCP4",
        source: { address: "1.2.3.4", port: 1 },
        destination: { address: "5.6.7.8", port: 2 },
      }, { checksum: true });
      const badChecksum = v2.slice();
      badChecksum[badChecksum.length - 1]! ^= 1;
      const badVersion = v2.slice();
      badVersion[12] = 0x31;
      for (
        const [input, code] of [
          [bytes("PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n"), "INVALID_ADDRESS"],
          [bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), "V1_MALFORMED"],
          [bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), "INVALID_PORT"],
          [badChecksum, "CHECKSUM_MISMATCH"],
          [badVersion, "UNSUPPORTED_VERSION"],
          [bytes("GET / HTTP/1.1\r\n"), "HEADER_REQUIRED"],
        ] as const
      ) {
        const client = await send(server.port, [input], { end: false });
        const { error } = await server.refusals.next();
        assert.equal(error.code, code, text(input));
        await client.closed;
        await send(server.port, [concat([HEADER, bytes("next")])]);
        const conn = await server.conns.next();
        await conn.finished;
        assert.equal(text(concat(conn.chunks)), "next");
      }
    } finally {
      server.stop();
    }
  });

  test("verifyChecksum: false lets a bad CRC32c through", async () => {
    const server = serve({ verifyChecksum: false });
    try {
      const v2 = encodeHeader({
        version: 2,
        command: "PROXY",
        protocol: "TCP4",
        source: { address: "1.2.3.4", port: 1 },
        destination: { address: "5.6.7.8", port: 2 },
      }, { checksum: true });
      v2[v2.length - 1]! ^= 1;
      await send(server.port, [v2]);
      assert.equal((await server.conns.next()).remoteAddress, "1.2.3.4");
    } finally {
      server.stop();
    }
  });

  test("clients that leave mid-header: nothing crashes, the next is served", async () => {
    const server = serve();
    try {
      // FIN mid-header.
      await send(server.port, [HEADER.subarray(0, 15)]);
      assert.equal((await server.refusals.next()).error.code, "CONNECTION_CLOSED");
      // Reset mid-header.
      const reset = await send(server.port, [HEADER.subarray(0, 15)], { end: false });
      await sleep(10);
      reset.socket.resetAndDestroy();
      assert.equal((await server.refusals.next()).error.code, "CONNECTION_CLOSED");
      // Gone before sending anything.
      const gone = await connect(server.port);
      gone.socket.destroy();
      assert.equal((await server.refusals.next()).error.code, "CONNECTION_CLOSED");

      await send(server.port, [concat([HEADER, bytes("next")])]);
      const conn = await server.conns.next();
      await conn.finished;
      assert.equal(text(concat(conn.chunks)), "next");
      assert.equal(server.conns.items.length, 1);
    } finally {
      server.stop();
    }
  });

  test("optional: a client that ends mid-header is served with the bytes it sent", async () => {
    const server = serve({ policy: "optional" });
    try {
      await send(server.port, [HEADER.subarray(0, 15)]);
      const conn = await server.conns.next();
      await conn.finished;
      assert.equal(conn.remoteAddress, "127.0.0.1");
      assert.equal(text(concat(conn.chunks)), text(HEADER.subarray(0, 15)));
      assert.deepEqual(conn.events.slice(0, 3), ["open", "data", "end"]);
      await conn.closed;
    } finally {
      server.stop();
    }
  });

  test("an onError that throws does not crash the listener", async () => {
    let calls = 0;
    const server = serve({
      onError() {
        calls++;
        throw new Error("onError bug");
      },
    });
    try {
      const client = await send(server.port, [bytes("nope\r\n")], { end: false });
      await server.refusals.next();
      await client.closed;
      await send(server.port, [concat([HEADER, bytes("next")])]);
      const conn = await server.conns.next();
      await conn.finished;
      assert.equal(text(concat(conn.chunks)), "next");
      assert.equal(calls, 1);
    } finally {
      server.stop();
    }
  });
});

describe("bun listen: validate", () => {
  test("validate returning false or throwing refuses with VALIDATION_FAILED", async () => {
    for (
      const validate of [() => false, () => Promise.resolve(false), () => {
        throw new Error("nope");
      }]
    ) {
      const server = serve({ validate });
      try {
        const client = await send(server.port, [concat([HEADER, bytes("x")])], { end: false });
        const { error } = await server.refusals.next();
        assert.equal(error.code, "VALIDATION_FAILED");
        await client.closed;
        assert.equal(server.conns.items.length, 0);
      } finally {
        server.stop();
      }
    }
  });

  test("an async validate: data sent meanwhile comes after open, in order", async () => {
    const calls: unknown[] = [];
    const server = serve({
      async validate(header, peer) {
        calls.push(header.source?.address, peer.remoteAddress);
        await sleep(100);
        return true;
      },
    });
    try {
      const client = await send(server.port, [concat([HEADER, bytes("a")]), "b", "c"], {
        gap: 20,
        end: false,
      });
      await sleep(20);
      client.socket.write("d");
      const conn = await server.conns.next();
      assert.equal(conn.remoteAddress, "203.0.113.7");
      await until(() => text(concat(conn.chunks)) === "abcd");
      assert.equal(conn.events[0], "open");
      client.socket.write("e");
      client.socket.end();
      await conn.finished;
      assert.equal(text(concat(conn.chunks)), "abcde");
      assert.deepEqual(calls, ["203.0.113.7", "127.0.0.1"]);
    } finally {
      server.stop();
    }
  });

  test("allowHalfOpen: a FIN during an async validate comes after open and the data", async () => {
    const server = serve({
      allowHalfOpen: true,
      validate: () => sleep(50).then(() => true),
      socket: {
        end(socket) {
          socket.end("reply after FIN");
        },
      },
    });
    try {
      const client = await send(server.port, [concat([HEADER, bytes("req")])]);
      const conn = await server.conns.next();
      await conn.closed;
      // The socket was paused while validate ran; Bun may report it writable (`drain`)
      // once it is resumed.
      assert.deepEqual(conn.events.filter((e) => e !== "drain"), ["open", "data", "end", "close"]);
      assert.equal(text(concat(conn.chunks)), "req");
      await client.closed;
      assert.equal(text(client.received()), "reply after FIN");
    } finally {
      server.stop();
    }
  });

  test("a validate slower than the timeout refuses with TIMEOUT", async () => {
    const server = serve({
      timeout: 100,
      allowShortTimeout: true,
      validate: () => sleep(300).then(() => true),
    });
    try {
      const client = await send(server.port, [HEADER], { end: false });
      assert.equal((await server.refusals.next()).error.code, "TIMEOUT");
      await client.closed;
      await sleep(250);
      assert.equal(server.conns.items.length, 0);
    } finally {
      server.stop();
    }
  });
});
