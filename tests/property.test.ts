import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeHeader,
  encodeHeader,
  encodeTlvs,
  type ProxyAddress,
  type ProxyHeader,
  ProxyProtocolError,
  type ProxyProtocolFamily,
  type Tlv,
  toHex,
} from "@proxy-protocol/edge";

// Sized for CI (2 cores, 90 minutes in all); raise locally with FUZZ_RUNS=100000.
const RUNS = Number(
  (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env
    .FUZZ_RUNS ??
    "1000",
);
console.log(`fast-check: ${RUNS} runs per property (set FUZZ_RUNS to change)`);
const params = { numRuns: RUNS };

/** RFC 5952 form of 16 bytes, written independently of the library (join, then squeeze). */
function canonicalIPv6(b: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16));
  if (groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff") {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  let best = -1, bestLength = 1;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLength) (best = i, bestLength = j - i);
  }
  if (best < 0) return groups.join(":");
  return groups.slice(0, best).join(":") + "::" + groups.slice(best + bestLength).join(":");
}

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join("."));
// IPv6 with many zero groups, so `::` placement gets exercised.
const ipv6Bytes = fc.array(fc.oneof(fc.constant(0), fc.constant(0xffff), fc.nat(0xffff)), {
  minLength: 8,
  maxLength: 8,
}).map((groups) => {
  const b = new Uint8Array(16);
  groups.forEach((g, i) => (b[2 * i] = g >> 8, b[2 * i + 1] = g & 0xff));
  return b;
});
const ipv6 = ipv6Bytes.map(canonicalIPv6);
const port = fc.nat(65535);
const inet = (address: fc.Arbitrary<string>) => fc.record({ address, port });
const path = fc.string({ unit: fc.constantFrom(..."/abcz._-0189é"), maxLength: 50 })
  .filter((p) => new TextEncoder().encode(p).length <= 108)
  .map((p) => ({ path: p }));

const plainTlv: fc.Arbitrary<Tlv> = fc.record({
  type: fc.nat(255).filter((t) => t !== 0x03 && t !== 0x05 && t !== 0x20),
  value: fc.uint8Array({ maxLength: 40 }),
});
const tlvs = fc.array(
  fc.oneof(
    { weight: 4, arbitrary: plainTlv },
    fc.uint8Array({ maxLength: 128 }).map((v) => ({ type: 0x05, value: v })),
    fc.record({
      client: fc.nat(7),
      verify: fc.nat(),
      version: fc.constantFrom("TLSv1.2", "TLSv1.3"),
      cn: fc.string({ maxLength: 20 }),
    }).map((ssl) => encodeTlvs({ ssl })[0]!),
  ),
  { maxLength: 5 },
);

const families: Record<ProxyProtocolFamily, fc.Arbitrary<ProxyAddress> | null> = {
  TCP4: inet(ipv4),
  UDP4: inet(ipv4),
  TCP6: inet(ipv6),
  UDP6: inet(ipv6),
  UNIX_STREAM: path,
  UNIX_DGRAM: path,
  UNKNOWN: null,
};

/** Headers in canonical form: what decoding gives back. */
const v2Header: fc.Arbitrary<ProxyHeader> = fc.constantFrom(
  ...Object.keys(families) as ProxyProtocolFamily[],
)
  .chain((protocol) => {
    const address = families[protocol];
    return fc.record({
      version: fc.constant(2 as const),
      command: fc.constantFrom("PROXY" as const, "LOCAL" as const),
      protocol: fc.constant(protocol),
      source: address ?? fc.constant(null),
      destination: address ?? fc.constant(null),
      tlvs,
    }).map((h) => h.command === "LOCAL" ? { ...h, source: null, destination: null } : h);
  });
const v1Header: fc.Arbitrary<ProxyHeader> = fc.oneof(
  fc.record({
    version: fc.constant(1 as const),
    command: fc.constant("PROXY" as const),
    protocol: fc.constant("TCP4" as const),
    source: inet(ipv4),
    destination: inet(ipv4),
    tlvs: fc.constant<Tlv[]>([]),
  }),
  fc.record({
    version: fc.constant(1 as const),
    command: fc.constant("PROXY" as const),
    protocol: fc.constant("TCP6" as const),
    source: inet(ipv6),
    destination: inet(ipv6),
    tlvs: fc.constant<Tlv[]>([]),
  }),
  fc.constant<ProxyHeader>({
    version: 1,
    command: "LOCAL",
    protocol: "UNKNOWN",
    source: null,
    destination: null,
    tlvs: [],
  }),
);
const header = fc.oneof(v1Header, v2Header);

/** Everything decodeHeader may do: give a result, ask for more, or throw its own error. */
function outcome(
  bytes: Uint8Array,
): { kind: "result"; length: number; hex: string } | { kind: "null" } | {
  kind: "error";
  code: string;
} {
  try {
    const r = decodeHeader(bytes);
    if (r === null) return { kind: "null" };
    return {
      kind: "result",
      length: r.length,
      hex: JSON.stringify(r.header, (_k, v) => v instanceof Uint8Array ? toHex(v) : v),
    };
  } catch (error) {
    if (!(error instanceof ProxyProtocolError)) throw error;
    return { kind: "error", code: error.code };
  }
}

