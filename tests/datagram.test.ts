import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type DatagramFormat,
  decodeDatagram,
  type DecodeDatagramOptions,
  encodeDatagram,
  encodeHeader,
  fromHex,
  type ProxyHeaderInit,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
  type SppHeaderInit,
  toHex,
} from "@proxy-protocol/edge";
import { ascii, S } from "./vectors.ts";

// Sized for CI; raise locally with FUZZ_RUNS=100000.
const RUNS = Number(
  (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env
    .FUZZ_RUNS ??
    "1000",
);
const params = { numRuns: RUNS };

function assertCode(
  run: () => unknown,
  code: ProxyProtocolErrorCode,
  offset?: number,
) {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof ProxyProtocolError, String(error));
    assert.equal(error.code, code, error.message);
    if (offset !== undefined) assert.equal(error.offset, offset, error.message);
    return true;
  });
}

function decodeCode(
  bytes: Uint8Array,
  code: ProxyProtocolErrorCode,
  offset?: number,
  options?: DecodeDatagramOptions,
) {
  assertCode(() => decodeDatagram(bytes, options), code, offset);
}

const PAYLOAD = fromHex("00010203 cafe");

// Hand-written vectors (from the spec's layouts, not from the encoder).
/** v2 PROXY UDP4 192.0.2.1:54321 -> 198.51.100.1:53. */
const V2_UDP4 = fromHex(S + "2112 000c c0000201 c6336401 d431 0035");
/** v2 PROXY UDP6 2001:db8::1:40000 -> 2001:db8::53:53, then an AUTHORITY TLV "dns". */
const V2_UDP6 = fromHex(
  S + "2122 002a" + "20010db8000000000000000000000001" + "20010db8000000000000000000000053" +
    "9c40 0035" + "02 0003" + ascii("dns"),
);
/** SPP: ::ffff:192.0.2.1:54321 -> ::ffff:198.51.100.1:53 (Cloudflare's field order). */
const SPP_V4 = fromHex(
  "56ec" + "00000000000000000000ffffc0000201" + "00000000000000000000ffffc6336401" +
    "d431" + "0035",
);
/** SPP: 2001:db8::1:40000 -> 2001:db8::53:443. */
const SPP_V6 = fromHex(
  "56ec" + "20010db8000000000000000000000001" + "20010db8000000000000000000000053" +
    "9c40" + "01bb",
);
const V1_TCP4 = new TextEncoder().encode("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");

function datagram(header: Uint8Array, payload = PAYLOAD): Uint8Array {
  const out = new Uint8Array(header.length + payload.length);
  out.set(header);
  out.set(payload, header.length);
  return out;
}

