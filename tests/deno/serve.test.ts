// serve() from ./deno on real loopback sockets: HTTP/1.1 with v1 and v2 headers, keep-alive,
// pipelining, 10 MB streamed both ways, WebSocket, LOCAL health checks, refusals, the inner
// server's guard, HTTPS with ALPN (h2 and http/1.1), curl --haproxy-protocol, and Hono's
// getConnInfo. Deno.test with op and resource sanitizers on.
import assert from "node:assert/strict";
import { makeCertificate } from "../certificate.ts";
import { Hono } from "hono";
import { getConnInfo } from "hono/deno";
import {
  type ProxyHttpServer,
  serve,
  type ServeHandler,
  type ServeOptions,
} from "@proxy-protocol/edge/deno";
import { encodeHeader, type ProxyHeaderInit, type ProxyProtocolError } from "@proxy-protocol/edge";
import { innerAddr } from "../../lib/deno/serve.ts";

const sanitize = { sanitizeOps: true, sanitizeResources: true };
const text = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

const V1 = text("PROXY TCP4 203.0.113.7 10.0.0.5 51234 80\r\n");
const v2Init: ProxyHeaderInit = {
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 40000 },
  destination: { address: "2001:db8::1", port: 443 },
};
const V2 = encodeHeader(v2Init);
const LOCAL = encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" });

/** Answers with what the handler was told about the client. */
const whoami: ServeHandler = (request, info) =>
  Response.json({
    path: new URL(request.url).pathname,
    remote: info.remoteAddr,
    local: info.localAddr,
    version: info.proxyHeader?.version ?? null,
    command: info.proxyHeader?.command ?? null,
  });

interface Harness {
  server: ProxyHttpServer;
  port: number;
  errors: ProxyProtocolError[];
}

async function withServer(
  options: Partial<ServeOptions>,
  handler: ServeHandler,
  fn: (h: Harness) => Promise<void>,
): Promise<void> {
  const errors: ProxyProtocolError[] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    timeout: 3000,
    onListen() {},
    onError: (e) => void errors.push(e),
    ...options,
  }, handler);
  await fn({ server, port: server.addr.port, errors });
}

