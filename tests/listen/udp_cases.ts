// What every runtime's `listenDatagram` must do, written once: round trips through a
// "proxy" (a node:dgram socket on loopback that sends PROXY v2 or SPP datagrams and reads
// the replies), trust, refused datagrams, LOCAL. Each runtime supplies a small UdpDriver
// that starts its adapter with an application that records every message and answers it
// with "echo:" + its payload through the socket's send. Runtime-neutral: the proxy side is
// node:dgram (Node's, Deno's and Bun's).
import assert from "node:assert/strict";
import dgram from "node:dgram";
import {
  type DatagramFormat,
  decodeDatagram,
  encodeDatagram,
  encodeHeader,
  type PeerInfo,
  type ProxyHeaderInit,
  type ProxyProtocolError,
  type ProxyProtocolErrorCode,
  type SppHeader,
  type SppHeaderInit,
  type UntrustedPolicy,
} from "@proxy-protocol/edge";
import type { DatagramOptions, ProxyHeader } from "@proxy-protocol/edge/node";
import { concat, decode, text, until } from "./client.ts";
import type { Registrar } from "./cases.ts";

/** A message as the application saw it (its payload copied). */
export interface SeenDatagram {
  data: Uint8Array;
  client: { address: string; port: number };
  proxy: { address: string; port: number };
  header: ProxyHeader | SppHeader | null;
}

/** A running datagram socket, as a driver starts it. */
export interface UdpServer {
  /** The port it got (it binds port 0). */
  port: number;
  /** Every message handed to the application, in order. */
  seen: SeenDatagram[];
  /** Closes it; resolves once it is closed. */
  close(): Promise<void>;
}

/** How one runtime's `listenDatagram` is started for the shared cases. */
export interface UdpDriver {
  /**
   * Binds the adapter on `host`, port 0, with `options` as given (`onError` included). Its
   * application records each message in `seen` and answers it with `"echo:"` + its
   * payload through the socket's `send(data, message)`.
   */
  start(options: DatagramOptions, host: string): Promise<UdpServer>;
}

/** A refused datagram as onError saw it. */
export interface Refusal {
  error: ProxyProtocolError;
  peer: PeerInfo | undefined;
}

/** The proxy's side: a node:dgram socket that sends datagrams and collects replies. */
export class Proxy {
  readonly replies: Uint8Array[] = [];
  #socket: dgram.Socket;
  port = 0;
  readonly host: string;

  constructor(host: string) {
    this.host = host;
    this.#socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    this.#socket.on("message", (m: Uint8Array) => this.replies.push(new Uint8Array(m)));
  }

