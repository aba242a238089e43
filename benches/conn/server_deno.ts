/**
 * The Deno side of the per-connection benchmark: a plain `Deno.listen` listener and the
 * library's `listen`, in one process, running the same app (see control.ts for the
 * control channel). Run by run.mjs: `deno run -A --v8-flags=--expose-gc server_deno.ts`.
 *
 * @module
 */

import { listen } from "@proxy-protocol/edge/deno";
import { type Mode, newStats, REPLY, serveControl, SIZE, type Stats } from "./control.ts";

let mode: Mode = "short";
// Shared by every connection: the app discards what it reads.
const scratch = new Uint8Array(64 * 1024);

interface Conn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** The app: short = read 100 B, reply 100 B, close; idle and bulk = read until EOF. */
async function handle(conn: Conn, stats: Stats): Promise<void> {
  stats.accepted++;
  stats.open++;
  try {
    if (mode === "short") {
      let got = 0;
      while (got < SIZE) {
        const n = await conn.read(scratch);
        if (n === null) break;
        got += n;
      }
      stats.bytes += got;
      await conn.write(REPLY);
    } else {
      for (;;) {
        const n = await conn.read(scratch);
        if (n === null) break;
        stats.bytes += n;
      }
    }
  } catch {
    stats.errors++;
  } finally {
    stats.open--;
    try {
      conn.close();
    } catch {
      // closed already
    }
  }
}

async function serve(listener: AsyncIterable<Conn>, stats: Stats): Promise<void> {
  for await (const conn of listener) handle(conn, stats);
}

const rawStats = newStats();
const ourStats = newStats();
const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const ours = listen({
  hostname: "127.0.0.1",
  port: 0,
  onError: () => {
    ourStats.refused++;
  },
});
serve(raw, rawStats);
serve(ours, ourStats);

const gc = (globalThis as { gc?: () => void }).gc;
serveControl({
  runtime: `deno ${Deno.version.deno}`,
  raw: { port: raw.addr.port, stats: rawStats },
  ours: { port: ours.addr.port, stats: ourStats },
  setMode: (m) => mode = m,
  gc: () => {
    if (gc === undefined) return false;
    gc();
    gc();
    return true;
  },
});
