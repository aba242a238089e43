// A flood of hostile datagrams against a runtime's `listenDatagram`, written once: the
// decoders' edge cases (every prefix of a header with TLVs, the malformed v1 and v2 headers,
// flipped bytes, headers longer than the cap or than the datagram, empty and 65 507-byte
// datagrams, random bytes, random bytes behind a valid signature) sent in bursts from one
// socket, while a good client's datagram after each burst must be answered. The codec is the
// oracle: each flood datagram must be refused with the code `decodeDatagram` gives it (as
// the receiver maps it under `require`), or served when it happens to be valid. None may
// crash the receiver, and the process's descriptors are back where they were after it.
// Each runtime's test file supplies a driver (tests/hostile_edge/{udp_node,deno_udp,
// bun_udp}.test.ts).
import assert from "node:assert/strict";
import { it } from "node:test";
import {
  type DatagramFormat,
  decodeDatagram,
  encodeDatagram,
  encodeHeader,
  encodeTlvs,
  fromHex,
  type PeerInfo,
  type ProxyHeaderInit,
  ProxyProtocolError,
  type SppHeaderInit,
} from "@proxy-protocol/edge";
import type { DatagramOptions } from "@proxy-protocol/edge/node";
import { Proxy } from "../listen/udp_cases.ts";
import { S } from "../vectors.ts";
import { fds, noise, runtime, text, until } from "./helpers.ts";

/** A running receiver, as a driver starts it. */
export interface FloodServer {
  port: number;
  /** Messages handed to the application so far. */
  served(): number;
  close(): Promise<void>;
}

/**
 * Starts the runtime's `listenDatagram` on 127.0.0.1, port 0, with `options` as given; its
 * application answers each message with `"echo:"` + its payload through `send(data, message)`.
 */
export type FloodDriver = (options: DatagramOptions) => Promise<FloodServer>;

export const SIZES = {
  /** Random datagrams (0-1500 bytes), and random bytes behind a valid v2 signature. */
  random: 1500,
  randomBehindSignature: 1000,
  /** Copies of a valid datagram with one byte flipped. */
  mutated: 600,
  /** Datagrams of 65 507 bytes (the most IPv4 UDP carries). */
  huge: 4,
  /** A burst's size, by count and by bytes (kept under the receive buffer). */
  burst: 100,
  burstBytes: 96 * 1024,
  /** The receiver's header cap. */
  maxHeaderLength: 4096,
  /** SPP: random datagrams behind the magic, and random ones. */
  spp: 600,
};

const LONG = { timeout: 60_000 };

const CLIENT = { address: "203.0.113.7", port: 5353 };
const SERVICE = { address: "10.0.0.5", port: 53 };
const SPP: SppHeaderInit = { source: CLIENT, destination: SERVICE };
const GOOD: ProxyHeaderInit = {
  version: 2,
  command: "PROXY",
  protocol: "UDP4",
  source: CLIENT,
  destination: SERVICE,
};

/** The v2 datagram with TLVs whose every prefix and flipped byte the flood sends. */
function richDatagram(): Uint8Array {
  return encodeDatagram(
    {
      ...GOOD,
      tlvs: encodeTlvs({
        authority: "example.com",
        alpn: "h3",
        uniqueId: text("0123456789abcdef"),
        ssl: { client: 1, verify: 0, version: "TLSv1.3", cn: "client" },
        awsVpceId: "vpce-08d2bf15fac5001c9",
      }),
    },
    text("payload"),
    { checksum: true },
  );
}

