import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  decodeHeader,
  type DecodeOptions,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
} from "@proxy-protocol/edge";
import { text, V1_SPEC } from "./vectors.ts";

function decodeText(line: string) {
  return decodeHeader(text(line));
}

function assertCode(line: string, code: ProxyProtocolErrorCode, offset?: number) {
  assert.throws(
    () => decodeText(line),
    (error: unknown) => {
      assert.ok(
        error instanceof ProxyProtocolError,
        `expected ProxyProtocolError for ${JSON.stringify(line)}`,
      );
      assert.equal(error.name, "ProxyProtocolError");
      assert.equal(error.code, code, `code for ${JSON.stringify(line)}: ${error.message}`);
      if (offset !== undefined) {
        assert.equal(error.offset, offset, `offset for ${JSON.stringify(line)}`);
      }
      return true;
    },
  );
}

/**
 * The shortest prefix of `line` that throws, with its code and offset; every longer prefix
 * must throw the same, and every shorter one give null.
 */
function firstError(line: string, options?: DecodeOptions) {
  const bytes = text(line);
  let first: { at: number; code: string; offset: number | undefined } | undefined;
  for (let i = 0; i <= bytes.length; i++) {
    try {
      const result = decodeHeader(bytes.subarray(0, i), options);
      assert.equal(first, undefined, `prefix ${i} gave ${result} after an error`);
      assert.equal(result, null, `prefix ${i} of ${JSON.stringify(line)}`);
    } catch (error) {
      assert.ok(error instanceof ProxyProtocolError, String(error));
      const now = { at: first?.at ?? i, code: error.code, offset: error.offset };
      if (first !== undefined) assert.deepEqual(now, first, `prefix ${i}`);
      first = now;
    }
  }
  return first;
}

