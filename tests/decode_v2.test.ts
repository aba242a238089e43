import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  concatBytes,
  crc32c,
  decodeHeader,
  type DecodeOptions,
  fromHex,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
} from "@proxy-protocol/edge";
import { ascii, S, V2 } from "./vectors.ts";

function assertCode(
  bytes: Uint8Array,
  code: ProxyProtocolErrorCode,
  offset?: number,
  options?: DecodeOptions,
) {
  assert.throws(
    () => decodeHeader(bytes, options),
    (error: unknown) => {
      assert.ok(error instanceof ProxyProtocolError, String(error));
      assert.equal(error.code, code, error.message);
      if (offset !== undefined) assert.equal(error.offset, offset, error.message);
      return true;
    },
  );
}

/** Recomputes the CRC32C of a header whose CRC32C TLV value starts at `at`. */
function withCrc(bytes: Uint8Array, at: number): Uint8Array {
  const copy = bytes.slice();
  copy.fill(0, at, at + 4);
  new DataView(copy.buffer).setUint32(at, crc32c(copy));
  return copy;
}

/**
 * The shortest prefix of `bytes` that throws, with its code and offset; every longer
 * prefix must throw the same, and every shorter one give null.
 */
function firstError(bytes: Uint8Array, options?: DecodeOptions) {
  let first: { at: number; code: string; offset: number | undefined } | undefined;
  for (let i = 0; i <= bytes.length; i++) {
    try {
      const result = decodeHeader(bytes.subarray(0, i), options);
      assert.equal(first, undefined, `prefix ${i} gave a result after an error`);
      assert.equal(result, null, `prefix ${i}`);
    } catch (error) {
      assert.ok(error instanceof ProxyProtocolError, String(error));
      const now = { at: first?.at ?? i, code: error.code, offset: error.offset };
      if (first !== undefined) assert.deepEqual(now, first, `prefix ${i}`);
      first = now;
    }
  }
  return first;
}

