// The gateway end to end, run as the CLI on this runtime: v1 and v2 in and out, TLV
// forwarding, failover, half-close, shutdown with open connections, metrics.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { decodeTlvs, encodeHeader, encodeTlvs, type ProxyHeaderInit } from "@proxy-protocol/edge";
import { connect, delay, seen, serve, sha256, type TestServer } from "../node/helpers.ts";
import { portOf, type Server, start, stop } from "./helpers.ts";

const client: ProxyHeaderInit = {
  version: 1,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "203.0.113.7", port: 51234 },
  destination: { address: "10.0.0.5", port: 443 },
};
const v1 = encodeHeader(client);
const v2 = encodeHeader({
  ...client,
  version: 2,
  tlvs: encodeTlvs({ authority: "example.com", awsVpceId: "vpce-1", alpn: "h2" }),
});

async function gateway(args: string[]): Promise<Server & { port: number }> {
  const g = await start(["gateway", "--listen", "127.0.0.1:0", ...args]);
  return Object.assign(g, { port: portOf(g.ready.listen) });
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

describe("cli: gateway", () => {
  let upstream: TestServer;
  let target: string;
  before(async () => {
    upstream = await serve({ policy: "require" });
    target = `127.0.0.1:${upstream.port}`;
  });
  after(() => upstream.close());

  it("v1 in, v2 out (the default); v2 in, v1 out; payload and half-close kept", async () => {
    const g = await gateway(["--upstream", target]);
    try {
      const a = await seen({ host: "127.0.0.1", port: g.port }, [v1, "hello ", "world"]);
      assert.equal(a.version, 2);
      assert.deepEqual(a.source, { address: "203.0.113.7", port: 51234 });
      assert.deepEqual(a.destination, { address: "10.0.0.5", port: 443 });
      assert.equal(Buffer.from(a.payload, "base64").toString(), "hello world");
      assert.equal(a.tlvs.length, 0);
    } finally {
      assert.equal(await stop(g), 0);
    }
    const g1 = await gateway(["--upstream", target, "--send", "v1"]);
    try {
      const b = await seen({ host: "127.0.0.1", port: g1.port }, [v2, "x"]);
      assert.equal(b.version, 1);
      assert.equal(b.remoteAddress, "203.0.113.7");
    } finally {
      assert.equal(await stop(g1), 0);
    }
  });

  it("carries 8 MiB each way intact (backpressure both ways)", async () => {
    const big = new Uint8Array(8 << 20).map((_, i) => (i * 7919) % 251);
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
    const port = (echo.address() as net.AddressInfo).port;
    const g = await gateway(["--upstream", `127.0.0.1:${port}`, "--send", "none"]);
    try {
      const c = await connect(g.port);
      c.socket.write(v1);
      c.socket.end(big);
      await c.closed;
      const got = c.received();
      assert.equal(got.length, big.length);
      assert.equal(sha256(got), sha256(big));
    } finally {
      await stop(g);
      await new Promise((r) => echo.close(r));
    }
  });

  it("--max-connections refuses connections beyond the cap", async () => {
    const g = await gateway(["--upstream", target, "--max-connections", "1"]);
    try {
      const first = await connect(g.port);
      first.socket.write(v1);
      await delay(100);
      const second = await connect(g.port);
      second.socket.write(v1);
      await second.closed; // closed at once
      assert.equal(second.received().length, 0);
      first.socket.end("x");
      await first.closed;
      assert.equal(
        JSON.parse(Buffer.from(first.received()).toString()).remoteAddress,
        "203.0.113.7",
      );
    } finally {
      await stop(g);
    }
  });

  it("--send none relays the bytes alone", async () => {
    const plain = net.createServer({ allowHalfOpen: true }, (s) => {
      const chunks: Buffer[] = [];
      s.on("data", (d: Buffer) => chunks.push(d)).on("end", () => s.end(Buffer.concat(chunks)));
    });
    await new Promise<void>((r) => plain.listen(0, "127.0.0.1", r));
    const g = await gateway([
      "--upstream",
      `127.0.0.1:${(plain.address() as net.AddressInfo).port}`,
      "--send",
      "none",
    ]);
    try {
      const c = await connect(g.port);
      c.socket.end(Buffer.concat([v1, Buffer.from("echo")]));
      await c.closed;
      assert.equal(Buffer.from(c.received()).toString(), "echo");
    } finally {
      await stop(g);
      await new Promise((r) => plain.close(r));
    }
  });

  it("forwards chosen TLVs, adds --tlv, --unique-id and --crc32c", async () => {
    const g = await gateway([
      "--upstream",
      target,
      "--pass-tlv",
      "0x02",
      "--pass-tlv",
      "1",
      "--tlv",
      "0xE0=0000000000000007",
      "--unique-id",
      "--crc32c",
    ]);
    try {
      const a = await seen({ host: "127.0.0.1", port: g.port }, [v2, "x"]);
      const tlvs = decodeTlvs(
        a.tlvs.map((t) => ({ type: t.type, value: Buffer.from(t.value, "base64") })),
      );
      assert.equal(tlvs.authority, "example.com");
      assert.equal(tlvs.alpn, "h2");
      assert.equal(tlvs.awsVpceId, undefined);
      assert.equal(tlvs.gcpPscConnectionId, 7n);
      assert.match(new TextDecoder().decode(tlvs.uniqueId), /^[0-9a-f-]{36}$/);
      assert.equal(typeof tlvs.crc32c, "number");
      const line = await g.waitLog((l) => l.msg === "connection");
      assert.equal(line.id, new TextDecoder().decode(tlvs.uniqueId));
    } finally {
      await stop(g);
    }
  });

  it("fails over to the next upstream and counts the failures", async () => {
    const dead = await closedPort();
    const g = await gateway([
      "--upstream",
      `127.0.0.1:${dead}`,
      "--upstream",
      target,
      "--metrics",
      "127.0.0.1:0",
      "--connect-timeout",
      "1000",
    ]);
    try {
      for (let i = 0; i < 4; i++) {
        const a = await seen({ host: "127.0.0.1", port: g.port }, [v1, `n${i}`]);
        assert.equal(a.remoteAddress, "203.0.113.7");
      }
      const metricsAt = await g.waitLog((l) => l.msg === "metrics");
      const text = await (await fetch(String(metricsAt.url))).text();
      // Round-robin: half of the connections tried the dead one first.
      assert.match(
        text,
        new RegExp(`upstream_connect_failures_total\\{upstream="127.0.0.1:${dead}"\\} 2\\n`),
      );
    } finally {
      await stop(g);
    }
  });

  it("with no upstream reachable, the client is closed and the gateway keeps running", async () => {
    const g = await gateway(["--upstream", `127.0.0.1:${await closedPort()}`]);
    try {
      const c = await connect(g.port);
      c.socket.write(v1);
      await c.closed;
      assert.equal(c.received().length, 0);
      await g.waitLog((l) => l.msg === "no upstream");
    } finally {
      assert.equal(await stop(g), 0);
    }
  });

  it("metrics count a known mix of accepted and refused connections", async () => {
    const g = await gateway([
      "--upstream",
      target,
      "--metrics",
      "127.0.0.1:0",
      "--timeout",
      "3000",
    ]);
    try {
      for (let i = 0; i < 3; i++) await seen({ host: "127.0.0.1", port: g.port }, [v1, "ok"]);
      for (const bad of ["GET / HTTP/1.1\r\n\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"]) {
        const c = await connect(g.port);
        c.socket.end(bad);
        await c.closed;
      }
      await g.waitLog((l) => l.msg === "refused" && l.code === "INVALID_PORT");
      await g.waitLog((l) => l.msg === "refused" && l.code === "HEADER_REQUIRED");
      const metricsAt = await g.waitLog((l) => l.msg === "metrics");
      let text = "";
      for (let i = 0; i < 50; i++) {
        text = await (await fetch(String(metricsAt.url))).text();
        if (/connections_open 0\n/.test(text)) break;
        await delay(20);
      }
      assert.match(text, /proxy_protocol_connections_accepted_total 3\n/);
      assert.match(text, /connections_refused_total\{code="HEADER_REQUIRED"\} 1\n/);
      assert.match(text, /connections_refused_total\{code="INVALID_PORT"\} 1\n/);
      assert.match(text, /proxy_protocol_connections_open 0\n/);
      assert.match(text, /header_duration_seconds_count 3\n/);
      assert.match(text, /bytes_total\{direction="in"\} 6\n/);
    } finally {
      await stop(g);
    }
  });

  it("on SIGTERM, open connections finish and new ones are refused", async () => {
    const g = await gateway(["--upstream", target, "--drain-timeout", "10000"]);
    const open = await connect(g.port);
    open.socket.write(v1);
    open.socket.write("before ");
    await g.waitLog((l) => l.msg === "listening");
    await delay(100);
    g.kill("SIGTERM");
    await g.waitLog((l) => l.msg === "shutting down");
    await delay(100);
    // New connections: refused by the kernel, the port is closed.
    const refused = await new Promise<string>((resolve) => {
      const c = net.connect(g.port, "127.0.0.1");
      c.on("connect", () => {
        c.destroy();
        resolve("connected");
      }).on("error", (e: Error & { code?: string }) => resolve(e.code ?? "error"));
    });
    assert.equal(refused, "ECONNREFUSED");
    // The open one still works to its end.
    open.socket.end("after");
    await open.closed;
    const report = JSON.parse(Buffer.from(open.received()).toString());
    assert.equal(Buffer.from(report.payload, "base64").toString(), "before after");
    assert.equal(await g.exited, 0);
  });

  it("--workers 2: two processes share the port; metrics add up; SIGTERM drains both", async () => {
    const g = await gateway(["--upstream", target, "--workers", "2", "--metrics", "127.0.0.1:0"]);
    try {
      const workers = new Set<unknown>();
      for (let i = 0; i < 40 && workers.size < 2; i++) {
        const a = await seen({ host: "127.0.0.1", port: g.port }, [v1, "w"]);
        assert.equal(a.remoteAddress, "203.0.113.7");
        const line = await g.waitLog((l) => l.msg === "connection" && !l.counted);
        line.counted = true;
        workers.add(line.worker);
      }
      assert.deepEqual([...workers].sort(), [1, 2]);
      const metricsAt = await g.waitLog((l) => l.msg === "metrics");
      const accepted = g.logs.filter((l) => l.msg === "connection").length;
      const text = await (await fetch(String(metricsAt.url))).text();
      assert.match(text, new RegExp(`connections_accepted_total ${accepted}\\n`));
    } finally {
      assert.equal(await stop(g), 0);
    }
  });

  it("--idle-timeout cuts a connection with no traffic either way, not a busy one", async () => {
    const g = await gateway(["--upstream", target, "--idle-timeout", "400"]);
    try {
      const c = await connect(g.port);
      c.socket.write(v1);
      // Traffic every 100 ms for 1.2 s (three idle periods): the connection stays.
      const t0 = Date.now();
      let closedAt = 0;
      c.closed.then(() => closedAt = Date.now());
      for (let i = 0; i < 12; i++) {
        c.socket.write("x");
        await delay(100);
      }
      assert.equal(closedAt, 0, "a busy connection was cut");
      const busyFor = Date.now() - t0;
      // Then silence, half-open neither way: cut after about 400 ms.
      const quiet = Date.now();
      await c.closed;
      const idleFor = Date.now() - quiet;
      assert.ok(busyFor >= 1100, `busy for ${busyFor} ms`);
      assert.ok(idleFor >= 250 && idleFor < 3000, `cut after ${idleFor} ms of silence`);
      const line = await g.waitLog((l) => l.msg === "connection");
      assert.equal(line.end, "idle");
      assert.equal(line.in, 12);
      assert.equal(line.from, "203.0.113.7:51234");
    } finally {
      assert.equal(await stop(g), 0);
    }
  });

  it("--drain-timeout cuts connections still open", async () => {
    const g = await gateway(["--upstream", target, "--drain-timeout", "300"]);
    const open = await connect(g.port);
    open.socket.write(v1);
    await delay(150);
    const t0 = Date.now();
    g.kill("SIGTERM");
    await open.closed;
    assert.equal(await g.exited, 0);
    assert.ok(Date.now() - t0 < 3000);
    const stopped = await g.waitLog((l) => l.msg === "stopped");
    assert.equal(stopped.cut, 1);
  });
});
