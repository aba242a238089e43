/**
 * `createServer`: a `net.Server` whose connections are handed on once their PROXY header
 * is read. Glue between `node:net` and the shared accept phase.
 *
 * @module
 */

import net from "node:net";
import process from "node:process";
import { ProxyProtocolError } from "../error.ts";
import { AcceptPhase, type AcceptStep } from "../connection/accept.ts";
import { headerAddresses } from "../connection/addresses.ts";
import { AcceptBackoff } from "../connection/backoff.ts";
import {
  type ProxyProtocolOptions,
  type ResolvedOptions,
  resolveOptions,
  runtimeOptions,
} from "../connection/options.ts";
import type { PeerInfo } from "../connection/peer.ts";
import { report } from "../connection/report.ts";
import { closedError } from "../connection/session.ts";
import type { ListenerMetrics } from "../connection/metrics.ts";
import type { ProxyHeader } from "../types.ts";

/**
 * A socket whose header phase is over. `remoteAddress`, `remotePort` and `remoteFamily`
 * are the client's from the header (and `localAddress`, `localPort`, `localFamily` what
 * the client connected to; `address()` agrees); for LOCAL and UNKNOWN headers (health
 * checks), for no header and under policy `ignore` they are the socket's own. Otherwise
 * an ordinary `net.Socket`.
 */
export interface ProxySocket extends net.Socket {
  /**
   * The header that came, or `null` when none came or the policy ignores it (and, from a
   * `lazy` server, until the header phase is over).
   */
  readonly proxyHeader: ProxyHeader | null;
  /**
   * Resolves to `proxyHeader` once the header phase is over, after which it and the
   * addresses are final; already resolved unless the server is `lazy`. On a lazy socket
   * it rejects with the {@linkcode ProxyProtocolError} when the connection is refused (the
   * server has then reported it to `onError` and destroyed the socket).
   */
  readonly proxyHeaderSettled: Promise<ProxyHeader | null>;
  /** The client's address: the header's source, or the socket's peer. */
  readonly remoteAddress: string;
  /** The client's port. */
  readonly remotePort: number;
  /** The family of `remoteAddress`. */
  readonly remoteFamily: "IPv4" | "IPv6";
  /** What the client connected to: the header's destination, or this socket's own end. */
  readonly localAddress: string;
  /** Its port. */
  readonly localPort: number;
  /** The family of `localAddress`. */
  readonly localFamily: "IPv4" | "IPv6";
}

/**
 * Options of {@linkcode createServer}: the shared PROXY protocol options and those of
 * `net.createServer` (`allowHalfOpen`, `noDelay`, `keepAlive`, `highWaterMark`, ...).
 * `pauseOnConnect` does not stop the header from being read.
 */
export interface CreateServerOptions extends ProxyProtocolOptions, net.ServerOpts {}

const PROXY_CONNECTION = "proxyConnection";
const EMPTY = new Uint8Array(0);
/** The accept phase of a socket, while it runs. */
const PHASE = Symbol("proxyProtocolPhase");
/**
 * `proxyHeaderSettled` of a socket handed over with its header: one descriptor for every
 * socket, and a promise only for those asked.
 */
const SETTLED: PropertyDescriptor = {
  get(this: { proxyHeader: ProxyHeader | null }): Promise<ProxyHeader | null> {
    return Promise.resolve(this.proxyHeader);
  },
  configurable: true,
};

type PhasedSocket = net.Socket & { [PHASE]?: NodePhase | undefined };

