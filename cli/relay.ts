/**
 * The gateway's upstream choice (round-robin, a connect timeout, failover: runtime-neutral)
 * and its `node:net` relay (Node, and TLS termination on Deno and Bun): connect, then copy
 * both ways with backpressure (`pipe`), keep half-closes (a client's FIN becomes
 * the upstream's, and back), and cut both sides on an error or an idle timeout. Internal.
 *
 * @module
 */

import net from "node:net";
import type { Duplex } from "node:stream";
import { type Endpoint, formatEndpoint } from "./_common.ts";
import type { GlueConn, RelayResult } from "./_glue.ts";

export type { RelayResult };

/** Round-robin over upstreams, each connect bounded by a timeout, failing over in turn. */
export class Upstreams {
  readonly list: readonly Endpoint[];
  readonly connectTimeout: number;
  #next = 0;

  constructor(list: readonly Endpoint[], connectTimeout: number) {
    this.list = list;
    this.connectTimeout = connectTimeout;
  }

  /**
   * Connects a connection to the next upstream; on a failed connect tries the following
   * one, each once.
   *
   * @param conn The client's connection, which makes the connect.
   * @param first Bytes to write as soon as connected (the header), or empty.
   * @param onFailure Called for each failed attempt.
   * @returns Whether it connected; `false` when every upstream failed or the client left.
   */
  async connect(
    conn: GlueConn,
    first: Uint8Array,
    onFailure: (upstream: string, error: Error) => void,
  ): Promise<boolean> {
    const n = this.list.length;
    const start = this.#next;
    this.#next = (this.#next + 1) % n;
    for (let i = 0; i < n && !conn.gone; i++) {
      const target = this.list[(start + i) % n]!;
      try {
        await conn.connect(target, first, this.connectTimeout);
        return true;
      } catch (error) {
        onFailure(formatEndpoint(target), error as Error);
      }
    }
    return false;
  }
}

/** Connects with `node:net`, writing `first` once connected, within `timeoutMs`. */
export function connectNode(
  target: Endpoint,
  first: Uint8Array,
  timeoutMs: number,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host: target.host,
      port: target.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    // The header goes out with the first write once connected.
    if (first.length > 0) socket.write(first);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      // The header's write can still fail (a peer that resets at once): its error comes on
      // a nextTick, before `relay` can listen. Unheard, it would end the process; `relay`
      // finds the socket destroyed and reads the error from `errored`.
      socket.on("error", ignore);
      resolve(socket);
    });
  });
}

/**
 * Copies both ways until both sides are done.
 *
 * Who closes what: each side's end of input ends the other's output (half-close kept); an
 * error on either side, or no traffic for `idleMs`, destroys both. Resolves once both
 * sockets are closed.
 *
 * @param client The accepted connection (after its header, and TLS if any).
 * @param upstream The connected upstream.
 * @param idleMs Idle timeout; 0 for none.
 * @param headerLength Bytes of `upstream`'s writes that were the header, not payload.
 */
export function relay(
  client: Duplex & { bytesWritten?: number },
  upstream: net.Socket,
  idleMs: number,
  headerLength: number,
): Promise<RelayResult> {
  return new Promise((resolve) => {
    let reason: RelayResult["reason"] = "end";
    let failure: Error | undefined;
    let open = 2;
    const cut = (why: RelayResult["reason"], error?: Error) => {
      if (reason === "end") {
        reason = why;
        failure = error;
      }
      client.destroy();
      upstream.destroy();
    };
    const closed = () => {
      if (--open > 0) return;
      const result: RelayResult = {
        bytesIn: Math.max(0, upstream.bytesWritten - headerLength),
        bytesOut: client.bytesWritten ?? 0,
        reason,
      };
      if (failure !== undefined) result.error = failure;
      resolve(result);
    };
    client.on("error", (error: Error) => cut("error", error));
    upstream.on("error", (error: Error) => cut("error", error));
    whenClosed(client, closed);
    whenClosed(upstream, closed);
    if (client.destroyed || upstream.destroyed) {
      // Failed (or closed) before this listened: its events are gone.
      const error = errored(upstream) ?? errored(client);
      cut(error === undefined ? "end" : "error", error);
      return;
    }
    if (idleMs > 0) {
      const idle = () => cut("idle");
      (client as net.Socket).setTimeout?.(idleMs, idle);
      upstream.setTimeout(idleMs, idle);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
}

function ignore(): void {}

/** Calls `fn` once `stream` has closed, also when it closed already. */
function whenClosed(stream: Duplex, fn: () => void): void {
  if ((stream as { closed?: boolean }).closed === true) queueMicrotask(fn);
  else stream.once("close", fn);
}

/** The error a stream was destroyed with, if any. */
function errored(stream: Duplex): Error | undefined {
  return (stream as { errored?: Error | null }).errored ?? undefined;
}