describe("decodeDatagram, PROXY protocol", () => {
  it("decodes a v2 UDP4 datagram", () => {
    const result = decodeDatagram(datagram(V2_UDP4));
    assert.equal(result.format, "proxy");
    assert.deepEqual(result.header, {
      version: 2,
      command: "PROXY",
      protocol: "UDP4",
      source: { address: "192.0.2.1", port: 54321 },
      destination: { address: "198.51.100.1", port: 53 },
      tlvs: [],
    });
    assert.deepEqual(result.payload, PAYLOAD);
  });

  it("decodes a v2 UDP6 datagram with a TLV", () => {
    const { header, payload } = decodeDatagram(datagram(V2_UDP6));
    assert.equal(header.protocol, "UDP6");
    assert.deepEqual(header.source, { address: "2001:db8::1", port: 40000 });
    assert.deepEqual(header.destination, { address: "2001:db8::53", port: 53 });
    assert.equal(header.tlvs.length, 1);
    assert.equal(new TextDecoder().decode(header.tlvs[0]!.value), "dns");
    assert.deepEqual(payload, PAYLOAD);
  });

  it("allows an empty payload", () => {
    const result = decodeDatagram(V2_UDP4);
    assert.equal(result.payload.length, 0);
    assert.equal(decodeDatagram(SPP_V4, { format: "spp" }).payload.length, 0);
  });

  it("returns the payload as a view into the datagram, not a copy", () => {
    // The datagram itself a view at an offset, as Node's pooled Buffers are.
    const backing = new Uint8Array(200);
    const bytes = backing.subarray(7, 7 + V2_UDP6.length + PAYLOAD.length);
    bytes.set(datagram(V2_UDP6));
    const { header, payload } = decodeDatagram(bytes);
    assert.equal(payload.buffer, backing.buffer);
    assert.equal(payload.byteOffset, 7 + V2_UDP6.length);
    assert.equal(payload.length, PAYLOAD.length);
    bytes[bytes.length - 1] = 0x99;
    assert.equal(payload[payload.length - 1], 0x99);
    assert.equal(header.tlvs[0]!.value.buffer, backing.buffer);

    const spp = datagram(SPP_V6);
    const sppPayload = decodeDatagram(spp, { format: "spp" }).payload;
    assert.equal(sppPayload.buffer, spp.buffer);
    assert.equal(sppPayload.byteOffset, 38);
  });

  it("refuses every prefix of a valid header with TRUNCATED, never null", () => {
    const local = fromHex(S + "2000 0000");
    for (const header of [V2_UDP4, V2_UDP6, V1_TCP4, local]) {
      for (let n = 0; n < header.length; n++) {
        decodeCode(header.subarray(0, n), "TRUNCATED", n);
      }
      assert.ok(decodeDatagram(header));
    }
  });

  it("says how long a v2 header claims to be when the datagram is shorter", () => {
    // Length 0x0100 in a datagram of 16 + 12 bytes: the payload cannot be the header's.
    const bytes = fromHex(S + "2112 0100 c0000201 c6336401 d431 0035");
    assert.throws(() => decodeDatagram(bytes), (error: unknown) => {
      assert.ok(error instanceof ProxyProtocolError);
      assert.equal(error.code, "TRUNCATED");
      assert.equal(error.offset, 28);
      assert.match(error.message, /272 bytes.*only 28/);
      return true;
    });
  });

  it("refuses a header longer than maxLength with HEADER_TOO_LONG", () => {
    const bytes = datagram(V2_UDP6);
    decodeCode(bytes, "HEADER_TOO_LONG", 14, { maxLength: V2_UDP6.length - 1 });
    assert.ok(decodeDatagram(bytes, { maxLength: V2_UDP6.length }));
    // Too long for maxLength and cut short as well: the length is the first thing wrong.
    decodeCode(bytes.subarray(0, 20), "HEADER_TOO_LONG", 14, { maxLength: 40 });
    decodeCode(datagram(V1_TCP4), "HEADER_TOO_LONG", undefined, { maxLength: 20 });
  });

  it("verifies a CRC32C TLV over the header only", () => {
    const header: ProxyHeaderInit = {
      version: 2,
      command: "PROXY",
      protocol: "UDP4",
      source: { address: "192.0.2.1", port: 54321 },
      destination: { address: "198.51.100.1", port: 53 },
    };
    const bytes = encodeDatagram(header, PAYLOAD, { checksum: true });
    assert.equal(bytes.length, 16 + 12 + 7 + PAYLOAD.length);
    assert.equal(decodeDatagram(bytes).header.tlvs[0]?.type, 0x03);
    bytes[bytes.length - 1]! ^= 0xff; // the payload is not covered
    assert.ok(decodeDatagram(bytes));
    bytes[17]! ^= 0xff; // the header is
    decodeCode(bytes, "CHECKSUM_MISMATCH");
    assert.ok(decodeDatagram(bytes, { verifyChecksum: false }));
  });

  it("accepts any valid header and reports its protocol: v2 TCP, LOCAL, v1", () => {
    // Decision: the header is returned as sent; a policy that wants UDP checks `protocol`.
    const tcp = decodeDatagram(datagram(fromHex(S + "2111 000c c0000201 c6336401 d431 0035")));
    assert.equal(tcp.header.protocol, "TCP4");
    assert.deepEqual(tcp.payload, PAYLOAD);
    const local = decodeDatagram(datagram(fromHex(S + "2000 0000")));
    assert.equal(local.header.command, "LOCAL");
    assert.equal(local.header.source, null);
    assert.deepEqual(local.payload, PAYLOAD);
    const v1 = decodeDatagram(datagram(V1_TCP4));
    assert.equal(v1.header.version, 1);
    assert.deepEqual(v1.header.source, { address: "192.168.0.1", port: 56324 });
    assert.deepEqual(v1.payload, PAYLOAD);
  });

  it("reports decodeHeader's errors unchanged", () => {
    decodeCode(new TextEncoder().encode("GET / HTTP/1.1\r\n"), "NOT_PROXY_PROTOCOL", 0);
    decodeCode(fromHex(S + "2113 000c"), "INVALID_FAMILY", 13);
    decodeCode(fromHex(S + "2112 000b c0000201 c6336401 d431 00"), "INVALID_LENGTH", 14);
    decodeCode(datagram(SPP_V4), "NOT_PROXY_PROTOCOL", 0);
  });
});

