// The Node adapter reading headers off real loopback sockets: however the bytes are cut,
// the socket reports the header's addresses and the application gets every byte after it.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { encodeHeader, encodeTlvs, TlvType } from "@proxy-protocol/edge";
import { b64, concat, seen, serve, talk, type TestServer, text } from "./helpers.ts";

const V1 = text("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n");
const V1_TCP6 = text("PROXY TCP6 2001:db8::1 2001:db8::2 40000 8443\r\n");
const V2 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 61000 },
  destination: { address: "2001:db8::5", port: 443 },
  tlvs: encodeTlvs({ authority: "example.com", awsVpceId: "vpce-08d2bf15fac5001c9" }),
}, { checksum: true });
const V2_TCP4 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "198.51.100.9", port: 1234 },
  destination: { address: "10.1.2.3", port: 80 },
});
const PAYLOAD = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

const expectV1 = { remoteAddress: "203.0.113.7", remotePort: 51234, remoteFamily: "IPv4" };
const expectV2 = { remoteAddress: "2001:db8::7", remotePort: 61000, remoteFamily: "IPv6" };

describe("node createServer: header reading", () => {
  let s: TestServer;
  before(async () => {
    s = await serve({ policy: "require" });
  });
  after(() => s.close());

  for (
    const [name, header, expected] of [
      ["v1", V1, expectV1],
      ["v2 with TLVs and CRC32c", V2, expectV2],
    ] as const
  ) {
    it(`${name} header split at every byte offset`, async () => {
      for (let k = 1; k < header.length; k++) {
        const got = await seen(s, [header.subarray(0, k), concat(header.subarray(k), PAYLOAD)], {
          gap: 2,
        });
        const at = `split at ${k}`;
        assert.equal(got.remoteAddress, expected.remoteAddress, at);
        assert.equal(got.remotePort, expected.remotePort, at);
        assert.equal(got.remoteFamily, expected.remoteFamily, at);
        assert.equal(got.command, "PROXY", at);
        assert.equal(got.version, name === "v1" ? 1 : 2, at);
        assert.equal(got.payload, b64(PAYLOAD), at);
      }
      assert.deepEqual(s.refusals, []);
    });
  }

  for (
    const [name, header, address, family] of [
      ["v1 TCP6", V1_TCP6, "2001:db8::1", "IPv6"],
      ["v2 TCP4", V2_TCP4, "198.51.100.9", "IPv4"],
    ] as const
  ) {
    it(`${name} header trickled a byte at a time`, async () => {
      const parts = [...header].map((byte) => Uint8Array.of(byte));
      const got = await seen(s, [...parts, "after"], { gap: 3 });
      assert.equal(got.remoteAddress, address);
      assert.equal(got.remoteFamily, family);
      assert.equal(got.payload, b64("after"));
      assert.deepEqual(s.refusals, []);
    });
  }

  it("header and payload in one write: the first chunk is byte-exact", async () => {
    const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
    for (const header of [V1, V2, V2_TCP4]) {
      const got = await seen(s, [concat(header, binary)]);
      assert.equal(got.first, b64(binary));
      assert.equal(got.payload, b64(binary));
    }
  });

  it("a header with nothing after it gives an empty payload", async () => {
    const got = await seen(s, [V2]);
    assert.equal(got.remoteAddress, "2001:db8::7");
    assert.equal(got.payload, "");
  });

  it("reports localAddress and localPort from the header", async () => {
    const got = await seen(s, [V1, "x"]);
    assert.equal(got.localAddress, "10.0.0.5");
    assert.equal(got.localPort, 443);
  });
});

describe("node createServer: header sizes", () => {
  // ~3000 bytes of TLVs: under the default maxHeaderLength of 4096.
  const big = encodeHeader({
    version: 2,
    command: "PROXY",
    protocol: "TCP4",
    source: { address: "192.0.2.1", port: 4000 },
    destination: { address: "192.0.2.2", port: 443 },
    tlvs: encodeTlvs({
      others: [
        { type: 0xe5, value: new Uint8Array(1500).fill(0x61) },
        { type: TlvType.NOOP, value: new Uint8Array(1500) },
      ],
    }),
  }, { checksum: true });

  it("a ~3000-byte v2 header is read with the default maxHeaderLength", async () => {
    assert.ok(big.length > 3000 && big.length < 4096, String(big.length));
    const s = await serve({});
    try {
      const whole = await seen(s, [concat(big, "tail")]);
      assert.equal(whole.remoteAddress, "192.0.2.1");
      assert.equal(whole.payload, b64("tail"));
      const split = await seen(s, [
        big.subarray(0, 1000),
        big.subarray(1000, 2000),
        concat(big.subarray(2000), "tail"),
      ], {
        gap: 2,
      });
      assert.equal(split.remoteAddress, "192.0.2.1");
      assert.equal(split.payload, b64("tail"));
      assert.equal(s.accepted[0]?.proxyHeader?.tlvs.length, 3);
      assert.deepEqual(s.refusals, []);
    } finally {
      await s.close();
    }
  });

  it("a header over maxHeaderLength is refused with HEADER_TOO_LONG", async () => {
    const s = await serve({ maxHeaderLength: 2048 });
    try {
      const got = await talk(s, [concat(big, "tail")]);
      assert.equal(got.reply.length, 0);
      assert.deepEqual(s.refusals.map((r) => r.error.code), ["HEADER_TOO_LONG"]);
      assert.equal(s.refusals[0]?.peer?.remoteAddress, "127.0.0.1");
      assert.equal(s.refusals[0]?.peer?.remotePort, got.localPort);
      assert.equal(s.accepted.length, 0);
      // Refused from the first 16 bytes, before the rest of the header arrives.
      const early = await talk(s, [big.subarray(0, 16)], { end: false });
      assert.equal(early.reply.length, 0);
      assert.equal(s.refusals[1]?.error.code, "HEADER_TOO_LONG");
    } finally {
      await s.close();
    }
  });
});
