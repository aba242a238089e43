// Deterministic, runtime-neutral input generators for the fuzzer (tests/fuzz/): a small
// seeded PRNG, so that a million cases cost little and any case can be replayed from its
// (seed, index), and generators for the four targets: `decodeHeader` inputs (random bytes,
// mutations of the real captures in tests/, structure-aware v1 and v2), raw TLV lists,
// datagrams (PROXY and SPP) and accept-phase runs (options, chunking, timing).
import { S, text, V1_SPEC, V2 } from "../vectors.ts";

// ---------------------------------------------------------------------------------------
// The PRNG

/** splitmix32: spreads one 32-bit seed over the generator's state. */
function splitmix(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) >>> 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** MurmurHash3's finalizer: a 32-bit mix. */
function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** sfc32 (Chris Doty-Humphrey's Small Fast Chaotic PRNG), seeded through splitmix32. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    const state = { s: seed >>> 0 };
    this.#a = splitmix(state);
    this.#b = splitmix(state);
    this.#c = splitmix(state);
    this.#d = splitmix(state);
    for (let i = 0; i < 12; i++) this.next();
  }

  /** The next uint32. */
  next(): number {
    const a = this.#a, b = this.#b, c = this.#c, d = this.#d;
    const t = (((a + b) >>> 0) + d) >>> 0;
    this.#d = (d + 1) >>> 0;
    this.#a = b ^ (b >>> 9);
    this.#b = (c + (c << 3)) >>> 0;
    const r = (c << 21) | (c >>> 11);
    this.#c = (r + t) >>> 0;
    return t;
  }

  /** An integer in 0..n-1 (0 when n <= 1). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.next() / 4294967296) * n);
  }

  /** An integer in lo..hi, both included. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p * 4294967296;
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      let v = this.next();
      for (let j = i; j < i + 4 && j < n; j++, v >>>= 8) out[j] = v & 0xff;
    }
    return out;
  }

  /** One of `xs` (which must not be empty). */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  /** A small size: mostly under `typical`, now and then up to `most`. */
  size(typical: number, most: number): number {
    return this.chance(0.9) ? this.int(typical + 1) : this.int(most + 1);
  }
}