describe("decodeDatagram, SPP", () => {
  it("decodes Cloudflare's layout with IPv4-mapped addresses in canonical form", () => {
    const result = decodeDatagram(datagram(SPP_V4), { format: "spp" });
    assert.equal(result.format, "spp");
    assert.deepEqual(result.header, {
      command: "PROXY",
      protocol: "UDP6",
      source: { address: "::ffff:192.0.2.1", port: 54321 },
      destination: { address: "::ffff:198.51.100.1", port: 53 },
      tlvs: [],
    });
    assert.equal("version" in result.header, false);
    assert.ok(Object.isFrozen(result.header.tlvs));
    assert.deepEqual(result.payload, PAYLOAD);
    const a = result.header.source.address;
    assert.equal(a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a, "192.0.2.1");
  });

  it("decodes IPv6 clients", () => {
    const { header } = decodeDatagram(datagram(SPP_V6), { format: "spp" });
    assert.deepEqual(header.source, { address: "2001:db8::1", port: 40000 });
    assert.deepEqual(header.destination, { address: "2001:db8::53", port: 443 });
  });

  it("takes the format from a non-literal option and narrows on result.format", () => {
    const format: DatagramFormat = ["spp", "proxy"][0] as DatagramFormat;
    const result = decodeDatagram(datagram(SPP_V4), { format });
    assert.equal(result.header.source?.address, "::ffff:192.0.2.1");
    if (result.format === "proxy") assert.fail("expected spp");
  });

  it("refuses a bad magic at its first wrong byte", () => {
    const opts = { format: "spp" } as const;
    for (const bad of ["57ec", "56ed", "ec56", "0000"]) {
      const bytes = datagram(SPP_V4);
      bytes.set(fromHex(bad));
      decodeCode(bytes, "NOT_PROXY_PROTOCOL", bad.startsWith("56") ? 1 : 0, opts);
    }
    decodeCode(datagram(V2_UDP4), "NOT_PROXY_PROTOCOL", 0, opts);
    decodeCode(new Uint8Array([0x56, 0x00]), "NOT_PROXY_PROTOCOL", 1, opts);
  });

  it("refuses every prefix of the 38-byte header with TRUNCATED", () => {
    for (let n = 0; n < 38; n++) {
      decodeCode(SPP_V6.subarray(0, n), "TRUNCATED", n, { format: "spp" });
    }
  });

  it("refuses maxLength below 38 with HEADER_TOO_LONG", () => {
    decodeCode(datagram(SPP_V4), "HEADER_TOO_LONG", 0, { format: "spp", maxLength: 37 });
    assert.ok(decodeDatagram(datagram(SPP_V4), { format: "spp", maxLength: 38 }));
  });

  it("throws a TypeError for an unknown format", () => {
    const options = { format: "spp2" } as unknown as DecodeDatagramOptions;
    assert.throws(() => decodeDatagram(SPP_V4, options), TypeError);
    assert.throws(
      () => encodeDatagram({ source: null } as never, PAYLOAD, options),
      TypeError,
    );
  });
});

