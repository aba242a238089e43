/**
 * `listen`: `Deno.listen()` for servers behind a PROXY protocol load balancer. Glue
 * between `Deno.Listener` and the shared accept phase.
 *
 * @module
 */

import { ProxyProtocolError } from "../error.ts";
import { continueWith } from "../stream.ts";
import { AcceptPhase, type AcceptStep } from "../connection/accept.ts";
import { headerAddresses } from "../connection/addresses.ts";
import { AcceptBackoff } from "../connection/backoff.ts";
import {
  type ProxyProtocolOptions,
  type ResolvedOptions,
  resolveOptions,
} from "../connection/options.ts";
import type { PeerInfo } from "../connection/peer.ts";
import { report } from "../connection/report.ts";
import { closedError } from "../connection/session.ts";
import type { ListenerMetrics } from "../connection/metrics.ts";
import type { ProxyHeader } from "../types.ts";

/** Options for {@linkcode listen}: `Deno.listen`'s TCP options and the shared ones. */
export interface ListenOptions extends Deno.TcpListenOptions, ProxyProtocolOptions {
  /**
   * How many connections whose header is in may wait for `accept()` before the listener
   * stops accepting new ones (the kernel's backlog holds the rest). Default 128.
   */
  acceptQueue?: number;
}

const EMPTY = new Uint8Array(0);
/**
 * How much the first read of a connection takes: a whole header of the usual kinds (v1 is at
 * most 107 bytes, v2 without TLVs 232, AWS's 61) and a small request after it, while a
 * thousand connections arriving at once hold only half a MiB of read buffers. Longer
 * headers take more reads.
 */
const READ_SIZE = 512;

/** Gives a pooled read buffer that holds a connection's first bytes to it. */
let lend: (conn: ProxyConn, pool: BufferPool, buffer: Uint8Array) => void;
/** Makes a connection lazy: its header phase is still to run. */
let defer: (conn: ProxyConn, phase: LazyPhase) => void;
/** A lazy connection's header phase is over: the header and the bytes after it. */
let adopt: (conn: ProxyConn, phase: LazyPhase) => void;

/**
 * How many payload bytes came in with the header and wait in the connection: its next
 * `read` returns them at once. The gateway sends them in the same write as the header it
 * writes upstream. Internal (not exported from the package).
 */
export function readAhead(conn: ProxyConn): number {
  return restOf(conn).length;
}
let restOf: (conn: ProxyConn) => Uint8Array;

/**
 * A connection whose PROXY header has been read: shaped like `Deno.Conn`, with the
 * client's addresses. After the header, `read` and `readable` go straight to the socket.
 * Closing it is the application's job.
 *
 * From a `lazy` listener it comes before its header: writes go through at once, and the
 * first `read`, the first read of `readable`, or `proxyHeaderSettled` reads the header;
 * until then `proxyHeader` is `null` and the addresses are the socket's own.
 */
export class ProxyConn implements Deno.Conn<Deno.NetAddr> {
  #remoteAddr: Deno.NetAddr;
  #localAddr: Deno.NetAddr;
  #header: ProxyHeader | null;
  #conn: Deno.TcpConn;
  #rest: Uint8Array;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;
  /** The pooled buffer `#rest` is a view into, given back once it is read. */
  #lent: Uint8Array | undefined;
  #pool: BufferPool | undefined;
  /** Lazy: the header phase, until it succeeds (kept after a refusal, for its error). */
  #phase: LazyPhase | undefined = undefined;
  /** `proxyHeaderSettled`, made when first asked for (or when a lazy read starts). */
  #settled: Promise<ProxyHeader | null> | undefined = undefined;

  static {
    restOf = (conn) => conn.#rest;
    lend = (conn, pool, buffer) => {
      conn.#pool = pool;
      conn.#lent = buffer;
    };
    defer = (conn, phase) => {
      conn.#phase = phase;
    };
    adopt = (conn, phase) => {
      const header = phase.header;
      conn.#header = header;
      const a = headerAddresses(header);
      if (a !== undefined) {
        conn.#remoteAddr = { transport: "tcp", hostname: a.remoteAddress, port: a.remotePort };
        conn.#localAddr = { transport: "tcp", hostname: a.localAddress, port: a.localPort };
      }
      conn.#rest = phase.rest;
      if (phase.lent !== undefined) lend(conn, phase.pool, phase.lent);
      conn.#phase = undefined;
    };
  }

