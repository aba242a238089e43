// The Bun HTTP server behind a PROXY header (`serve`), on real loopback sockets: headers,
// keep-alive, large streamed bodies, WebSockets, health checks, refusals, HTTPS after the
// header, curl and Hono. Runs under `bun test`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { makeCertificate } from "../certificate.ts";
import net from "node:net";
import tls from "node:tls";
import { execFile } from "node:child_process";
import { Hono } from "hono";
import { getConnInfo } from "hono/bun";
import { serve } from "@proxy-protocol/edge/bun";
import type { ServeOptions } from "@proxy-protocol/edge/bun";
import { concatBytes as concat, encodeHeader, type ProxyProtocolError } from "@proxy-protocol/edge";
import { INNER_PORT } from "../../lib/bun/serve.ts";

const V1 = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 80\r\n";
const V2 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 40000 },
  destination: { address: "2001:db8::1", port: 8443 },
});
const LOCAL = encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" });

/** A server on 127.0.0.1:0 that answers with what it knows of the client. */
function whoami(options: Partial<ServeOptions<unknown>> = {}) {
  const refusals = new Queue<ProxyProtocolError>();
  const server = serve<unknown>({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request, server) {
      const header = server.proxyHeader(request);
      return Response.json({
        ip: server.requestIP(request),
        version: header?.version ?? null,
        command: header?.command ?? null,
        path: new URL(request.url).pathname,
      });
    },
    ...options,
    onError(error, peer) {
      refusals.push(error);
      options.onError?.(error, peer);
    },
  });
  return { server, refusals };
}

/** Writes `header` and the raw requests, reads until the server closes. */
async function raw(port: number, header: string | Uint8Array, request: string): Promise<string> {
  const client = await connect(port);
  client.socket.write(
    concat([typeof header === "string" ? bytes(header) : header, bytes(request)]),
  );
  await client.closed;
  return text(client.received());
}

/** The JSON bodies of the responses in a raw HTTP/1.1 answer (Content-Length bodies). */
function bodies(answer: string): unknown[] {
  const out: unknown[] = [];
  let rest = answer;
  while (rest.length > 0) {
    const end = rest.indexOf("\r\n\r\n");
    assert.ok(end > 0, `no header end in ${JSON.stringify(rest.slice(0, 200))}`);
    const head = rest.slice(0, end);
    assert.match(head, /^HTTP\/1\.1 200 /);
    const length = Number(/content-length: (\d+)/i.exec(head)![1]);
    out.push(JSON.parse(rest.slice(end + 4, end + 4 + length)));
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

const get = (path = "/", close = true) =>
  `GET ${path} HTTP/1.1\r\nHost: example.com\r\n${close ? "Connection: close\r\n" : ""}\r\n`;

/**
 * A front that writes `header(clientSocket)` to the server before the client's bytes, as a
 * load balancer does: lets Bun's own fetch and WebSocket clients reach `serve`.
 */
function front(target: number, header: (client: net.Socket) => string | Uint8Array) {
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    upstream.write(header(client));
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close);
    upstream.on("error", close);
    client.on("close", close);
    upstream.on("close", close);
  });
  return new Promise<{ port: number; close: () => void }>((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () => server.close(),
      });
    });
  });
}

const v1For = (client: net.Socket) =>
  `PROXY TCP4 198.51.100.${client.remotePort! % 250} 10.0.0.1 ${client.remotePort} 443\r\n`;

