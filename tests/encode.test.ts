import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  decodeHeader,
  encodedLength,
  encodeHeader,
  encodeHeaderInto,
  encodeTlvs,
  fromHex,
  type ProxyHeaderInit,
  ProxyProtocolError,
  toHex,
} from "@proxy-protocol/edge";
import { S, V1_SPEC, V2 } from "./vectors.ts";

const latin = (b: Uint8Array) => String.fromCharCode(...b);

function assertInvalid(header: ProxyHeaderInit, pattern: RegExp) {
  assert.throws(() => encodeHeader(header), (e: unknown) => {
    assert.ok(e instanceof ProxyProtocolError);
    assert.equal(e.code, "INVALID_HEADER");
    assert.match(e.message, pattern);
    return true;
  });
}

const tcp4 = {
  source: { address: "192.168.0.1", port: 56324 },
  destination: { address: "192.168.0.11", port: 443 },
};

describe("encoding", () => {
  it("writes the spec's v1 example", () => {
    assert.equal(
      latin(encodeHeader({ version: 1, command: "PROXY", protocol: "TCP4", ...tcp4 })),
      V1_SPEC,
    );
  });

  it("writes v1 TCP6 in canonical form, and UNKNOWN for LOCAL", () => {
    const line = encodeHeader({
      version: 1,
      command: "PROXY",
      protocol: "TCP6",
      source: { address: "2001:0DB8:0:0:0:0:0:1", port: 1 },
      destination: { address: "::FFFF:10.1.1.159", port: 443 },
    });
    assert.equal(latin(line), "PROXY TCP6 2001:db8::1 ::ffff:10.1.1.159 1 443\r\n");
    assert.equal(
      latin(encodeHeader({ version: 1, command: "LOCAL", protocol: "TCP4", ...tcp4 })),
      "PROXY UNKNOWN\r\n",
    );
    assert.equal(
      latin(encodeHeader({ version: 1, command: "PROXY", protocol: "UNKNOWN" })),
      "PROXY UNKNOWN\r\n",
    );
  });

  it("refuses what v1 cannot carry", () => {
    assertInvalid(
      { version: 1, command: "PROXY", protocol: "UDP4", ...tcp4 },
      /only TCP4, TCP6 and UNKNOWN/,
    );
    assertInvalid({ version: 1, command: "PROXY", protocol: "UNIX_STREAM" }, /only TCP4/);
    assertInvalid(
      {
        version: 1,
        command: "PROXY",
        protocol: "TCP4",
        ...tcp4,
        tlvs: [{ type: 1, value: new Uint8Array(2) }],
      },
      /TLVs/,
    );
  });

  it("rebuilds the AWS NLB capture byte for byte, CRC32c included", () => {
    const tlvs = encodeTlvs({
      awsVpceId: "vpce-08d2bf15fac5001c9",
      others: [{ type: 0x04, value: new Uint8Array(36) }],
    });
    const bytes = encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "TCP4",
      source: { address: "172.31.7.113", port: 51442 },
      destination: { address: "172.31.10.31", port: 80 },
      tlvs,
    }, { checksum: true });
    assert.equal(toHex(bytes), toHex(V2.aws1));
  });

  it("re-encodes every published v2 vector to the same bytes", () => {
    for (const [name, bytes] of Object.entries(V2)) {
      const decoded = decodeHeader(bytes)!;
      assert.equal(toHex(encodeHeader(decoded.header)), toHex(bytes), name);
    }
  });

  it("fills in an existing CRC32C TLV rather than adding a second", () => {
    const decoded = decodeHeader(V2.aws1)!.header;
    const zeroed = {
      ...decoded,
      tlvs: [{ type: 3, value: new Uint8Array(4) }, ...decoded.tlvs.slice(1)],
    };
    assert.equal(toHex(encodeHeader(zeroed, { checksum: true })), toHex(V2.aws1));
  });

  it("writes LOCAL as UNSPEC with len 0 by default, and keeps a given family", () => {
    assert.equal(
      toHex(encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" })),
      toHex(V2.local),
    );
    const withFamily = encodeHeader({ version: 2, command: "LOCAL", protocol: "TCP4" });
    assert.equal(toHex(withFamily), toHex(fromHex(S + "2011 000c" + "00".repeat(12))));
    const decoded = decodeHeader(withFamily)!.header;
    assert.deepEqual(decoded, {
      version: 2,
      command: "LOCAL",
      protocol: "TCP4",
      source: null,
      destination: null,
      tlvs: [],
    });
  });

  it("writes every family", () => {
    const cases: ProxyHeaderInit[] = [
      { version: 2, command: "PROXY", protocol: "UDP4", ...tcp4 },
      {
        version: 2,
        command: "PROXY",
        protocol: "UDP6",
        source: { address: "fe80::1", port: 5353 },
        destination: { address: "ff02::fb", port: 5353 },
      },
      {
        version: 2,
        command: "PROXY",
        protocol: "UNIX_STREAM",
        source: { path: "/a" },
        destination: { path: "" },
      },
      {
        version: 2,
        command: "PROXY",
        protocol: "UNIX_DGRAM",
        source: { path: "é".repeat(54) },
        destination: { path: "/b" },
      },
      { version: 2, command: "PROXY", protocol: "UNKNOWN" },
    ];
    for (const header of cases) {
      const decoded = decodeHeader(encodeHeader(header))!.header;
      assert.deepEqual(decoded, { tlvs: [], source: null, destination: null, ...header });
    }
  });

  it("refuses headers it cannot write", () => {
    const base = { version: 2, command: "PROXY", protocol: "TCP4" } as const;
    assertInvalid({ ...base, ...tcp4, source: { address: "1.2.3.04", port: 1 } }, /source address/);
    assertInvalid({ ...base, ...tcp4, source: { address: "::1", port: 1 } }, /source address/);
    assertInvalid({ ...base, ...tcp4, destination: { address: "1.2.3.4", port: 65536 } }, /port/);
    assertInvalid({ ...base, ...tcp4, destination: { address: "1.2.3.4", port: 1.5 } }, /port/);
    assertInvalid({ ...base }, /source must be an IP address/);
    assertInvalid({ ...base, protocol: "TCP6", ...tcp4 }, /not IPv6/);
    assertInvalid({
      ...base,
      protocol: "UNIX_STREAM",
      source: { path: "x".repeat(109) },
      destination: { path: "" },
    }, /longer than 108/);
    assertInvalid({
      ...base,
      protocol: "UNIX_STREAM",
      source: { path: "a\0b" },
      destination: { path: "" },
    }, /NUL/);
    assertInvalid({ ...base, ...tcp4, tlvs: [{ type: 256, value: new Uint8Array() }] }, /type/);
    assertInvalid({ ...base, ...tcp4, tlvs: [{ type: 3, value: new Uint8Array(3) }] }, /CRC32C/);
    assertInvalid(
      { ...base, ...tcp4, tlvs: [{ type: 4, value: new Uint8Array(65533) }] },
      /exceeds 65535/,
    );
    assertInvalid({ ...base, command: "RELAY" as "PROXY", ...tcp4 }, /command/);
    assertInvalid({ ...base, protocol: "SCTP4" as "TCP4", ...tcp4 }, /protocol/);
    assertInvalid({ ...base, version: 3 as 2 }, /version/);
  });

  it("writes the largest header the length field allows", () => {
    const bytes = encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "UNKNOWN",
      tlvs: [{ type: 4, value: new Uint8Array(65532) }],
    });
    assert.equal(bytes.length, 65551);
    assert.equal(decodeHeader(bytes)?.length, 65551);
  });
});