  /**
   * Wraps an accepted socket; `listen()` does this for you.
   *
   * @param conn The socket.
   * @param header The header read from it, or `null`.
   * @param rest Bytes read while looking for a header that belong to the application; the
   *   connection takes them over (they must not change afterwards).
   */
  constructor(conn: Deno.TcpConn, header: ProxyHeader | null, rest: Uint8Array) {
    this.#conn = conn;
    this.#rest = rest;
    this.#header = header;
    const a = headerAddresses(header);
    if (a === undefined) {
      // Plain objects, as for a header's addresses (Deno's own have a null prototype).
      const remote = conn.remoteAddr, local = conn.localAddr;
      this.#remoteAddr = { transport: "tcp", hostname: remote.hostname, port: remote.port };
      this.#localAddr = { transport: "tcp", hostname: local.hostname, port: local.port };
    } else {
      this.#remoteAddr = { transport: "tcp", hostname: a.remoteAddress, port: a.remotePort };
      this.#localAddr = { transport: "tcp", hostname: a.localAddress, port: a.localPort };
    }
  }

  /** The client, from the header; the socket's peer for LOCAL, UNKNOWN or no header. */
  get remoteAddr(): Deno.NetAddr {
    return this.#remoteAddr;
  }

  /** What the client connected to, from the header; else the socket's own address. */
  get localAddr(): Deno.NetAddr {
    return this.#localAddr;
  }

  /** The decoded header, or `null` when none came (or the policy ignores it). */
  get proxyHeader(): ProxyHeader | null {
    return this.#header;
  }

