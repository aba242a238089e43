/**
 * Codec benchmarks, side by side with proxy-protocol-js and @balena/proxy-protocol-parser on
 * the same wire bytes. Runs on Deno, Bun and Node (`npm run bench` runs all three and Go).
 *
 * Every decode case ends with the source address as text and its port, so each library does
 * the work a server needs: ours and balena make strings as they decode; proxy-protocol-js v2
 * keeps numbers, so its case joins them.
 *
 * @module
 */

import { bench, do_not_optimize, run, summary } from "mitata";
import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import {
  decodeHeader,
  encodeHeader,
  encodeHeaderInto,
  encodeTlvs,
  fromHex,
} from "@proxy-protocol/edge";

const require = createRequire(import.meta.url);
// deno-lint-ignore no-explicit-any
const balena: any = require("@balena/proxy-protocol-parser");
// deno-lint-ignore no-explicit-any
const ppjs: any = require("proxy-protocol-js");

const S = "0d0a0d0a000d0a515549540a";
const text = (s: string) => new TextEncoder().encode(s);
/** A Buffer over the same memory, as the Node-only peers need; no copy. */
const buf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** The TCP6 + TLVs case's header, before the CRC32c TLV is added. */
const tcp6Tlvs = {
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::1", port: 51000 },
  destination: { address: "2001:db8::2", port: 443 },
  tlvs: encodeTlvs({
    alpn: "h2",
    authority: "example.com",
    ssl: { client: 1, version: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384" },
  }),
} as const;

const wire = {
  v1Tcp4: text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
  v1Tcp6: text("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n"),
  v2Tcp4: fromHex(S + "2111 000c ac1f0771 ac1f0a1f c8f2 0050"),
  v2Tcp6Tlvs: encodeHeader(tcp6Tlvs, { checksum: true }),
  aws: fromHex(
    S + "2111 0054 ac1f0771 ac1f0a1f c8f2 0050 03 0004 e8d6892d ea 0017 01" +
      "767063652d303864326266313566616335303031633" + "9" + "04 0024" + "00".repeat(36),
  ),
};

// Check every library decodes every case before timing anything.
const expected: Record<keyof typeof wire, string> = {
  v1Tcp4: "192.168.0.1:56324",
  v1Tcp6: "2001:db8::1:51000",
  v2Tcp4: "172.31.7.113:51442",
  v2Tcp6Tlvs: "2001:db8::1:51000",
  aws: "172.31.7.113:51442",
};

type Decoder = (bytes: Uint8Array) => string;
const ours: Decoder = (b) => {
  const s = decodeHeader(b)!.header.source!;
  return s.address + ":" + s.port;
};
const decoders: Record<string, Partial<Record<keyof typeof wire, Decoder>>> = {
  "@proxy-protocol/edge": {
    v1Tcp4: ours,
    v1Tcp6: ours,
    v2Tcp4: ours,
    v2Tcp6Tlvs: ours,
    aws: ours,
  },
  "proxy-protocol-js (latin1 string)": {
    v1Tcp4: (b) => {
      const p = ppjs.V1ProxyProtocol.parse(buf(b).toString("latin1"));
      return p.source.ipAddress + ":" + p.source.port;
    },
    v1Tcp6: (b) => {
      const p = ppjs.V1ProxyProtocol.parse(buf(b).toString("latin1"));
      return p.source.ipAddress + ":" + p.source.port;
    },
  },
  "proxy-protocol-js (Uint8Array)": {
    v1Tcp4: (b) => {
      const p = ppjs.V1BinaryProxyProtocol.parse(b);
      return p.source.ipAddress + ":" + p.source.port;
    },
    v1Tcp6: (b) => {
      const p = ppjs.V1BinaryProxyProtocol.parse(b);
      return p.source.ipAddress + ":" + p.source.port;
    },
    v2Tcp4: (b) => {
      const a = ppjs.V2ProxyProtocol.parse(b).proxyAddress;
      return a.sourceAddress.address.join(".") + ":" + a.sourcePort;
    },
  },
  "@balena/proxy-protocol-parser": {
    v1Tcp4: (b) => {
      const d = balena.v1_decode(buf(b));
      return d.remoteAddress + ":" + d.remotePort;
    },
    v1Tcp6: (b) => {
      const d = balena.v1_decode(buf(b));
      return d.remoteAddress + ":" + d.remotePort;
    },
    v2Tcp4: (b) => {
      const d = balena.v2_decode(buf(b), true);
      return d.remoteAddress + ":" + d.remotePort;
    },
    v2Tcp6Tlvs: (b) => {
      const d = balena.v2_decode(buf(b), true);
      return d.remoteAddress + ":" + d.remotePort;
    },
    aws: (b) => {
      const d = balena.v2_decode(buf(b), true);
      return d.remoteAddress + ":" + d.remotePort;
    },
  },
};

/**
 * `BENCH_GROUP`, when set, keeps only the cases whose title starts with it: `run.mjs` times
 * each group in a fresh process, so one case's JIT and heap state cannot skew the next.
 */
const only = (globalThis as { process?: { env: Record<string, string | undefined> } }).process
  ?.env.BENCH_GROUP;
const wanted = (title: string) => only === undefined || title.startsWith(only);

const skipped: string[] = [];
for (const [library, cases] of Object.entries(decoders)) {
  for (const [name, decode] of Object.entries(cases)) {
    const key = name as keyof typeof wire;
    let got: string;
    try {
      got = decode!(wire[key]);
    } catch (error) {
      got = `error: ${(error as Error).message}`;
    }
    if (got !== expected[key]) {
      skipped.push(`${library} / ${name}: gave ${got}, expected ${expected[key]}`);
      delete cases[key];
    }
  }
}
for (const line of skipped) console.log(`not timed (wrong answer): ${line}`);

const titles: Record<keyof typeof wire, string> = {
  v1Tcp4: "decode v1 TCP4",
  v1Tcp6: "decode v1 TCP6",
  v2Tcp4: "decode v2 TCP4",
  v2Tcp6Tlvs: "decode v2 TCP6 + TLVs + CRC32c",
  aws: "decode v2 AWS NLB (CRC32c, VPC endpoint)",
};
for (const key of Object.keys(wire) as (keyof typeof wire)[]) {
  if (!wanted(titles[key])) continue;
  summary(() => {
    for (const [library, cases] of Object.entries(decoders)) {
      const decode = cases[key];
      if (decode === undefined) continue;
      const bytes = wire[key];
      bench(`${titles[key]} | ${library}`, () => do_not_optimize(decode(bytes)));
    }
  });
}

const v4 = {
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "172.31.7.113", port: 51442 },
  destination: { address: "172.31.10.31", port: 80 },
} as const;
const socket = {
  remoteFamily: "IPv4",
  remoteAddress: "172.31.7.113",
  remotePort: 51442,
  localAddress: "172.31.10.31",
  localPort: 80,
};
const ppjsV2 = (): Uint8Array =>
  new ppjs.V2ProxyProtocol(
    ppjs.Command.PROXY,
    ppjs.TransportProtocol.STREAM,
    new ppjs.IPv4ProxyAddress(
      ppjs.IPv4Address.createFrom([172, 31, 7, 113]),
      51442,
      ppjs.IPv4Address.createFrom([172, 31, 10, 31]),
      80,
    ),
  ).build();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
