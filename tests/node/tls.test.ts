// TLS after the header (TLS passthrough at the balancer): serve() with https, http2-secure
// and tls servers, and startTls() on a createServer connection. Every client is a real TLS
// client that checks the handshake happened: a plaintext answer fails the test.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { execFile } from "node:child_process";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { makeCertificate } from "../certificate.ts";
import { encodeHeader } from "@proxy-protocol/edge";
import {
  createServer,
  type ProxyProtocolError,
  type ProxyTlsSocket,
  serve,
  startTls,
} from "@proxy-protocol/edge/node";

const V1 = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n";
const V2 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 61000 },
  destination: { address: "2001:db8::5", port: 8443 },
});

// At load time: Bun's node:test does not run a top-level before() ahead of describe's tests.
const { key, cert } = makeCertificate();

/** What the app saw. */
interface Seen {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  encrypted: boolean;
  alpn: string | false | null | undefined;
  httpVersion: string;
}

function app(
  req: import("node:http").IncomingMessage | http2.Http2ServerRequest,
  res: import("node:http").ServerResponse | http2.Http2ServerResponse,
): void {
  const socket = req.socket as tls.TLSSocket;
  const seen: Seen = {
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    encrypted: socket.encrypted === true,
    alpn: socket.alpnProtocol,
    httpVersion: req.httpVersion,
  };
  (res as import("node:http").ServerResponse).end(JSON.stringify(seen));
}

async function listen<S extends net.Server>(
  server: S,
): Promise<{ port: number; refusals: ProxyProtocolError[]; close(): Promise<void> }> {
  const refusals: ProxyProtocolError[] = [];
  serve(server, { onError: (error) => refusals.push(error) });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    refusals,
    close: () =>
      new Promise<void>((resolve) => {
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** A TLS client connection whose first bytes, in clear, are `header`; resolves once secure. */
function tlsAfter(
  port: number,
  header: string | Uint8Array,
  alpn: string[],
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect(port, "127.0.0.1", () => {
      raw.write(header);
      const secure = tls.connect({
        socket: raw,
        servername: "localhost",
        ca: cert,
        ALPNProtocols: alpn,
      }, () => resolve(secure));
      secure.once("error", reject);
    });
    raw.once("error", reject);
  });
}

/** Checks the client side of a real handshake: a protocol, the server's certificate. */
function assertSecure(socket: tls.TLSSocket, alpn: string): void {
  assert.ok(socket.authorized, `not authorized: ${socket.authorizationError}`);
  assert.match(String(socket.getProtocol()), /^TLSv1\.[23]$/);
  assert.equal(socket.getPeerCertificate().subject?.CN, "localhost");
  assert.equal(socket.alpnProtocol, alpn);
}

function httpsGet(socket: tls.TLSSocket, path = "/"): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: "localhost",
      path,
      headers: { connection: "close" },
      createConnection: () => socket,
    }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk));
      res.on("end", () => resolve(JSON.parse(body) as Seen));
    });
    req.on("error", reject);
    req.end();
  });
}

function h2Get(socket: tls.TLSSocket, paths: string[]): Promise<Seen[]> {
  const session = http2.connect("https://localhost", { createConnection: () => socket });
  const ask = (path: string) =>
    new Promise<Seen>((resolve, reject) => {
      const stream = session.request({ ":path": path });
      let body = "";
      stream.on("data", (chunk: Buffer) => (body += chunk));
      stream.on("end", () => resolve(JSON.parse(body) as Seen));
      stream.on("error", reject);
      stream.end();
    });
  return Promise.all(paths.map(ask)).finally(() => session.close());
}

function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile("/usr/bin/curl", ["-sS", ...args], { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`curl failed: ${error.message} ${stderr}`));
      else resolve(stdout);
    })
  );
}