describe("encodeDatagram", () => {
  it("writes v2 UDP4 and UDP6 datagrams byte for byte", () => {
    const udp4 = encodeDatagram({
      version: 2,
      command: "PROXY",
      protocol: "UDP4",
      source: { address: "192.0.2.1", port: 54321 },
      destination: { address: "198.51.100.1", port: 53 },
    }, PAYLOAD);
    assert.equal(toHex(udp4), toHex(datagram(V2_UDP4)));
    const decoded = decodeDatagram(datagram(V2_UDP6));
    assert.equal(toHex(encodeDatagram(decoded.header, decoded.payload)), toHex(datagram(V2_UDP6)));
  });

  it("writes SPP byte for byte, IPv4 as IPv4-mapped", () => {
    const v4: SppHeaderInit = {
      source: { address: "192.0.2.1", port: 54321 },
      destination: { address: "198.51.100.1", port: 53 },
    };
    assert.equal(toHex(encodeDatagram(v4, PAYLOAD, { format: "spp" })), toHex(datagram(SPP_V4)));
    const mapped: SppHeaderInit = {
      source: { address: "::ffff:192.0.2.1", port: 54321 },
      destination: { address: "::FFFF:c633:6401", port: 53 },
    };
    assert.equal(
      toHex(encodeDatagram(mapped, PAYLOAD, { format: "spp" })),
      toHex(datagram(SPP_V4)),
    );
    const v6: SppHeaderInit = {
      command: "PROXY",
      protocol: "UDP6",
      source: { address: "2001:db8:0:0::1", port: 40000 },
      destination: { address: "2001:db8::53", port: 443 },
      tlvs: [],
    };
    assert.equal(toHex(encodeDatagram(v6, PAYLOAD, { format: "spp" })), toHex(datagram(SPP_V6)));
  });

  it("writes SPP from a decoded v2 header, and v2 from a decoded SPP header", () => {
    const fromV2 = decodeDatagram(datagram(V2_UDP4));
    const spp = encodeDatagram(fromV2.header, fromV2.payload, { format: "spp" });
    assert.equal(toHex(spp), toHex(datagram(SPP_V4)));
    const fromSpp = decodeDatagram(spp, { format: "spp" });
    const v2 = decodeDatagram(encodeDatagram({ ...fromSpp.header, version: 2 }, fromSpp.payload));
    assert.equal(v2.header.protocol, "UDP6");
    assert.deepEqual(v2.header.source, { address: "::ffff:192.0.2.1", port: 54321 });
    assert.deepEqual(v2.payload, PAYLOAD);
  });

  it("copies the payload into one new array", () => {
    const payload = PAYLOAD.slice();
    for (const format of ["proxy", "spp"] as const) {
      const header: ProxyHeaderInit = {
        version: 2,
        command: "PROXY",
        protocol: "UDP4",
        source: { address: "192.0.2.1", port: 1 },
        destination: { address: "192.0.2.2", port: 2 },
      };
      const out = encodeDatagram(header, payload, { format });
      assert.notEqual(out.buffer, payload.buffer);
      assert.equal(out.byteOffset, 0);
      assert.equal(out.buffer.byteLength, out.length);
      assert.deepEqual(out.subarray(out.length - payload.length), payload);
    }
  });

  it("writes what encodeHeader writes, v1 included", () => {
    const header: ProxyHeaderInit = {
      version: 1,
      command: "PROXY",
      protocol: "TCP4",
      source: { address: "192.168.0.1", port: 56324 },
      destination: { address: "192.168.0.11", port: 443 },
    };
    assert.equal(toHex(encodeDatagram(header, PAYLOAD)), toHex(datagram(encodeHeader(header))));
    assertCode(
      () => encodeDatagram({ ...header, protocol: "UDP4" }, PAYLOAD),
      "INVALID_HEADER",
    );
  });

  it("refuses what SPP cannot say", () => {
    const ok: ProxyHeaderInit = {
      version: 2,
      command: "PROXY",
      protocol: "UDP4",
      source: { address: "192.0.2.1", port: 1 },
      destination: { address: "192.0.2.2", port: 2 },
    };
    const spp = { format: "spp" } as const;
    const bad: ProxyHeaderInit[] = [
      { ...ok, command: "LOCAL" },
      { ...ok, protocol: "TCP4" },
      { ...ok, protocol: "UNKNOWN" },
      { ...ok, tlvs: [{ type: 0x04, value: new Uint8Array(3) }] },
      { ...ok, source: null },
      { ...ok, source: { path: "/tmp/s" } },
      { ...ok, source: { address: "192.0.2.256", port: 1 } },
      { ...ok, source: { address: "01.2.3.4", port: 1 } },
      { ...ok, source: { address: "fe80::1%eth0", port: 1 } },
      { ...ok, destination: { address: "192.0.2.2", port: 65536 } },
      { ...ok, destination: { address: "192.0.2.2", port: -1 } },
      { ...ok, destination: { address: "192.0.2.2", port: 1.5 } },
    ];
    for (const header of bad) {
      assertCode(() => encodeDatagram(header, PAYLOAD, spp), "INVALID_HEADER");
    }
    assertCode(
      () => encodeDatagram(ok, PAYLOAD, { format: "spp", checksum: true }),
      "INVALID_HEADER",
    );
    assert.ok(encodeDatagram(ok, PAYLOAD, spp));
  });

  it("refuses a header without a version in format proxy", () => {
    const header: SppHeaderInit = {
      source: { address: "192.0.2.1", port: 1 },
      destination: { address: "192.0.2.2", port: 2 },
    };
    assertCode(() => encodeDatagram(header, PAYLOAD), "INVALID_HEADER");
  });
});

