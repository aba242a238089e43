// The Bun sender on real loopback sockets: the twins of lib/bun/connect.ts's examples, the
// header in one segment with the first write, alone after a silent `open`, across
// backpressure, and relaying an accepted socket. Runs under `bun test`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { Buffer } from "node:buffer";
import { decodeHeader, decodeTlvs, encodeHeader, encodeTlvs } from "@proxy-protocol/edge";
import { type ClientSocket, connect, headerFor, listen } from "@proxy-protocol/edge/bun";
import { concatBytes as concat } from "@proxy-protocol/edge";
import { serve } from "./helpers.ts";
import { HEADER, rawServer } from "../connect_helpers.ts";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("bun connect", () => {
  test("the first write in open carries the header: one read at the server", async () => {
    const s = await rawServer();
    try {
      const results: number[] = [];
      let closed!: () => void;
      const done = new Promise<void>((r) => closed = r);
      const socket = await connect({
        hostname: "127.0.0.1",
        port: s.port,
        header: HEADER,
        checksum: true,
        socket: {
          open(socket) {
            results.push(socket.write("GET / HTTP/1.1\r\n\r\n"));
            results.push(socket.write(bytes("more")));
          },
          close: () => closed(),
        },
      });
      await sleep(20);
      socket.end();
      await done;
      await s.conns[0]!.ended;
      assert.deepEqual(results, [18, 4], "write returns the caller's bytes only");
      const first = s.conns[0]!.chunks[0]!;
      const decoded = decodeHeader(first)!;
      assert.deepEqual(decoded.header.source, HEADER.source);
      // Bun may coalesce both writes of `open`; the header is never alone in front.
      assert.ok(
        first.subarray(decoded.length).toString().startsWith("GET / HTTP/1.1\r\n\r\n"),
        "header and the first write in one read",
      );
      const all = Buffer.concat(s.conns[0]!.chunks).subarray(decoded.length).toString();
      assert.equal(all, "GET / HTTP/1.1\r\n\r\nmore");
    } finally {
      await s.close();
    }
  });

  test("a silent open: the header goes alone, and a server that speaks first hears it", async () => {
    const s = await rawServer((socket) => socket.once("data", () => socket.write("220 hi\r\n")));
    try {
      const greeting = new Promise<string>((resolve) => {
        void connect({
          hostname: "127.0.0.1",
          port: s.port,
          socket: {
            data(socket, data) {
              resolve(new TextDecoder().decode(data));
              socket.end("QUIT\r\n");
            },
          },
        });
      });
      assert.equal(await greeting, "220 hi\r\n");
      await s.conns[0]!.ended;
      const chunks = s.conns[0]!.chunks;
      assert.equal(decodeHeader(chunks[0]!)?.header.command, "LOCAL");
      assert.equal(decodeHeader(chunks[0]!)?.length, chunks[0]!.length, "the header alone");
      assert.equal(chunks[1]?.toString(), "QUIT\r\n");
    } finally {
      await s.close();
    }
  });

  test("backpressure on the first write: the header stays whole and first", async () => {
    const big = new Uint8Array(32 << 20).map((_, i) => i % 251);
    let total = 0;
    let first: Uint8Array | undefined;
    let closed!: () => void;
    const done = new Promise<void>((r) => closed = r);
    const server = net.createServer((socket) => {
      socket.on("data", (chunk: Buffer) => {
        first ??= new Uint8Array(chunk.subarray(0, 64));
        total += chunk.length;
      });
      socket.on("end", () => socket.end());
      socket.on("close", () => closed());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      let sent = 0;
      const pump = (socket: ClientSocket) => {
        while (sent < big.length) {
          const n = socket.write(big, sent, big.length - sent);
          if (n <= 0) return;
          sent += n;
        }
        socket.end();
      };
      await connect({
        hostname: "127.0.0.1",
        port: (server.address() as net.AddressInfo).port,
        header: HEADER,
        socket: { open: pump, drain: pump },
      });
      await done;
      assert.equal(total, 28 + big.length);
      assert.equal(decodeHeader(first!)?.length, 28);
      assert.deepEqual(first!.subarray(28), big.subarray(0, 36));
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test("relays an accepted socket: the client's addresses and chosen TLVs", async () => {
    const back = serve({ verifyChecksum: true });
    const front = listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        async open(client) {
          await connect({
            hostname: "127.0.0.1",
            port: back.port,
            header: headerFor(client, { passTlvs: [0x02] }),
            checksum: true,
            socket: {
              open(upstream) {
                upstream.end("relayed");
              },
            },
          });
          client.end();
        },
      },
    });
    try {
      const client = net.connect(front.port, "127.0.0.1");
      client.on("error", () => {});
      client.end(encodeHeader({
        ...HEADER,
        tlvs: encodeTlvs({ authority: "example.com", alpn: "h2" }),
      }));
      const conn = await back.conns.next();
      await conn.finished;
      assert.equal(conn.remoteAddress, "203.0.113.7");
      assert.equal(conn.localPort, 443);
      const tlvs = decodeTlvs(conn.header!.tlvs);
      assert.equal(tlvs.authority, "example.com");
      assert.equal(tlvs.alpn, undefined);
      assert.equal(typeof tlvs.crc32c, "number");
      assert.equal(new TextDecoder().decode(concat(conn.chunks)), "relayed");
      assert.equal(back.refusals.items.length, 0);
    } finally {
      front.stop(true);
      back.stop();
    }
  });

  test("refuses a bad header, both header and from, and tls, before connecting", () => {
    const handlers = { socket: {} } as const;
    assert.throws(
      () =>
        connect({
          hostname: "127.0.0.1",
          port: 1,
          ...handlers,
          header: { ...HEADER, version: 1, tlvs: encodeTlvs({ alpn: "h2" }) },
        }),
      (e: unknown) => (e as { code?: string }).code === "INVALID_HEADER",
    );
    assert.throws(
      () => connect({ hostname: "127.0.0.1", port: 1, ...handlers, header: HEADER, from: {} }),
      TypeError,
    );
    assert.throws(
      () => connect({ hostname: "127.0.0.1", port: 1, ...handlers, tls: true as never }),
      TypeError,
    );
  });
});