/**
 * Creates a `net.Server` that reads the PROXY header at the start of every connection.
 *
 * Once a connection's header phase succeeds, the server emits `"proxyConnection"` with the
 * socket (`onConnection` is added as a listener of it). The socket is the accepted
 * `net.Socket` itself, with `proxyHeader` set and its addresses reporting the header's;
 * the bytes after the header are put back at the front of its buffer, so `data`, `pipe`,
 * `read()` and async iteration see the client's bytes from the first one, without a copy.
 *
 * Every refused connection (see the options: policy, trust, timeout, malformed header,
 * `validate`, a peer that resets or closes during the header) is reported to `onError`
 * with a {@linkcode ProxyProtocolError} and destroyed by the server; the server keeps
 * accepting and never throws or emits `error` because of what a client sent. When
 * `accept()` itself fails (out of file descriptors), the server reports `ACCEPT_FAILED`
 * once a burst instead of emitting `error`; other server errors (`EADDRINUSE`, ...) are
 * emitted as usual. The usual `"connection"` event still fires, with the raw socket,
 * before the header is read. Sockets handed on are the application's to close.
 *
 * With `lazy: true`, for protocols where the server speaks first, `"proxyConnection"`
 * fires at once, before the header: writes go through, the header is read as bytes
 * arrive, and `data`, `pipe` and async iteration see payload only, after it. Until
 * `await socket.proxyHeaderSettled`, `proxyHeader` is `null` and the addresses are the
 * socket's own. A lazy socket refused later (a bad header, the timeout, `validate`) is
 * reported to `onError` and destroyed by the server, and `proxyHeaderSettled` rejects.
 * Read it through events, `pipe` or async iteration (which the server holds back until
 * the header is in); a `read()` outside a `readable` event could take header bytes.
 *
 * With node:http, hand the sockets on:
 * `createServer(options, (socket) => httpServer.emit("connection", socket))`; the
 * requests' `req.socket.remoteAddress` is then the client's.
 *
 * @param options The PROXY protocol options and `net.createServer`'s.
 * @param onConnection Called with each socket whose header phase succeeded. Errors it
 *   throws are not caught, as with any `"connection"` listener.
 * @returns The server, not yet listening.
 * @throws {TypeError} For an unknown policy or a bad CIDR range in `trust`.
 * @throws {RangeError} For a timeout below 3 s without `allowShortTimeout`, or a bad size.
 *
 * @example Behind a load balancer, in front of node:http
 * ```ts
 * import { createServer } from "@proxy-protocol/edge/node";
 * import assert from "node:assert/strict";
 * import http from "node:http";
 * import net from "node:net";
 *
 * const app = http.createServer((req, res) => res.end(req.socket.remoteAddress));
 * const server = createServer(
 *   { trust: ["127.0.0.1"], onError: (error) => console.error(error.code) },
 *   (socket) => app.emit("connection", socket),
 * );
 * await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
 * const { port } = server.address() as net.AddressInfo;
 *
 * const client = net.connect(port, "127.0.0.1");
 * client.end(
 *   "PROXY TCP4 203.0.113.7 10.0.0.5 51234 80\r\n" +
 *     "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
 * );
 * let reply = "";
 * for await (const chunk of client) reply += chunk;
 * assert.match(reply, /^HTTP\/1\.1 200 OK\r\n/);
 * assert.ok(reply.endsWith("\r\n\r\n203.0.113.7"));
 * await new Promise((resolve) => server.close(resolve));
 * app.close();
 * ```
 *
 * @example A server that speaks first (SMTP) behind a load balancer: `lazy`
 * ```ts
 * import { createServer } from "@proxy-protocol/edge/node";
 * import assert from "node:assert/strict";
 * import net from "node:net";
 *
 * const server = createServer({ lazy: true }, (socket) => {
 *   socket.write("220 ready\r\n"); // before the header: the client sends it after this
 *   socket.once("data", () => socket.end(`250 ${socket.remoteAddress}\r\n`));
 * });
 * await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
 * const { port } = server.address() as net.AddressInfo;
 *
 * const client = net.connect(port, "127.0.0.1");
 * let reply = "";
 * for await (const chunk of client) {
 *   if (reply === "") client.write("PROXY TCP4 203.0.113.7 10.0.0.5 51234 25\r\nEHLO x\r\n");
 *   reply += chunk;
 * }
 * assert.equal(reply, "220 ready\r\n250 203.0.113.7\r\n");
 * await new Promise((resolve) => server.close(resolve));
 * ```
 *
 * @example Health checks and the header itself
 * ```ts
 * import { createServer } from "@proxy-protocol/edge/node";
 * import assert from "node:assert/strict";
 * import net from "node:net";
 *
 * const seen: (string | undefined)[] = [];
 * const server = createServer({ policy: "require" }, (socket) => {
 *   // LOCAL (a v1 `PROXY UNKNOWN` too) keeps the socket's own addresses.
 *   seen.push(socket.proxyHeader?.command, socket.remoteAddress);
 *   socket.end();
 * });
 * await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
 * const { port } = server.address() as net.AddressInfo;
 *
 * const client = net.connect(port, "127.0.0.1");
 * client.end("PROXY UNKNOWN\r\n");
 * for await (const _ of client);
 * assert.deepEqual(seen, ["LOCAL", "127.0.0.1"]);
 * await new Promise((resolve) => server.close(resolve));
 * ```
 */
