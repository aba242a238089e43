// Regression tests for the header phase's faults, on the Deno adapter (`listen` of
// "@proxy-protocol/edge/deno"). Deno only: run by `deno test`, excluded from Bun and Node.
// 1. Memory stays bounded while an async `validate` runs; every byte still arrives.
// 2. A connection keeps no more than its header: TLV values own their bytes, and the bytes
//    read after the header are a copy of their own, not the pooled 4 KiB read buffer.
// 3. accept() out of file descriptors: back off, report ACCEPT_FAILED once, recover.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { listen, type ProxyConn } from "@proxy-protocol/edge/deno";
import { KiB, noise } from "./helpers.ts";
import { assertOwnedTlvs, AWS_HEADER, faultSuite, printSizes } from "./suite.ts";

printSizes("deno_listen.test.ts");

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};

/** Connects and sends the header and `payload` in one write, then closes its write side. */
async function send(port: number, payload: Uint8Array): Promise<Deno.TcpConn> {
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  const bytes = concat(AWS_HEADER, payload);
  for (let at = 0; at < bytes.length;) at += await client.write(bytes.subarray(at));
  await client.closeWrite();
  return client;
}

async function readAll(conn: ProxyConn): Promise<{ first: Uint8Array; all: Uint8Array }> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of conn.readable) chunks.push(chunk);
  return { first: chunks[0]!, all: chunks.reduce(concat, new Uint8Array(0)) };
}

describe("faults: deno listen", () => {
  for (const validate of [false, true]) {
    it(`TLV values and the bytes after the header own their memory (${validate ? "with" : "no"} validate)`, async () => {
      await using listener = listen({
        hostname: "127.0.0.1",
        port: 0,
        policy: "require",
        ...(validate
          ? { validate: () => new Promise<boolean>((r) => setTimeout(r, 20, true)) }
          : {}),
        onError: (error) => assert.fail(`refused: ${error.code} ${error.message}`),
      });
      const a = noise(1, 32 * KiB), b = noise(2, 32 * KiB);
      // Connection A is accepted and left unread while B's header is read: if A's first
      // bytes were a view into the pooled read buffer, B's header phase would overwrite them.
      const clientA = await send(listener.addr.port, a);
      using connA = await listener.accept();
      const clientB = await send(listener.addr.port, b);
      using connB = await listener.accept();
      const gotB = await readAll(connB);
      const gotA = await readAll(connA);
      clientA.close();
      clientB.close();

      for (const conn of [connA, connB]) assertOwnedTlvs(conn.proxyHeader);
      // The first chunk of `readable` is what the header phase read past the header: it must
      // be a copy of just those bytes, not a view into the listener's read buffer.
      for (const { first } of [gotA, gotB]) {
        assert.ok(first.byteLength > 0);
        assert.equal(
          first.buffer.byteLength,
          first.byteLength,
          `the bytes after the header are a view into ${first.buffer.byteLength} bytes`,
        );
      }
      assert.deepEqual(gotA.all, new Uint8Array(a), "A's payload, unharmed by B's header");
      assert.deepEqual(gotB.all, new Uint8Array(b), "B's payload");
    });
  }

  faultSuite("deno");
});