describe("node serve: TLS after the header", () => {
  it("https.Server: HTTP/1.1 over TLS reports the client", async () => {
    const s = await listen(https.createServer({ key, cert }, app));
    try {
      const socket = await tlsAfter(s.port, V1, ["http/1.1"]);
      assertSecure(socket, "http/1.1");
      const seen = await httpsGet(socket);
      assert.deepEqual(seen, {
        remoteAddress: "203.0.113.7",
        remotePort: 51234,
        encrypted: true,
        alpn: "http/1.1",
        httpVersion: "1.1",
      });
      assert.deepEqual(s.refusals, []);
    } finally {
      await s.close();
    }
  });

  it("http2.createSecureServer: ALPN picks h2 or http/1.1", async () => {
    const s = await listen(http2.createSecureServer({ key, cert, allowHTTP1: true }, app));
    try {
      const h2 = await tlsAfter(s.port, V2, ["h2", "http/1.1"]);
      assertSecure(h2, "h2");
      const streams = await h2Get(h2, ["/1", "/2"]);
      for (const seen of streams) {
        assert.deepEqual(seen, {
          remoteAddress: "2001:db8::7",
          remotePort: 61000,
          encrypted: true,
          alpn: "h2",
          httpVersion: "2.0",
        });
      }
      const h1 = await tlsAfter(s.port, V1, ["http/1.1"]);
      assertSecure(h1, "http/1.1");
      const seen = await httpsGet(h1);
      assert.equal(seen.remoteAddress, "203.0.113.7");
      assert.equal(seen.httpVersion, "1.1");
      assert.equal(seen.alpn, "http/1.1");
    } finally {
      await s.close();
    }
  });

  it("curl --haproxy-protocol https:// with -k (HTTP/1.1 and HTTP/2)", async () => {
    for (
      const [server, flag, version] of [
        [https.createServer({ key, cert }, app), "--http1.1", "1.1"],
        [http2.createSecureServer({ key, cert, allowHTTP1: true }, app), "--http2", "2.0"],
      ] as const
    ) {
      const s = await listen(server);
      try {
        const out = await curl(["-k", "--haproxy-protocol", flag, `https://127.0.0.1:${s.port}/`]);
        const seen = JSON.parse(out) as Seen;
        assert.equal(seen.remoteAddress, "127.0.0.1"); // curl's own address, from its header
        assert.equal(seen.encrypted, true);
        assert.equal(seen.httpVersion, version);
      } finally {
        await s.close();
      }
    }
  });

  it("tls.Server: secureConnection and tlsClientError see the client", async () => {
    const server = tls.createServer({ key, cert }, (socket) => {
      const header = (socket as ProxyTlsSocket).proxyHeader;
      socket.end(`${socket.remoteAddress} ${socket.remotePort} ${header?.version}`);
    });
    const failures: (string | undefined)[] = [];
    server.on("tlsClientError", (_error, socket) => failures.push(socket.remoteAddress));
    const s = await listen(server);
    try {
      const socket = await tlsAfter(s.port, V1, []);
      assert.ok(socket.authorized);
      let reply = "";
      for await (const chunk of socket) reply += chunk;
      assert.equal(reply, "203.0.113.7 51234 1");
      // Plaintext after the header: the handshake fails, reported with the client.
      const raw = net.connect(s.port, "127.0.0.1");
      raw.end(V1 + "GET / HTTP/1.1\r\n\r\n");
      for await (const _ of raw);
      const deadline = Date.now() + 2000;
      while (failures.length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.deepEqual(failures, ["203.0.113.7"]);
    } finally {
      await s.close();
    }
  });
});

describe("node startTls: server-side TLS on a connection after its header", () => {
  it("runs TLS on the bytes after the header, with ALPN and the client's addresses", async () => {
    const secured: unknown[] = [];
    const server = createServer({}, async (socket) => {
      const secure = await startTls(socket, { key, cert, ALPNProtocols: ["echo/1"] });
      secured.push(secure.proxyHeader?.version, secure.localAddress, secure.remoteFamily);
      secure.write(`hello ${secure.remoteAddress}:${secure.remotePort} ${secure.alpnProtocol}\n`);
      secure.pipe(secure);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const socket = await tlsAfter(port, V2, ["echo/1"]);
      assertSecure(socket, "echo/1");
      socket.end("ping");
      let reply = "";
      for await (const chunk of socket) reply += chunk;
      assert.equal(reply, "hello 2001:db8::7:61000 echo/1\nping");
      assert.deepEqual(secured, [2, "2001:db8::5", "IPv6"]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("rejects and closes on a failed handshake and on the handshake timeout", async () => {
    const outcomes: Promise<unknown>[] = [];
    const server = createServer({}, (socket) => {
      outcomes.push(
        startTls(socket, { key, cert, handshakeTimeout: 200 }).then(
          () => assert.fail("handshake succeeded"),
          (error: ProxyProtocolError) => ({ code: error.code, destroyed: socket.destroyed }),
        ),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const plain = net.connect(port, "127.0.0.1");
      plain.on("error", () => {});
      plain.write(V1 + "GET / HTTP/1.1\r\n\r\n");
      const silent = net.connect(port, "127.0.0.1");
      silent.on("error", () => {});
      silent.write(V1);
      const deadline = Date.now() + 3000;
      while (outcomes.length < 2 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      const results = await Promise.all(outcomes);
      assert.deepEqual(
        results.map((r) => JSON.stringify(r)).sort(),
        [
          JSON.stringify({ code: "CONNECTION_CLOSED", destroyed: true }),
          JSON.stringify({ code: "TIMEOUT", destroyed: true }),
        ],
      );
      plain.destroy();
      silent.destroy();
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