describe("bun serve: the client from the header", () => {
  test("GET with a v1 and a v2 header", async () => {
    const { server, refusals } = whoami();
    try {
      const [one] = bodies(await raw(server.port, V1, get("/v1")));
      assert.deepEqual(one, {
        ip: { address: "203.0.113.7", port: 51234, family: "IPv4" },
        version: 1,
        command: "PROXY",
        path: "/v1",
      });
      const [two] = bodies(await raw(server.port, V2, get("/v2")));
      assert.deepEqual(two, {
        ip: { address: "2001:db8::7", port: 40000, family: "IPv6" },
        version: 2,
        command: "PROXY",
        path: "/v2",
      });
      assert.equal(refusals.items.length, 0);
    } finally {
      await server.stop(true);
    }
  });

  test("keep-alive and pipelining: 3 requests on one connection each see the client", async () => {
    const { server } = whoami();
    try {
      // One after another on one connection.
      const client = await connect(server.port);
      client.socket.write(V1);
      for (let i = 0; i < 3; i++) {
        const before = client.received().length;
        client.socket.write(get(`/${i}`, false));
        while (!/\}$/.test(text(client.received().subarray(before)))) {
          await new Promise((r) => setTimeout(r, 5));
        }
      }
      client.socket.end();
      await client.closed;
      const seen = bodies(text(client.received())) as { ip: unknown; path: string }[];
      assert.deepEqual(seen.map((b) => b.path), ["/0", "/1", "/2"]);
      for (const body of seen) {
        assert.deepEqual(body.ip, { address: "203.0.113.7", port: 51234, family: "IPv4" });
      }
      // Pipelined in the header's write.
      const piped = bodies(await raw(server.port, V2, get("/a", false) + get("/b", false) + get()));
      assert.equal(piped.length, 3);
      for (const body of piped as { ip: { address: string } }[]) {
        assert.equal(body.ip.address, "2001:db8::7");
      }
    } finally {
      await server.stop(true);
    }
  });

  test("the server's url, port and hostname are the listener's", async () => {
    const { server } = whoami();
    try {
      assert.equal(server.hostname, "127.0.0.1");
      assert.equal(server.url.href, `http://127.0.0.1:${server.port}/`);
      assert.notEqual(server.port, (server as unknown as Record<symbol, number>)[INNER_PORT]);
      assert.deepEqual(server.address, { address: "127.0.0.1", port: server.port, family: "IPv4" });
      // server.fetch runs the handler with no connection: no client.
      const body = await (await server.fetch("http://x/none")).json();
      assert.equal(body.ip, null);
    } finally {
      await server.stop(true);
    }
  });
});

