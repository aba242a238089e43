/**
 * `connect`: `Deno.connect()` that sends a PROXY header before any byte of the
 * application. Glue between `Deno.TcpConn` and the runtime-neutral sender.
 *
 * @module
 */

import { headerBytes, runtimeConnectOptions, type SendOptions } from "../connection/sender.ts";
import type { ProxyHeaderInit } from "../types.ts";

/** Options of {@linkcode connect}: `Deno.connect`'s TCP options and the header to send. */
export interface ConnectOptions extends Deno.ConnectOptions, SendOptions {}

/**
 * A TCP connection whose PROXY header is sent with the first write: a `Deno.TcpConn`, with
 * {@linkcode ProxyClientConn.flushHeader} for when the header must go out alone.
 *
 * When the header goes out, exactly:
 * - with the first `write()` (or the first chunk written to `writable`), in the same
 *   buffer: one write call, one TCP segment for a small payload, as HAProxy sends it;
 * - alone, on the first `read()`, on `closeWrite()`, or on `flushHeader()`, whichever
 *   comes first (server-speaks-first protocols: SMTP, FTP, MySQL);
 * - alone, after the current synchronous code, once `readable` is taken: a `write()` made
 *   in the same synchronous code still carries it.
 *
 * `close()` does not send it: a connection closed before any of the above has sent no
 * header. Closing the connection is the application's job.
 */
export class ProxyClientConn implements Deno.TcpConn {
  /** The header this connection sends (or sent). */
  readonly header: ProxyHeaderInit;
  #conn: Deno.TcpConn;
  /** The encoded header while it is still to be sent; `undefined` once it is on its way. */
  #pending: Uint8Array | undefined;
  /** The write that carries the header, while it runs. */
  #sending: Promise<unknown> | undefined;
  #writable: WritableStream<Uint8Array<ArrayBufferLike>> | undefined;

  /**
   * Wraps a connected socket; {@linkcode connect} does this for you.
   *
   * @param conn The socket, with nothing written yet.
   * @param header The header to send.
   * @param bytes The header, encoded.
   */
  constructor(conn: Deno.TcpConn, header: ProxyHeaderInit, bytes: Uint8Array) {
    this.#conn = conn;
    this.header = header;
    this.#pending = bytes;
  }

  /** This end's address. */
  get localAddr(): Deno.NetAddr {
    return this.#conn.localAddr;
  }

  /** The server's address. */
  get remoteAddr(): Deno.NetAddr {
    return this.#conn.remoteAddr;
  }

  /** Whether the header has been handed to the socket (it may still be in flight). */
  get headerSent(): boolean {
    return this.#pending === undefined && this.#sending === undefined;
  }

  /**
   * Sends the header now, alone, unless it is already sent or on its way (then waits for
   * that). For a protocol where the server speaks first, or before `close()`.
   *
   * @returns When the header is written.
   */
  flushHeader(): Promise<void> {
    const bytes = this.#pending;
    if (bytes !== undefined) {
      this.#pending = undefined;
      this.#sending = writeAll(this.#conn, bytes).finally(() => this.#sending = undefined);
    }
    return this.#sending === undefined ? Promise.resolve() : this.#sending.then(() => {});
  }