/** The flood for the PROXY format: named datagrams, in a fixed order. */
function proxyFlood(): Uint8Array[] {
  const out: Uint8Array[] = [];
  const rich = richDatagram();
  const headerLength = rich.length - "payload".length;
  for (let n = 0; n < headerLength; n++) out.push(rich.slice(0, n)); // every prefix
  for (
    const v1 of [
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
      "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
      "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY UNKNOWN " + "x".repeat(200),
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", // ends inside the line
      "GET / HTTP/1.1\r\n\r\n",
    ]
  ) out.push(text(v1));
  for (
    const hex of [
      S + "3112000c" + "7f0000017f000001" + "00500050", // version 3
      S + "2f12000c" + "7f0000017f000001" + "00500050", // command 0xF
      S + "2142000c" + "7f0000017f000001" + "00500050", // family 0x4
      S + "21120004" + "7f000001", // length below the address block
      S + "21120010" + "7f0000017f000001" + "00500050" + "020009" + "41", // TLV overruns
      S + "2112ffff", // length 65535: over the cap
      S + "2112" + (SIZES.maxHeaderLength - 15).toString(16).padStart(4, "0"), // one over
      S + "2112" + "0400" + "7f0000017f000001" + "00500050", // longer than the datagram
      S + "21120013" + "7f0000017f000001" + "00500050" + "200004" + "01000000", // SSL TLV
    ]
  ) out.push(fromHex(hex));
  const crc = encodeDatagram({ ...GOOD }, text("x"), { checksum: true });
  crc[crc.length - 2] = crc[crc.length - 2]! ^ 0xff; // a CRC32c that does not match
  out.push(crc);
  out.push(new Uint8Array(0));
  for (let i = 0; i < SIZES.mutated; i++) {
    const bytes = rich.slice();
    const at = (i * 7919) % rich.length;
    bytes[at] = bytes[at]! ^ (1 + (i % 255));
    out.push(bytes);
  }
  const signature = fromHex(S + "21");
  for (let i = 0; i < SIZES.randomBehindSignature; i++) {
    const tail = noise(10_000 + i, 3 + (i % 200));
    out.push(new Uint8Array([...signature, ...tail]));
  }
  for (let i = 0; i < SIZES.random; i++) out.push(noise(20_000 + i, (i * 37) % 1501));
  for (let i = 0; i < SIZES.huge; i++) {
    const bytes = noise(30_000 + i, 65_507);
    if (i % 2 === 1) bytes.set(fromHex(S + "2112ffff")); // a v2 header claiming 65 535
    out.push(bytes);
  }
  return out;
}

/** The flood for SPP: prefixes of its 38-byte header, random bytes behind its magic. */
function sppFlood(): Uint8Array[] {
  const out: Uint8Array[] = [];
  const spp = encodeDatagram(
    SPP,
    text("payload"),
    { format: "spp" },
  );
  for (let n = 0; n < 38; n++) out.push(spp.slice(0, n));
  for (let i = 0; i < SIZES.spp; i++) {
    const bytes = noise(40_000 + i, (i * 53) % 400);
    if (i % 2 === 0 && bytes.length >= 2) bytes.set([0x56, 0xec]);
    out.push(bytes);
  }
  out.push(text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
  out.push(encodeHeader({ ...GOOD, protocol: "UDP4" })); // v2 on an SPP socket
  return out;
}

/** What the receiver must do with `bytes` under `require`: the refusal's code, or serve. */
function oracle(bytes: Uint8Array, format: DatagramFormat): string {
  try {
    decodeDatagram(bytes, { format, maxLength: SIZES.maxHeaderLength });
    return "served";
  } catch (error) {
    if (!(error instanceof ProxyProtocolError)) throw error;
    if (error.code === "NOT_PROXY_PROTOCOL") return "HEADER_REQUIRED";
    return error.code;
  }
}

function tally(items: Iterable<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of items) out[k] = (out[k] ?? 0) + 1;
  return Object.fromEntries(Object.entries(out).sort());
}