export function createServer(
  options: CreateServerOptions,
  onConnection?: (socket: ProxySocket) => void,
): net.Server {
  const resolved = resolveOptions(options);
  resolved.deadlines.unref = true; // the server's own handle keeps the process alive
  // Everything else is net.createServer's, including options newer than these types.
  const server = net.createServer(runtimeOptions(options) as net.ServerOpts);
  const backoff = new AcceptBackoff();
  server.on("connection", (socket: net.Socket) => {
    if (backoff.failures > 0) backoff.succeeded();
    const phase = new NodePhase(resolved, server, socket);
    const step = phase.start();
    phase.act(step);
    if (step === "wait" && resolved.lazy) phase.handOverLazily();
  });
  server.on("error", function onServerError(error: Error & { syscall?: string }) {
    if (error.syscall !== "accept") {
      // Not ours: behave as if this listener were not here.
      if (server.listenerCount("error") === 1) throw error;
      return;
    }
    // libuv already sheds the backlog on EMFILE; report the burst once.
    if (backoff.failed().report) {
      resolved.metrics?.onRefused("ACCEPT_FAILED");
      report(
        resolved,
        new ProxyProtocolError("ACCEPT_FAILED", error.message, { cause: error }),
        undefined,
      );
    }
  });
  server.on("close", () => resolved.deadlines.stop());
  if (onConnection !== undefined) server.on(PROXY_CONNECTION, onConnection);
  return server;
}

/** Whether the peer's end of input is in: the stream's own flag, set before `end` fires. */
function inputEnded(socket: net.Socket): boolean {
  return (socket as unknown as { _readableState?: { ended?: unknown } })._readableState
    ?.ended === true;
}

/** One accepted socket during its header phase. */
class NodePhase extends AcceptPhase {
  readonly server: net.Server;
  readonly socket: PhasedSocket;
  /** Lazy: the socket went to the application before its header. */
  handed = false;
  /** Lazy: the phase is reading; `read()` emits `data`, which is not the application's. */
  reading = false;
  /** Lazy: the socket's `emit` before the hand-over, and whether it was its own. */
  #emit: net.Socket["emit"] | undefined = undefined;
  #ownEmit = false;

  constructor(options: ResolvedOptions, server: net.Server, socket: net.Socket) {
    super(options);
    this.server = server;
    this.socket = socket;
  }

  protected override readPeer(): PeerInfo | undefined {
    const { remoteAddress, remotePort, localAddress, localPort } = this.socket;
    if (
      remoteAddress === undefined || remotePort === undefined || localAddress === undefined ||
      localPort === undefined
    ) return undefined;
    return { remoteAddress, remotePort, localAddress, localPort };
  }

  protected override timedOut(): void {
    this.#detach();
    this.socket.destroy();
    if (this.handed) this.announce();
  }

  /**
   * Lazy: hands the socket to the application before its header. The phase's `readable`
   * listener stays: while there is one, a `data` listener does not start the flow, so the
   * application sees no byte before the header is in.
   */
  handOverLazily(): void {
    const socket = this.socket as net.Socket & {
      proxyHeader?: ProxyHeader | null;
      proxyHeaderSettled?: Promise<ProxyHeader | null>;
    };
    this.handed = true;
    // `read()` emits `data` as it returns a chunk: hide the header phase's reads from the
    // application's `data` listeners (its own reads still emit).
    const emit = this.#emit = socket.emit;
    this.#ownEmit = Object.hasOwn(socket, "emit");
    socket.emit = (event: string | symbol, ...args: unknown[]): boolean => {
      if (event === "data" && this.reading) return false;
      return Reflect.apply(emit, socket, [event, ...args]) as boolean;
    };
    socket.proxyHeader = null;
    socket.proxyHeaderSettled = this.outcome;
    this.server.emit(PROXY_CONNECTION, socket);
  }