describe("v2 decoding", () => {
  it("decodes the AWS NLB captures and verifies their CRC32c", () => {
    const one = decodeHeader(V2.aws1);
    assert.equal(one?.length, 100);
    assert.deepEqual(one?.header.source, { address: "172.31.7.113", port: 51442 });
    assert.deepEqual(one?.header.destination, { address: "172.31.10.31", port: 80 });
    assert.deepEqual(one?.header.tlvs.map((t) => [t.type, t.value.length]), [
      [0x03, 4],
      [0xea, 23],
      [0x04, 36],
    ]);
    const two = decodeHeader(V2.aws2);
    assert.deepEqual(two?.header.source, { address: "192.168.44.10", port: 52286 });
    assert.deepEqual(two?.header.destination, { address: "192.168.44.7", port: 9243 });
  });

  it("decodes HAProxy's SSL headers, over IPv4 and v4-mapped IPv6", () => {
    const cert = decodeHeader(V2.clientCert)!;
    assert.equal(cert.length, 80);
    assert.deepEqual(cert.header.source, { address: "127.0.0.1", port: 52362 });
    assert.deepEqual(cert.header.tlvs.map((t) => t.type), [0x20]);
    const v6 = decodeHeader(V2.tlsV6)!;
    assert.equal(v6.length, 95);
    assert.equal(v6.header.protocol, "TCP6");
    assert.deepEqual(v6.header.source, { address: "::ffff:10.1.91.14", port: 62588 });
    assert.deepEqual(v6.header.destination, { address: "::ffff:10.1.1.159", port: 443 });
  });

  it("keeps TLV values as views into the input, and reads from a subarray", () => {
    const backing = new Uint8Array(V2.authority.length + 10);
    backing.set(V2.authority, 7);
    const input = backing.subarray(7, 7 + V2.authority.length);
    const result = decodeHeader(input)!;
    assert.equal(result.length, V2.authority.length);
    const value = result.header.tlvs[0]!.value;
    assert.equal(value.buffer, backing.buffer);
    assert.equal(value.byteOffset, 7 + 31);
    assert.deepEqual(value, fromHex("3132333435"));
  });

  it("rejects the HAProxy reg-test TLVs that overrun or leave stray bytes", () => {
    assertCode(
      fromHex(S + "2111 0014 7f000001 7f000001 002a 0539 02 000a 3132333435"),
      "INVALID_TLV",
      28,
    );
    assertCode(
      fromHex(S + "2111 0014 7f000001 7f000001 002a 0539 02 0004 31323334 00"),
      "INVALID_TLV",
      35,
    );
    assertCode(
      fromHex(S + "2111 0015 7f000001 7f000001 002a 0539 02 0004 31323334 0000"),
      "INVALID_TLV",
      35,
    );
  });

  it("decodes LOCAL: protocol as sent, no addresses, exactly len bytes skipped", () => {
    assert.deepEqual(decodeHeader(concatBytes([V2.local, fromHex("aa")])), {
      header: {
        version: 2,
        command: "LOCAL",
        protocol: "UNKNOWN",
        source: null,
        destination: null,
        tlvs: [],
      },
      length: 16,
    });
    // AWS NLB health checks: LOCAL with an address block.
    const nlb = fromHex(S + "2011 000c 0a000001 0a000002 1f90 0050 ff");
    assert.deepEqual(decodeHeader(nlb), {
      header: {
        version: 2,
        command: "LOCAL",
        protocol: "TCP4",
        source: null,
        destination: null,
        tlvs: [],
      },
      length: 28,
    });
    // UNSPEC with bytes that are no TLVs: the block is discarded (spec §2.2), not rejected.
    const junk = fromHex(S + "2000 000c 0a000001 0a000002 1f90 0050");
    assert.deepEqual(decodeHeader(junk)?.header.tlvs, []);
    assert.equal(decodeHeader(junk)?.length, 28);
    // LOCAL shorter than its family's block: still accepted.
    assert.equal(decodeHeader(fromHex(S + "2021 0004 00000000"))?.length, 20);
  });

  it("reports LOCAL TLVs when well formed and still checks their CRC32c", () => {
    const check = withCrc(fromHex(S + "2000 000f 03 0004 00000000 20 0005 00 00000000"), 19);
    const result = decodeHeader(check)!;
    assert.deepEqual(result.header.tlvs.map((t) => t.type), [0x03, 0x20]);
    const bad = check.slice();
    bad[19]! ^= 1;
    assertCode(bad, "CHECKSUM_MISMATCH", 19);
  });

  it("decodes PROXY with UNSPEC as UNKNOWN with no addresses, and its TLVs", () => {
    const result = decodeHeader(fromHex(S + "2100 0005 01 0002 6832"));
    assert.deepEqual(result?.header.protocol, "UNKNOWN");
    assert.equal(result?.header.command, "PROXY");
    assert.equal(result?.header.source, null);
    assert.deepEqual(result?.header.tlvs.map((t) => t.type), [0x01]);
  });

  it("decodes UDP and UNIX families; paths stop at the first NUL", () => {
    const udp6 = decodeHeader(
      fromHex(
        S + "2122 0024" + "20010db8000000000000000000000001" + "00".repeat(15) + "01 0035 0035",
      ),
    );
    assert.equal(udp6?.header.protocol, "UDP6");
    assert.deepEqual(udp6?.header.source, { address: "2001:db8::1", port: 53 });
    assert.deepEqual(udp6?.header.destination, { address: "::1", port: 53 });
    const udp4 = decodeHeader(fromHex(S + "2112 000c 01020304 05060708 0001 0002"));
    assert.equal(udp4?.header.protocol, "UDP4");

    const path = (p: string) => ascii(p) + "00".repeat(108 - p.length);
    const unix = decodeHeader(fromHex(S + "2131 00d8" + path("/run/a.sock") + path("/run/b.sock")));
    assert.equal(unix?.header.protocol, "UNIX_STREAM");
    assert.deepEqual(unix?.header.source, { path: "/run/a.sock" });
    assert.deepEqual(unix?.header.destination, { path: "/run/b.sock" });
    const full = "a".repeat(108);
    const dgram = decodeHeader(
      fromHex(S + "2132 00d8" + ascii(full) + ascii("/x") + "00" + "ff".repeat(105)),
    );
    assert.equal(dgram?.header.protocol, "UNIX_DGRAM");
    assert.deepEqual(dgram?.header.source, { path: full });
    assert.deepEqual(dgram?.header.destination, { path: "/x" });
  });

  it("rejects bad version, command, family and length, as soon as the byte arrives", () => {
    assertCode(fromHex(S + "11"), "UNSUPPORTED_VERSION", 12);
    assertCode(fromHex(S + "31"), "UNSUPPORTED_VERSION", 12);
    assertCode(fromHex(S + "22"), "INVALID_COMMAND", 12);
    assertCode(fromHex(S + "2F"), "INVALID_COMMAND", 12);
    for (const family of ["01", "10", "13", "20", "23", "30", "33", "41", "ff"]) {
      assertCode(fromHex(S + "21" + family), "INVALID_FAMILY", 13);
    }
    assertCode(fromHex(S + "2111 000b"), "INVALID_LENGTH", 14);
    assertCode(fromHex(S + "2121 0023"), "INVALID_LENGTH", 14);
    assertCode(fromHex(S + "2131 00d7"), "INVALID_LENGTH", 14);
    assertCode(fromHex("0d0a0d0a000d0a5155495420"), "NOT_PROXY_PROTOCOL", 11);
    assertCode(fromHex("0d0a0d0a01"), "NOT_PROXY_PROTOCOL", 4);
    assertCode(fromHex("0d0d"), "NOT_PROXY_PROTOCOL", 1);
  });

  it("checks TLV rules: CRC32C size, UNIQUE_ID size, SSL structure", () => {
    assertCode(fromHex(S + "2100 0006 03 0003 000000"), "INVALID_TLV", 16);
    assert.equal(
      decodeHeader(fromHex(S + "2100 0083 05 0080" + "ab".repeat(128)))?.length,
      16 + 131,
    );
    assertCode(fromHex(S + "2100 0084 05 0081" + "ab".repeat(129)), "INVALID_TLV", 16);
    assertCode(fromHex(S + "2100 0007 20 0004 01000000"), "INVALID_TLV", 16);
    assertCode(fromHex(S + "2100 000a 20 0007 01 00000000 2100"), "INVALID_TLV", 16);
    assertCode(fromHex(S + "2100 000b 20 0008 01 00000000 210002"), "INVALID_TLV", 16);
    assert.equal(decodeHeader(fromHex(S + "2100 000b 20 0008 01 00000000 210000"))?.length, 27);
    // Unknown and vendor types pass as raw TLVs.
    assert.equal(decodeHeader(fromHex(S + "2100 0006 f7 0000 ff 0000"))?.header.tlvs.length, 2);
  });

  it("walks the TLVs of a partial PROXY header and fails as soon as a rule is broken", () => {
    const cases: [string, string, number, number][] = [
      // The reg-test TLV that overruns: its length is in at 31, the header ends at 36.
      [
        "overrun",
        S + "2111 0014 7f000001 7f000001 002a 0539 02 000a 3132333435",
        31,
        28,
      ],
      // The high byte of the length is enough when it alone overruns.
      ["overrun by the high byte", S + "2100 0010 f7 0100" + "00".repeat(13), 18, 16],
      // 1 or 2 bytes left after a TLV: known once its length is in, not at the end.
      ["stray after", S + "2111 0015 7f000001 7f000001 002a 0539 02 0004 31323334 0000", 31, 35],
      ["stray after an empty TLV", S + "2100 0005 01 0000 ffff", 19, 19],
      // An area of 1 or 2 bytes: known from the length field.
      ["stray area", S + "2111 000d 7f000001 7f000001 002a 0539 00", 16, 28],
      ["CRC32C of 3 bytes", S + "2100 000a 03 0003 000000 f0 0001 00", 19, 16],
      ["CRC32C of 256 bytes", S + "2100 0103 03 0100" + "00".repeat(256), 18, 16],
      // A CRC32C TLV the area cannot hold: known from its type.
      ["CRC32C that cannot fit", S + "2100 0006 03 0003 000000", 17, 16],
      ["UNIQUE_ID of 129 bytes", S + "2100 0084 05 0081" + "ab".repeat(129), 19, 16],
      ["UNIQUE_ID of 256 bytes", S + "2100 0103 05 0100" + "ab".repeat(256), 18, 16],
      ["SSL shorter than 5", S + "2100 0007 20 0004 01000000", 17, 16],
      ["SSL sub-TLV stray bytes", S + "2100 000a 20 0007 01 00000000 2100", 19, 16],
      [
        "SSL sub-TLV overrun",
        S + "2100 0010 20 0008 01 00000000 210002 04 0002 0000",
        27,
        16,
      ],
      // A bad TLV after good ones.
      [
        "after good TLVs",
        S + "2100 0012 01 0002 6832 f0 0000 03 0002 0000 f0 0002 0000",
        27,
        24,
      ],
    ];
    for (const [name, hex, at, offset] of cases) {
      assert.deepEqual(firstError(fromHex(hex)), { at, code: "INVALID_TLV", offset }, name);
    }
  });

  it("reports the stray bytes after a malformed SSL TLV where it finds them first", () => {
    // The SSL TLV leaves 2 bytes: known at 19, before its sub-TLVs are; the complete
    // header reports the same offset.
    const bytes = fromHex(S + "2100 000c 20 0007 01 00000000 2100 ffff");
    assert.deepEqual(firstError(bytes), { at: 19, code: "INVALID_TLV", offset: 26 });
  });

  it("never rejects a LOCAL header for its TLVs, complete or not", () => {
    for (
      const hex of [
        S + "2000 0006 03 0003 000000",
        S + "2000 0005 01 0000 ffff",
        S + "2011 000d 0a000001 0a000002 1f90 0050 00",
        S + "2000 0010 20 0008 01 00000000 210002 04 0002 0000",
      ]
    ) {
      const bytes = fromHex(hex);
      for (let i = 0; i < bytes.length; i++) {
        assert.equal(decodeHeader(bytes.subarray(0, i)), null, `${hex}: prefix ${i}`);
      }
      assert.equal(decodeHeader(bytes)?.length, bytes.length, hex);
    }
  });

  it("rejects a CRC32c mismatch unless told not to verify", () => {
    for (let i = 0; i < V2.aws1.length; i++) {
      if (i >= 14 && i <= 15) continue; // the length field changes the framing instead
      if (i === 28) continue; // the CRC32C type byte: without it there is no checksum to check
      const bad = V2.aws1.slice();
      bad[i]! ^= 0x40;
      assert.throws(() => decodeHeader(bad), ProxyProtocolError, `flipped byte ${i}`);
    }
    const unchecked = V2.aws1.slice();
    unchecked[28] = 0x43;
    assert.deepEqual(decodeHeader(unchecked)?.header.tlvs[0]?.type, 0x43);
    const bad = V2.aws1.slice();
    bad[16]! ^= 1; // the source address
    assertCode(bad, "CHECKSUM_MISMATCH", 31);
    assert.equal(decodeHeader(bad, { verifyChecksum: false })?.header.source?.constructor, Object);
  });

  it("applies maxLength as soon as the length field is known", () => {
    assertCode(V2.aws1.subarray(0, 16), "HEADER_TOO_LONG", 14, { maxLength: 99 });
    assert.equal(decodeHeader(V2.aws1, { maxLength: 100 })?.length, 100);
    assert.equal(decodeHeader(V2.aws1.subarray(0, 15), { maxLength: 99 }), null);
  });

  it("handles the largest header the length field allows", () => {
    const big = new Uint8Array(65551);
    big.set(fromHex(S + "2100 ffff 04 fffc"));
    assert.equal(decodeHeader(big)?.length, 65551);
    assert.equal(decodeHeader(big.subarray(0, 65550)), null);
  });
});
