// The gateway with HAProxy on either side, run as the CLI on this runtime: (a) HAProxy
// (mode tcp, send-proxy-v2) in front of the gateway (--accept require, --send v1), and (b)
// the gateway (--send v2) in front of HAProxy (accept-proxy, mode http, option forwardfor).
//
// tests/interop/helpers.ts runs HAProxy for the Deno interop suites, but on Deno's own APIs
// (Deno.Command, Deno.listen, Deno.test), which Bun and Node do not have; this file runs on
// all three, so it follows the same conventions on node:child_process instead: HAProxy as
// the test's foreground child (`haproxy -db -f cfg`), free loopback ports, readiness probes
// from 127.0.0.9 that the frontends refuse, and CI=true turning a missing haproxy into a
// failure.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import process from "node:process";
import { describe, it } from "node:test";
import { encodeHeader } from "@proxy-protocol/edge";
import { delay, seen, serve, talk } from "../node/helpers.ts";
import { portOf, type Server, start, stop } from "./helpers.ts";

const PROBE = "127.0.0.9";
const IN_CI = process.env.CI === "true";

/** haproxy on PATH or in the sbin directories Debian puts it in, else null. */
function findHaproxy(): string | null {
  for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin"]) {
    if (dir === "") continue;
    try {
      const info = statSync(`${dir}/haproxy`);
      if (info.isFile() && (info.mode & 0o111) !== 0) return `${dir}/haproxy`;
    } catch {
      // not here
    }
  }
  return null;
}

/** A free loopback port (bind 0, read, close; the small race is the interop suites'). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

interface Haproxy {
  child: ChildProcess;
  stderr: () => string;
  stop(): Promise<void>;
}

/** Runs HAProxy on `sections` until stopped; resolves once `port` accepts the probe. */
async function startHaproxy(haproxy: string, sections: string, port: number): Promise<Haproxy> {
  const dir = mkdtempSync(`${os.tmpdir()}/cli-haproxy-`);
  const cfg = `${dir}/haproxy.cfg`;
  writeFileSync(
    cfg,
    `# Written by tests/cli/haproxy.test.ts; removed after the test.
global
    log stderr format raw local0 info

defaults
    log global
    timeout connect 2s
    timeout client 5s
    timeout server 5s
${sections}`,
  );
  const child = spawn(haproxy, ["-db", "-f", cfg], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => stderr += d);
  const exited = new Promise<void>((r) => child.once("close", () => r()));
  const stopIt = async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) {
      await stopIt();
      throw new Error(`haproxy exited: ${stderr}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port, localAddress: PROBE });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return { child, stderr: () => stderr, stop: stopIt };
    if (Date.now() > deadline) {
      await stopIt();
      throw new Error(`haproxy did not listen on ${port}: ${stderr}`);
    }
    await delay(50);
  }
}

const haproxy = findHaproxy();

describe("cli: gateway with HAProxy", () => {
  if (haproxy === null) {
    if (IN_CI) {
      it("haproxy is installed", () => {
        throw new Error("haproxy not found; CI=true makes this a failure (.ci/run installs it)");
      });
    } else it.skip("(haproxy not found; CI=true fails instead)", () => {});
    return;
  }

  it("HAProxy send-proxy-v2 -> gateway --accept require --send v1: the client HAProxy declared", async () => {
    const upstream = await serve({ policy: "require" });
    let g: (Server & { port: number }) | undefined;
    let h: Haproxy | undefined;
    try {
      const started = await start([
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--accept",
        "require",
        "--trust",
        "127.0.0.1/32",
        "--upstream",
        `127.0.0.1:${upstream.port}`,
        "--send",
        "v1",
      ]);
      g = Object.assign(started, { port: portOf(started.ready.listen) });
      const front = await freePort();
      h = await startHaproxy(
        haproxy,
        `
frontend fe
    mode tcp
    bind 127.0.0.1:${front}
    tcp-request connection reject if { src ${PROBE} }
    default_backend gw

backend gw
    mode tcp
    server gateway 127.0.0.1:${g.port} send-proxy-v2
`,
        front,
      );
      // From 127.0.0.2: HAProxy declares that address, the gateway's peer is HAProxy.
      const a = await seen({ host: "127.0.0.1", port: front }, ["hello"], {
        localAddress: "127.0.0.2",
      });
      assert.equal(a.version, 1);
      assert.equal(a.protocol, "TCP4");
      assert.equal(a.remoteAddress, "127.0.0.2");
      assert.equal(a.remotePort, a.client.localPort);
      assert.deepEqual(a.destination, { address: "127.0.0.1", port: front });
      assert.equal(Buffer.from(a.payload, "base64").toString(), "hello");
      const line = await g.waitLog((l) => l.msg === "connection");
      assert.equal(line.from, `127.0.0.2:${a.client.localPort}`);
    } finally {
      await h?.stop();
      if (g !== undefined) assert.equal(await stop(g), 0);
      await upstream.close();
    }
  });

  it("gateway --send v2 -> HAProxy accept-proxy, mode http, forwardfor: the backend sees the client", async () => {
    const backend = http.createServer((req, res) => {
      res.setHeader("connection", "close");
      res.end(`xff=${req.headers["x-forwarded-for"] ?? ""}`);
    });
    await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
    const backendPort = (backend.address() as net.AddressInfo).port;
    let g: (Server & { port: number }) | undefined;
    let h: Haproxy | undefined;
    try {
      const front = await freePort();
      h = await startHaproxy(
        haproxy,
        `
frontend fe
    mode http
    bind 127.0.0.1:${front} accept-proxy
    tcp-request connection reject if { src ${PROBE} }
    option forwardfor
    default_backend app

backend app
    mode http
    server app 127.0.0.1:${backendPort}
`,
        front,
      );
      const started = await start([
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        `127.0.0.1:${front}`,
        "--send",
        "v2",
      ]);
      g = Object.assign(started, { port: portOf(started.ready.listen) });
      const header = encodeHeader({
        version: 1,
        command: "PROXY",
        protocol: "TCP4",
        source: { address: "203.0.113.7", port: 51234 },
        destination: { address: "10.0.0.5", port: 80 },
      });
      const reply = await talk({ host: "127.0.0.1", port: g.port }, [
        header,
        "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
      ], { end: false });
      const text = reply.reply.toString("utf8");
      assert.match(text, /^HTTP\/1\.1 200 /);
      assert.ok(text.endsWith("\r\n\r\nxff=203.0.113.7"), text);
    } finally {
      await h?.stop();
      if (g !== undefined) assert.equal(await stop(g), 0);
      await new Promise((r) => backend.close(r));
    }
  });
});