  /** Does what the accept phase asks. */
  act(step: AcceptStep): void {
    const socket = this.socket;
    switch (step) {
      case "wait":
        if (socket[PHASE] === undefined) {
          socket[PHASE] = this;
          socket.on("error", onError);
          socket.on("close", onClose);
          socket.on("end", onEnd);
          socket.on("readable", onReadable);
        }
        return;
      case "pause":
        // Lazy: the application listens already. The `readable` listener stays, so that its
        // `data` listeners do not start the flow, but reads nothing until `validate`
        // settles: the stream stops at its high-water mark, the kernel's buffers hold the
        // rest.
        if (this.handed) {
          this.settled!.then((next) => this.act(next));
          return;
        }
        // Not reading is pausing: the kernel's buffers hold the client back. The bytes
        // after the header go back now, so that `end` cannot fire before they are read.
        socket.removeListener("readable", onReadable);
        if (this.rest.length > 0) socket.unshift(this.rest);
        this.rest = EMPTY;
        this.settled!.then((next) => this.act(next));
        return;
      case "open":
        return this.handed ? this.#openLazily() : this.#open();
      case "refuse":
        this.#detach();
        socket.on("error", ignore); // a late error on the destroyed socket
        socket.destroy();
        if (this.handed) this.announce();
        return;
    }
  }

  #detach(): void {
    const socket = this.socket;
    if (socket[PHASE] === undefined) return;
    socket[PHASE] = undefined;
    if (this.#emit !== undefined) {
      if (this.#ownEmit) socket.emit = this.#emit;
      else delete (socket as Partial<net.Socket>).emit;
      this.#emit = undefined;
    }
    socket.removeListener("readable", onReadable);
    socket.removeListener("end", onEnd);
    socket.removeListener("close", onClose);
    socket.removeListener("error", onError);
  }

  #open(): void {
    const socket = this.socket;
    const { header, rest } = this;
    socket.removeListener("readable", onReadable);
    socket.removeListener("end", onEnd);
    if (rest.length > 0) socket.unshift(rest);
    // Hand over on a later tick than the one removing "readable" queued: that tick resumes
    // the stream when it has "data" listeners, which would undo a pause() the application
    // makes in its handler. Errors the application throws surface as uncaught, as from any
    // listener.
    process.nextTick(handOver, this, header);
  }

  /**
   * Lazy: the header is in. The addresses and header first, then the bytes after it go
   * back; removing the `readable` listener lets the stream flow on the next tick if the
   * application listens for `data`.
   */
  #openLazily(): void {
    const socket = this.socket;
    const { header, rest } = this;
    this.#detach();
    const addresses = headerAddresses(header);
    if (addresses !== undefined) setAddresses(socket, addresses);
    (socket as { proxyHeader?: ProxyHeader | null }).proxyHeader = header;
    if (rest.length > 0) socket.unshift(rest);
    const metrics = this.options.metrics;
    if (metrics !== undefined) countClose(socket, metrics);
    this.announce();
  }
}

/**
 * With `metrics`: counts the socket's close, with its payload bytes. The bytes read and
 * not put back, which are the header's, are left out of the bytes in.
 */
function countClose(socket: net.Socket, metrics: ListenerMetrics): void {
  const header = socket.bytesRead - socket.readableLength;
  socket.once("close", () => {
    metrics.onClosed(Math.max(0, socket.bytesRead - header), socket.bytesWritten);
  });
}

/**
 * Lazy sockets still in their header phase: the promise of its outcome, else `undefined`.
 * Internal (for `startTls`, which must not start before the header is in).
 */