  /**
   * Writes `p`, as `Deno.Conn.write`. The first write carries the header in front of `p`,
   * in one buffer, and writes all of it before it resolves.
   *
   * @param p The bytes.
   * @returns How many bytes of `p` were written.
   */
  write(p: Uint8Array): Promise<number> {
    const bytes = this.#pending;
    if (bytes !== undefined) {
      this.#pending = undefined;
      const first = new Uint8Array(bytes.length + p.length);
      first.set(bytes);
      first.set(p, bytes.length);
      const sending = writeAll(this.#conn, first);
      this.#sending = sending.finally(() => this.#sending = undefined);
      return sending.then(() => p.length);
    }
    const sending = this.#sending;
    if (sending !== undefined) return sending.then(() => this.#conn.write(p));
    return this.#conn.write(p);
  }

  /**
   * Reads into `p`, as `Deno.Conn.read`; the first read sends the header first, if no
   * write has.
   *
   * @param p Where to put the bytes.
   * @returns How many bytes were read, or `null` at the end.
   */
  read(p: Uint8Array): Promise<number | null> {
    if (this.#pending === undefined && this.#sending === undefined) return this.#conn.read(p);
    return this.flushHeader().then(() => this.#conn.read(p));
  }

  /**
   * The socket's readable side. Taking it sends the header after the current synchronous
   * code, unless a write made meanwhile carries it.
   */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    if (this.#pending !== undefined) {
      queueMicrotask(() => {
        // A failed write of the header fails the reads too; nothing to report twice.
        if (this.#pending !== undefined) this.flushHeader().catch(() => {});
      });
    }
    return this.#conn.readable;
  }

  /**
   * The writable side: its first chunk carries the header, as the first `write()` does.
   * Closing it closes the connection, as with `Deno.Conn.writable`.
   */
  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    if (this.#writable !== undefined) return this.#writable;
    if (this.headerSent) return this.#writable = this.#conn.writable;
    return this.#writable = new WritableStream<Uint8Array<ArrayBufferLike>>({
      write: async (chunk) => {
        let done = await this.write(chunk);
        while (done < chunk.length) done += await this.#conn.write(chunk.subarray(done));
      },
      close: () => this.#close(),
      abort: () => this.#close(),
    });
  }

  /**
   * Sends the header if not yet sent, then closes the write side, as
   * `Deno.Conn.closeWrite`.
   *
   * @returns When done.
   */
  async closeWrite(): Promise<void> {
    await this.flushHeader();
    await this.#conn.closeWrite();
  }

  /** Closes the socket; a header not yet sent is not sent (see the class). */
  close(): void {
    this.#conn.close();
  }

  #close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Lets the event loop exit while this connection is open, as `Deno.Conn.unref`. */
  unref(): void {
    this.#conn.unref();
  }

  /** Undoes {@linkcode ProxyClientConn.unref}. */
  ref(): void {
    this.#conn.ref();
  }

  /**
   * Sets TCP_NODELAY, as `Deno.TcpConn.setNoDelay`.
   *
   * @param noDelay Default `true`.
   */
  setNoDelay(noDelay?: boolean): void {
    this.#conn.setNoDelay(noDelay);
  }

  /**
   * Sets SO_KEEPALIVE, as `Deno.TcpConn.setKeepAlive`.
   *
   * @param keepAlive Default `true`.
   */
  setKeepAlive(keepAlive?: boolean): void {
    this.#conn.setKeepAlive(keepAlive);
  }

  /** Closes the socket when used with `using`. */
  [Symbol.dispose](): void {
    this.#close();
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await conn.write(bytes.subarray(done));
}

/**
 * Connects like `Deno.connect` and sends a PROXY header before any byte of the
 * application: `header` as given, or what the accepted connection `from` says
 * (`headerFor(from)`), or, with neither, a v2 LOCAL header (a health check).
 *
 * The header is checked and encoded before connecting, so a bad one throws and nothing
 * connects. It then goes out with the first write, in the same buffer; see
 * {@linkcode ProxyClientConn} for when it goes out alone (first read, `flushHeader()`).
 *
 * @param options `Deno.connect`'s TCP options (`hostname`, `port`, `signal`, ...), and
 *   `header`, `from`, `checksum`.
 * @returns The connection, which the caller closes.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` when the header cannot be
 *   written (before connecting).
 * @throws {TypeError} When both `header` and `from` are given.
 *
 * @example Relay a client: the header rides with the first bytes
 * ```ts
 * import { connect, listen } from "@proxy-protocol/edge/deno";
 * import assert from "node:assert/strict";
 *
 * await using backend = listen({ hostname: "127.0.0.1", port: 0 });
 * using conn = await connect({
 *   hostname: "127.0.0.1",
 *   port: backend.addr.port,
 *   header: {
 *     version: 2,
 *     command: "PROXY",
 *     protocol: "TCP4",
 *     source: { address: "203.0.113.7", port: 51234 },
 *     destination: { address: "10.0.0.5", port: 443 },
 *   },
 *   checksum: true,
 * });
 * await conn.write(new TextEncoder().encode("ping"));
 * using accepted = await backend.accept();
 * assert.equal(accepted.remoteAddr.hostname, "203.0.113.7");
 * const buffer = new Uint8Array(4);
 * assert.equal(await accepted.read(buffer), 4);
 * ```
 *
 * @example Pass on what an accepted connection says (HAProxy's send-proxy)
 * ```ts
 * import { connect, listen } from "@proxy-protocol/edge/deno";
 * import { encodeHeader } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * await using front = listen({ hostname: "127.0.0.1", port: 0 });
 * await using back = listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: front.addr.port });
 * await client.write(encodeHeader({
 *   version: 1,
 *   command: "PROXY",
 *   protocol: "TCP4",
 *   source: { address: "198.51.100.9", port: 40000 },
 *   destination: { address: "192.0.2.1", port: 80 },
 * }));
 * using accepted = await front.accept();
 * using upstream = await connect({ hostname: "127.0.0.1", port: back.addr.port, from: accepted });
 * await upstream.flushHeader(); // nothing to write yet: send the header alone
 * using relayed = await back.accept();
 * assert.equal(relayed.remoteAddr.hostname, "198.51.100.9");
 * assert.equal(relayed.proxyHeader?.version, 2);
 * client.close();
 * ```
 */
export async function connect(options: ConnectOptions): Promise<ProxyClientConn> {
  const { header, bytes } = headerBytes(options);
  // Everything else is Deno.connect's, including options newer than these types.
  const conn = await Deno.connect(
    { ...runtimeConnectOptions(options), transport: "tcp" },
  );
  return new ProxyClientConn(conn, header, bytes);
}
