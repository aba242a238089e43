// The Deno adapter. The shared datagram cases (tests/listen/udp_cases.ts) run as Deno.test
// cases with the op and resource sanitizers on; then what only the Deno adapter has:
// receive, for await, close ending the iteration, await using.
import assert from "node:assert/strict";
import { encodeDatagram } from "@proxy-protocol/edge";
import { DatagramMessage, listenDatagram } from "@proxy-protocol/edge/deno";
import {
  defineDatagramSuite,
  Proxy,
  type SeenDatagram,
  type UdpDriver,
} from "../listen/udp_cases.ts";
import { decode, text } from "../listen/client.ts";
import { sanitized } from "./registrar.ts";

const driver: UdpDriver = {
  async start(options, hostname) {
    const seen: SeenDatagram[] = [];
    const conn = await listenDatagram({ ...options, hostname, port: 0 });
    const loop = (async () => {
      for await (const message of conn) {
        seen.push({
          data: new Uint8Array(message.data),
          client: message.client,
          proxy: message.proxy,
          header: message.header,
        });
        await conn.send(new Uint8Array([...text("echo:"), ...message.data]), message);
      }
    })();
    return {
      port: conn.addr.port,
      seen,
      async close() {
        conn.close();
        await conn.finished();
        await loop;
      },
    };
  },
};

defineDatagramSuite("deno listenDatagram", driver, sanitized);

const sanitize = { sanitizeOps: true, sanitizeResources: true };
const UDP4 = {
  version: 2,
  command: "PROXY",
  protocol: "UDP4",
  source: { address: "203.0.113.7", port: 5353 },
  destination: { address: "10.0.0.5", port: 53 },
} as const;

Deno.test("deno listenDatagram: receive, addr, a plain Uint8Array payload", sanitize, async () => {
  await using conn = await listenDatagram({ hostname: "127.0.0.1", port: 0 });
  const proxy = await new Proxy("127.0.0.1").bind();
  try {
    assert.equal(conn.addr.transport, "udp");
    assert.equal(conn.addr.hostname, "127.0.0.1");
    await proxy.send(encodeDatagram(UDP4, text("ping")), conn.addr.port);
    const message = await conn.receive();
    assert.ok(message instanceof DatagramMessage);
    assert.equal(message.data.constructor, Uint8Array);
    assert.equal(decode(message.data), "ping");
    assert.deepEqual(message.client, UDP4.source);
    assert.equal(await conn.send(text("pong"), message), 4);
    assert.equal(decode(await proxy.reply()), "pong");
  } finally {
    await proxy.close();
  }
});

Deno.test(
  "deno listenDatagram: close ends the iteration and rejects receive",
  sanitize,
  async () => {
    const conn = await listenDatagram({ hostname: "127.0.0.1", port: 0 });
    const waiting = conn.receive();
    const iterated = (async () => {
      let n = 0;
      for await (const _ of conn) n++;
      return n;
    })();
    conn.close();
    await assert.rejects(waiting, Deno.errors.BadResource);
    assert.equal(await iterated, 0);
    await assert.rejects(conn.receive(), Deno.errors.BadResource);
    await conn.finished();
  },
);

Deno.test("deno listenDatagram: messages wait for a slow reader, in order", sanitize, async () => {
  await using conn = await listenDatagram({ hostname: "127.0.0.1", port: 0, policy: "optional" });
  const proxy = await new Proxy("127.0.0.1").bind();
  try {
    for (let i = 0; i < 5; i++) await proxy.send(text(`#${i}`), conn.addr.port);
    const got: string[] = [];
    for await (const message of conn) {
      got.push(decode(message.data));
      if (got.length === 5) break;
    }
    assert.deepEqual(got, ["#0", "#1", "#2", "#3", "#4"]);
  } finally {
    await proxy.close();
  }
});