export function headerPending(socket: net.Socket): Promise<ProxyHeader | null> | undefined {
  const phase = (socket as PhasedSocket)[PHASE];
  return phase?.handed ? phase.outcome : undefined;
}

function handOver(phase: NodePhase, header: ProxyHeader | null): void {
  const socket = phase.socket;
  if (socket[PHASE] !== undefined) {
    socket[PHASE] = undefined;
    socket.removeListener("close", onClose);
    socket.removeListener("error", onError);
  }
  const metrics = phase.options.metrics;
  if (socket.destroyed) {
    // Closed between the header and this tick: nobody will see it, so say so. Counted
    // accepted already: refused too, as reported, and closed.
    if (metrics !== undefined) {
      metrics.onRefused("CONNECTION_CLOSED");
      metrics.onClosed();
    }
    report(phase.options, closedError(), undefined);
    return;
  }
  const addresses = headerAddresses(header);
  if (addresses !== undefined) setAddresses(socket, addresses);
  (socket as { proxyHeader?: ProxyHeader | null }).proxyHeader = header;
  Object.defineProperty(socket, "proxyHeaderSettled", SETTLED);
  if (metrics !== undefined) countClose(socket, metrics);
  phase.server.emit(PROXY_CONNECTION, socket);
}

/**
 * Makes the socket report the header's addresses. `net.Socket` caches its endpoints in
 * `_peername` and `_sockname` (Node, and the `node:net` of Deno and Bun), and all its
 * getters and `address()` read them: two plain properties, no system call. Where that
 * cache is not used, the getters are shadowed instead.
 */
function setAddresses(
  socket: net.Socket,
  a: {
    remoteAddress: string;
    remotePort: number;
    localAddress: string;
    localPort: number;
    family: "IPv4" | "IPv6";
  },
): void {
  const s = socket as unknown as Record<string, unknown>;
  s._peername = { address: a.remoteAddress, port: a.remotePort, family: a.family };
  s._sockname = { address: a.localAddress, port: a.localPort, family: a.family };
  if (socket.remoteAddress === a.remoteAddress && socket.localPort === a.localPort) return;
  const define = (name: string, value: unknown) =>
    Object.defineProperty(socket, name, { value, configurable: true, enumerable: true });
  define("remoteAddress", a.remoteAddress);
  define("remotePort", a.remotePort);
  define("remoteFamily", a.family);
  define("localAddress", a.localAddress);
  define("localPort", a.localPort);
  define("localFamily", a.family);
}

// The socket's listeners during the header phase: shared functions, `this` is the socket.

function onReadable(this: PhasedSocket): void {
  const phase = this[PHASE];
  if (phase === undefined || phase.validating) return;
  let step: AcceptStep = "wait";
  // read(n) of exactly what is buffered: unlike read(), it does not queue `end` when it
  // drains an ended stream, so `end` waits for the application's first read.
  let length: number;
  while (step === "wait" && !phase.done && (length = this.readableLength) > 0) {
    phase.reading = true;
    const chunk = this.read(length) as Uint8Array | null;
    phase.reading = false;
    if (chunk === null) break;
    step = phase.data(chunk);
  }
  // The peer's end is in and `end` is due: settle now, while bytes can still be put back.
  if (step === "wait" && !phase.done && inputEnded(this)) step = phase.end();
  phase.act(step);
}

function onEnd(this: PhasedSocket): void {
  // Reached only where a runtime hides the stream's ended flag from onReadable: bytes
  // read so far cannot be put back after `end`, so then the connection is refused.
  const phase = this[PHASE];
  if (phase === undefined) return;
  const step = phase.end();
  if (step === "open" && phase.rest.length > 0) {
    return phase.act(
      phase.fail(
        new ProxyProtocolError("CONNECTION_CLOSED", "the connection ended during the header"),
      ),
    );
  }
  phase.act(step);
}

function onClose(this: PhasedSocket): void {
  this[PHASE]?.act(this[PHASE].closed());
}

function onError(this: PhasedSocket, error: Error): void {
  this[PHASE]?.act(this[PHASE].closed(error));
}

function ignore(): void {}