/** Reads HTTP/1.1 responses with Content-Length off a connection, one at a time. */
class ResponseReader {
  #conn: Deno.Conn;
  #buffered = new Uint8Array(0);
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }
  async #more(): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    const n = await this.#conn.read(chunk);
    if (n === null) return false;
    const next = new Uint8Array(this.#buffered.length + n);
    next.set(this.#buffered);
    next.set(chunk.subarray(0, n), this.#buffered.length);
    this.#buffered = next;
    return true;
  }
  async next(): Promise<{ status: number; headers: string; body: string }> {
    let end: number;
    while ((end = decode(this.#buffered).indexOf("\r\n\r\n")) < 0) {
      if (!await this.#more()) throw new Error("connection ended before a response");
    }
    const head = decode(this.#buffered.subarray(0, end));
    const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
    while (this.#buffered.length < end + 4 + length) {
      if (!await this.#more()) throw new Error("connection ended inside a body");
    }
    const body = decode(this.#buffered.subarray(end + 4, end + 4 + length));
    this.#buffered = this.#buffered.slice(end + 4 + length);
    return { status: Number(head.split(" ")[1]), headers: head, body };
  }
}

async function readToEnd(conn: Deno.Conn): Promise<string> {
  return decode(new Uint8Array(await new Response(conn.readable).arrayBuffer()));
}

const GET = (path: string, close = false) =>
  text(`GET ${path} HTTP/1.1\r\nHost: example.com\r\n${close ? "Connection: close\r\n" : ""}\r\n`);

/**
 * A TCP relay that writes a PROXY header first on each connection, so that fetch and
 * WebSocket (which cannot send one) can talk to the server. Closes everything on dispose.
 */
function headerRelay(target: number, header: Uint8Array): AsyncDisposable & { port: number } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const client of listener) {
      const task = (async () => {
        conns.add(client);
        const upstream = await Deno.connect({ hostname: "127.0.0.1", port: target });
        conns.add(upstream);
        await upstream.write(header);
        const copy = async (from: Deno.Conn, to: Deno.Conn) => {
          const buffer = new Uint8Array(65536);
          try {
            while (true) {
              const n = await from.read(buffer);
              if (n === null) break;
              let at = 0;
              while (at < n) at += await to.write(buffer.subarray(at, n));
            }
            await to.closeWrite();
          } catch {
            // closed
          }
        };
        await Promise.all([copy(client, upstream), copy(upstream, client)]);
        for (const c of [client, upstream]) {
          conns.delete(c);
          try {
            c.close();
          } catch {
            // closed
          }
        }
      })();
      tasks.add(task);
      task.then(() => tasks.delete(task));
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await loop;
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
      await Promise.all(tasks);
    },
  };
}

Deno.test("GET with a v1 header sees the client", sanitize, async () => {
  await withServer({}, whoami, async ({ port }) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(V1);
    await conn.write(GET("/v1", true));
    const reply = await readToEnd(conn);
    assert.match(reply, /^HTTP\/1\.1 200 OK\r\n/);
    const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
    assert.deepEqual(body, {
      path: "/v1",
      remote: { transport: "tcp", hostname: "203.0.113.7", port: 51234 },
      local: { transport: "tcp", hostname: "10.0.0.5", port: 80 },
      version: 1,
      command: "PROXY",
    });
  });
});

Deno.test("GET with a v2 header (in the same write) sees the client", sanitize, async () => {
  await withServer({}, whoami, async ({ port }) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const request = GET("/v2", true);
    const both = new Uint8Array(V2.length + request.length);
    both.set(V2);
    both.set(request, V2.length);
    await conn.write(both);
    const reply = await readToEnd(conn);
    const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
    assert.deepEqual(body.remote, { transport: "tcp", hostname: "2001:db8::7", port: 40000 });
    assert.equal(body.version, 2);
  });
});

Deno.test(
  "keep-alive: three requests on one connection each see the client",
  sanitize,
  async () => {
    await withServer({}, whoami, async ({ port }) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(V1);
      const reader = new ResponseReader(conn);
      for (const path of ["/a", "/b", "/c"]) {
        await conn.write(GET(path));
        const { status, body } = await reader.next();
        assert.equal(status, 200);
        const json = JSON.parse(body);
        assert.equal(json.path, path);
        assert.equal(json.remote.hostname, "203.0.113.7");
      }
    });
  },
);

Deno.test("pipelining: three requests in one write are answered in order", sanitize, async () => {
  await withServer({}, whoami, async ({ port }) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const parts = [V1, GET("/1"), GET("/2"), GET("/3")];
    await conn.write(text(parts.map(decode).join("")));
    const reader = new ResponseReader(conn);
    for (const path of ["/1", "/2", "/3"]) {
      const json = JSON.parse((await reader.next()).body);
      assert.equal(json.path, path);
      assert.equal(json.remote.port, 51234);
    }
  });
});

const TEN_MB = 10 * 1024 * 1024;

Deno.test("streams a 10 MB upload and a 10 MB download", sanitize, async () => {
  const handler: ServeHandler = async (request, info) => {
    if (request.method === "POST") {
      let size = 0;
      for await (const chunk of request.body!) size += chunk.length;
      return Response.json({ size, client: info.remoteAddr.hostname });
    }
    const chunk = new Uint8Array(64 * 1024).fill(0x61);
    let sent = 0;
    return new Response(
      new ReadableStream({
        pull(controller) {
          if (sent >= TEN_MB) return controller.close();
          controller.enqueue(chunk);
          sent += chunk.length;
        },
      }),
    );
  };
  await withServer({}, handler, async ({ port }) => {
    await using relay = headerRelay(port, V1);
    using client = Deno.createHttpClient({});
    const url = `http://127.0.0.1:${relay.port}/`;
    const block = new Uint8Array(256 * 1024).fill(0x62);
    let made = 0;
    const upload = await fetch(url, {
      method: "POST",
      client,
      body: new ReadableStream({
        pull(controller) {
          if (made >= TEN_MB) return controller.close();
          controller.enqueue(block);
          made += block.length;
        },
      }),
    });
    assert.deepEqual(await upload.json(), { size: TEN_MB, client: "203.0.113.7" });
    const download = await fetch(url, { client });
    let received = 0;
    for await (const chunk of download.body!) received += chunk.length;
    assert.equal(received, TEN_MB);
  });
});