  async bind(): Promise<this> {
    await new Promise<void>((resolve) => this.#socket.bind(0, this.host, resolve));
    this.port = this.#socket.address().port;
    return this;
  }

  send(bytes: Uint8Array, port: number): Promise<void> {
    return new Promise((resolve, reject) =>
      this.#socket.send(bytes, port, this.host, (error) => error ? reject(error) : resolve())
    );
  }

  async reply(index = 0): Promise<Uint8Array> {
    await until(() => this.replies.length > index);
    return this.replies[index]!;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}

const CLIENT = { address: "203.0.113.7", port: 5353 };
const SERVICE = { address: "10.0.0.5", port: 53 };
const UDP4: ProxyHeaderInit = {
  version: 2,
  command: "PROXY",
  protocol: "UDP4",
  source: CLIENT,
  destination: SERVICE,
};
const UDP6: ProxyHeaderInit = {
  version: 2,
  command: "PROXY",
  protocol: "UDP6",
  source: { address: "2001:db8::7", port: 40000 },
  destination: { address: "2001:db8::53", port: 53 },
};
const SPP: SppHeaderInit = {
  source: CLIENT,
  destination: { address: "198.51.100.1", port: 53 },
};
const LOCAL: ProxyHeaderInit = { version: 2, command: "LOCAL", protocol: "UNKNOWN" };
const PING = text("ping");

const withHeader = (format: DatagramFormat, payload = PING) =>
  format === "spp" ? encodeDatagram(SPP, payload, { format }) : encodeDatagram(UDP4, payload);

/** Registers the shared datagram cases under `name`. */
export function defineDatagramSuite(name: string, driver: UdpDriver, registrar: Registrar): void {
  const { describe, it } = registrar;

  interface Harness {
    server: UdpServer;
    proxy: Proxy;
    refusals: Refusal[];
    /** Sends a datagram from the proxy to the server. */
    send(bytes: Uint8Array): Promise<void>;
  }

  /** Runs `fn` with a server recording refusals and a proxy, closing both after. */
  async function using(
    options: DatagramOptions,
    fn: (h: Harness) => Promise<void>,
    host = "127.0.0.1",
  ): Promise<void> {
    const refusals: Refusal[] = [];
    const server = await driver.start(
      { ...options, onError: (error, peer) => refusals.push({ error, peer }) },
      host,
    );
    const proxy = await new Proxy(host).bind();
    try {
      await fn({ server, proxy, refusals, send: (bytes) => proxy.send(bytes, server.port) });
    } finally {
      await proxy.close();
      await server.close();
    }
  }

  /** Waits until `n` datagrams were either served or refused. */
  const settled = (h: Harness, n: number) =>
    until(() => h.server.seen.length + h.refusals.length >= n);

  const codes = (h: Harness) => h.refusals.map((r) => r.error.code);

  describe(name, () => {
    describe("round trips", () => {
      it("v2 UDP4: the client from the header, the proxy from the socket; the reply goes back bare", async () => {
        await using({}, async (h) => {
          await h.send(withHeader("proxy"));
          await until(() => h.server.seen.length === 1);
          const m = h.server.seen[0]!;
          assert.deepEqual(m.client, CLIENT);
          assert.deepEqual(m.proxy, { address: "127.0.0.1", port: h.proxy.port });
          assert.equal(decode(m.data), "ping");
          assert.equal(m.header?.protocol, "UDP4");
          assert.equal(decode(await h.proxy.reply()), "echo:ping");
        });
      });

      it("v2 UDP4 with replyHeader: the reply's header is the request's turned around", async () => {
        await using({ replyHeader: true }, async (h) => {
          await h.send(withHeader("proxy"));
          const { header, payload } = decodeDatagram(await h.proxy.reply());
          assert.equal(header.version, 2);
          assert.equal(header.command, "PROXY");
          assert.equal(header.protocol, "UDP4");
          assert.deepEqual(header.source, SERVICE);
          assert.deepEqual(header.destination, CLIENT);
          assert.equal(decode(payload), "echo:ping");
        });
      });

      it("a v2 UDP6 header over an IPv4 socket, replyHeader: turned around, UDP6", async () => {
        await using({ replyHeader: true }, async (h) => {
          await h.send(encodeDatagram(UDP6, PING));
          await until(() => h.server.seen.length === 1);
          assert.deepEqual(h.server.seen[0]!.client, UDP6.source);
          const { header, payload } = decodeDatagram(await h.proxy.reply());
          assert.equal(header.protocol, "UDP6");
          assert.deepEqual(header.source, UDP6.destination);
          assert.deepEqual(header.destination, UDP6.source);
          assert.equal(decode(payload), "echo:ping");
        });
      });

      it("SPP: an IPv4 client arrives as ::ffff:a.b.c.d; the reply carries the same header", async () => {
        await using({ format: "spp" }, async (h) => {
          await h.send(withHeader("spp"));
          await until(() => h.server.seen.length === 1);
          const m = h.server.seen[0]!;
          assert.deepEqual(m.client, { address: "::ffff:203.0.113.7", port: 5353 });
          assert.deepEqual(m.proxy, { address: "127.0.0.1", port: h.proxy.port });
          assert.equal(decode(m.data), "ping");
          const { header, payload } = decodeDatagram(await h.proxy.reply(), { format: "spp" });
          assert.deepEqual(header.source, { address: "::ffff:203.0.113.7", port: 5353 });
          assert.deepEqual(header.destination, { address: "::ffff:198.51.100.1", port: 53 });
          assert.equal(decode(payload), "echo:ping");
        });
      });

      it("SPP with replyHeader false: the reply goes back bare", async () => {
        await using({ format: "spp", replyHeader: false }, async (h) => {
          await h.send(withHeader("spp"));
          assert.equal(decode(await h.proxy.reply()), "echo:ping");
        });
      });

      it("SPP over IPv6 (::1)", async () => {
        await using({ format: "spp" }, async (h) => {
          await h.send(withHeader("spp"));
          await until(() => h.server.seen.length === 1);
          const m = h.server.seen[0]!;
          assert.equal(m.client.address, "::ffff:203.0.113.7");
          assert.deepEqual(m.proxy, { address: "::1", port: h.proxy.port });
          const { payload } = decodeDatagram(await h.proxy.reply(), { format: "spp" });
          assert.equal(decode(payload), "echo:ping");
        }, "::1");
      });

      it("each datagram stands alone: three clients interleaved, each answered with its own header", async () => {
        await using({ replyHeader: true }, async (h) => {
          for (let i = 1; i <= 3; i++) {
            await h.send(
              encodeDatagram(
                { ...UDP4, source: { address: `203.0.113.${i}`, port: 1000 + i } },
                text(`#${i}`),
              ),
            );
          }
          await until(() => h.proxy.replies.length === 3);
          const back = h.proxy.replies.map((r) => decodeDatagram(r));
          assert.deepEqual(
            back.map((d) => [d.header.destination?.address, decode(d.payload)]).sort(),
            [["203.0.113.1", "echo:#1"], ["203.0.113.2", "echo:#2"], ["203.0.113.3", "echo:#3"]],
          );
          assert.deepEqual(h.server.seen.map((m) => m.client.port).sort(), [1001, 1002, 1003]);
        });
      });

      it("a large payload (60 000 bytes) comes whole", async () => {
        await using({}, async (h) => {
          const big = new Uint8Array(60_000).map((_, i) => i % 251);
          await h.send(encodeDatagram(UDP4, big));
          await until(() => h.server.seen.length === 1);
          assert.deepEqual(h.server.seen[0]!.data, big);
        });
      });
    });

    describe("LOCAL", () => {
      it("gives the peer's address; a reply with replyHeader is LOCAL too", async () => {
        await using({ replyHeader: true }, async (h) => {
          await h.send(encodeDatagram(LOCAL, PING));
          await until(() => h.server.seen.length === 1);
          const m = h.server.seen[0]!;
          assert.deepEqual(m.client, { address: "127.0.0.1", port: h.proxy.port });
          assert.equal(m.header?.command, "LOCAL");
          const { header, payload } = decodeDatagram(await h.proxy.reply());
          assert.equal(header.command, "LOCAL");
          assert.equal(decode(payload), "echo:ping");
        });
      });
    });

    describe("untrusted sources never set an address (trust 10.0.0.0/8, the proxy on 127.0.0.1)", () => {
      const expected: Record<
        UntrustedPolicy,
        { refused: ProxyProtocolErrorCode[]; data: string[] }
      > = {
        deny: { refused: ["UNTRUSTED_SOURCE", "UNTRUSTED_SOURCE"], data: [] },
        reject: { refused: ["HEADER_FORBIDDEN"], data: ["plain"] },
        ignore: { refused: [], data: ["ping", "plain"] },
        skip: { refused: [], data: ["<whole>", "plain"] },
      };
      for (const format of ["proxy", "spp"] as const) {
        for (const untrusted of ["deny", "reject", "ignore", "skip"] as const) {
          it(`${format}, untrusted ${untrusted}`, async () => {
            await using({ format, trust: ["10.0.0.0/8"], untrusted }, async (h) => {
              const headed = withHeader(format);
              await h.send(headed);
              await settled(h, 1);
              await h.send(text("plain"));
              await settled(h, 2);
              const want = expected[untrusted];
              assert.deepEqual(codes(h), want.refused);
              assert.deepEqual(
                h.server.seen.map((m) =>
                  decode(m.data) === decode(headed) ? "<whole>" : decode(m.data)
                ),
                want.data,
              );
              for (const m of h.server.seen) {
                assert.deepEqual(m.client, { address: "127.0.0.1", port: h.proxy.port });
                assert.equal(m.header, null);
              }
              for (const r of h.refusals) assert.equal(r.peer?.remoteAddress, "127.0.0.1");
            });
          });
        }
      }

      it("a trusted proxy (127.0.0.0/8) sets the address", async () => {
        await using({ trust: ["10.0.0.0/8", "127.0.0.0/8"] }, async (h) => {
          await h.send(withHeader("proxy"));
          await until(() => h.server.seen.length === 1);
          assert.deepEqual(h.server.seen[0]!.client, CLIENT);
        });
      });
    });

    describe("refused datagrams are dropped, reported with their peer, and the socket serves on", () => {
      for (const format of ["proxy", "spp"] as const) {
        it(`${format}: every prefix of a header is TRUNCATED`, async () => {
          await using({ format }, async (h) => {
            const header = withHeader(format, new Uint8Array(0));
            for (let n = 0; n < header.length; n++) await h.send(header.subarray(0, n));
            await settled(h, header.length);
            assert.deepEqual(codes(h), Array(header.length).fill("TRUNCATED"));
            assert.equal(h.server.seen.length, 0);
            const peer = h.refusals[0]!.peer!;
            assert.equal(peer.remoteAddress, "127.0.0.1");
            assert.equal(peer.remotePort, h.proxy.port);
            assert.equal(peer.localPort, h.server.port);
            await h.send(withHeader(format));
            await until(() => h.server.seen.length === 1);
            assert.equal(decode(h.server.seen[0]!.data), "ping");
            const echo = text("echo:ping");
            assert.deepEqual(
              await h.proxy.reply(),
              format === "spp" ? withHeader("spp", echo) : echo,
            );
          });
        });
      }

      it("a header longer than maxHeaderLength is HEADER_TOO_LONG", async () => {
        await using({ maxHeaderLength: 64 }, async (h) => {
          const padded = { ...UDP4, tlvs: [{ type: 0x04, value: new Uint8Array(100) }] }; // NOOP
          await h.send(encodeDatagram(padded, PING));
          await settled(h, 1);
          assert.deepEqual(codes(h), ["HEADER_TOO_LONG"]);
          await h.send(withHeader("proxy"));
          await until(() => h.server.seen.length === 1);
        });
      });

      it("SPP under a maxHeaderLength below 38 is HEADER_TOO_LONG", async () => {
        await using({ format: "spp", maxHeaderLength: 32 }, async (h) => {
          await h.send(withHeader("spp"));
          await settled(h, 1);
          assert.deepEqual(codes(h), ["HEADER_TOO_LONG"]);
        });
      });

      it("malformed, bad checksum, missing under require, then a good one", async () => {
        await using({}, async (h) => {
          const bad = withHeader("proxy");
          bad[12] = 0x31; // version 3
          const sums = encodeHeader(UDP4, { checksum: true });
          sums[sums.length - 1]! ^= 0xff;
          await h.send(bad);
          await settled(h, 1);
          await h.send(concat(sums, PING));
          await settled(h, 2);
          await h.send(text("plain"));
          await settled(h, 3);
          await h.send(withHeader("proxy"));
          await settled(h, 4);
          assert.deepEqual(codes(h), [
            "UNSUPPORTED_VERSION",
            "CHECKSUM_MISMATCH",
            "HEADER_REQUIRED",
          ]);
          assert.deepEqual(h.server.seen.map((m) => decode(m.data)), ["ping"]);
        });
      });

      it("verifyChecksum false lets a bad checksum through", async () => {
        await using({ verifyChecksum: false }, async (h) => {
          const sums = encodeHeader(UDP4, { checksum: true });
          sums[sums.length - 1]! ^= 0xff;
          await h.send(concat(sums, PING));
          await until(() => h.server.seen.length === 1);
          assert.deepEqual(h.server.seen[0]!.client, CLIENT);
        });
      });

      it("policy optional: no header is served as the peer; a broken one is still refused", async () => {
        await using({ policy: "optional" }, async (h) => {
          await h.send(text("plain"));
          await settled(h, 1);
          await h.send(withHeader("proxy").subarray(0, 20));
          await settled(h, 2);
          await h.send(withHeader("proxy"));
          await settled(h, 3);
          assert.deepEqual(codes(h), ["TRUNCATED"]);
          assert.deepEqual(h.server.seen.map((m) => [m.client.address, decode(m.data)]), [
            ["127.0.0.1", "plain"],
            ["203.0.113.7", "ping"],
          ]);
        });
      });
    });
  });
}
