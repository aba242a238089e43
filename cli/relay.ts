/**
 * The gateway's relay, runtime-neutral on `node:net` streams (which Deno, Bun and Node all
 * have): connect to one of several upstreams in turn, with a connect timeout and failover,
 * then copy both ways with backpressure (`pipe`), keep half-closes (a client's FIN becomes
 * the upstream's, and back), and cut both sides on an error or an idle timeout. Internal.
 *
 * @module
 */

import net from "node:net";
import type { Duplex } from "node:stream";
import { type Endpoint, formatEndpoint } from "./_common.ts";

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
   * Connects to the next upstream; on a failed connect tries the following one, each once.
   *
   * @param first Bytes to write as soon as connected (the header), or empty.
   * @param onFailure Called for each failed attempt.
   * @param cancelled Whether to give up (the client went away).
   * @returns The connected socket, or `undefined` when every upstream failed.
   */
  async connect(
    first: Uint8Array,
    onFailure: (upstream: string, error: Error) => void,
    cancelled: () => boolean,
  ): Promise<net.Socket | undefined> {
    const n = this.list.length;
    const start = this.#next;
    this.#next = (this.#next + 1) % n;
    for (let i = 0; i < n && !cancelled(); i++) {
      const target = this.list[(start + i) % n]!;
      try {
        return await this.#attempt(target, first);
      } catch (error) {
        onFailure(formatEndpoint(target), error as Error);
      }
    }
    return undefined;
  }

  #attempt(target: Endpoint, first: Uint8Array): Promise<net.Socket> {
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
        reject(new Error(`no connection within ${this.connectTimeout} ms`));
      }, this.connectTimeout);
      const onError = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", onError);
        resolve(socket);
      });
    });
  }
}

/** What a relay carried. */
export interface RelayResult {
  /** Bytes from the client to the upstream (payload). */
  bytesIn: number;
  /** Bytes from the upstream to the client. */
  bytesOut: number;
  /** Why it ended: `end` (both sides closed), `error`, `idle`. */
  reason: "end" | "error" | "idle";
  /** The error, for `error`. */
  error?: Error;
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
    client.once("close", closed);
    upstream.once("close", closed);
    if (idleMs > 0) {
      const idle = () => cut("idle");
      (client as net.Socket).setTimeout?.(idleMs, idle);
      upstream.setTimeout(idleMs, idle);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
}