describe("encodeHeaderInto", () => {
  const headers: [string, ProxyHeaderInit, { checksum: boolean }?][] = [
    ["v1 TCP4", { version: 1, command: "PROXY", protocol: "TCP4", ...tcp4 }],
    ["v1 TCP6", {
      version: 1,
      command: "PROXY",
      protocol: "TCP6",
      source: { address: "2001:0DB8:0:0:0:0:0:1", port: 0 },
      destination: { address: "::FFFF:10.1.1.159", port: 65535 },
    }],
    ["v1 UNKNOWN", { version: 1, command: "LOCAL", protocol: "TCP4", ...tcp4 }],
    ["v2 LOCAL TCP4 zeros", { version: 2, command: "LOCAL", protocol: "TCP4" }],
    ["v2 UNIX", {
      version: 2,
      command: "PROXY",
      protocol: "UNIX_STREAM",
      source: { path: "/a" },
      destination: { path: "é".repeat(54) },
    }],
    ["v2 TCP6 + checksum", {
      version: 2,
      command: "PROXY",
      protocol: "TCP6",
      source: { address: "2001:db8::1", port: 51000 },
      destination: { address: "2001:db8::2", port: 443 },
      tlvs: encodeTlvs({ alpn: "h2", authority: "example.com" }),
    }, { checksum: true }],
    ...Object.entries(V2).map(([name, bytes]) =>
      [`vector ${name}`, decodeHeader(bytes)!.header] as [string, ProxyHeaderInit]
    ),
    ["aws1 refilled checksum", decodeHeader(V2.aws1)!.header, { checksum: true }],
  ];

  it("writes the bytes encodeHeader returns, at any offset, into a dirty buffer", () => {
    for (const [name, header, options] of headers) {
      const want = encodeHeader(header, options);
      assert.equal(encodedLength(header, options), want.length, name);
      for (const offset of [0, 1, 7, 100]) {
        const target = new Uint8Array(offset + want.length + 5).fill(0xa5);
        const n = encodeHeaderInto(header, target, offset, options);
        assert.equal(n, want.length, name);
        assert.equal(toHex(target.subarray(offset, offset + n)), toHex(want), `${name} @${offset}`);
        assert.ok(target.subarray(0, offset).every((b) => b === 0xa5), `${name}: before offset`);
        assert.ok(target.subarray(offset + n).every((b) => b === 0xa5), `${name}: after header`);
      }
    }
  });

  it("round-trips through decodeHeader", () => {
    const target = new Uint8Array(300);
    for (const [name, header, options] of headers) {
      const n = encodeHeaderInto(header, target, 3, options);
      const decoded = decodeHeader(target.subarray(3, 3 + n))!;
      assert.equal(decoded.length, n, name);
      assert.equal(toHex(encodeHeader(decoded.header, options)), toHex(target.subarray(3, 3 + n)));
    }
  });

  it("writes into a Node Buffer, and the offset defaults to 0", () => {
    const header = { version: 2, command: "PROXY", protocol: "TCP4", ...tcp4 } as const;
    const target = Buffer.alloc(64);
    assert.equal(encodeHeaderInto(header, target), 28);
    assert.equal(toHex(target.subarray(0, 28)), toHex(encodeHeader(header)));
  });

  it("throws RangeError for a target too small, and writes nothing", () => {
    const header = { version: 1, command: "PROXY", protocol: "TCP4", ...tcp4 } as const;
    const length = encodedLength(header);
    for (const [size, offset] of [[length - 1, 0], [length + 3, 4], [0, 0], [10, 10]]) {
      const target = new Uint8Array(size!).fill(7);
      assert.throws(() => encodeHeaderInto(header, target, offset), RangeError);
      assert.ok(target.every((b) => b === 7));
    }
    const exact = new Uint8Array(length + 2);
    assert.equal(encodeHeaderInto(header, exact, 2), length);
  });

  it("throws RangeError for a bad offset, TypeError for a target not a Uint8Array", () => {
    const header = { version: 2, command: "LOCAL", protocol: "UNKNOWN" } as const;
    const target = new Uint8Array(32);
    for (const offset of [-1, 1.5, 33, NaN]) {
      assert.throws(() => encodeHeaderInto(header, target, offset), RangeError);
    }
    assert.throws(
      () => encodeHeaderInto(header, new ArrayBuffer(32) as unknown as Uint8Array),
      TypeError,
    );
  });

  it("throws INVALID_HEADER for a header it cannot write, and writes nothing", () => {
    const target = new Uint8Array(300).fill(9);
    const bad: ProxyHeaderInit[] = [
      {
        version: 2,
        command: "PROXY",
        protocol: "TCP4",
        ...tcp4,
        source: { address: "1.2.3.04", port: 1 },
      },
      { version: 1, command: "PROXY", protocol: "TCP6", ...tcp4 },
      {
        version: 2,
        command: "PROXY",
        protocol: "TCP4",
        ...tcp4,
        tlvs: [{ type: 3, value: new Uint8Array(3) }],
      },
      {
        version: 2,
        command: "PROXY",
        protocol: "UNIX_DGRAM",
        source: { path: "a\0" },
        destination: { path: "" },
      },
      { version: 3 as 2, command: "PROXY", protocol: "TCP4" },
    ];
    for (const header of bad) {
      for (const run of [() => encodeHeaderInto(header, target, 5), () => encodedLength(header)]) {
        assert.throws(run, (e: unknown) => {
          assert.ok(e instanceof ProxyProtocolError);
          assert.equal(e.code, "INVALID_HEADER");
          return true;
        });
      }
      assert.ok(target.every((b) => b === 9));
    }
  });

  it("encodes correctly from a getter that encodes (re-entrant calls)", () => {
    const inner = { version: 2, command: "PROXY", protocol: "TCP4", ...tcp4 } as const;
    const outer = {
      version: 1,
      command: "PROXY",
      protocol: "TCP4",
      destination: tcp4.destination,
      get source() {
        encodeHeaderInto(inner, new Uint8Array(64));
        encodeHeader({ ...inner, version: 1, source: { address: "10.0.0.1", port: 9 } });
        return tcp4.source;
      },
    } as ProxyHeaderInit;
    assert.equal(latin(encodeHeader(outer)), V1_SPEC);
    const target = new Uint8Array(64);
    assert.equal(latin(target.subarray(0, encodeHeaderInto(outer, target))), V1_SPEC);
  });
});