/**
 * Over the prefixes of any input, answers go `null`... then either the same result or the
 * same error code to the end: more bytes never undo an error, and no error comes early.
 */
function assertPrefixConsistent(bytes: Uint8Array) {
  let settled: ReturnType<typeof outcome> | undefined;
  for (let i = 0; i <= bytes.length; i++) {
    const now = outcome(bytes.subarray(0, i));
    if (settled === undefined) {
      if (now.kind !== "null") settled = now;
    } else {
      assert.deepEqual(now, settled, `prefix ${i} of ${toHex(bytes)}`);
    }
  }
}

const mutated = fc.tuple(
  header.map((h) => encodeHeader(h)),
  fc.uint8Array({ maxLength: 8 }),
  fc.array(
    fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom("set", "insert", "delete", "truncate")),
    {
      minLength: 1,
      maxLength: 4,
    },
  ),
).map(([bytes, payload, edits]) => {
  const out = [...bytes, ...payload];
  for (const [at, value, kind] of edits) {
    const i = out.length === 0 ? 0 : at % out.length;
    if (kind === "set") out[i] = value;
    else if (kind === "insert") out.splice(i, 0, value);
    else if (kind === "delete") out.splice(i, 1);
    else out.length = i;
  }
  return Uint8Array.from(out);
});

describe("properties", () => {
  it("decode(encode(h)) gives h back, and the exact length", () => {
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 16 }), (h, payload) => {
        const bytes = encodeHeader(h);
        const input = new Uint8Array(bytes.length + payload.length);
        input.set(bytes);
        input.set(payload, bytes.length);
        const result = decodeHeader(input);
        assert.ok(result);
        assert.equal(result.length, bytes.length);
        // fc.record builds null-prototype objects; the decoder gives plain ones.
        assert.deepEqual(result.header, structuredClone(h));
      }),
      params,
    );
  });

  it("re-encoding a decoded header gives the same bytes, with or without a checksum", () => {
    fc.assert(
      fc.property(v2Header, fc.boolean(), (h, checksum) => {
        const bytes = encodeHeader(h, { checksum });
        const decoded = decodeHeader(bytes)!.header;
        assert.equal(toHex(encodeHeader(decoded)), toHex(bytes));
        if (checksum) assert.equal(decoded.tlvs[0]?.type, 0x03);
      }),
      params,
    );
  });

  it("v1 accepts any spelling of an IPv6 address and gives the canonical one", () => {
    const spelled = ipv6Bytes.chain((b) => {
      const groups = Array.from({ length: 8 }, (_, i) => (b[2 * i]! << 8) | b[2 * i + 1]!);
      return fc.record({
        upper: fc.boolean(),
        pad: fc.boolean(),
        squeeze: fc.nat(8),
        mixed: fc.boolean(),
      }).map(({ upper, pad, squeeze, mixed }) => {
        let parts = groups.map((g) => g.toString(16).padStart(pad ? 4 : 1, "0"));
        if (mixed) parts = [...parts.slice(0, 6), `${b[12]}.${b[13]}.${b[14]}.${b[15]}`];
        // Squeeze any run of zero groups that starts at `squeeze`, not only the longest.
        let end = squeeze;
        while (end < 6 + (mixed ? 0 : 2) && /^0+$/.test(parts[end] ?? "")) end++;
        let text = parts.join(":");
        if (end - squeeze >= 1) {
          text = parts.slice(0, squeeze).join(":") + "::" + parts.slice(end).join(":");
        }
        return { text: upper ? text.toUpperCase() : text, canonical: canonicalIPv6(b) };
      });
    });
    fc.assert(
      fc.property(spelled, ({ text, canonical }) => {
        const line = `PROXY TCP6 ${text} ::1 1 2\r\n`;
        const bytes = new TextEncoder().encode(line);
        if (bytes.length > 107) return;
        assert.deepEqual(decodeHeader(bytes)?.header.source, { address: canonical, port: 1 }, line);
        assertPrefixConsistent(bytes);
      }),
      params,
    );
  });

  it("random bytes give a result, null, or a ProxyProtocolError: nothing else", () => {
    const starts = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 64 }).map((b) =>
        Uint8Array.from([
          0x0d,
          0x0a,
          0x0d,
          0x0a,
          0x00,
          0x0d,
          0x0a,
          0x51,
          0x55,
          0x49,
          0x54,
          0x0a,
          ...b,
        ])
      ),
      fc.string({
        unit: fc.constantFrom(..."PROXY TCP46UNKNOW0123456789abcdef:. \r\n"),
        maxLength: 60,
      })
        .map((s) => new TextEncoder().encode("PROXY " + s)),
    );
    fc.assert(fc.property(starts, (bytes) => void outcome(bytes)), params);
  });

  it("answers are consistent over every prefix of valid and mutated headers", () => {
    fc.assert(fc.property(header.map((h) => encodeHeader(h)), assertPrefixConsistent), params);
    fc.assert(fc.property(mutated, assertPrefixConsistent), params);
  });
});