/** Registers the flood tests for one runtime's driver. */
export function floodSuite(name: string, start: FloodDriver): void {
  for (const format of ["proxy", "spp"] as const) {
    it(
      `${name} on ${runtime}: a ${format} flood of hostile datagrams; the good client is answered`,
      LONG,
      async () => {
        const flood = format === "proxy" ? proxyFlood() : sppFlood();
        const expected = flood.map((d) => oracle(d, format));
        console.log(
          `  ${name} on ${runtime}, ${format}: ${flood.length} hostile datagrams ` +
            `(${flood.reduce((n, d) => n + d.length, 0)} bytes): ` +
            JSON.stringify(tally(expected)),
        );
        const fdsBefore = fds();
        const refusals: { code: string; peer: PeerInfo | undefined }[] = [];
        const server = await start({
          format,
          maxHeaderLength: SIZES.maxHeaderLength,
          onError: (error, peer) => refusals.push({ code: error.code, peer }),
        });
        const hostile = await new Proxy("127.0.0.1").bind();
        const good = await new Proxy("127.0.0.1").bind();
        const t0 = Date.now();
        let sent = 0, goods = 0;
        try {
          let burst: Uint8Array[] = [];
          let bytes = 0;
          const flush = async () => {
            for (const d of burst) await hostile.send(d, server.port);
            sent += burst.length;
            burst = [];
            bytes = 0;
            // The good client, after each burst: answered, with its own payload.
            const payload = text(`good#${goods}`);
            const datagram = format === "spp"
              ? encodeDatagram(SPP, payload, {
                format: "spp",
              })
              : encodeDatagram(GOOD, payload);
            await good.send(datagram, server.port);
            const reply = await good.reply(goods);
            const body = format === "spp" ? decodeDatagram(reply, { format }).payload : reply;
            assert.equal(new TextDecoder().decode(body), `echo:good#${goods}`);
            goods++;
            // Every flood datagram before it has been decided (none lost, none pending).
            await until(
              () => server.served() - goods + refusals.length >= sent,
              3000,
              () => `${sent} sent, ${refusals.length} refused, ${server.served() - goods} served`,
            );
          };
          for (const d of flood) {
            if (burst.length >= SIZES.burst || bytes + d.length + 1024 > SIZES.burstBytes) {
              await flush();
            }
            burst.push(d);
            bytes += d.length + 1024;
          }
          await flush();
        } finally {
          await hostile.close();
          await good.close();
          await server.close();
        }
        const served = server.served() - goods;
        console.log(
          `  ${name} on ${runtime}, ${format}: ${sent} sent in ${goods} bursts, ` +
            `${refusals.length} refused, ${served} served, in ${Date.now() - t0} ms`,
        );
        const want = tally(expected.filter((e) => e !== "served"));
        assert.deepEqual(tally(refusals.map((r) => r.code)), want);
        assert.equal(served, expected.filter((e) => e === "served").length);
        for (const r of refusals) {
          assert.deepEqual(
            [r.peer?.remoteAddress, r.peer?.remotePort],
            ["127.0.0.1", hostile.port],
            "each refusal names the flood's socket",
          );
        }
        await until(() => fds() <= fdsBefore, 3000, () => `fds ${fds()}, before ${fdsBefore}`);
      },
    );
  }

  it(
    `${name} on ${runtime}: the same flood unpaced (the kernel may drop some); still serving after`,
    LONG,
    async () => {
      const flood = proxyFlood();
      const allowed = new Set(flood.map((d) => oracle(d, "proxy")));
      const fdsBefore = fds();
      const codes: string[] = [];
      const server = await start({
        maxHeaderLength: SIZES.maxHeaderLength,
        onError: (error) => codes.push(error.code),
      });
      const hostile = await new Proxy("127.0.0.1").bind();
      const good = await new Proxy("127.0.0.1").bind();
      try {
        const t0 = Date.now();
        await Promise.all(flood.map((d) => hostile.send(d, server.port)));
        const ms = Date.now() - t0;
        // Answered once the backlog is worked off: sent until one comes back (a datagram of
        // its own may be dropped too while the receive buffer is full).
        let answered = false;
        for (let i = 0; i < 20 && !answered; i++) {
          await good.send(encodeDatagram(GOOD, text("after")), server.port);
          try {
            await until(() => good.replies.length > 0, 500, "");
            answered = true;
          } catch {
            // dropped: again
          }
        }
        assert.ok(answered, "the good client was answered after the flood");
        const served = server.served() - good.replies.length;
        console.log(
          `  ${name} on ${runtime}, unpaced: ${flood.length} sent in ${ms} ms, ` +
            `${codes.length} refused, ${served} served (the rest dropped by the kernel)`,
        );
        assert.ok(codes.length + served <= flood.length);
        for (const code of codes) assert.ok(allowed.has(code), `an unexpected code ${code}`);
      } finally {
        await hostile.close();
        await good.close();
        await server.close();
      }
      await until(() => fds() <= fdsBefore, 3000, () => `fds ${fds()}, before ${fdsBefore}`);
    },
  );
}
