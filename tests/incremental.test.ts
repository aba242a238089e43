import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  decodeHeader,
  encodeHeader,
  fromHex,
  HeaderReader,
  ProxyProtocolError,
} from "@proxy-protocol/edge";
import { S, text, V1_SPEC, V2 } from "./vectors.ts";

/**
 * Pushes `bytes` into a new HeaderReader a byte at a time; returns how many bytes were in
 * when it threw, with the error's code and offset (or undefined when it never threw).
 */
function trickle(bytes: Uint8Array) {
  const reader = new HeaderReader();
  for (let i = 0; i < bytes.length; i++) {
    try {
      if (reader.push(bytes.subarray(i, i + 1)) !== null) return undefined;
    } catch (error) {
      assert.ok(error instanceof ProxyProtocolError, String(error));
      return { at: i + 1, code: error.code, offset: error.offset };
    }
  }
  return undefined;
}

const valid: [string, Uint8Array][] = [
  ["v1 spec", text(V1_SPEC)],
  ["v1 TCP6", text("PROXY TCP6 ::ffff:10.1.91.14 2001:db8::2 62588 443\r\n")],
  ["v1 UNKNOWN", text("PROXY UNKNOWN\r\n")],
  ["v1 UNKNOWN with rest", text("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n")],
  ...Object.entries(V2),
];

describe("incremental decoding", () => {
  it("gives null for every prefix of a valid header, then the same result however much follows", () => {
    for (const [name, bytes] of valid) {
      const whole = decodeHeader(bytes);
      assert.ok(whole, name);
      assert.equal(whole.length, bytes.length, name);
      for (let i = 0; i < bytes.length; i++) {
        assert.equal(decodeHeader(bytes.subarray(0, i)), null, `${name}: prefix of ${i} bytes`);
      }
      // With payload after it: same header, same length.
      const withPayload = new Uint8Array(bytes.length + 300);
      withPayload.set(bytes);
      withPayload.fill(0x47, bytes.length);
      assert.deepEqual(decodeHeader(withPayload), whole, name);
    }
  });
});

describe("HeaderReader fails as soon as the bytes in rule the header out", () => {
  it("checks the TLVs of a v2 header as they arrive, not only once it is complete", () => {
    // The AWS capture with its NOOP TLV (at 61) overrunning: its length is in at 64,
    // 36 bytes before the header would end.
    const overrun = V2.aws1.slice();
    overrun[63] = 0x25;
    assert.deepEqual(trickle(overrun), { at: 64, code: "INVALID_TLV", offset: 61 });
    // The same in two chunks: the second, which holds the length, throws.
    const reader = new HeaderReader();
    assert.equal(reader.push(overrun.subarray(0, 20)), null);
    assert.throws(
      () => reader.push(overrun.subarray(20, 70)),
      (e: unknown) => e instanceof ProxyProtocolError && e.code === "INVALID_TLV",
    );
    // A CRC32C of 3 bytes, 2 stray bytes after a TLV, an SSL sub-TLV that overruns.
    assert.deepEqual(trickle(fromHex(S + "2100 000a 03 0003 000000 f0 0001 00")), {
      at: 19,
      code: "INVALID_TLV",
      offset: 16,
    });
    assert.deepEqual(
      trickle(fromHex(S + "2111 0015 7f000001 7f000001 002a 0539 02 0004 31323334 0000")),
      { at: 31, code: "INVALID_TLV", offset: 35 },
    );
    assert.deepEqual(
      trickle(fromHex(S + "2100 0010 20 0008 01 00000000 210002 04 0002 0000")),
      { at: 27, code: "INVALID_TLV", offset: 16 },
    );
    // LOCAL: never.
    assert.equal(trickle(fromHex(S + "2000 0005 01 0000 ffff")), undefined);
  });

  it("checks a v1 line against the 107 bytes as it arrives", () => {
    const line = text("PROXY UNKNOWN " + "x".repeat(100));
    assert.deepEqual(trickle(line), { at: 106, code: "V1_TOO_LONG", offset: 107 });
  });

  it("takes linear time for 64 KiB of tiny TLVs or SSL sub-TLVs trickled a byte at a time", () => {
    // 21845 empty TLVs, then the same count of sub-TLVs in one SSL TLV: a walk that
    // started over at every byte would read over 700 million TLV headers.
    const tiny = encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "UNKNOWN",
      tlvs: Array.from({ length: 21845 }, () => ({ type: 0xf0, value: new Uint8Array(0) })),
    });
    const ssl = new Uint8Array(5 + 3 * 21842);
    ssl.set([0x01, 0, 0, 0, 0]);
    for (let p = 5; p < ssl.length; p += 3) ssl[p] = 0xe0;
    const subs = encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "UNKNOWN",
      tlvs: [{ type: 0x20, value: ssl }],
    });
    for (const bytes of [tiny, subs]) {
      const reader = new HeaderReader();
      for (let i = 0; i < bytes.length - 1; i++) {
        assert.equal(reader.push(bytes.subarray(i, i + 1)), null);
      }
      assert.equal(reader.push(bytes.subarray(bytes.length - 1))?.result.length, bytes.length);
      // And a bad last sub-TLV or TLV is still found when its bytes arrive.
      const bad = bytes.slice();
      bad[bad.length - 2] = 0x01;
      assert.equal(trickle(bad)?.code, "INVALID_TLV");
    }
  });
});
