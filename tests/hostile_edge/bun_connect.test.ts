// The Bun sender (connect() on Bun.connect) against hostile servers: one that resets at
// once, one that never reads, a closed port, and headers it cannot write. Bun only.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type ProxyHeaderInit, ProxyProtocolError } from "@proxy-protocol/edge";
import { type ClientSocket, connect } from "@proxy-protocol/edge/bun";
import { closedPort, fds, hostileUpstream, MiB, sleep, until, within } from "./helpers.ts";
import { hostileHeaders, isInvalidHeader } from "./sender_cases.ts";

const SIZES = { resets: 20, pushChunk: MiB, pushMax: 64 * MiB };
console.log(`hostile senders (bun connect): ${JSON.stringify(SIZES)}`);

const LONG = { timeout: 60_000 };
const HEADER: ProxyHeaderInit = {
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "203.0.113.7", port: 51234 },
  destination: { address: "10.0.0.5", port: 443 },
};

/** Connects with handlers that record what Bun reports; resolves with the socket. */
function dial(port: number, header: ProxyHeaderInit = HEADER) {
  const events: string[] = [];
  let closed!: () => void;
  const whenClosed = new Promise<void>((resolve) => closed = resolve);
  const socket = connect({
    hostname: "127.0.0.1",
    port,
    header,
    socket: {
      open(s) {
        s.write("hello");
      },
      data() {},
      close(_s, error) {
        events.push(`close${error ? `: ${error.name} ${(error as { code?: string }).code}` : ""}`);
        closed();
      },
      error(_s, error) {
        events.push(`error: ${error.name}`);
      },
      connectError(_s, error) {
        events.push(`connectError: ${(error as { code?: string }).code}`);
        closed();
      },
    },
  });
  return { socket, events, closed: whenClosed };
}

describe("bun connect against hostile servers", () => {
  it(
    "a server that resets at once: closed, with Bun's error at most, nothing left",
    LONG,
    async () => {
      const server = await hostileUpstream("reset");
      const before = fds();
      const all: string[] = [];
      try {
        for (let i = 0; i < SIZES.resets; i++) {
          const d = dial(server.port);
          try {
            await d.socket;
          } catch (error) {
            assert.ok(!(error instanceof ProxyProtocolError), "not the header's fault");
            all.push(`rejected: ${(error as { code?: string }).code}`);
          }
          await within(d.closed, 5000, "the reset socket closed");
          all.push(...d.events);
        }
      } finally {
        await server.close();
      }
      console.log(`  bun connect, reset at once: ${JSON.stringify(tally(all))}`);
      await until(() => fds() <= before, 3000, () => `fds ${fds()}, before ${before}`);
    },
  );

  it(
    "a server that never reads: write() takes less than asked; terminate releases it",
    LONG,
    async () => {
      const server = await hostileUpstream("blackhole");
      const before = fds();
      try {
        const d = dial(server.port);
        const socket: ClientSocket = await d.socket;
        const chunk = new Uint8Array(SIZES.pushChunk);
        let pushed = 0, short = -1;
        while (pushed < SIZES.pushMax) {
          const n = socket.write(chunk);
          assert.ok(n >= 0, "closed");
          pushed += n;
          if (n < chunk.length) {
            short = n;
            break;
          }
        }
        console.log(
          `  bun connect, never-reading server: write() took ${short} of ${chunk.length} after ` +
            `${((pushed - short) / MiB).toFixed(0)} MiB`,
        );
        assert.ok(short >= 0, "never held back");
        await sleep(200);
        socket.terminate();
        await within(d.closed, 3000, "closed");
      } finally {
        await server.close();
      }
      await until(() => fds() <= before, 3000, () => `fds ${fds()}, before ${before}`);
    },
  );

  it(
    "a closed port: the promise rejects (ECONNREFUSED), connectError called, nothing left",
    LONG,
    async () => {
      const port = await closedPort();
      const before = fds();
      const d = dial(port);
      await assert.rejects(d.socket, (error: Error & { code?: string }) => {
        assert.ok(!(error instanceof ProxyProtocolError));
        assert.equal(error.code, "ECONNREFUSED");
        return true;
      });
      await within(d.closed, 3000, "connectError");
      assert.deepEqual(d.events, ["connectError: ECONNREFUSED"]);
      await until(() => fds() <= before, 3000, () => `fds ${fds()}, before ${before}`);
    },
  );

  it("a header it cannot write: INVALID_HEADER before any connection", async () => {
    const server = await hostileUpstream("blackhole");
    try {
      for (const [name, header] of hostileHeaders()) {
        // Documented as thrown; a rejected promise would do as well.
        let outcome: unknown;
        try {
          await dial(server.port, header).socket;
        } catch (error) {
          outcome = error;
        }
        assert.ok(isInvalidHeader(outcome), `${name}: ${String(outcome)}`);
      }
      await sleep(100);
      assert.equal(server.accepted, 0);
    } finally {
      await server.close();
    }
  });
});

function tally(items: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of items) out[k] = (out[k] ?? 0) + 1;
  return out;
}