/**
 * The caller's buffer for `encodeHeaderInto`, reused by every call as a server's send buffer
 * would be. Its cases time the encoder without the allocation every other case pays (on Deno
 * a `new Uint8Array` alone costs several hundred ns).
 */
const target = new Uint8Array(512);
const into = (header: Parameters<typeof encodeHeader>[0], options?: { checksum: boolean }) =>
  target.subarray(0, encodeHeaderInto(header, target, 0, options));
for (
  const [name, bytes] of [
    ["ours", encodeHeader(v4)],
    ["ours (into)", into(v4)],
    ["balena", balena.v2_encode(socket)],
    ["ppjs", ppjsV2()],
  ]
) {
  if (hex(bytes) !== hex(wire.v2Tcp4)) console.log(`note: ${name} v2 encode gives ${hex(bytes)}`);
}
if (wanted("encode v2 TCP4")) {
  summary(() => {
    bench("encode v2 TCP4 | @proxy-protocol/edge", () => do_not_optimize(encodeHeader(v4)));
    bench(
      "encode v2 TCP4 | @proxy-protocol/edge encodeHeaderInto",
      () => do_not_optimize(encodeHeaderInto(v4, target, 0)),
    );
    bench("encode v2 TCP4 | proxy-protocol-js", () => do_not_optimize(ppjsV2()));
    bench(
      "encode v2 TCP4 | @balena/proxy-protocol-parser",
      () => do_not_optimize(balena.v2_encode(socket)),
    );
  });
}
const v1 = { ...v4, version: 1 } as const;
const ppjsV1 = () =>
  new ppjs.V1ProxyProtocol(
    ppjs.INETProtocol.TCP4,
    new ppjs.Peer("172.31.7.113", 51442),
    new ppjs.Peer("172.31.10.31", 80),
  ).build();