describe("datagram properties", () => {
  const port = fc.nat(65535);
  const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255))
    .map((p) => p.join("."));
  const ipv6 = fc.ipV6();
  const payload = fc.uint8Array({ maxLength: 64 });

  it("decodeDatagram returns a result or throws ProxyProtocolError, whatever the bytes", () => {
    const formats = fc.constantFrom<DatagramFormat>("proxy", "spp");
    // Random bytes, and valid datagrams with random bytes changed, some cut short.
    const valid = fc.constantFrom(
      datagram(V2_UDP4),
      datagram(V2_UDP6),
      datagram(SPP_V4),
      datagram(SPP_V6),
      datagram(V1_TCP4),
    );
    const edits = fc.array(fc.tuple(fc.nat(200), fc.nat(255)), { maxLength: 4 });
    const cut = fc.option(fc.nat(120), { nil: undefined });
    const mutated = fc.tuple(valid, edits, cut).map(([bytes, changes, end]) => {
      const copy = bytes.slice(0, end);
      for (const [at, value] of changes) if (at < copy.length) copy[at] = value;
      return copy;
    });
    const bytes = fc.oneof(fc.uint8Array({ maxLength: 120 }), mutated);
    const maxLength = fc.option(fc.nat(200), { nil: undefined });
    fc.assert(
      fc.property(bytes, formats, maxLength, fc.boolean(), (b, format, max, verify) => {
        const options: DecodeDatagramOptions = { format, verifyChecksum: verify };
        if (max !== undefined) options.maxLength = max;
        try {
          const result = decodeDatagram(b, options);
          assert.equal(result.format, format);
          assert.equal(result.payload.buffer, b.buffer);
          assert.equal(result.payload.byteOffset + result.payload.length, b.byteOffset + b.length);
        } catch (error) {
          if (!(error instanceof ProxyProtocolError)) throw error;
        }
      }),
      params,
    );
  });

  it("round-trips random UDP datagrams in both formats", () => {
    const header = fc.oneof(
      fc.record({ protocol: fc.constant("UDP4" as const), a: ipv4, b: ipv4 }),
      fc.record({ protocol: fc.constant("UDP6" as const), a: ipv6, b: ipv6 }),
    );
    fc.assert(
      fc.property(header, port, port, payload, (h, sport, dport, body) => {
        const init: ProxyHeaderInit = {
          version: 2,
          command: "PROXY",
          protocol: h.protocol,
          source: { address: h.a, port: sport },
          destination: { address: h.b, port: dport },
        };
        const v2 = decodeDatagram(encodeDatagram(init, body));
        assert.equal(v2.header.protocol, h.protocol);
        assert.equal(v2.header.source?.port, sport);
        assert.equal(v2.header.destination?.port, dport);
        assert.deepEqual(v2.payload, body);

        const sppBytes = encodeDatagram(init, body, { format: "spp" });
        assert.equal(sppBytes.length, 38 + body.length);
        const spp = decodeDatagram(sppBytes, { format: "spp" });
        assert.equal(spp.header.source.port, sport);
        assert.equal(spp.header.destination.port, dport);
        assert.deepEqual(spp.payload, body);
        // The decoded addresses are what the v2 decoder gives for the same 16 bytes.
        if (h.protocol === "UDP6") {
          assert.equal(spp.header.source.address, v2.header.source?.address);
        } else {
          assert.equal(spp.header.source.address, "::ffff:" + h.a);
        }
        // And writing them again gives the same bytes.
        assert.equal(
          toHex(encodeDatagram(spp.header, spp.payload, { format: "spp" })),
          toHex(sppBytes),
        );
      }),
      params,
    );
  });
});