  /**
   * Resolves to `proxyHeader` once the header phase is over, after which it and the
   * addresses are final; already resolved unless the listener is `lazy`. On a lazy
   * connection, asking for it starts reading the header, and it rejects with the
   * {@linkcode ProxyProtocolError} when the connection is refused (the listener has then
   * reported it to `onError` and closed it).
   */
  get proxyHeaderSettled(): Promise<ProxyHeader | null> {
    if (this.#settled !== undefined) return this.#settled;
    if (this.#phase !== undefined) return this.#settle();
    return this.#settled = Promise.resolve(this.#header);
  }

  /** Lazy: reads the header, once; every later call gets the same promise. */
  #settle(): Promise<ProxyHeader | null> {
    if (this.#settled !== undefined) return this.#settled;
    const settled = settleLazy(this, this.#phase!);
    settled.catch(ignore); // rejections reach whoever awaits; none is unhandled
    return this.#settled = settled;
  }

  /** The socket's own endpoints (the load balancer's and this host's). */
  get peer(): PeerInfo {
    return peerOf(this.#conn);
  }

  /**
   * Reads payload into `p`, as `Deno.Conn.read`.
   *
   * @param p Where to put the bytes.
   * @returns How many bytes were read, or `null` at the end.
   */
  read(p: Uint8Array): Promise<number | null> {
    if (this.#phase !== undefined) return this.#settle().then(() => this.read(p));
    const rest = this.#rest;
    if (rest.length === 0) return this.#conn.read(p);
    const n = Math.min(p.length, rest.length);
    if (n === rest.length) {
      p.set(rest);
      this.#rest = EMPTY;
      this.#giveBack();
    } else {
      p.set(rest.subarray(0, n));
      this.#rest = rest.subarray(n);
    }
    return Promise.resolve(n);
  }

  /** The bytes read ahead are gone (read, or not wanted): the pooled buffer goes back. */
  #giveBack(): void {
    if (this.#lent === undefined) return;
    this.#pool!.give(this.#lent);
    this.#lent = undefined;
  }

  /**
   * Writes to the socket, as `Deno.Conn.write`.
   *
   * @param p The bytes.
   * @returns How many were written.
   */
  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  /** The payload: the socket's own stream when nothing was read ahead of it. */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    if (this.#readable !== undefined) return this.#readable;
    if (this.#phase !== undefined) return this.#readable = this.#lazyReadable();
    return this.#readable = this.#payload();
  }

  /** Lazy: a stream whose first read reads the header, then the payload's stream. */
  #lazyReadable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    let reader: ReadableStreamDefaultReader<Uint8Array<ArrayBuffer>> | undefined;
    return new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull: async (controller) => {
        if (reader === undefined) {
          await this.#settle(); // a refusal errors the stream
          reader = this.#payload().getReader();
        }
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => reader === undefined ? this.close() : reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  #payload(): ReadableStream<Uint8Array<ArrayBuffer>> {
    if (this.#rest.length === 0) return this.#conn.readable;
    // The stream's reader keeps what it is given: a copy, when the bytes are a pooled buffer's.
    const first = this.#lent === undefined ? this.#rest : this.#rest.slice();
    this.#rest = EMPTY;
    this.#giveBack();
    // The bytes read while looking for a header, then the socket's own stream.
    return continueWith(first, this.#conn.readable.getReader()) as ReadableStream<
      Uint8Array<ArrayBuffer>
    >;
  }

  /** The socket's writable side, as `Deno.Conn.writable`. */
  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.#conn.writable;
  }

  /**
   * Closes the write side, as `Deno.Conn.closeWrite`.
   *
   * @returns When done.
   */
  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  /**
   * Closes the socket. A lazy connection closed before its header is reported to
   * `onError` as `CONNECTION_CLOSED`; one the listener has refused is already closed.
   */
  close(): void {
    const phase = this.#phase;
    if (phase !== undefined) {
      phase.closed();
      close(this.#conn);
      return;
    }
    this.#rest = EMPTY;
    this.#giveBack();
    this.#conn.close();
  }

  /** Lets the event loop exit while this connection is open, as `Deno.Conn.unref`. */
  unref(): void {
    this.#conn.unref();
  }

  /** Undoes {@linkcode ProxyConn.unref}. */
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
    try {
      this.close();
    } catch {
      // already closed
    }
  }
}

/**
 * A connection of a listener with `metrics`: its first `close()` counts, once its header
 * phase has succeeded (a lazy one refused, or closed before its header, was counted
 * refused). Bytes are not counted: `readable` and `writable` are the socket's own.
 */
class MeteredConn extends ProxyConn {
  #metrics: ListenerMetrics;
  /** Lazy: the header phase, to tell a connection handed over from one refused. */
  #lazy: LazyPhase | undefined;
  #counted = false;

  constructor(
    conn: Deno.TcpConn,
    header: ProxyHeader | null,
    rest: Uint8Array,
    metrics: ListenerMetrics,
    lazy?: LazyPhase,
  ) {
    super(conn, header, rest);
    this.#metrics = metrics;
    this.#lazy = lazy;
  }

  override close(): void {
    const lazy = this.#lazy;
    if (!this.#counted && (lazy === undefined || (lazy.done && lazy.error === undefined))) {
      this.#counted = true;
      this.#metrics.onClosed();
    }
    super.close();
  }
}

function peerOf(conn: Deno.TcpConn): PeerInfo {
  const remote = conn.remoteAddr, local = conn.localAddr;
  return {
    remoteAddress: remote.hostname,
    remotePort: remote.port,
    localAddress: local.hostname,
    localPort: local.port,
  };
}

/**
 * A lazy connection's header phase, run on its first use: reads the header, then puts it
 * in effect on the connection; on refusal closes the socket and throws why.
 */
async function settleLazy(conn: ProxyConn, phase: LazyPhase): Promise<ProxyHeader | null> {
  // Refused already (timed out, or closed) when nothing was reading: no read to make.
  let step: AcceptStep = phase.done ? "refuse" : await readHeader(phase, phase.pool);
  if (step === "pause") step = await phase.settled!;
  if (step !== "open") {
    if (phase.lent !== undefined) phase.pool.give(phase.lent);
    phase.lent = undefined;
    close(phase.conn);
    throw phase.error ?? closedError();
  }
  adopt(conn, phase);
  return phase.header;
}

function ignore(): void {}

/** One accepted connection during its header phase. */
class DenoPhase extends AcceptPhase {
  readonly conn: Deno.TcpConn;
  /** The pooled buffer that `rest` is a view into, once open, if any. */
  lent: Uint8Array | undefined = undefined;

  constructor(options: ResolvedOptions, conn: Deno.TcpConn) {
    super(options);
    this.conn = conn;
  }

  protected override readPeer(): PeerInfo {
    return peerOf(this.conn);
  }

  protected override timedOut(): void {
    // Ends the pending read.
    close(this.conn);
  }
}

/** A lazy connection's header phase, which the connection runs on its first use. */
class LazyPhase extends DenoPhase {
  readonly pool: BufferPool;

  constructor(options: ResolvedOptions, conn: Deno.TcpConn, pool: BufferPool) {
    super(options, conn);
    this.pool = pool;
  }
}

/**
 * Reads until the phase is decided; one read takes a usual header that has arrived, and
 * what came with it. Bytes after the header stay in the pooled buffer, lent to the
 * connection (`phase.lent`) instead of copied.
 */
async function readHeader(phase: DenoPhase, pool: BufferPool): Promise<AcceptStep> {
  const buffer = pool.take();
  let step: AcceptStep = "wait";
  try {
    while (step === "wait") {
      let n: number | null;
      try {
        n = await phase.conn.read(buffer);
      } catch (error) {
        return phase.closed(error);
      }
      step = n === null ? phase.end() : phase.data(buffer.subarray(0, n));
      if (step === "wait" && phase.done) return "refuse"; // timed out meanwhile
    }
    // A view of `buffer` (not a copy the phase made while validating) is lent out.
    if (step === "open" && phase.rest.buffer === buffer.buffer) phase.lent = buffer;
    return step;
  } finally {
    if (phase.lent !== buffer) pool.give(buffer);
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/**
 * Read buffers for header phases, reused: a new one costs about 1 µs on Deno. A buffer
 * whose bytes after the header belong to the application is lent to its connection and
 * comes back once they are read.
 */
class BufferPool {
  readonly size: number;
  #free: Uint8Array[] = [];

  constructor(size: number) {
    this.size = size;
  }

  take(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(this.size);
  }

  give(buffer: Uint8Array): void {
    if (this.#free.length < 64) this.#free.push(buffer);
  }
}

/**
 * A listener shaped like `Deno.Listener`: `accept()` resolves to connections whose header
 * is in (with `lazy`, at once), and `for await` over it yields them. Headers are read
 * concurrently, so a slow or silent client never holds up `accept()`; refused connections
 * go to `onError` and never end the loop. When `accept()` itself fails (out of file descriptors), the loop waits
 * 5 ms, doubling to 1 s, before it tries again, and reports `ACCEPT_FAILED` once a burst.
 */
export class ProxyListener implements AsyncIterable<ProxyConn>, AsyncDisposable, Disposable {
  /** The address the listener is bound to (read `port` back after `port: 0`). */
  readonly addr: Deno.NetAddr;
  #inner: Deno.TcpListener;
  #options: ResolvedOptions;
  #limit: number;
  #pool: BufferPool;
  #ready: ProxyConn[] = [];
  #waiting: { resolve: (conn: ProxyConn) => void; reject: (error: unknown) => void }[] = [];
  #wake: (() => void) | undefined;
  #sleep: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #loop: Promise<void>;

  /** Use {@linkcode listen}. */
  constructor(inner: Deno.TcpListener, options: ResolvedOptions, limit: number) {
    this.#inner = inner;
    this.#options = options;
    this.#limit = limit;
    this.#pool = new BufferPool(READ_SIZE);
    this.addr = inner.addr;
    this.#loop = this.#acceptLoop();
  }

  async #acceptLoop(): Promise<void> {
    const backoff = new AcceptBackoff();
    while (!this.#closed) {
      if (this.#ready.length >= this.#limit) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        continue;
      }
      let conn: Deno.TcpConn;
      try {
        conn = await this.#inner.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) break;
        if (
          error instanceof Deno.errors.NotConnected ||
          error instanceof Deno.errors.ConnectionAborted
        ) {
          // A peer that reset before it was accepted (os error 107): that connection only.
          this.#options.metrics?.onRefused("CONNECTION_CLOSED");
          report(this.#options, error, undefined);
          continue;
        }
        // Out of file descriptors or memory: try again later, and say so once a burst.
        const { wait, report: first } = backoff.failed();
        if (first) {
          this.#options.metrics?.onRefused("ACCEPT_FAILED");
          const message = error instanceof Error ? error.message : String(error);
          report(
            this.#options,
            new ProxyProtocolError("ACCEPT_FAILED", message, { cause: error }),
            undefined,
          );
        }
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          this.#sleep = setTimeout(resolve, wait);
        });
        continue;
      }
      if (backoff.failures > 0) backoff.succeeded();
      if (this.#closed) {
        conn.close();
        break;
      }
      this.#handle(conn);
    }
  }

  async #handle(conn: Deno.TcpConn): Promise<void> {
    const options = this.#options;
    const phase = options.lazy
      ? new LazyPhase(options, conn, this.#pool)
      : new DenoPhase(options, conn);
    let step = phase.start();
    if (step === "wait" && options.lazy) {
      // Handed over now; the connection reads its header on first use. Until then it is
      // in its header phase: on the options' clock, which times it out, and closed with
      // the listener.
      const proxyConn = options.metrics === undefined
        ? new ProxyConn(conn, null, EMPTY)
        : new MeteredConn(conn, null, EMPTY, options.metrics, phase as LazyPhase);
      defer(proxyConn, phase as LazyPhase);
      this.#deliver(proxyConn);
      return;
    }
    if (step === "wait") step = await readHeader(phase, this.#pool);
    if (step === "pause") step = await phase.settled!;
    if (step !== "open" || this.#closed) {
      if (phase.lent !== undefined) this.#pool.give(phase.lent);
      close(conn);
      if (step === "open") options.metrics?.onClosed(); // accepted, then the listener closed
      return;
    }
    const proxyConn = options.metrics === undefined
      ? new ProxyConn(conn, phase.header, phase.rest)
      : new MeteredConn(conn, phase.header, phase.rest, options.metrics);
    if (phase.lent !== undefined) lend(proxyConn, this.#pool, phase.lent);
    this.#deliver(proxyConn);
  }

  #deliver(conn: ProxyConn): void {
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) waiter.resolve(conn);
    else this.#ready.push(conn);
  }

  /**
   * Waits for the next connection whose header is in.
   *
   * @returns The connection.
   * @throws {Deno.errors.BadResource} Once the listener is closed.
   */
  accept(): Promise<ProxyConn> {
    const conn = this.#ready.shift();
    if (conn !== undefined) {
      this.#wake?.();
      this.#wake = undefined;
      return Promise.resolve(conn);
    }
    if (this.#closed) {
      return Promise.reject(new Deno.errors.BadResource("Listener has been closed"));
    }
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  /**
   * Stops accepting, closes connections still sending their header and those not yet
   * accepted, and makes pending `accept()` calls reject.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#inner.close();
    } catch {
      // already closed
    }
    clearTimeout(this.#sleep);
    this.#wake?.();
    // The connections still in their header phase (reading it, or validating) are the
    // entries of the listener's clock: no list of their own (a Set that every connection
    // joins and leaves costs Deno's collector dearly at high connection rates).
    this.#options.deadlines.stop((phase) => close((phase as DenoPhase).conn));
    for (const conn of this.#ready.splice(0)) conn[Symbol.dispose]();
    for (const waiter of this.#waiting.splice(0)) {
      waiter.reject(new Deno.errors.BadResource("Listener has been closed"));
    }
  }

  /**
   * Waits for the accept loop to end (after {@linkcode ProxyListener.close}).
   *
   * @returns When the loop has ended.
   */
  async finished(): Promise<void> {
    await this.#loop;
  }

  /** Lets the event loop exit while the listener is open. */
  unref(): void {
    this.#inner.unref();
  }

  /** Undoes {@linkcode ProxyListener.unref}. */
  ref(): void {
    this.#inner.ref();
  }

  /**
   * Yields connections until the listener is closed.
   *
   * @returns The connections.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<ProxyConn> {
    while (true) {
      try {
        yield await this.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource) return;
        throw error;
      }
    }
  }

  /** Closes the listener when used with `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Closes the listener and waits for its loop, with `await using`.
   *
   * @returns When done.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#loop;
  }
}

/**
 * Listens for TCP connections that start with a PROXY header, as `Deno.listen` does for
 * plain ones.
 *
 * With `lazy: true`, for protocols where the server speaks first, `accept()` yields each
 * connection at once, before its header: writes go through, and the first `read` (or
 * read of `readable`) reads the header, then gives payload only; `await
 * conn.proxyHeaderSettled` reads it too. The timeout counts from the accept. A lazy
 * connection refused later is reported to `onError` and closed by the listener, and its
 * reads and `proxyHeaderSettled` reject with the {@linkcode ProxyProtocolError}; closing
 * the listener closes lazy connections still waiting for their header.
 *
 * @param options `Deno.listen`'s TCP options (`port`, `hostname`, `reusePort`) and the
 * shared ones: `policy` (default `"require"`), `trust`, `untrusted`, `timeout`,
 * `maxHeaderLength`, `verifyChecksum`, `validate`, `onError`, `lazy`.
 * @returns The listener.
 * @throws {TypeError | RangeError} For bad options, at once.
 *
 * @example An echo server that greets the client by its real address
 * ```ts
 * import { listen } from "@proxy-protocol/edge/deno";
 * import { encodeHeader } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * await using listener = listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await client.write(encodeHeader({
 *   version: 2,
 *   command: "PROXY",
 *   protocol: "TCP4",
 *   source: { address: "203.0.113.7", port: 51234 },
 *   destination: { address: "10.0.0.5", port: 443 },
 * }));
 * using conn = await listener.accept();
 * assert.equal(conn.remoteAddr.hostname, "203.0.113.7");
 * assert.equal(conn.proxyHeader?.version, 2);
 * client.close();
 * ```
 *
 * @example A server that speaks first (SMTP): `lazy`
 * ```ts
 * import { listen } from "@proxy-protocol/edge/deno";
 * import assert from "node:assert/strict";
 *
 * await using listener = listen({ hostname: "127.0.0.1", port: 0, lazy: true });
 * using client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * using conn = await listener.accept(); // before the header
 * await conn.write(new TextEncoder().encode("220 ready\r\n"));
 *
 * const greeting = new Uint8Array(64);
 * const n = await client.read(greeting); // the client reads the greeting, then sends
 * assert.equal(new TextDecoder().decode(greeting.subarray(0, n!)), "220 ready\r\n");
 * await client.write(new TextEncoder().encode(
 *   "PROXY TCP4 203.0.113.7 10.0.0.5 51234 25\r\nEHLO x\r\n",
 * ));
 *
 * const line = new Uint8Array(64);
 * const m = await conn.read(line); // reads the header first: payload only
 * assert.equal(new TextDecoder().decode(line.subarray(0, m!)), "EHLO x\r\n");
 * assert.equal(conn.remoteAddr.hostname, "203.0.113.7");
 * assert.equal((await conn.proxyHeaderSettled)?.command, "PROXY");
 * ```
 */
export function listen(options: ListenOptions): ProxyListener {
  const resolved = resolveOptions(options);
  const limit = options.acceptQueue ?? 128;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError("acceptQueue must be a positive integer");
  }
  const inner = Deno.listen({
    port: options.port ?? 0,
    ...(options.hostname !== undefined ? { hostname: options.hostname } : {}),
    ...(options.reusePort !== undefined ? { reusePort: options.reusePort } : {}),
  });
  return new ProxyListener(inner, resolved, limit);
}
