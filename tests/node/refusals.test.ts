// Connections the Node adapter refuses: each is reported with its code and closed, and the
// server goes on serving; nothing a client does throws into user code.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { decodeTlvs, encodeHeader, encodeTlvs } from "@proxy-protocol/edge";
import { createServer, type PeerInfo } from "@proxy-protocol/edge/node";
import type net from "node:net";
import { b64, delay, seen, serve, talk, type TestServer, text, until } from "./helpers.ts";

const HEADER = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n";

async function stillServes(s: TestServer): Promise<void> {
  const got = await seen(s, [HEADER + "next"]);
  assert.equal(got.remoteAddress, "203.0.113.7");
  assert.equal(got.payload, b64("next"));
}

describe("node createServer: timeout", () => {
  it("a silent client is closed with TIMEOUT while another is served", async () => {
    const s = await serve({ timeout: 300, allowShortTimeout: true });
    try {
      const start = Date.now();
      const silent = talk(s, [], { end: false });
      const stalled = talk(s, ["PROXY TCP4 203.0.113.7 "], { end: false });
      await delay(30);
      await stillServes(s);
      assert.equal(s.refusals.length, 0);
      const [a, b] = await Promise.all([silent, stalled]);
      const elapsed = Date.now() - start;
      assert.ok(elapsed >= 250 && elapsed < 2000, `closed after ${elapsed} ms`);
      assert.equal(a.reply.length + b.reply.length, 0);
      assert.deepEqual(s.refusals.map((r) => r.error.code), ["TIMEOUT", "TIMEOUT"]);
      assert.deepEqual(
        s.refusals.map((r) => r.peer?.remotePort).sort(),
        [a.localPort, b.localPort].sort(),
      );
      await stillServes(s);
    } finally {
      await s.close();
    }
  });

  it("the timeout covers a validate hook that does not answer", async () => {
    let answer!: (ok: boolean) => void;
    const pending = new Promise<boolean>((resolve) => (answer = resolve));
    const s = await serve({ timeout: 200, allowShortTimeout: true, validate: () => pending });
    try {
      const got = await talk(s, [HEADER + "x"], { end: false });
      assert.equal(got.reply.length, 0);
      assert.deepEqual(s.refusals.map((r) => r.error.code), ["TIMEOUT"]);
      answer(true);
      await delay(5);
      assert.equal(s.accepted.length, 0);
    } finally {
      await s.close();
    }
  });
});

describe("node createServer: malformed headers", () => {
  const badCrc = encodeHeader({
    version: 2,
    command: "PROXY",
    protocol: "TCP4",
    source: { address: "192.0.2.1", port: 1 },
    destination: { address: "192.0.2.2", port: 2 },
    tlvs: encodeTlvs({ authority: "example.com" }),
  }, { checksum: true });
  const at = badCrc.length - 1; // the last letter of the authority, which the CRC covers
  badCrc[at] = badCrc[at]! ^ 0x20;
  const v3 = encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" });
  v3[12] = 0x30;

  const cases: [string, Uint8Array | string, string, string?][] = [
    ["an IPv4 octet of 256", "PROXY TCP4 1.2.3.256 10.0.0.5 1 2\r\nx", "INVALID_ADDRESS"],
    ["a port of 65536", "PROXY TCP4 1.2.3.4 10.0.0.5 65536 2\r\nx", "INVALID_PORT"],
    ["two spaces", "PROXY TCP4  1.2.3.4 10.0.0.5 1 2\r\nx", "V1_MALFORMED"],
    ["no CRLF in 107 bytes", "PROXY UNKNOWN " + "x".repeat(120), "V1_TOO_LONG"],
    ["HTTP instead of a header", "GET / HTTP/1.1\r\n\r\n", "HEADER_REQUIRED", "NOT_PROXY_PROTOCOL"],
    ["a CRC32c that does not match", badCrc, "CHECKSUM_MISMATCH"],
    ["v2 version 3", v3, "UNSUPPORTED_VERSION"],
  ];
  for (const [name, bytes, code, cause] of cases) {
    it(`${name}: ${code}, and the next client is served`, async () => {
      const s = await serve({ policy: "require" });
      try {
        const got = await talk(s, [bytes]);
        assert.equal(got.reply.length, 0);
        assert.deepEqual(s.refusals.map((r) => r.error.code), [code]);
        if (cause !== undefined) {
          assert.equal((s.refusals[0]?.error.cause as { code?: string }).code, cause);
        }
        assert.equal(s.refusals[0]?.peer?.remotePort, got.localPort);
        assert.equal(s.accepted.length, 0);
        await stillServes(s);
      } finally {
        await s.close();
      }
    });
  }

  it("verifyChecksum: false accepts the header with the bad CRC32c", async () => {
    const s = await serve({ verifyChecksum: false });
    try {
      const got = await seen(s, [badCrc, "ok"]);
      assert.equal(got.remoteAddress, "192.0.2.1");
      assert.equal(got.payload, b64("ok"));
    } finally {
      await s.close();
    }
  });
});