for (
  const [name, bytes] of [
    ["ours", encodeHeader(v1)],
    ["ours (into)", into(v1)],
    ["balena", balena.v1_encode(socket)],
    ["ppjs", Buffer.from(ppjsV1(), "latin1")],
  ]
) {
  const want = "PROXY TCP4 172.31.7.113 172.31.10.31 51442 80\r\n";
  if (Buffer.from(bytes).toString("latin1") !== want) {
    console.log(`note: ${name} v1 encode gives ${JSON.stringify(Buffer.from(bytes).toString())}`);
  }
}
if (wanted("encode v1 TCP4")) {
  summary(() => {
    bench("encode v1 TCP4 | @proxy-protocol/edge", () => do_not_optimize(encodeHeader(v1)));
    bench(
      "encode v1 TCP4 | @proxy-protocol/edge encodeHeaderInto",
      () => do_not_optimize(encodeHeaderInto(v1, target, 0)),
    );
    // proxy-protocol-js builds a string; a server sends bytes, so the case includes that step.
    bench(
      "encode v1 TCP4 | proxy-protocol-js (string, then latin1 bytes)",
      () => do_not_optimize(Buffer.from(ppjsV1(), "latin1")),
    );
    bench(
      "encode v1 TCP4 | @balena/proxy-protocol-parser",
      () => do_not_optimize(balena.v1_encode(socket)),
    );
  });
}
// No JS peer writes TLVs; benches/go times go-proxyproto on the same bytes (its TLVs are
// handed over raw, CRC32c included: it computes no checksum).
// The header as given (encoding adds the CRC32c TLV), not decoded from the wire: the
// encode cases do not depend on the decoder.
const tlvHeader = tcp6Tlvs;
const checksum = { checksum: true };
for (
  const [name, bytes] of [
    ["ours", encodeHeader(tlvHeader, checksum)],
    ["ours (into)", into(tlvHeader, checksum)],
  ] as const
) {
  if (hex(bytes) !== hex(wire.v2Tcp6Tlvs)) {
    console.log(`note: ${name} v2 TCP6 encode gives ${hex(bytes)}`);
  }
}
if (wanted("encode v2 TCP6")) {
  summary(() => {
    bench(
      "encode v2 TCP6 + TLVs + CRC32c | @proxy-protocol/edge",
      () => do_not_optimize(encodeHeader(tlvHeader, checksum)),
    );
    bench(
      "encode v2 TCP6 + TLVs + CRC32c | @proxy-protocol/edge encodeHeaderInto",
      () => do_not_optimize(encodeHeaderInto(tlvHeader, target, 0, checksum)),
    );
  });
}

const result = await run();
// One machine-readable line for benches/run.mjs: average ns per case and library.
const averages: Record<string, number> = {};
for (const trial of result.benchmarks) {
  for (const r of trial.runs) {
    if (r.stats) averages[r.name] = r.stats.avg;
  }
}
console.log(
  "BENCH_JSON " +
    JSON.stringify({ runtime: result.context.runtime, averages }),
);
