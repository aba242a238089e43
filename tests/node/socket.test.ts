// What only the Node adapter has (the shared cases are in listen.test.ts): after the header
// the socket is an ordinary net.Socket (pipe, pause, destroy, keep-alive, async iteration),
// the server's events, node:http, and createServer's option checks.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http from "node:http";
import net from "node:net";
import { encodeHeader } from "@proxy-protocol/edge";
import {
  createServer,
  type ProxyPolicy,
  type ProxySocket,
  type UntrustedPolicy,
} from "@proxy-protocol/edge/node";
import { concat, delay, serve, talk, text } from "./helpers.ts";

const HEADER = text("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n");
const V2 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 61000 },
  destination: { address: "2001:db8::5", port: 443 },
});

/** 1 MiB of pseudo-random bytes (xorshift32), the same every run. */
function megabyte(): Uint8Array {
  const out = new Uint8Array(1 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
const MB = megabyte();

describe("node createServer: the socket after the header", () => {
  it("echoes 1 MiB back through pipe", async () => {
    const s = await serve({}, (socket) => socket.pipe(socket));
    try {
      const got = await talk(s, [concat(V2, MB.subarray(0, 1000)), MB.subarray(1000)], { gap: 2 });
      assert.equal(got.error, undefined);
      assert.equal(got.reply.length, MB.length);
      assert.ok(Buffer.from(MB).equals(got.reply));
    } finally {
      await s.close();
    }
  });

  it("pause and resume, setKeepAlive, setNoDelay", async () => {
    const log: unknown[] = [];
    const s = await serve({ keepAlive: true, noDelay: true }, (socket) => {
      log.push(socket instanceof net.Socket);
      log.push(socket.setKeepAlive(true, 1000) === socket, socket.setNoDelay(true) === socket);
      let all = "";
      socket.on("data", (chunk) => (all += chunk));
      socket.on("end", () => socket.end(`got ${all}`));
      socket.pause();
      setTimeout(() => {
        // The client sent everything meanwhile; none of it was delivered.
        log.push(socket.isPaused(), all);
        socket.resume();
      }, 40);
    });
    try {
      const got = await talk(s, [concat(HEADER, "a"), "b", "c"], { gap: 5 });
      assert.equal(got.reply.toString(), "got abc");
      assert.deepEqual(log, [true, true, true, true, ""]);
    } finally {
      await s.close();
    }
  });

  it("async iteration", async () => {
    const seen: string[] = [];
    const s = await serve({}, async (socket) => {
      let all = "";
      // Node destroys the socket when the loop ends, so nothing is written after it.
      for await (const chunk of socket) all += chunk;
      seen.push(all);
    });
    try {
      await talk(s, [concat(HEADER, "a"), "b", "c"], { gap: 5 });
      assert.deepEqual(seen, ["abc"]);
    } finally {
      await s.close();
    }
  });

  it("the server can destroy the socket and write first", async () => {
    const s = await serve({}, (socket) => {
      socket.write(`hello ${socket.remoteAddress}\n`, () => socket.destroy());
    });
    try {
      const got = await talk(s, [HEADER], { end: false });
      assert.equal(got.reply.toString(), "hello 203.0.113.7\n");
    } finally {
      await s.close();
    }
  });

  it("emits connection (raw) and proxyConnection (after the header)", async () => {
    const events: string[] = [];
    const server = createServer({}, (socket) => {
      events.push(`onConnection ${socket.remoteAddress}`);
      socket.end();
    });
    server.on("connection", (socket: net.Socket) => {
      events.push(`connection ${socket.remoteAddress}`);
    });
    server.on("proxyConnection", (socket: ProxySocket) => {
      events.push(`proxyConnection ${socket.remoteAddress} ${socket.proxyHeader?.version}`);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      await talk({ port: (server.address() as net.AddressInfo).port, host: "127.0.0.1" }, [
        HEADER,
      ]);
      assert.deepEqual(events, [
        "connection 127.0.0.1",
        "onConnection 203.0.113.7",
        "proxyConnection 203.0.113.7 1",
      ]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("with allowHalfOpen the application can answer after the client's end", async () => {
    const s = await serve({ allowHalfOpen: true, policy: "optional" }, (socket) => {
      let got = "";
      socket.on("data", (chunk) => (got += chunk));
      socket.on("end", async () => {
        await delay(10);
        socket.end(`late ${got}`);
      });
    });
    try {
      assert.equal((await talk(s, ["PRO"])).reply.toString(), "late PRO");
      assert.equal((await talk(s, [concat(HEADER, "x")])).reply.toString(), "late x");
    } finally {
      await s.close();
    }
  });
});

describe("node createServer: node:http", () => {
  it("requests carry the header's address, over keep-alive too", async () => {
    const app = http.createServer((req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({
        url: req.url,
        remoteAddress: req.socket.remoteAddress,
        remotePort: req.socket.remotePort,
        header: (req.socket as ProxySocket).proxyHeader?.version,
      }));
    });
    const s = await serve({ policy: "require" }, (socket) => app.emit("connection", socket));
    try {
      const requests = "GET /one HTTP/1.1\r\nHost: x\r\n\r\n" +
        "GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      const got = await talk(s, [concat(HEADER, requests.slice(0, 10)), requests.slice(10)], {
        gap: 2,
        end: false,
      });
      const reply = got.reply.toString();
      const bodies = [...reply.matchAll(/\{[^}]*\}/g)].map((m) => JSON.parse(m[0]));
      assert.equal(reply.match(/HTTP\/1\.1 200 OK/g)?.length, 2, reply);
      assert.deepEqual(bodies, [
        { url: "/one", remoteAddress: "203.0.113.7", remotePort: 51234, header: 1 },
        { url: "/two", remoteAddress: "203.0.113.7", remotePort: 51234, header: 1 },
      ]);
      assert.deepEqual(s.refusals, []);
    } finally {
      await s.close();
      app.close();
    }
  });
});

describe("node createServer: options", () => {
  it("bad options throw at once", () => {
    assert.throws(() => createServer({ policy: "maybe" as ProxyPolicy }), TypeError);
    assert.throws(() => createServer({ untrusted: "allow" as UntrustedPolicy }), TypeError);
    assert.throws(() => createServer({ trust: ["10.0.0.0/33"] }), TypeError);
    assert.throws(() => createServer({ timeout: 1000 }), RangeError);
    assert.throws(() => createServer({ maxHeaderLength: 4 }), RangeError);
    const server = createServer({ timeout: 1000, allowShortTimeout: true });
    assert.equal(server.listening, false);
  });
});