Deno.test("WebSocket echo with Deno.upgradeWebSocket", sanitize, async () => {
  const handler: ServeHandler = (request, info) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (event) =>
      socket.send(`${event.data} from ${info.remoteAddr.hostname}:${info.remoteAddr.port}`);
    return response;
  };
  await withServer({}, handler, async ({ port }) => {
    await using relay = headerRelay(port, V1);
    const ws = new WebSocket(`ws://127.0.0.1:${relay.port}/`);
    const reply = await new Promise<string>((resolve, reject) => {
      ws.onopen = () => ws.send("ping");
      ws.onmessage = (event) => resolve(event.data);
      ws.onerror = () => reject(new Error("websocket failed"));
    });
    assert.equal(reply, "ping from 203.0.113.7:51234");
    const closed = new Promise((resolve) => ws.onclose = resolve);
    ws.close();
    await closed;
  });
});

Deno.test("a LOCAL health check is served with the socket's addresses", sanitize, async () => {
  await withServer({}, whoami, async ({ port }) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(LOCAL);
    await conn.write(GET("/health", true));
    const reply = await readToEnd(conn);
    const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
    assert.equal(body.command, "LOCAL");
    assert.deepEqual(body.remote, {
      transport: "tcp",
      hostname: "127.0.0.1",
      port: (conn.localAddr as Deno.NetAddr).port,
    });
    assert.deepEqual(body.local, { transport: "tcp", hostname: "127.0.0.1", port });
  });
});

Deno.test("refused connections go to onError and are closed", sanitize, async () => {
  let validated = 0;
  await withServer(
    {
      validate: (header) => {
        validated++;
        return header.source?.address !== "198.51.100.1";
      },
    },
    whoami,
    async ({ port, errors }) => {
      // No header.
      using a = await Deno.connect({ hostname: "127.0.0.1", port });
      await a.write(GET("/", true));
      assert.equal(await readToEnd(a), "");
      // Refused by validate.
      using b = await Deno.connect({ hostname: "127.0.0.1", port });
      await b.write(text("PROXY TCP4 198.51.100.1 10.0.0.5 1000 80\r\n"));
      await b.write(GET("/", true));
      assert.equal(await readToEnd(b), "");
      assert.deepEqual(errors.map((e) => e.code).sort(), ["HEADER_REQUIRED", "VALIDATION_FAILED"]);
      assert.equal(validated, 1);
    },
  );
});

Deno.test("policy and trust apply: an untrusted peer is refused", sanitize, async () => {
  await withServer({ trust: ["10.0.0.0/8"] }, whoami, async ({ port, errors }) => {
    // Refused at accept: the write may already meet a closed socket.
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const answer = await conn.write(V1).then(() => readToEnd(conn)).catch(() => "");
    assert.equal(answer, "");
    assert.equal(errors[0]?.code, "UNTRUSTED_SOURCE");
  });
  await withServer({ policy: "optional" }, whoami, async ({ port }) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(GET("/", true));
    const reply = await readToEnd(conn);
    const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
    assert.equal(body.version, null);
    assert.equal(body.remote.port, (conn.localAddr as Deno.NetAddr).port);
  });
});

Deno.test("the inner server refuses connections the relay did not make", sanitize, async () => {
  let calls = 0;
  await withServer({}, () => {
    calls++;
    return new Response("no");
  }, async ({ server }) => {
    const inner = innerAddr(server);
    assert.equal(inner.hostname, "127.0.0.1");
    using conn = await Deno.connect({ hostname: "127.0.0.1", port: inner.port });
    await conn.write(GET("/", true));
    const reply = await readToEnd(conn);
    assert.match(reply, /^HTTP\/1\.1 421 /);
    assert.equal(calls, 0);
  });
});

Deno.test("shutdown(), finished and signal", sanitize, async () => {
  const controller = new AbortController();
  const server = serve(
    { hostname: "127.0.0.1", port: 0, onListen() {}, signal: controller.signal },
    whoami,
  );
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await conn.write(V1);
  await conn.write(GET("/"));
  const reader = new ResponseReader(conn);
  assert.equal((await reader.next()).status, 200);
  controller.abort();
  await server.finished;
  assert.equal(await conn.read(new Uint8Array(16)), null, "idle keep-alive closed");
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }));
});

