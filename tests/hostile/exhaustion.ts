// The HTTP servers (`serve` on each runtime) out of file descriptors: what
// tests/faults checks of the listeners (`ulimit -n` in a child, connections held until the
// descriptors run out, then released), for the entry points it does not cover. The
// server runs tests/hostile/fixtures/serve.mjs; half the held clients are silent (in their
// header phase), half have sent a header and half a request (relayed into the inner
// server on Deno and Bun, in the app's hands on Node), so that every accept and connect
// the entry point makes runs out. Once released, a fresh request must be served, and the
// server's descriptors come back to what they were.
import assert from "node:assert/strict";
import type net from "node:net";
import { connect } from "../faults/helpers.ts";
import { delay } from "../listen/client.ts";
import { exchange, pool, runtime, serveChild } from "./helpers.ts";
import type { Registrar } from "./suite.ts";

/** Sizes, as tests/faults/suite.ts has them for the listeners. */
export const EXHAUSTION = {
  nofile: 64,
  hold: 200,
  holdMs: 1500,
  /**
   * After the release: the fresh request's attempts, each this long (backoff tops at 1 s;
   * Bun's relay frees pairs whose client left untaken by the inner server 2 s on, a round
   * at a time while the backlog drains: seen 0-6 s; Deno's relay starts a new inner
   * `Deno.serve` once descriptors allow: seen 0.7 s).
   */
  attempts: 5,
  attemptMs: 3000,
  /** The server's descriptors must be back within this. */
  settleMs: 5000,
};

/** Terminal colours in a child's stderr (Deno's errors). */
const ANSI = new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g");

const V1 = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 80\r\n";
const GET = "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n";

/** A fresh request: the body of the answer, or why there was none. */
async function fresh(port: number, plain: boolean): Promise<string> {
  for (let attempt = 1;; attempt++) {
    try {
      const got = await exchange(
        { host: "127.0.0.1", port },
        plain ? GET : V1 + GET,
        { ms: EXHAUSTION.attemptMs },
      );
      const reply = got.reply.toString("utf8");
      const body = reply.slice(reply.indexOf("\r\n\r\n") + 4);
      if (body !== "" || attempt >= EXHAUSTION.attempts) return body;
    } catch (error) {
      if (attempt >= EXHAUSTION.attempts) return (error as Error).message;
    }
    await delay(500); // an answerless close comes at once: give the server time to recover
  }
}

interface Run {
  alive: boolean;
  stderr: string;
  fdsIdle: number;
  fdsHeld: number;
  fdsAfter: number;
  cpuSeconds: number;
  failed: number;
  reply: string;
  stats: Record<string, unknown> | string;
}

/** Holds `hold` connections against `adapter` in its child, releases them, asks again. */
async function run(adapter: string): Promise<Run> {
  const plain = adapter.startsWith("plain:");
  const child = await serveChild(adapter, EXHAUSTION.nofile);
  const sockets: net.Socket[] = [];
  try {
    const before = await fresh(child.port, plain);
    assert.match(before, plain ? /^hello 127\.0\.0\.1/ : /^hello 203\.0\.113\.7/);
    const fdsIdle = child.fds();
    let failed = 0; // connects refused: the server died, or its backlog is full
    await pool(EXHAUSTION.hold, 50, async (i) => {
      const socket = await connect(child.port).catch(() => null);
      if (socket === null) return void failed++;
      socket.on("error", () => {});
      sockets.push(socket);
      if (i % 2 === 1) socket.write((plain ? "" : V1) + "GET / HTTP/1.1\r\nHost: x\r\n");
    });
    const cpu0 = child.cpuSeconds();
    await delay(EXHAUSTION.holdMs);
    const cpuSeconds = child.cpuSeconds() - cpu0;
    const fdsHeld = child.fds();
    for (const socket of sockets) socket.destroy();
    const reply = child.alive ? await fresh(child.port, plain) : "(exited)";
    let fdsAfter = child.fds();
    for (const end = Date.now() + EXHAUSTION.settleMs; fdsAfter > fdsIdle && Date.now() < end;) {
      await delay(50);
      fdsAfter = child.fds();
    }
    const stats = child.alive
      ? await child.stats().then((s) => s.errors, (e: Error) => e.message)
      : "(exited)";
    return {
      alive: child.alive,
      stderr: child.stderr.replace(ANSI, "").slice(-600),
      fdsIdle,
      fdsHeld,
      fdsAfter,
      cpuSeconds,
      failed,
      reply,
      stats,
    };
  } finally {
    for (const socket of sockets) socket.destroy();
    await child.stop();
  }
}

/**
 * Registers the case for `serve` of `adapter`. When it fails, the same is done to the
 * runtime's own server without this library (Deno.serve, Bun.serve, node:http), and the
 * message says whether that survives.
 */
export function exhaustionCase(adapter: "deno" | "bun" | "node", registrar: Registrar): void {
  const name = `${adapter} serve on ${runtime}`;
  registrar.it(
    `${name}: out of file descriptors (ulimit -n ${EXHAUSTION.nofile}, ${EXHAUSTION.hold} clients held), it survives, serves again and frees them`,
    { timeout: 120_000 },
    async () => {
      const got = await run(adapter);
      const summary = (r: Run) =>
        `alive ${r.alive}; ${EXHAUSTION.hold - r.failed}/${EXHAUSTION.hold} clients connected; ` +
        `fds ${r.fdsIdle} idle, ${r.fdsHeld} held (limit ${EXHAUSTION.nofile}), ` +
        `${r.fdsAfter} after; CPU ${r.cpuSeconds.toFixed(2)} s in ${EXHAUSTION.holdMs} ms; fresh ` +
        `request got ${JSON.stringify(r.reply)}; onError ${JSON.stringify(r.stats)}`;
      console.log(`[hostile] ${name}: fd exhaustion: ${summary(got)}`);
      const ok = got.alive && /^hello 203\.0\.113\.7\n$/.test(got.reply) &&
        got.fdsAfter <= got.fdsIdle;
      let baseline = "";
      if (!ok) {
        const plain = await run(`plain:${adapter}`);
        baseline = `\n  without this library (plain:${adapter}): ${summary(plain)}`;
        console.log(`[hostile] ${name}: fd exhaustion:${baseline}`);
      }
      const why = `${summary(got)}${got.stderr ? `\n  stderr: ${got.stderr}` : ""}${baseline}`;
      // Out of descriptors: seen at the peak, or reported by the accept loop (Deno's relay
      // frees its pairs when its inner server stops, before the peak is measured).
      const acceptFailed = typeof got.stats === "object" &&
        ((got.stats.codes as Record<string, number> | undefined)?.ACCEPT_FAILED ?? 0) > 0;
      assert.ok(
        got.fdsHeld >= EXHAUSTION.nofile - 2 || acceptFailed || !got.alive,
        `never ran out: ${why}`,
      );
      assert.ok(got.alive, `the server died: ${why}`);
      assert.equal(got.reply, "hello 203.0.113.7\n", `not served again: ${why}`);
      assert.ok(got.fdsAfter <= got.fdsIdle, `descriptors not freed: ${why}`);
    },
  );
}