describe("bun serve: bodies and WebSockets", () => {
  const SIZE = 10 * 1024 * 1024;

  test("a streamed 10 MB upload and download", async () => {
    const server = serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request, server) {
        const client = server.requestIP(request)!.address;
        if (request.method === "POST") {
          let size = 0;
          let sum = 0;
          for await (const chunk of request.body!) {
            size += chunk.length;
            for (let i = 0; i < chunk.length; i++) sum = (sum + chunk[i]!) | 0;
          }
          return Response.json({ client, size, sum });
        }
        let sent = 0;
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent >= SIZE) return controller.close();
            const chunk = new Uint8Array(64 * 1024).fill(sent / (64 * 1024) & 0xff);
            sent += chunk.length;
            controller.enqueue(chunk);
          },
        });
        return new Response(body, { headers: { "x-client": client } });
      },
    });
    const lb = await front(server.port, () => V1);
    try {
      const upload = new Uint8Array(SIZE);
      for (let i = 0; i < SIZE; i += 4096) upload[i] = (i / 4096) & 0xff;
      let expectedSum = 0;
      for (let i = 0; i < SIZE; i += 4096) expectedSum = (expectedSum + upload[i]!) | 0;
      const posted = await fetch(`http://127.0.0.1:${lb.port}/up`, {
        method: "POST",
        // A stream, so that the client sends it in chunks as it goes.
        body: new Blob([upload]).stream(),
        duplex: "half",
      } as RequestInit);
      assert.deepEqual(await posted.json(), {
        client: "203.0.113.7",
        size: SIZE,
        sum: expectedSum,
      });

      const response = await fetch(`http://127.0.0.1:${lb.port}/down`);
      assert.equal(response.headers.get("x-client"), "203.0.113.7");
      let size = 0;
      let index = 0;
      for await (const chunk of response.body!) {
        for (let i = 0; i < chunk.length; i++) {
          assert.equal(chunk[i], ((index + i) / (64 * 1024)) & 0xff);
        }
        index += chunk.length;
        size += chunk.length;
      }
      assert.equal(size, SIZE);
    } finally {
      lb.close();
      await server.stop(true);
    }
  });

  test("a WebSocket echo via server.upgrade", async () => {
    const server = serve<{ client: string }>({
      hostname: "127.0.0.1",
      port: 0,
      fetch(request, server) {
        const ip = server.requestIP(request)!;
        if (server.upgrade(request, { data: { client: `${ip.address}:${ip.port}` } })) return;
        return new Response("expected a WebSocket", { status: 400 });
      },
      websocket: {
        open(ws) {
          ws.send(`hello ${ws.data.client}`);
        },
        message(ws, message) {
          ws.send(message);
        },
      },
    });
    const lb = await front(server.port, v1For);
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${lb.port}/`);
      ws.binaryType = "arraybuffer";
      const messages = new Queue<string | ArrayBuffer>();
      ws.onmessage = (event) => messages.push(event.data);
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      assert.match(String(await messages.next()), /^hello 198\.51\.100\.\d+:\d+$/);
      ws.send("ping");
      assert.equal(await messages.next(), "ping");
      const big = new Uint8Array(1 << 20).fill(7);
      ws.send(big);
      const echoed = new Uint8Array((await messages.next()) as ArrayBuffer);
      assert.equal(echoed.length, big.length);
      assert.ok(echoed.every((b) => b === 7));
      ws.close();
    } finally {
      lb.close();
      await server.stop(true);
    }
  });
});

describe("bun serve: health checks and refusals", () => {
  test("a LOCAL health check is served with the socket's addresses", async () => {
    const { server } = whoami();
    try {
      const client = await connect(server.port);
      client.socket.write(concat([LOCAL, bytes(get("/health"))]));
      await client.closed;
      const [body] = bodies(text(client.received()));
      assert.deepEqual(body, {
        ip: { address: "127.0.0.1", port: client.localPort, family: "IPv4" },
        version: 2,
        command: "LOCAL",
        path: "/health",
      });
    } finally {
      await server.stop(true);
    }
  });

  test("refused connections are reported and closed; trust and timeout apply", async () => {
    const { server, refusals } = whoami({ timeout: 200, allowShortTimeout: true });
    try {
      assert.equal(await raw(server.port, "", get()), "");
      assert.equal((await refusals.next()).code, "HEADER_REQUIRED");
      assert.equal(await raw(server.port, "PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n", get()), "");
      assert.equal((await refusals.next()).code, "INVALID_ADDRESS");
      const silent = await connect(server.port);
      await silent.closed;
      assert.equal((await refusals.next()).code, "TIMEOUT");
    } finally {
      await server.stop(true);
    }
    const trusting = whoami({ trust: ["10.0.0.0/8"] });
    try {
      assert.equal(await raw(trusting.server.port, V1, get()), "");
      assert.equal((await trusting.refusals.next()).code, "UNTRUSTED_SOURCE");
    } finally {
      await trusting.server.stop(true);
    }
    const validating = whoami({ validate: (header) => header.source?.address !== "203.0.113.7" });
    try {
      assert.equal(await raw(validating.server.port, V1, get()), "");
      assert.equal((await validating.refusals.next()).code, "VALIDATION_FAILED");
      assert.equal(bodies(await raw(validating.server.port, V2, get())).length, 1);
    } finally {
      await validating.server.stop(true);
    }
  });

  test("a connection to the inner server that the relay did not make is refused", async () => {
    const { server, refusals } = whoami();
    try {
      const innerPort = (server as unknown as Record<symbol, number>)[INNER_PORT]!;
      assert.ok(innerPort > 0 && innerPort !== server.port);
      const answer = await raw(innerPort, "", get());
      assert.match(answer, /^HTTP\/1\.1 403 /);
      assert.doesNotMatch(answer, /"ip"/);
      const error = await refusals.next();
      assert.equal(error.code, "UNTRUSTED_SOURCE");
      // The relay's own connections still work.
      assert.equal(bodies(await raw(server.port, V1, get())).length, 1);
    } finally {
      await server.stop(true);
    }
  });
});

describe("bun serve: TLS after the header", () => {
  const { key, cert } = makeCertificate();

  test("HTTPS: header in plaintext, then a real TLS handshake", async () => {
    const { server } = whoami({ tls: { key, cert } });
    try {
      assert.equal(server.url.protocol, "https:");
      const socket = net.connect(server.port, "127.0.0.1");
      await new Promise((r) => socket.once("connect", r));
      socket.write(V1);
      const secure = tls.connect({
        socket,
        ca: cert,
        servername: "localhost",
        ALPNProtocols: ["h2", "http/1.1"],
      });
      await new Promise<void>((resolve, reject) => {
        secure.once("secureConnect", resolve);
        secure.once("error", reject); // a plaintext answer fails here
      });
      assert.equal(secure.authorized, true);
      const chunks: Uint8Array[] = [];
      secure.on("data", (d: Uint8Array) => chunks.push(d));
      secure.write(get("/tls"));
      await new Promise((r) => secure.once("close", r));
      const [body] = bodies(text(concat(chunks)));
      assert.deepEqual(body, {
        ip: { address: "203.0.113.7", port: 51234, family: "IPv4" },
        version: 1,
        command: "PROXY",
        path: "/tls",
      });
    } finally {
      await server.stop(true);
    }
  });

  test("curl --haproxy-protocol, over http and https", async () => {
    const plain = whoami();
    const secure = whoami({ tls: { key, cert } });
    try {
      for (const [server, url] of [[plain.server, "http"], [secure.server, "https"]] as const) {
        const out = await run("curl", [
          "-sS",
          "-k",
          "--haproxy-protocol",
          `${url}://127.0.0.1:${server.port}/curl`,
        ]);
        const body = JSON.parse(out);
        // curl sends its own connection's addresses in a v1 header.
        assert.equal(body.version, 1);
        assert.equal(body.command, "PROXY");
        assert.equal(body.ip.address, "127.0.0.1");
        assert.ok(body.ip.port > 0);
        assert.equal(body.path, "/curl");
      }
    } finally {
      await plain.server.stop(true);
      await secure.server.stop(true);
    }
  });
});

