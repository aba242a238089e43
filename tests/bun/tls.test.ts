// `listenTls`: TLS on the bytes after the PROXY header, with a real TLS client (node:tls
// over a node:net socket that wrote the header first). Runs under `bun test`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { makeCertificate } from "../certificate.ts";
import net from "node:net";
import tls from "node:tls";
import { listenTls, type ProxySocket } from "@proxy-protocol/edge/bun";
import { encodeHeader, type ProxyProtocolError } from "@proxy-protocol/edge";
import { INNER_PORT } from "../../lib/bun/serve.ts";

const V1 = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n";
const V2 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 40000 },
  destination: { address: "2001:db8::1", port: 8443 },
});

const { key, cert } = makeCertificate();

interface Seen {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  remoteFamily: string;
  version: number | null;
}

/** A TLS echo server that greets with what it knows of the client. */
function echo() {
  const seen: Seen[] = [];
  const refusals: ProxyProtocolError[] = [];
  const listener = listenTls({
    hostname: "127.0.0.1",
    port: 0,
    tls: { key, cert },
    onError: (error) => refusals.push(error),
    socket: {
      open(socket: ProxySocket) {
        seen.push({
          remoteAddress: socket.remoteAddress,
          remotePort: socket.remotePort,
          localAddress: socket.localAddress,
          localPort: socket.localPort,
          remoteFamily: socket.remoteFamily,
          version: socket.proxyHeader?.version ?? null,
        });
        socket.write(`hello ${socket.remoteAddress}:${socket.remotePort}\n`);
      },
      data(socket, data) {
        socket.write(data);
      },
      end(socket) {
        socket.end();
      },
    },
  });
  return { listener, seen, refusals };
}

/** node:net, the header in clear, then node:tls on the same socket. */
async function tlsClient(port: number, header: string | Uint8Array) {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise((r) => socket.once("connect", r));
  socket.write(header);
  const secure = tls.connect({ socket, ca: cert, servername: "localhost" });
  await new Promise<void>((resolve, reject) => {
    secure.once("secureConnect", resolve);
    secure.once("error", reject); // a plaintext answer fails the handshake here
  });
  const chunks: Buffer[] = [];
  secure.on("data", (d: Buffer) => chunks.push(d));
  const closed = new Promise((r) => secure.once("close", r));
  return { secure, closed, received: () => Buffer.concat(chunks).toString() };
}

describe("bun listenTls", () => {
  test("a TLS echo after a v1 and a v2 header knows the client", async () => {
    const { listener, seen, refusals } = echo();
    try {
      for (
        const [header, address, port] of [[V1, "203.0.113.7", 51234], [
          V2,
          "2001:db8::7",
          40000,
        ]] as const
      ) {
        const client = await tlsClient(listener.port, header);
        assert.equal(client.secure.authorized, true);
        client.secure.write("ping");
        client.secure.end();
        await client.closed;
        assert.equal(client.received(), `hello ${address}:${port}\nping`);
      }
      assert.deepEqual(seen, [
        {
          remoteAddress: "203.0.113.7",
          remotePort: 51234,
          localAddress: "10.0.0.5",
          localPort: 443,
          remoteFamily: "IPv4",
          version: 1,
        },
        {
          remoteAddress: "2001:db8::7",
          remotePort: 40000,
          localAddress: "2001:db8::1",
          localPort: 8443,
          remoteFamily: "IPv6",
          version: 2,
        },
      ]);
      assert.equal(refusals.length, 0);
    } finally {
      listener.stop(true);
    }
  });

  test("4 MB each way through TLS, with backpressure", async () => {
    const { listener } = echo();
    try {
      const client = await tlsClient(listener.port, V1);
      const size = 4 * 1024 * 1024;
      const payload = Buffer.alloc(size, 0x61);
      client.secure.end(payload);
      await client.closed;
      const got = client.received();
      assert.equal(got.length, "hello 203.0.113.7:51234\n".length + size);
    } finally {
      listener.stop(true);
    }
  });

  test("refusals: no header, and a connection to the inner listener not made by the relay", async () => {
    const { listener, seen, refusals } = echo();
    try {
      const plain = net.connect(listener.port, "127.0.0.1");
      plain.on("error", () => {});
      plain.write("GET / HTTP/1.1\r\n\r\n");
      await new Promise((r) => plain.once("close", r));
      const innerPort = (listener as unknown as Record<symbol, number>)[INNER_PORT]!;
      // Bun's TLS listener calls `open` once the client speaks: a TLS client, then.
      const stranger = tls.connect({ port: innerPort, host: "127.0.0.1", ca: cert });
      stranger.on("error", () => {});
      await new Promise((r) => stranger.once("close", r));
      assert.deepEqual(refusals.map((e) => e.code), ["HEADER_REQUIRED", "UNTRUSTED_SOURCE"]);
      assert.equal(seen.length, 0);
    } finally {
      listener.stop(true);
    }
  });
});