describe("node createServer: abrupt clients", () => {
  for (
    const [name, parts] of [
      ["v1", ["PROXY TCP4 ", "203.0.113.7 10.0"]],
      ["v2", [text("\r\n\r\n\0\r\nQUIT\n!"), text("\x11\0\x0c\x01\x02")]],
    ] as const
  ) {
    it(`a reset (RST) mid-${name}-header is reported as CONNECTION_CLOSED`, async () => {
      const s = await serve({ policy: "require" });
      try {
        await talk(s, parts, { gap: 5, reset: true });
        await until(() => s.refusals.length === 1);
        assert.deepEqual(s.refusals.map((r) => r.error.code), ["CONNECTION_CLOSED"]);
        await stillServes(s);
      } finally {
        await s.close();
      }
    });
  }

  it("a client that closes mid-header is reported as CONNECTION_CLOSED", async () => {
    const s = await serve({ policy: "require" });
    try {
      await talk(s, ["PROXY TCP4 ", "203.0.113.7 10.0"], { gap: 5 });
      assert.deepEqual(s.refusals.map((r) => r.error.code), ["CONNECTION_CLOSED"]);
      await talk(s, [], { reset: true });
      await until(() => s.refusals.length === 2);
      assert.deepEqual(s.refusals.map((r) => r.error.code), [
        "CONNECTION_CLOSED",
        "CONNECTION_CLOSED",
      ]);
      await stillServes(s);
    } finally {
      await s.close();
    }
  });

  it("an onError that throws does not stop the server", async () => {
    let calls = 0;
    const s = await serve({
      onError: () => {
        calls++;
        throw new Error("a broken onError");
      },
    });
    try {
      await talk(s, ["GET / HTTP/1.1\r\n\r\n"]);
      await talk(s, ["PROXY TCP4 "], { gap: 5, reset: true });
      await until(() => calls === 2);
      await stillServes(s);
    } finally {
      await s.close();
    }
  });

  it("without onError, refused connections are closed quietly", async () => {
    const server = createServer({}, (socket) => socket.end(socket.remoteAddress));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const target = { port: (server.address() as net.AddressInfo).port, host: "127.0.0.1" };
    try {
      assert.equal((await talk(target, ["garbage"])).reply.length, 0);
      await talk(target, ["PROX"], { gap: 5, reset: true });
      const got = await talk(target, [HEADER]);
      assert.equal(got.reply.toString(), "203.0.113.7");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("node createServer: validate", () => {
  it("validate returning false or throwing refuses with VALIDATION_FAILED", async () => {
    const peers: PeerInfo[] = [];
    const boom = new Error("no");
    const s = await serve({
      validate: (header, peer) => {
        peers.push(peer);
        if (header.source?.address === "203.0.113.66") throw boom;
        return header.source?.address === "203.0.113.7";
      },
    });
    try {
      const refused = await talk(s, ["PROXY TCP4 203.0.113.8 10.0.0.5 1 2\r\nx"]);
      assert.equal(refused.reply.length, 0);
      await talk(s, ["PROXY TCP4 203.0.113.66 10.0.0.5 1 2\r\nx"]);
      assert.deepEqual(s.refusals.map((r) => r.error.code), [
        "VALIDATION_FAILED",
        "VALIDATION_FAILED",
      ]);
      assert.equal(s.refusals[1]?.error.cause, boom);
      assert.deepEqual(peers[0], {
        remoteAddress: "127.0.0.1",
        remotePort: refused.localPort,
        localAddress: "127.0.0.1",
        localPort: s.port,
      });
      await stillServes(s);
    } finally {
      await s.close();
    }
  });

  it("an async validate that accepts: every byte sent meanwhile arrives in order", async () => {
    const vpce = encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "TCP4",
      source: { address: "172.31.7.113", port: 51442 },
      destination: { address: "172.31.10.31", port: 80 },
      tlvs: encodeTlvs({ awsVpceId: "vpce-08d2bf15fac5001c9" }),
    }, { checksum: true });
    const s = await serve({
      validate: async (header) => {
        await delay(25);
        return decodeTlvs(header.tlvs).awsVpceId === "vpce-08d2bf15fac5001c9";
      },
    });
    try {
      const start = Date.now();
      const got = await seen(s, [vpce, "one ", "two ", "three"], { gap: 5 });
      assert.ok(Date.now() - start >= 20);
      assert.equal(got.remoteAddress, "172.31.7.113");
      assert.equal(got.payload, b64("one two three"));
      assert.deepEqual(s.refusals, []);
    } finally {
      await s.close();
    }
  });

  it("an async validate that refuses", async () => {
    const s = await serve({
      policy: "optional",
      validate: async (header) => {
        await delay(20);
        return header.source?.address !== "203.0.113.8";
      },
    });
    try {
      await talk(s, ["PROXY TCP4 203.0.113.8 10.0.0.5 1 2\r\nx"]);
      assert.deepEqual(s.refusals.map((r) => r.error.code), ["VALIDATION_FAILED"]);
      assert.equal(s.accepted.length, 0);
      // No header, nothing to validate.
      const direct = await seen(s, ["plain"]);
      assert.equal(direct.command, null);
      assert.equal(direct.payload, b64("plain"));
      await stillServes(s);
    } finally {
      await s.close();
    }
  });

  it("a reset while validate runs is reported as CONNECTION_CLOSED", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const s = await serve({
      validate: async () => {
        await gate;
        return true;
      },
    });
    try {
      await talk(s, [HEADER, "x"], { gap: 5, reset: true });
      await until(() => s.refusals.length === 1);
      assert.deepEqual(s.refusals.map((r) => r.error.code), ["CONNECTION_CLOSED"]);
      release();
      await stillServes(s);
      assert.equal(s.accepted.length, 1); // only stillServes' client
    } finally {
      release();
      await s.close();
    }
  });
});
