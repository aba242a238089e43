/**
 * The gateway's Deno glue: the library's `listen` (on `Deno.listen`) reads the header,
 * `Deno.connect` reaches the upstream, and `relayConns` (the pump of the Deno `serve`:
 * one reused buffer a direction, growing for bulk, half-closes passed on) copies. Loaded
 * only on Deno, by `gateway.ts`. Internal.
 *
 * @module
 */

import type { ProxyProtocolError } from "../lib/error.ts";
import { listen, type ProxyConn, type ProxyListener, readAhead } from "../lib/deno/listen.ts";
import { listenNode } from "./_glue_node.ts";
import { relayConns, type RelayEnd } from "../lib/deno/serve.ts";
import type { Tlv } from "../lib/types.ts";
import { type Endpoint, errorFields } from "./_common.ts";
import {
  type GlueConn,
  type GlueListenOptions,
  IdleTimer,
  type Listener,
  nativeListener,
  OpenSet,
  type RelayResult,
} from "./_glue.ts";

/**
 * Listens with the library's Deno `listen`. `Deno.listen`'s `reusePort` (`--workers`) is
 * unstable: without `--unstable-net` the workers listen with `node:net` instead.
 */
export function listenDeno(options: GlueListenOptions): Promise<Listener> {
  const { log, metrics } = options;
  // Without the flag Deno exits on the call; `listenDatagram` exists only with it.
  if (
    options.reusePort && typeof (Deno as { listenDatagram?: unknown }).listenDatagram !== "function"
  ) {
    log.log("debug", "reusePort needs --unstable-net: listening with node:net");
    return listenNode(options);
  }
  const listener: ProxyListener = listen({
    ...options.accept,
    hostname: options.listen.host,
    port: options.listen.port,
    ...(options.reusePort ? { reusePort: true } : {}),
    metrics,
    onError(error: ProxyProtocolError, peer) {
      log.log("warn", "refused", {
        ...errorFields(error),
        peer: peer === undefined ? undefined : `${peer.remoteAddress}:${peer.remotePort}`,
      });
    },
  });
  const open = new OpenSet<DenoConn>();
  const max = options.maxConnections;
  (async () => {
    for await (const conn of listener) {
      if (max > 0 && open.size >= max) {
        metrics.onRefused("MAX_CONNECTIONS");
        log.log("warn", "refused", { code: "MAX_CONNECTIONS", max });
        closeQuietly(conn);
        continue;
      }
      const c = new DenoConn(conn, () => open.delete(c));
      open.add(c);
      options.onConnection(c);
    }
  })().catch(() => {}); // the listener closed
  return nativeListener(
    { host: listener.addr.hostname, port: listener.addr.port },
    options,
    open,
    () => listener.close(),
  );
}

class DenoConn implements GlueConn {
  readonly #conn: ProxyConn;
  readonly #onClose: () => void;
  #out: Deno.TcpConn | undefined;
  /** Payload bytes sent upstream with the header, counted as the client's. */
  #sentAhead = 0;
  #closed = false;

  constructor(conn: ProxyConn, onClose: () => void) {
    this.#conn = conn;
    this.#onClose = onClose;
  }

  get from(): ProxyConn {
    return this.#conn;
  }

  get peer(): string | undefined {
    return undefined; // the library's Deno connection keeps its socket's own address to itself
  }

  /** Deno reports a client that left on the relay's first read, not before. */
  get gone(): boolean {
    return this.#closed;
  }

  get upstream(): string {
    const a = this.#out?.remoteAddr;
    return `${a?.hostname}:${a?.port}`;
  }

  sslTlvs(): Tlv[] {
    return [];
  }

  async connect(target: Endpoint, first: Uint8Array, timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const connecting = Deno.connect({ hostname: target.host, port: target.port });
    const out = await Promise.race([
      connecting,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          connecting.then(closeQuietly, () => {});
          reject(new Error(`no connection within ${timeoutMs} ms`));
        }, timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if (this.#closed) {
      closeQuietly(out);
      return;
    }
    this.#out = out;
    out.setNoDelay(true);
    // Payload that came with the client's header goes in the header's write: one segment
    // and one upstream read fewer for a request that fits in the first read.
    const ahead = readAhead(this.#conn);
    if (ahead > 0) {
      const both = new Uint8Array(first.length + ahead);
      both.set(first);
      await this.#conn.read(both.subarray(first.length)); // resolves at once with `ahead`
      first = both;
      this.#sentAhead = ahead;
    }
    try {
      let at = 0;
      while (at < first.length) at += await out.write(first.subarray(at));
    } catch (error) {
      closeQuietly(out);
      this.#out = undefined;
      throw error;
    }
  }

  async relay(idleMs: number): Promise<RelayResult> {
    const out = this.#out!;
    const conn = this.#conn;
    conn.setNoDelay(true);
    let bytesIn = this.#sentAhead, bytesOut = 0;
    let reason: RelayResult["reason"] = "end";
    const idle = new IdleTimer(idleMs, () => bytesIn + bytesOut, () => {
      reason = "idle";
      this.destroy();
    });
    let failed = false;
    // Counted on each read (the idle timer watches the counts); a failed read or write is an
    // error.
    const client: RelayEnd = {
      read: (p) =>
        conn.read(p).then((n) => {
          if (n !== null) bytesIn += n;
          return n;
        }, fail),
      write: (p) => conn.write(p).catch(fail),
      closeWrite: () => conn.closeWrite(),
      close: () => conn.close(),
    };
    const upstream: RelayEnd = {
      read: (p) =>
        out.read(p).then((n) => {
          if (n !== null) bytesOut += n;
          return n;
        }, fail),
      write: (p) => out.write(p).catch(fail),
      closeWrite: () => out.closeWrite(),
      close: () => out.close(),
    };
    function fail(error: unknown): never {
      failed = true;
      throw error;
    }
    await relayConns(client, upstream, Infinity);
    idle.stop();
    this.#finish();
    if (failed && reason === "end") reason = "error";
    return { bytesIn, bytesOut, reason };
  }

  destroy(): void {
    closeQuietly(this.#conn);
    if (this.#out !== undefined) closeQuietly(this.#out);
    this.#finish();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onClose();
  }
}

function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