describe("bun serve: frameworks", () => {
  test("a Hono app reports the client's address with getConnInfo", async () => {
    const app = new Hono();
    app.get("/", (c) => c.json(getConnInfo(c)));
    const server = serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
    try {
      const [body] = bodies(await raw(server.port, V2, get()));
      assert.deepEqual(body, {
        remote: { address: "2001:db8::7", addressType: "IPv6", port: 40000 },
      });
    } finally {
      await server.stop(true);
    }
  });

  test("routes get the server wrapper too; reload swaps handlers", async () => {
    const server = serve({
      hostname: "127.0.0.1",
      port: 0,
      routes: {
        "/static": new Response("static"),
        "/ip": (request, server) => new Response(server.requestIP(request)!.address),
        "/m": {
          POST: (request, server) => new Response(`post ${server.requestIP(request)!.port}`),
        },
      },
      fetch: () => new Response("fallback"),
    });
    try {
      const body = (answer: string) => answer.slice(answer.indexOf("\r\n\r\n") + 4);
      assert.equal(body(await raw(server.port, V1, get("/static"))), "static");
      assert.equal(body(await raw(server.port, V1, get("/ip"))), "203.0.113.7");
      assert.equal(
        body(await raw(server.port, V1, get("/m").replace("GET", "POST"))),
        "post 51234",
      );
      assert.equal(body(await raw(server.port, V1, get("/other"))), "fallback");
      server.reload({
        fetch: (request, server) => new Response(`new ${server.requestIP(request)!.address}`),
      });
      assert.equal(body(await raw(server.port, V1, get("/other"))), "new 203.0.113.7");
    } finally {
      await server.stop(true);
    }
  });
});

// Small helpers of this file (tests/bun/helpers.ts is the listener's harness).

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A queue whose `next()` waits for the next item pushed. */
class Queue<T> {
  readonly items: T[] = [];
  #taken = 0;
  #waiters: ((item: T) => void)[] = [];

  push(item: T): void {
    this.items.push(item);
    this.#waiters.shift()?.(this.items[this.#taken++]!);
  }

  next(ms = 5000): Promise<T> {
    if (this.#taken < this.items.length) return Promise.resolve(this.items[this.#taken++]!);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nothing came within ${ms} ms`)), ms);
      this.#waiters.push((item) => {
        clearTimeout(timer);
        resolve(item);
      });
    });
  }
}

/** A node:net client on loopback that records what it receives. */
async function connect(port: number) {
  const socket = net.connect({ port, host: "127.0.0.1", noDelay: true });
  const chunks: Uint8Array[] = [];
  socket.on("data", (d: Uint8Array) => chunks.push(d));
  socket.on("error", () => {}); // refused connections are closed by the server
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, received: () => concat(chunks), closed, localPort: socket.localPort! };
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}