describe("v1 decoding", () => {
  it("decodes the spec's example and reports its length", () => {
    const bytes = text(V1_SPEC + "GET / HTTP/1.1\r\n");
    const result = decodeHeader(bytes);
    assert.deepEqual(result, {
      header: {
        version: 1,
        command: "PROXY",
        protocol: "TCP4",
        source: { address: "192.168.0.1", port: 56324 },
        destination: { address: "192.168.0.11", port: 443 },
        tlvs: [],
      },
      length: V1_SPEC.length,
    });
  });

  it("decodes TCP6 and gives canonical (RFC 5952) addresses", () => {
    const cases: [string, string][] = [
      ["::1", "::1"],
      ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
      ["2001:db8:0:0:0:1:0:0", "2001:db8::1:0:0"],
      ["2001:db8:1:0:1:1:1:1", "2001:db8:1:0:1:1:1:1"],
      ["0:0:0:0:0:0:0:0", "::"],
      ["::ffff:10.1.91.14", "::ffff:10.1.91.14"],
      ["::FFFF:0a01:5b0e", "::ffff:10.1.91.14"],
      ["fe80::1:2", "fe80::1:2"],
      ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
      ["1::", "1::"],
    ];
    for (const [input, canonical] of cases) {
      const line = `PROXY TCP6 ${input} ::2 1 2\r\n`;
      const result = decodeText(line);
      assert.equal(result?.header.source?.constructor, Object);
      assert.deepEqual(result?.header.source, { address: canonical, port: 1 }, input);
      assert.equal(result?.length, line.length);
    }
  });

  it("decodes PROXY UNKNOWN as LOCAL with no addresses, with or without the ignored rest", () => {
    for (
      const line of [
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN ffff::1 1.2.3.4 1 2\r\n",
        "PROXY UNKNOWN x\r\n",
        // A lone CR is part of what the receiver ignores (spec 2.1); go-proxyproto agrees.
        "PROXY UNKNOWN a\rb\r\n",
        "PROXY UNKNOWN \r\r\n",
      ]
    ) {
      assert.deepEqual(decodeText(line + "payload"), {
        header: {
          version: 1,
          command: "LOCAL",
          protocol: "UNKNOWN",
          source: null,
          destination: null,
          tlvs: [],
        },
        length: line.length,
      });
    }
  });

  it("accepts the longest lines the spec allows, and ports 0 and 65535", () => {
    const v4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert.equal(v4.length, 56);
    assert.equal(decodeText(v4)?.length, 56);
    const all = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    const v6 = `PROXY TCP6 ${all} ${all} 65535 65535\r\n`;
    assert.equal(v6.length, 104);
    assert.deepEqual(decodeText(v6)?.header.source, { address: all, port: 65535 });
    const unknown = "PROXY UNKNOWN " + "x".repeat(107 - 16) + "\r\n";
    assert.equal(unknown.length, 107);
    assert.equal(decodeText(unknown)?.length, 107);
    assert.deepEqual(decodeText("PROXY TCP4 0.0.0.0 1.2.3.4 0 65535\r\n")?.header.source, {
      address: "0.0.0.0",
      port: 0,
    });
  });

  it("rejects lines longer than 107 bytes", () => {
    assertCode("PROXY UNKNOWN " + "x".repeat(107 - 15) + "\r\n", "V1_TOO_LONG", 107);
    // Mixed-notation IPv6 can make a TCP6 line longer than 107 bytes.
    const long = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
    assertCode(`PROXY TCP6 ${long} ${long} 65535 65535\r\n`, "V1_TOO_LONG", 107);
  });

  it("fails as soon as the line can no longer end within 107 bytes", () => {
    // 106 bytes without a CR: CRLF would make 108.
    const unknown = "PROXY UNKNOWN " + "x".repeat(92);
    assert.equal(unknown.length, 106);
    assert.equal(decodeText(unknown.slice(0, 105)), null);
    assert.deepEqual(firstError(unknown + "\r\n"), { at: 106, code: "V1_TOO_LONG", offset: 107 });
    assert.equal(decodeText(unknown.slice(0, 105) + "\r"), null);
    assert.equal(decodeText(unknown.slice(0, 105) + "\r\n")?.length, 107);
    // The longest mixed-notation source, then a destination that cannot leave room for
    // " 0 0\r\n": the whole address is 102 bytes in, 6 short of a line.
    const long = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
    assert.deepEqual(firstError(`PROXY TCP6 ${long} ${long} 65535 65535\r\n`), {
      at: 102,
      code: "V1_TOO_LONG",
      offset: 107,
    });
    // The same line with a byte error after that point still fails as too long.
    assertCode(`PROXY TCP6 ${long} ${long}x`, "V1_TOO_LONG", 107);
  });

  it("fails as soon as the line can no longer end within maxLength", () => {
    // The shortest TCP6 line is 22 bytes, the shortest TCP4 line 32.
    assert.deepEqual(firstError(V1_SPEC, { maxLength: 20 }), {
      at: 7,
      code: "HEADER_TOO_LONG",
      offset: 20,
    });
    assert.equal(decodeHeader(text("PROXY "), { maxLength: 20 }), null); // UNKNOWN fits
    // "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443" needs CRLF: 47 bytes.
    assert.deepEqual(firstError(V1_SPEC, { maxLength: 46 }), {
      at: 45,
      code: "HEADER_TOO_LONG",
      offset: 46,
    });
    assert.deepEqual(firstError("PROXY TCP4 0.0.0.10 0.0.0.0 0 0\r\n", { maxLength: 32 }), {
      at: 19,
      code: "HEADER_TOO_LONG",
      offset: 32,
    });
    assert.equal(
      decodeHeader(text("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n"), { maxLength: 32 })?.length,
      32,
    );
    // IPv6: "::" ends an address at once; "1" needs "::" or more groups.
    assert.equal(decodeHeader(text("PROXY TCP6 :"), { maxLength: 22 }), null);
    assert.deepEqual(firstError("PROXY TCP6 ::1 :: 0 0\r\n", { maxLength: 22 }), {
      at: 14,
      code: "HEADER_TOO_LONG",
      offset: 22,
    });
    assert.deepEqual(firstError("PROXY TCP6 1:: :: 0 0\r\n", { maxLength: 22 }), {
      at: 12,
      code: "HEADER_TOO_LONG",
      offset: 22,
    });
    // A byte error past the point of no return does not replace the earlier verdict.
    assert.throws(
      () => decodeHeader(text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443x"), { maxLength: 46 }),
      (e: unknown) => e instanceof ProxyProtocolError && e.code === "HEADER_TOO_LONG",
    );
    // Byte errors before it still win.
    assert.deepEqual(firstError("PROXY TCP4 1.2.3.04", { maxLength: 32 }), {
      at: 19,
      code: "INVALID_ADDRESS",
      offset: 18,
    });
  });

  it("rejects every departure from the grammar, with a code and the offending offset", () => {
    const table: [string, ProxyProtocolErrorCode, number][] = [
      ["GET / HTTP/1.1\r\n", "NOT_PROXY_PROTOCOL", 0],
      ["proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "NOT_PROXY_PROTOCOL", 0],
      ["PROXx", "NOT_PROXY_PROTOCOL", 4],
      ["PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "V1_MALFORMED", 6],
      ["PROXYTCP4", "V1_MALFORMED", 5],
      ["PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "V1_MALFORMED", 6],
      ["PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "V1_MALFORMED", 9],
      ["PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "V1_MALFORMED", 7], // `U` could start UNKNOWN
      ["PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "V1_MALFORMED", 11],
      ["PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "V1_MALFORMED", 19],
      ["PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", "V1_MALFORMED", 27],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "V1_MALFORMED", 29],
      ["PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", "V1_MALFORMED", 10],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "V1_MALFORMED", 30],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "V1_MALFORMED", 31],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "INVALID_PORT", 30],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "INVALID_PORT", 30],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "V1_MALFORMED", 28],
      ["PROXY UNKNOWN\n", "V1_MALFORMED", 13],
      ["PROXY UNKNOWN x\ny\r\n", "V1_MALFORMED", 15],
      ["PROXY UNKNOWNX\r\n", "V1_MALFORMED", 13],
      ["PROXY UNKNOWN\rX", "V1_MALFORMED", 14],
      // IPv4: four numbers 0-255 without leading zeros.
      ["PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "INVALID_ADDRESS", 18],
      ["PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "INVALID_ADDRESS", 12],
      ["PROXY TCP4 192.168.0.256 5.6.7.8 1 2\r\n", "INVALID_ADDRESS", 23],
      ["PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "INVALID_ADDRESS", 16],
      ["PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "INVALID_ADDRESS", 18],
      ["PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "INVALID_ADDRESS", 13],
      ["PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n", "INVALID_ADDRESS", 17],
      ["PROXY TCP4 ::1 ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP4 +1.2.3.4 5.6.7.8 1 2\r\n", "INVALID_ADDRESS", 11],
      // IPv6: hex groups, one `::` at most, 128 bits exactly, no zone id.
      ["PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP6 1::2::3 ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP6 12345:: ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP6 :1:2:3:4:5:6:7 ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP6 1:2:3:4:5:6:7: ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP6 ::ffff:1.2.3.256 ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      ["PROXY TCP6 ::g ::1 1 2\r\n", "INVALID_ADDRESS", 11],
      // Ports: 0-65535, no sign, no leading zeros.
      ["PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "INVALID_PORT", 31],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 0443 2\r\n", "INVALID_PORT", 28],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", "INVALID_PORT", 28],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 +443 2\r\n", "V1_MALFORMED", 27],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "V1_MALFORMED", 29],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "INVALID_PORT", 33],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n", "INVALID_PORT", 30],
    ];
    for (const [line, code, offset] of table) assertCode(line, code, offset);
  });

  it("fails as soon as a prefix rules the line out, without waiting for more bytes", () => {
    assertCode("G", "NOT_PROXY_PROTOCOL", 0);
    assertCode("PROXY TCP4 1.2.3.400", "INVALID_ADDRESS", 19);
    assertCode("PROXY TCP4 1.2.3.4 5.6.7.8 70000", "INVALID_PORT", 31);
    assertCode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "V1_MALFORMED", 30);
    assertCode("PROXY TCP6 1:2:3:4:5:6:7:8:9", "INVALID_ADDRESS", 11);
    assertCode("PROXY TCP6 12345", "INVALID_ADDRESS", 11);
  });

  it("returns null for every valid prefix, including the empty input", () => {
    const line = text(V1_SPEC);
    for (let i = 0; i < line.length; i++) {
      assert.equal(decodeHeader(line.subarray(0, i)), null, `prefix ${i}`);
    }
    assert.equal(decodeHeader(new Uint8Array(0)), null);
    assert.equal(decodeText("PROXY TCP6 2001:db8::ffff:1.2.3"), null);
  });

  it("applies maxLength to v1 lines", () => {
    assert.equal(
      decodeHeader(text(V1_SPEC), { maxLength: V1_SPEC.length })?.length,
      V1_SPEC.length,
    );
    assert.throws(
      () => decodeHeader(text(V1_SPEC), { maxLength: 20 }),
      (e: unknown) => e instanceof ProxyProtocolError && e.code === "HEADER_TOO_LONG",
    );
    // A short prefix is still just incomplete while some line could fit...
    assert.equal(decodeHeader(text("PROXY"), { maxLength: 20 }), null);
    // ...but not once none can: the shortest TCP4 line takes 32 bytes.
    assert.throws(
      () => decodeHeader(text("PROXY TCP4"), { maxLength: 20 }),
      (e: unknown) => e instanceof ProxyProtocolError && e.code === "HEADER_TOO_LONG",
    );
  });

  it("holds addresses that are plain, JSON-friendly objects", () => {
    const header = decodeText(V1_SPEC)!.header;
    assert.deepEqual(JSON.parse(JSON.stringify(header)), header);
    assert.deepEqual({ ...header.source }, { address: "192.168.0.1", port: 56324 });
    assert.deepEqual(structuredClone(header), header);
  });
});