Deno.test("onListen gets the address; bad options throw at once", sanitize, async () => {
  let heard: Deno.NetAddr | undefined;
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, onListen: (a) => heard = a },
    whoami,
  );
  assert.deepEqual(heard, server.addr);
  assert.throws(() => serve({ port: 0, policy: "nope" as never }, whoami), TypeError);
  assert.throws(() => serve({ port: 0, cert: "x" }, whoami), TypeError);
  assert.throws(() => serve({ port: 0 }), TypeError);
});

Deno.test("HTTPS after the header: ALPN h2 and http/1.1", sanitize, async () => {
  const { cert, key } = makeCertificate();
  await withServer({ cert, key }, whoami, async ({ port }) => {
    // HTTP/1.1 by ALPN, by hand.
    const raw = await Deno.connect({ hostname: "127.0.0.1", port });
    await raw.write(V1);
    using tls = await Deno.startTls(raw, {
      hostname: "localhost",
      caCerts: [cert],
      alpnProtocols: ["http/1.1"],
    });
    assert.equal((await tls.handshake()).alpnProtocol, "http/1.1");
    await tls.write(GET("/tls", true));
    const reply = await readToEnd(tls);
    assert.match(reply, /^HTTP\/1\.1 200 OK\r\n/);
    const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
    assert.equal(body.remote.hostname, "203.0.113.7");

    // h2 chosen when offered first.
    const raw2 = await Deno.connect({ hostname: "127.0.0.1", port });
    await raw2.write(V2);
    using tls2 = await Deno.startTls(raw2, {
      hostname: "localhost",
      caCerts: [cert],
      alpnProtocols: ["h2", "http/1.1"],
    });
    assert.equal((await tls2.handshake()).alpnProtocol, "h2");

    // A real HTTP/2 exchange, through a header-writing relay.
    await using relay = headerRelay(port, V2);
    using client = Deno.createHttpClient({ caCerts: [cert], http1: false, http2: true });
    const response = await fetch(`https://localhost:${relay.port}/h2`, { client });
    const json = await response.json();
    assert.equal(json.path, "/h2");
    assert.equal(json.remote.hostname, "2001:db8::7");
  });
});

async function curl(args: string[]): Promise<string> {
  const out = await new Deno.Command("curl", {
    args: ["--silent", "--show-error", "--fail", "--max-time", "10", "--haproxy-protocol", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, decode(out.stderr));
  return decode(out.stdout);
}

Deno.test("curl --haproxy-protocol over http (1.1 and h2c) and https (h2)", sanitize, async () => {
  await withServer({}, whoami, async ({ port }) => {
    const body = JSON.parse(await curl([`http://127.0.0.1:${port}/curl`]));
    assert.equal(body.version, 1);
    assert.equal(body.remote.hostname, "127.0.0.1");
    assert.equal(body.local.port, port);
    // Cleartext HTTP/2 with prior knowledge, as Deno.serve speaks it.
    const h2c = await curl([
      "--http2-prior-knowledge",
      "-w",
      "\n%{http_version}",
      `http://127.0.0.1:${port}/c`,
    ]);
    assert.equal(h2c.split("\n")[1], "2");
  });
  const { cert, key } = makeCertificate();
  await withServer({ cert, key }, whoami, async ({ port }) => {
    const out = await curl(["-k", "-w", "\n%{http_version}", `https://127.0.0.1:${port}/s`]);
    const [json, httpVersion] = out.split("\n");
    const body = JSON.parse(json!);
    assert.equal(body.version, 1);
    assert.equal(body.path, "/s");
    assert.equal(httpVersion, "2");
  });
});

Deno.test("Hono's getConnInfo reports the client", sanitize, async () => {
  const app = new Hono();
  app.get("/", (c) => c.json(getConnInfo(c).remote));
  await withServer({}, app.fetch, async ({ port }) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(V1);
    await conn.write(GET("/", true));
    const reply = await readToEnd(conn);
    const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
    assert.deepEqual(body, { address: "203.0.113.7", port: 51234, transport: "tcp" });
  });
});
