// Health checks: LOCAL and UNKNOWN headers keep the socket's own addresses.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { encodeHeader, fromHex } from "@proxy-protocol/edge";
import { b64, seen, serve, type TestServer } from "./helpers.ts";

const S = "0d0a0d0a000d0a515549540a";

const CHECKS: [string, Uint8Array | string, string][] = [
  ["v2 LOCAL", encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" }), "UNKNOWN"],
  ["v1 UNKNOWN", "PROXY UNKNOWN\r\n", "UNKNOWN"],
  ["v1 UNKNOWN with addresses", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", "UNKNOWN"],
  // AWS NLB: LOCAL with a TCP4 address block of 12 bytes, which the receiver discards.
  ["v2 LOCAL with a 12-byte block", fromHex(S + "2011000c ac1f0771 ac1f0a1f c8f2 0050"), "TCP4"],
];

async function expectLocal(
  s: TestServer,
  header: Uint8Array | string,
  protocol: string,
  family: "IPv4" | "IPv6",
): Promise<void> {
  const got = await seen(s, [header, "ping"]);
  assert.equal(got.command, "LOCAL");
  assert.equal(got.protocol, protocol);
  assert.equal(got.remoteAddress, got.client.localAddress);
  assert.equal(got.remotePort, got.client.localPort);
  assert.equal(got.remoteFamily, family);
  assert.equal(got.localAddress, s.host);
  assert.equal(got.localPort, s.port);
  assert.equal(got.payload, b64("ping"));
  const socket = s.accepted.at(-1)!;
  assert.equal(socket.proxyHeader?.source, null);
  assert.equal(socket.proxyHeader?.destination, null);
}

describe("node createServer: health checks", () => {
  for (const [name, header, protocol] of CHECKS) {
    it(`${name} keeps the socket's addresses (IPv4 and IPv6)`, async () => {
      for (const [host, family] of [["127.0.0.1", "IPv4"], ["::1", "IPv6"]] as const) {
        const s = await serve({ policy: "require" }, undefined, host);
        try {
          await expectLocal(s, header, protocol, family);
          // A health check that sends nothing after the header and hangs up.
          const bare = await seen(s, [header]);
          assert.equal(bare.command, "LOCAL");
          assert.equal(bare.payload, "");
          assert.deepEqual(s.refusals, []);
        } finally {
          await s.close();
        }
      }
    });
  }

  it("v2 PROXY with UNSPEC keeps the socket's addresses", async () => {
    const s = await serve({ policy: "require" });
    try {
      const got = await seen(s, [fromHex(S + "21000000"), "x"]);
      assert.equal(got.command, "PROXY");
      assert.equal(got.protocol, "UNKNOWN");
      assert.equal(got.remoteAddress, "127.0.0.1");
      assert.equal(got.remotePort, got.client.localPort);
    } finally {
      await s.close();
    }
  });
});