/** The generator for case `index` of run `seed` (and of a target's `stream`). */
export function caseRng(seed: number, index: number, stream = 0): Rng {
  return new Rng(fmix((fmix((seed ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0) ^ index) >>> 0));
}

// ---------------------------------------------------------------------------------------
// Bytes

const encoder = new TextEncoder();
const SIGNATURE = hex(S);

/** Hex (spaces allowed) to bytes. */
export function hex(s: string): Uint8Array {
  const t = s.replace(/\s+/g, "");
  const out = new Uint8Array(t.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Bytes to lower-case hex. */
export function toHexString(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += b[i]!.toString(16).padStart(2, "0");
  return s;
}

/** The arrays one after another, in a new array. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
}

const ascii = (s: string): Uint8Array => encoder.encode(s);

/** CRC32c (Castagnoli), written here independently of the library's. */
const CRC_TABLE = new Uint32Array(256);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  CRC_TABLE[i] = c >>> 0;
}
export function crc32cOf(b: Uint8Array, start = 0, end = b.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The v2 address block size of a family/transport byte, or -1. */
export function addressLength(family: number): number {
  switch (family) {
    case 0x00:
      return 0;
    case 0x11:
    case 0x12:
      return 12;
    case 0x21:
    case 0x22:
      return 36;
    case 0x31:
    case 0x32:
      return 216;
    default:
      return -1;
  }
}

/** Whether `b` starts with the v2 signature and has its 16-byte fixed part. */
function isV2(b: Uint8Array): boolean {
  if (b.length < 16) return false;
  for (let i = 0; i < 12; i++) if (b[i] !== SIGNATURE[i]) return false;
  return true;
}

/**
 * The TLV boundaries of the v2 header `b` begins (from the end of its address block to the
 * end its length field gives, or the end of `b`), where its family is known.
 */
function tlvOffsets(b: Uint8Array): number[] {
  if (!isV2(b)) return [];
  const block = addressLength(b[13]!);
  if (block < 0) return [];
  const end = Math.min(b.length, 16 + (b[14]! << 8 | b[15]!));
  const out: number[] = [];
  for (let p = 16 + block; p + 3 <= end; p += 3 + (b[p + 1]! << 8 | b[p + 2]!)) out.push(p);
  return out;
}

/**
 * Writes the right CRC32c into the first 4-byte CRC32C TLV of the v2 header `b` begins,
 * if it has one and is whole: mutated headers then still get past the checksum.
 */
export function fixCrc(b: Uint8Array): void {
  if (!isV2(b)) return;
  const length = 16 + (b[14]! << 8 | b[15]!);
  if (length > b.length) return;
  for (const p of tlvOffsets(b)) {
    if (b[p] !== 0x03 || b[p + 1] !== 0 || b[p + 2] !== 4 || p + 7 > length) continue;
    b.fill(0, p + 3, p + 7);
    const crc = crc32cOf(b, 0, length);
    b[p + 3] = crc >>> 24;
    b[p + 4] = (crc >>> 16) & 0xff;
    b[p + 5] = (crc >>> 8) & 0xff;
    b[p + 6] = crc & 0xff;
    return;
  }
}

// ---------------------------------------------------------------------------------------
// Captures: the real headers and published vectors the mutations start from.

const TLS_SUBS = ascii("TLSv1.3");

/** Real captures and published vectors (tests/vectors.ts, the notes, the datagram tests). */
export const CAPTURES: readonly Uint8Array[] = [
  ...Object.values(V2),
  text(V1_SPEC),
  text("PROXY TCP6 ::ffff:10.1.91.14 2001:db8::2 62588 443\r\n"),
  text("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\nGET / HTTP/1.1\r\n"),
  text("PROXY UNKNOWN\r\n"),
  text("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"),
  // AWS NLB health check: LOCAL with an address block, then a NOOP byte.
  hex(S + "2011 000c 0a000001 0a000002 1f90 0050"),
  // HAProxy v2 check with proxy-v2-options: LOCAL, CRC32C and an empty SSL TLV.
  (() => {
    const b = hex(S + "2000 000f 03 0004 00000000 20 0005 00 00000000");
    fixCrc(b);
    return b;
  })(),
  // Datagram vectors (tests/datagram.test.ts): UDP4, UDP6 with AUTHORITY.
  hex(S + "2112 000c c0000201 c6336401 d431 0035 00010203cafe"),
  hex(
    S + "2122 002a 20010db8000000000000000000000001 20010db8000000000000000000000053" +
      "9c40 0035 02 0003 646e73",
  ),
  // Azure and GCP vendor TLVs (the notes' values) after a TCP4 block.
  hex(S + "2111 0020 7f000001 7f000001 002a 0539 ee 0005 01 c1450021 e0 0008 ffffffffc0a86402"),
  // UNIX stream, NUL padded paths.
  concat(
    hex(S + "2131 00d8"),
    padded(ascii("/run/haproxy.sock"), 108),
    padded(ascii("/run/app.sock"), 108),
  ),
  // HAProxy reg-test: AUTHORITY "12345", and its broken variants (notes).
  hex(S + "2111 0014 7f000001 7f000001 002a 0539 02 000a 3132333435"),
  hex(S + "2111 0015 7f000001 7f000001 002a 0539 02 0004 31323334 0000"),
  // An SSL TLV with nested sub-TLVs and a UNIQUE_ID of 128 bytes.
  concat(
    hex(S + "2100"),
    u16(5 + 3 + 5 + 3 + TLS_SUBS.length + 3 + 128),
    hex("20 0008 05 00000000 21"),
    u16(TLS_SUBS.length),
    TLS_SUBS,
    hex("05 0080"),
    new Uint8Array(128).fill(0xab),
  ),
];

/** SPP datagram captures (tests/datagram.test.ts), payload included. */
export const SPP_CAPTURES: readonly Uint8Array[] = [
  hex(
    "56ec 00000000000000000000ffffc0000201 00000000000000000000ffffc6336401 d431 0035 cafe",
  ),
  hex("56ec 20010db8000000000000000000000001 20010db8000000000000000000000053 9c40 01bb"),
];

function u16(n: number): Uint8Array {
  return new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
}

function padded(b: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  out.set(b.subarray(0, n));
  return out;
}

// ---------------------------------------------------------------------------------------
// v1: valid and near-valid lines

const INTERESTING_PORTS = ["0", "1", "80", "443", "65535", "65536", "99999", "0443", "00", "+1"];
const BAD_PORTS = ["65536", "99999", "0443", "00", "+1", "-1", "", "1a", "655350", " 1", "1 "];
const BAD_V4 = [
  "01.2.3.4",
  "1.2.3.04",
  "256.1.1.1",
  "1.2.3",
  "1.2.3.4.5",
  "1..2.3",
  "1.2.3.",
  ".1.2.3",
  "0x1.2.3.4",
  "1.2.3.4 ",
  "1.2.3.-4",
  "::1",
  "1.2.3.4/8",
  "1.2.3.255\t",
];
const BAD_V6 = [
  "fe80::1%eth0",
  ":::",
  "1::2::3",
  "1:2:3:4:5:6:7:8:9",
  "12345::",
  "::ffff:1.2.3.256",
  "::1.2.3",
  "::ffff:01.2.3.4",
  ":1::",
  "1:",
  "g::1",
  "[::1]",
  "1:2:3:4:5:6:1.2.3.4:5",
  "1:2:3:4:5:6:7:1.2.3.4",
  "::ffff:1.2.3.4.5",
  "1.2.3.4",
  "",
];
const FAMILIES = ["TCP4", "TCP6", "UNKNOWN", "TCP5", "tcp4", "UDP4", "TCP", "TCP44", "TCP 4"];
const ENDINGS = ["\n", "\r", "", "\r\r\n", "\n\r", " \r\n", "\r\n\r\n", "\r\0", "\0\r\n"];

/** A dotted-decimal IPv4 address, biased to short and extreme numbers. */
function ipv4Text(rng: Rng): string {
  const part = () => String(rng.pick([0, 1, 9, 10, 99, 100, 127, 192, 254, 255, rng.int(256)]));
  return `${part()}.${part()}.${part()}.${part()}`;
}

/** IPv6 text in any valid spelling: compressed or not, upper case, padded, mixed. */
function ipv6Text(rng: Rng): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) {
    groups.push(rng.pick([0, 0, 0, 0xffff, 1, 0x2001, 0xdb8, rng.int(0x10000)]));
  }
  if (rng.chance(0.2)) groups.splice(0, 6, 0, 0, 0, 0, 0, 0xffff);
  const pad = rng.chance(0.2);
  let parts = groups.map((g) => g.toString(16).padStart(pad ? 4 : 1, "0"));
  if (rng.chance(0.25)) {
    parts = [
      ...parts.slice(0, 6),
      `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`,
    ];
  }
  let s = parts.join(":");
  const zeroRuns: [number, number][] = [];
  for (let i = 0; i < parts.length; i++) {
    if (!/^0+$/.test(parts[i]!)) continue;
    let j = i;
    while (j < parts.length && /^0+$/.test(parts[j]!)) j++;
    zeroRuns.push([i, j]);
    i = j;
  }
  if (zeroRuns.length > 0 && rng.chance(0.8)) {
    const [i, j] = rng.pick(zeroRuns);
    const a = i + rng.int(j - i), b = a + 1 + rng.int(j - a);
    s = parts.slice(0, a).join(":") + "::" + parts.slice(b).join(":");
  }
  if (rng.chance(0.2)) s = s.toUpperCase();
  return s;
}

function port(rng: Rng): string {
  return rng.chance(0.8) ? String(rng.pick([0, 1, 80, 443, 65535, rng.int(65536)])) : rng.pick(
    INTERESTING_PORTS,
  );
}

/** A v1 line: valid (TCP4, TCP6, UNKNOWN), or near-valid with one or two faults. */
export function v1Line(rng: Rng): Uint8Array {
  const r = rng.int(100);
  let line: string;
  if (r < 12) {
    const tail = rng.pick([
      "",
      " ",
      " 1.2.3.4 5.6.7.8 1 2",
      " " + "x".repeat(rng.range(0, 95)),
      " \x00\xff garbage",
      "X",
    ]);
    line = "PROXY UNKNOWN" + tail + (rng.chance(0.85) ? "\r\n" : rng.pick(ENDINGS));
  } else {
    const six = r < 50 ? false : r < 85 ? true : rng.chance(0.5);
    const fields = [
      "PROXY",
      six ? "TCP6" : "TCP4",
      six ? ipv6Text(rng) : ipv4Text(rng),
      six ? ipv6Text(rng) : ipv4Text(rng),
      port(rng),
      port(rng),
    ];
    let sep = " ";
    let end = "\r\n";
    if (r >= 85) {
      // Near-valid: one or two faults.
      for (let k = rng.range(1, 2); k > 0; k--) {
        switch (rng.int(9)) {
          case 0:
            fields[1] = rng.pick(FAMILIES);
            break;
          case 1:
            fields[2 + rng.int(2)] = six ? rng.pick(BAD_V6) : rng.pick(BAD_V4);
            break;
          case 2:
            fields[4 + rng.int(2)] = rng.pick(BAD_PORTS);
            break;
          case 3:
            sep = rng.pick(["  ", "\t", ""]);
            break;
          case 4:
            end = rng.pick(ENDINGS);
            break;
          case 5:
            fields[0] = rng.pick(["proxy", "PROX", "PROXY\t", "PROXYY", " PROXY"]);
            break;
          case 6:
            fields.push(rng.pick(["7", "", "x"]));
            break;
          case 7:
            fields.splice(2 + rng.int(4), 1);
            break;
          default:
            // The other family's addresses.
            fields[2] = six ? ipv4Text(rng) : ipv6Text(rng);
        }
      }
    }
    line = fields.join(sep) + end;
    if (rng.chance(0.05)) {
      // Near the 107-byte limit: long spellings of mapped addresses.
      const long = (k: number) => "0000:".repeat(k) + "0:".repeat(5 - k) + "ffff:255.255.255.255";
      line = `PROXY TCP6 ${long(rng.int(5))} ${long(rng.int(5))} ${port(rng)} ${port(rng)}\r\n`;
    }
  }
  const out = latin1Bytes(line);
  return rng.chance(0.3) ? concat(out, payload(rng)) : out;
}

/** Text as one byte a character (the fault tables hold a few non-ASCII bytes). */
function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** What may follow a header: an HTTP request, random bytes, or another header. */
function payload(rng: Rng): Uint8Array {
  switch (rng.int(4)) {
    case 0:
      return ascii("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    case 1:
      return rng.bytes(rng.range(1, 40));
    case 2:
      return rng.pick(CAPTURES);
    default:
      return ascii(rng.pick(["\r\n", "x", "PROXY ", "\0"]));
  }
}

// ---------------------------------------------------------------------------------------
// TLVs

/** A raw TLV. */
export interface RawTlv {
  type: number;
  value: Uint8Array;
}

const HOSTS = ["example.com", "", "a", "xn--bcher-kva.example", "bücher.example", "😀.example"];
const TLS_VERSIONS = ["TLSv1.3", "TLSv1.2", "SSLv3", ""];
const CIPHERS = ["TLS_AES_256_GCM_SHA384", "ECDHE-RSA-AES128-GCM-SHA256"];

/** Text, sometimes with non-ASCII or invalid UTF-8 bytes. */
function someText(rng: Rng, choices: readonly string[]): Uint8Array {
  switch (rng.int(6)) {
    case 0:
      return rng.bytes(rng.size(12, 300));
    case 1:
      return hex(rng.pick(["ff", "c3", "e282", "eda080", "f4908080", "00"]));
    default:
      return ascii(rng.pick(choices));
  }
}

/** The sub-TLVs of an SSL TLV, well formed or not. */
function sslValue(rng: Rng): Uint8Array {
  if (rng.chance(0.08)) return rng.bytes(rng.int(5)); // shorter than its 5 fixed bytes
  const fixed = new Uint8Array(5);
  fixed[0] = rng.chance(0.8) ? rng.int(8) : rng.int(256);
  if (rng.chance(0.3)) fixed.set(rng.bytes(4), 1);
  const parts: Uint8Array[] = [fixed];
  for (let k = rng.size(3, 8); k > 0; k--) {
    const type = rng.chance(0.85) ? rng.range(0x21, 0x28) : rng.int(256);
    let value: Uint8Array;
    if (type === 0x21) value = ascii(rng.pick(TLS_VERSIONS));
    else if (type === 0x22) value = someText(rng, ["Example Common Name Client Cert", "é"]);
    else if (type === 0x23) value = ascii(rng.pick(CIPHERS));
    else if (type === 0x28) value = concat(hex("3082"), rng.bytes(rng.size(20, 600)));
    else value = rng.bytes(rng.size(10, 40));
    parts.push(tlvBytes(type, value));
  }
  if (rng.chance(0.08)) parts.push(rng.bytes(rng.range(1, 2))); // stray bytes
  const out = concat(...parts);
  if (rng.chance(0.06) && out.length > 7) {
    // A sub-TLV length that overruns (or falls short of) the SSL TLV.
    const at = 5 + 1;
    const v = (out[at]! << 8 | out[at + 1]!) + rng.pick([1, 2, 3, -1, 200]);
    out[at] = (v >> 8) & 0xff;
    out[at + 1] = v & 0xff;
  }
  return out;
}

/** One TLV, shaped by its type, sometimes breaking its type's rules. */
export function tlv(rng: Rng): RawTlv {
  switch (rng.int(16)) {
    case 0:
      return { type: 0x01, value: someText(rng, ["h2", "http/1.1", "", "h3"]) };
    case 1: {
      const long = rng.chance(0.05);
      return {
        type: 0x02,
        value: long ? ascii("a".repeat(rng.pick([255, 256, 1000]))) : someText(rng, HOSTS),
      };
    }
    case 2: // CRC32C: 4 bytes (filled in later), or another length
      return { type: 0x03, value: rng.chance(0.9) ? rng.bytes(4) : rng.bytes(rng.int(9)) };
    case 3:
      return {
        type: 0x04,
        value: rng.chance(0.5) ? new Uint8Array(rng.size(36, 3000)) : rng.bytes(rng.size(8, 80)),
      };
    case 4: // UNIQUE_ID: at most 128 bytes
      return {
        type: 0x05,
        value: rng.bytes(rng.pick([0, 1, 16, 127, 128, 129, 200, 255, 256, rng.int(140)])),
      };
    case 5:
    case 6:
      return { type: 0x20, value: sslValue(rng) };
    case 7:
      return { type: 0x30, value: someText(rng, ["blue", "ns-1", ""]) };
    case 8: // AWS: subtype 0x01 and the VPC endpoint id
      return {
        type: 0xea,
        value: rng.chance(0.8)
          ? concat(hex("01"), ascii(rng.pick(["vpce-08d2bf15fac5001c9", "vpce-00eafc458ec97b833"])))
          : rng.bytes(rng.int(6)),
      };
    case 9: // Azure: subtype 0x01 and a uint32 LinkID, little endian
      return {
        type: 0xee,
        value: rng.chance(0.8) ? concat(hex("01"), rng.bytes(4)) : rng.bytes(rng.int(8)),
      };
    case 10: // GCP: a uint64 connection id
      return { type: 0xe0, value: rng.bytes(rng.chance(0.8) ? 8 : rng.int(12)) };
    case 11: // experimental and reserved ranges
      return { type: rng.range(0xf0, 0xff), value: rng.bytes(rng.size(6, 40)) };
    case 12: // sub-TLV types at the top level
      return { type: rng.range(0x21, 0x28), value: rng.bytes(rng.size(6, 20)) };
    default:
      return { type: rng.int(256), value: rng.bytes(rng.size(10, 60)) };
  }
}

/** A TLV as bytes: type, big-endian length, value. */
export function tlvBytes(type: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(3 + value.length);
  out[0] = type;
  out[1] = (value.length >> 8) & 0xff;
  out[2] = value.length & 0xff;
  out.set(value, 3);
  return out;
}

/** A list of TLVs, as a `decodeTlvs` input: mostly shaped, with repeats and junk. */
export function tlvList(rng: Rng): RawTlv[] {
  const out: RawTlv[] = [];
  for (let k = rng.size(5, 16); k > 0; k--) {
    if (out.length > 0 && rng.chance(0.1)) {
      const again = rng.pick(out);
      out.push(rng.chance(0.5) ? again : { type: again.type, value: tlv(rng).value });
    } else {
      out.push(tlv(rng));
    }
  }
  return out;
}

/** A TLV list as bytes (each TLV's value at most 65535 bytes). */
export function serializeTlvs(tlvs: readonly RawTlv[]): Uint8Array {
  return concat(...tlvs.map((t) => tlvBytes(t.type, t.value.subarray(0, 0xffff))));
}

/** The TLV list back from {@linkcode serializeTlvs}' bytes (a short tail is dropped). */
export function parseTlvList(b: Uint8Array): RawTlv[] {
  const out: RawTlv[] = [];
  for (let p = 0; p + 3 <= b.length;) {
    const end = Math.min(b.length, p + 3 + (b[p + 1]! << 8 | b[p + 2]!));
    out.push({ type: b[p]!, value: b.subarray(p + 3, end) });
    p = end;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// v2: every command/family/protocol nibble, lengths, TLVs, checksums

const FAMILY_BYTES = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32];
const ODD_FAMILIES = [0x01, 0x02, 0x03, 0x10, 0x13, 0x20, 0x23, 0x30, 0x33, 0x41, 0xff];

/** A UNIX path field of 108 bytes: NUL padded, full, invalid UTF-8, or junk after a NUL. */
function unixField(rng: Rng): Uint8Array {
  switch (rng.int(5)) {
    case 0:
      return new Uint8Array(108).fill(rng.pick([0x61, 0xff, 0xc3]));
    case 1:
      return rng.bytes(108);
    case 2: {
      const out = rng.bytes(108);
      out[rng.int(108)] = 0;
      return out;
    }
    default:
      return padded(ascii(rng.pick(["/run/a.sock", "/tmp/é", "", "@abstract"])), 108);
  }
}

/** The address block for a family byte. */
function addressBlock(rng: Rng, family: number): Uint8Array {
  const n = addressLength(family);
  if (n <= 0) return new Uint8Array(0);
  if (n === 216) return concat(unixField(rng), unixField(rng));
  const out = rng.bytes(n);
  if (n === 36 && rng.chance(0.5)) {
    // Zero runs and mapped addresses, so the IPv6 formatting gets exercised.
    for (const at of [0, 16]) {
      out.fill(0, at + rng.int(8) * 2, at + rng.int(17));
      if (rng.chance(0.3)) (out.fill(0, at, at + 10), out[at + 10] = 0xff, out[at + 11] = 0xff);
    }
  }
  return out;
}

/** A v2 header (with the right or a wrong length field and CRC), maybe a payload after. */
export function v2Header(rng: Rng): Uint8Array {
  let verCmd = rng.chance(0.7) ? 0x21 : 0x20;
  if (rng.chance(0.06)) verCmd = rng.chance(0.5) ? rng.int(256) : 0x20 | rng.int(16);
  const family = rng.chance(0.9) ? rng.pick(FAMILY_BYTES) : rng.pick(ODD_FAMILIES);
  const block = addressBlock(rng, family);
  const tlvs: Uint8Array[] = [];
  for (let k = rng.size(4, 10); k > 0; k--) {
    const t = tlv(rng);
    tlvs.push(tlvBytes(t.type, t.value));
  }
  if (rng.chance(0.01)) {
    // A large header: most of the 64 KiB a v2 length allows.
    const size = rng.range(1000, 0xffff - block.length - 3 - 300);
    tlvs.push(tlvBytes(rng.pick([0x04, 0xf0, 0x01]), new Uint8Array(size)));
  }
  if (rng.chance(0.05)) tlvs.push(rng.bytes(rng.range(1, 2))); // stray bytes
  let body = concat(block, ...tlvs);
  if (body.length > 0xffff) body = body.subarray(0, 0xffff);
  let length = body.length;
  if (rng.chance(0.15)) {
    const full = Math.max(0, addressLength(family));
    length = rng.pick([
      full - 1,
      full,
      full + 1,
      length - rng.range(1, 3),
      length + rng.range(1, 3),
      rng.int(0x10000),
      0,
      0xffff,
    ]);
    length = Math.max(0, Math.min(0xffff, length));
  }
  const out = concat(SIGNATURE, new Uint8Array([verCmd, family]), u16(length), body);
  if (rng.chance(0.7)) fixCrc(out);
  return rng.chance(0.3) ? concat(out, payload(rng)) : out;
}

// ---------------------------------------------------------------------------------------
// Random bytes and mutations

const V1_ALPHABET = ascii("PROXY TCP46UNKNOW0123456789abcdefABCDEF:. \r\n");

/** Random bytes, biased to start like a header so that they get past the first check. */
export function randomInput(rng: Rng): Uint8Array {
  const n = rng.chance(0.97) ? rng.size(40, 200) : rng.int(3000);
  switch (rng.int(5)) {
    case 0:
      return rng.bytes(n);
    case 1: {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = V1_ALPHABET[rng.int(V1_ALPHABET.length)]!;
      return concat(ascii("PROXY "), out);
    }
    case 2:
      return concat(ascii("PROXY "), rng.bytes(n));
    default: {
      const head = concat(SIGNATURE, rng.bytes(n));
      if (head.length > 13 && rng.chance(0.6)) {
        head[12] = rng.pick([0x20, 0x21]);
        head[13] = rng.pick(FAMILY_BYTES);
      }
      if (head.length > 15 && rng.chance(0.5)) {
        const len = Math.min(head.length - 16 + rng.range(-2, 2), 0xffff);
        head[14] = (Math.max(0, len) >> 8) & 0xff;
        head[15] = Math.max(0, len) & 0xff;
      }
      return rng.chance(0.9) ? head : head.subarray(0, rng.int(head.length + 1));
    }
  }
}

const INTERESTING = [
  0x00,
  0x01,
  0x02,
  0x03,
  0x04,
  0x05,
  0x0a,
  0x0d,
  0x11,
  0x20,
  0x21,
  0x22,
  0x2e,
  0x30,
  0x31,
  0x39,
  0x3a,
  0x50,
  0x7f,
  0x80,
  0xff,
];

const HEX_CHARS = [...ascii("0123456789abcdefABCDEF:.")];

/** Splices `b[at, at + remove)` out and `insert` in, in a new array. */
function splice(b: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length - remove + insert.length);
  out.set(b.subarray(0, at));
  out.set(insert, at);
  out.set(b.subarray(at + remove), at + insert.length);
  return out;
}

/**
 * One to four edits of `input`: bit flips, byte sets, inserts, deletes, truncation, v2
 * and TLV length-field edits, splices from another capture; then, often, the CRC fixed.
 */
export function mutate(rng: Rng, input: Uint8Array): Uint8Array {
  let b: Uint8Array = input.slice();
  for (let k = 1 + (rng.chance(0.5) ? 0 : rng.int(4)); k > 0; k--) {
    const n = b.length;
    const at = rng.int(n + 1);
    switch (rng.int(11)) {
      case 0:
        if (n > 0) b[rng.int(n)]! ^= 1 << rng.int(8);
        break;
      case 1:
        if (n > 0) b[rng.int(n)] = rng.chance(0.7) ? rng.pick(INTERESTING) : rng.int(256);
        break;
      case 2:
        b = splice(
          b,
          at,
          0,
          rng.chance(0.5) ? rng.bytes(rng.range(1, 4)) : hex(
            rng.pick(["20", "0d0a", "0d", "0a", "3a", "2e", "30", "00", "ff"]),
          ),
        );
        break;
      case 3:
        b = splice(
          b,
          Math.min(at, n),
          Math.min(n - Math.min(at, n), rng.range(1, 4)),
          new Uint8Array(0),
        );
        break;
      case 4:
        b = b.subarray(0, rng.int(n + 1));
        break;
      case 5: // the v2 length field
        if (isV2(b)) {
          const v = (b[14]! << 8 | b[15]!) +
            rng.pick([-3, -2, -1, 1, 2, 3, 12, -12, 36, 216, 0x100, -0x100]);
          const len = rng.chance(0.2) ? rng.pick([0, 12, 36, 216, n - 16, 0xffff]) : v;
          b[14] = (Math.max(0, len) >> 8) & 0xff;
          b[15] = Math.max(0, len) & 0xff;
        }
        break;
      case 6: { // a TLV's length field, or an SSL sub-TLV's
        const offsets = tlvOffsets(b);
        if (offsets.length === 0) break;
        let p = rng.pick(offsets);
        if (b[p] === 0x20 && p + 11 <= b.length && rng.chance(0.5)) p += 8;
        const v = (b[p + 1]! << 8 | b[p + 2]!) + rng.pick([-3, -2, -1, 1, 2, 3, 0x100, -0x100]);
        const len = rng.chance(0.2) ? rng.int(0x10000) : Math.max(0, v);
        b[p + 1] = (len >> 8) & 0xff;
        b[p + 2] = len & 0xff;
        break;
      }
      case 7: { // a slice of another capture, inserted or replacing the tail
        const other = rng.pick(CAPTURES);
        const from = rng.int(other.length);
        const piece = other.subarray(from, from + rng.range(1, 40));
        b = rng.chance(0.5)
          ? splice(b, at, 0, piece)
          : concat(b.subarray(0, at), other.subarray(from));
        break;
      }
      case 8: { // a range repeated
        const from = rng.int(n + 1);
        b = splice(b, from, 0, b.slice(from, from + rng.range(1, 16)));
        break;
      }
      case 9: // a digit or a hex letter swapped, for v1 text
        if (n > 0) {
          const i = rng.int(n), c = b[i]!;
          if ((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)) {
            b[i] = rng.pick(HEX_CHARS);
          }
        }
        break;
      default:
        b = concat(b, payload(rng));
    }
  }
  if (rng.chance(0.4)) fixCrc(b);
  return b;
}

// ---------------------------------------------------------------------------------------
// decodeHeader inputs

/** How a case was made. */
export type CaseKind = "random" | "mutation" | "v1" | "v2";

/** One input for `decodeHeader`. */
export interface FuzzCase {
  kind: CaseKind;
  bytes: Uint8Array;
}

/** One input for `decodeHeader`: random, a mutated capture, structured v1 or v2. */
export function headerCase(rng: Rng): FuzzCase {
  const r = rng.int(100);
  if (r < 20) return { kind: "random", bytes: randomInput(rng) };
  if (r < 50) {
    const start = rng.chance(0.65)
      ? rng.pick(CAPTURES)
      : rng.chance(0.5)
      ? v1Line(rng)
      : v2Header(rng);
    return { kind: "mutation", bytes: mutate(rng, start) };
  }
  if (r < 75) return { kind: "v1", bytes: v1Line(rng) };
  return { kind: "v2", bytes: v2Header(rng) };
}

/** `count` header cases of run `seed`; case `i` is `headerCase(caseRng(seed, i))`. */
export function* headerCorpus(seed: number, count: number): Generator<FuzzCase> {
  for (let i = 0; i < count; i++) yield headerCase(caseRng(seed, i));
}

// ---------------------------------------------------------------------------------------
// Datagrams

/** A UDP header (v2 UDP4/UDP6, LOCAL, or a stream family) with a payload. */
function udpDatagram(rng: Rng): Uint8Array {
  const family = rng.pick([0x12, 0x22, 0x12, 0x22, 0x00, 0x11, 0x32]);
  const block = addressBlock(rng, family);
  const tlvs = rng.chance(0.3) ? tlvBytes(0x02, ascii("dns")) : new Uint8Array(0);
  const body = concat(block, tlvs);
  return concat(
    SIGNATURE,
    new Uint8Array([rng.chance(0.9) ? 0x21 : 0x20, family]),
    u16(body.length),
    body,
    rng.bytes(rng.size(30, 1400)),
  );
}

/** A datagram and how to decode it. */
export interface DatagramCase {
  kind: CaseKind;
  bytes: Uint8Array;
  format: "proxy" | "spp";
  maxLength?: number;
  verifyChecksum?: boolean;
}

/** One datagram: PROXY (v1, v2, UDP) or SPP, valid, mutated, cut short or random. */
export function datagramCase(rng: Rng): DatagramCase {
  const out: DatagramCase = rng.chance(0.35)
    ? { kind: "v2", format: "spp", bytes: sppDatagram(rng) }
    : rng.chance(0.3)
    ? { kind: "v2", format: "proxy", bytes: udpDatagram(rng) }
    : { format: "proxy", ...headerCase(rng) };
  if (rng.chance(0.3)) (out.kind = "mutation", out.bytes = mutate(rng, out.bytes));
  if (rng.chance(0.1)) out.bytes = out.bytes.subarray(0, rng.int(out.bytes.length + 1));
  if (rng.chance(0.1)) out.maxLength = rng.pick([0, 16, 37, 38, 39, 107, 300, rng.int(600)]);
  if (rng.chance(0.1)) out.verifyChecksum = rng.chance(0.5);
  return out;
}

function sppDatagram(rng: Rng): Uint8Array {
  if (rng.chance(0.15)) return concat(hex("56ec"), rng.bytes(rng.size(40, 600)));
  if (rng.chance(0.1)) return rng.bytes(rng.int(60));
  const addresses = addressBlock(rng, 0x22);
  if (rng.chance(0.5)) {
    // IPv4 clients arrive IPv4-mapped.
    for (const at of [0, 16]) {
      (addresses.fill(0, at, at + 10), addresses.fill(0xff, at + 10, at + 12));
    }
  }
  return concat(
    rng.chance(0.5) ? rng.pick(SPP_CAPTURES).subarray(0, 2) : hex("56ec"),
    addresses.subarray(0, 32),
    addresses.subarray(32, 36),
    rng.bytes(rng.size(30, 1400)),
  );
}

// ---------------------------------------------------------------------------------------
// The accept phase

/** The policy for trusted peers (or what the policy function returns). */
export type PolicyName = "require" | "optional" | "ignore" | "reject" | "skip";

/** How one accept-phase run is set up and driven; JSON, so a fixture can hold it. */
export interface AcceptParams {
  policy: PolicyName;
  /** `plain`: a string; `fn`: a function returning it; `throws`/`bogus`: a broken one. */
  policyFn: "plain" | "fn" | "throws" | "bogus";
  /** Whether `trust` is set (10.0.0.0/8 and 2001:db8::/32). */
  trust: boolean;
  /** Whether the peer is inside the trusted ranges. */
  trusted: boolean;
  untrusted: "deny" | "reject" | "ignore" | "skip";
  /** `null`: the default (4096). */
  maxHeaderLength: number | null;
  verifyChecksum: boolean;
  validate: "none" | "true" | "void" | "false" | "throws" | "async-true" | "async-false";
  /** Chunk sizes, in order; whatever is left goes in one last chunk. */
  chunks: number[];
  /** What happens after the last chunk. */
  finish: "end" | "closed" | "none";
  /** Before which chunk the header times out (`chunks.length + 1`: before `finish`); -1 never. */
  expireAt: number;
  /** Await an async `validate` as soon as it starts, rather than after every chunk. */
  awaitEarly: boolean;
  /** Overwrite each chunk's memory after its call, as runtimes that reuse buffers do. */
  scribble: boolean;
  /** Pass the peer to the constructor (else it is read with `readPeer()`). */
  peerGiven: boolean;
  /** Keep metrics and check them. */
  metrics: boolean;
}

/** Chunk sizes for `n` bytes: whole, a byte at a time, or random cuts. */
export function chunking(rng: Rng, n: number): number[] {
  const r = rng.int(100);
  if (r < 25 || n === 0) return [n];
  if (r < 40 && n <= 300) return new Array<number>(n).fill(1);
  const out: number[] = [];
  let left = n;
  while (left > 0 && out.length < 64) {
    const size = rng.chance(0.03) ? 0 : Math.min(left, 1 + rng.size(12, 200));
    out.push(size);
    left -= size;
  }
  return out;
}

/** One accept-phase run: the bytes a client sends, and how the phase is set up and fed. */
export function acceptCase(rng: Rng): { kind: CaseKind; bytes: Uint8Array; params: AcceptParams } {
  const c = headerCase(rng);
  const bytes = rng.chance(0.3) ? concat(c.bytes, payload(rng)) : c.bytes;
  const chunks = chunking(rng, bytes.length);
  const validate = rng.chance(0.8) ? "none" : rng.pick(
    ["true", "void", "false", "throws", "async-true", "async-false"] as const,
  );
  return {
    kind: c.kind,
    bytes,
    params: {
      policy: rng.chance(0.5)
        ? "require"
        : rng.pick(["require", "optional", "ignore", "reject", "skip"] as const),
      policyFn: rng.chance(0.85) ? "plain" : rng.pick(["fn", "fn", "throws", "bogus"] as const),
      trust: rng.chance(0.2),
      trusted: rng.chance(0.6),
      untrusted: rng.pick(["deny", "reject", "ignore", "skip"] as const),
      maxHeaderLength: rng.chance(0.8) ? null : rng.pick([16, 28, 100, 107, 232, 65551, 100000]),
      verifyChecksum: rng.chance(0.9),
      validate,
      chunks,
      finish: rng.pick(["end", "end", "closed", "none"] as const),
      expireAt: rng.chance(0.9) ? -1 : rng.int(chunks.length + 2),
      awaitEarly: rng.chance(0.5),
      scribble: rng.chance(0.5),
      peerGiven: rng.chance(0.5),
      metrics: rng.chance(0.2),
    },
  };
}
