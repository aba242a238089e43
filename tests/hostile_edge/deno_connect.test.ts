// The Deno sender (connect() on Deno.connect) against hostile servers: one that resets at
// once, one that never reads, a closed port, and headers it cannot write. Deno.test with the
// op and resource sanitizers: a leaked socket, pending op or timer fails the test. Deno only.
import assert from "node:assert/strict";
import { type ProxyHeaderInit, ProxyProtocolError } from "@proxy-protocol/edge";
import { connect } from "@proxy-protocol/edge/deno";
import { closedPort, fds, hostileUpstream, MiB, text, until } from "./helpers.ts";
import { hostileHeaders, isInvalidHeader } from "./sender_cases.ts";

const SIZES = { resets: 20, pushChunk: MiB, pushMax: 64 * MiB, stallMs: 500 };
console.log(`hostile senders (deno connect): ${JSON.stringify(SIZES)}`);

const sanitize = { sanitizeOps: true, sanitizeResources: true } as const;
const HEADER: ProxyHeaderInit = {
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "203.0.113.7", port: 51234 },
  destination: { address: "10.0.0.5", port: 443 },
};

/** The runtime's errors a reset may surface as. */
const RESET_ERRORS = [Deno.errors.ConnectionReset, Deno.errors.BrokenPipe];

Deno.test({
  name: "deno connect: a server that resets at once: Deno's own errors, nothing left",
  ...sanitize,
  async fn() {
    const server = await hostileUpstream("reset");
    const before = fds();
    const seen: string[] = [];
    try {
      for (let i = 0; i < SIZES.resets; i++) {
        let conn;
        try {
          conn = await connect({ hostname: "127.0.0.1", port: server.port, header: HEADER });
        } catch (error) {
          assert.ok(RESET_ERRORS.some((e) => error instanceof e), String(error));
          seen.push(`connect: ${(error as Error).name}`);
          continue;
        }
        try {
          for (const step of ["write", "read"] as const) {
            try {
              if (step === "write") await conn.write(text("hello"));
              else seen.push(`read: ${await conn.read(new Uint8Array(16))}`);
            } catch (error) {
              assert.ok(!(error instanceof ProxyProtocolError), "not the header's fault");
              assert.ok(RESET_ERRORS.some((e) => error instanceof e), String(error));
              seen.push(`${step}: ${(error as Error).name}`);
            }
          }
        } finally {
          conn.close();
        }
      }
    } finally {
      await server.close();
    }
    console.log(`  deno connect, reset at once: ${JSON.stringify(tally(seen))}`);
    await until(() => fds() <= before, 3000, () => `fds ${fds()}, before ${before}`);
  },
});

Deno.test({
  name: "deno connect: a server that never reads: a write stalls; close ends it",
  ...sanitize,
  async fn() {
    const server = await hostileUpstream("blackhole");
    const before = fds();
    try {
      const conn = await connect({ hostname: "127.0.0.1", port: server.port, header: HEADER });
      const chunk = new Uint8Array(SIZES.pushChunk);
      let pushed = 0;
      let stalled: Promise<number> | undefined;
      while (pushed < SIZES.pushMax) {
        const writing = conn.write(chunk);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const done = await Promise.race([
          writing.then(() => true),
          new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), SIZES.stallMs)),
        ]);
        clearTimeout(timer);
        if (!done) {
          stalled = writing;
          break;
        }
        pushed += chunk.length;
      }
      console.log(
        `  deno connect, never-reading server: a write stalled after ${pushed / MiB} MiB`,
      );
      assert.ok(stalled !== undefined, "never stalled");
      conn.close();
      // The stalled write ends with the connection (rejects, or resolves with what it wrote).
      await stalled.then(() => {}, (error) => {
        assert.ok(!(error instanceof ProxyProtocolError));
        assert.ok(error instanceof Error);
      });
    } finally {
      await server.close();
    }
    await until(() => fds() <= before, 3000, () => `fds ${fds()}, before ${before}`);
  },
});

Deno.test({
  name: "deno connect: a closed port rejects with Deno.errors.ConnectionRefused",
  ...sanitize,
  async fn() {
    const port = await closedPort();
    const before = fds();
    await assert.rejects(
      connect({ hostname: "127.0.0.1", port, header: HEADER }),
      Deno.errors.ConnectionRefused,
    );
    assert.equal(fds(), before);
  },
});

Deno.test({
  name: "deno connect: a header it cannot write rejects with INVALID_HEADER, nothing connects",
  ...sanitize,
  async fn() {
    const server = await hostileUpstream("blackhole");
    try {
      for (const [name, header] of hostileHeaders()) {
        await assert.rejects(
          connect({ hostname: "127.0.0.1", port: server.port, header }),
          isInvalidHeader,
          name,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(server.accepted, 0);
    } finally {
      await server.close();
    }
  },
});

function tally(items: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of items) out[k] = (out[k] ?? 0) + 1;
  return out;
}
