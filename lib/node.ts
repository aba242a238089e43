/**
 * The Node adapter: a `net.Server` that reads the PROXY header off every connection and
 * hands on ordinary `net.Socket`s that report the client's addresses. Also runs on Deno and
 * Bun through their `node:net`.
 *
 * @example Serve TCP behind a load balancer
 * ```ts
 * import { createServer } from "@proxy-protocol/edge/node";
 * import assert from "node:assert/strict";
 * import net from "node:net";
 *
 * const server = createServer({ policy: "require" }, (socket) => {
 *   socket.end(`hello ${socket.remoteAddress}:${socket.remotePort}\n`);
 * });
 * await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
 * const { port } = server.address() as net.AddressInfo;
 *
 * const client = net.connect(port, "127.0.0.1");
 * client.end("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n");
 * let reply = "";
 * for await (const chunk of client) reply += chunk;
 * assert.equal(reply, "hello 203.0.113.7:51234\n");
 * await new Promise((resolve) => server.close(resolve));
 * ```
 *
 * @module
 */

import net from "node:net";
import process from "node:process";
import { ProxyProtocolError } from "./error.ts";
import {
  effectiveAddresses,
  HeaderSession,
  type PeerInfo,
  policyFor,
  type ProxyPolicy,
  type ProxyProtocolOptions,
  report,
  type ResolvedOptions,
  resolveOptions,
  type SessionResult,
  timeoutError,
  untrustedError,
  type UntrustedPolicy,
  validateHeader,
} from "./connection.ts";
import type { ProxyHeader } from "./types.ts";

export { ProxyProtocolError };
export type { PeerInfo, ProxyPolicy, ProxyProtocolOptions, UntrustedPolicy };

/**
 * A socket whose header phase is over. `remoteAddress`, `remotePort` and `remoteFamily`
 * are the client's from the header (and `localAddress`, `localPort`, `localFamily` what
 * the client connected to); for LOCAL and UNKNOWN headers (health checks), for no header
 * and under policy `ignore` they are the socket's own. Otherwise an ordinary `net.Socket`.
 */
export interface ProxySocket extends net.Socket {
  /** The header that came, or `null` when none came or the policy ignores it. */
  readonly proxyHeader: ProxyHeader | null;
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

/**
 * Creates a `net.Server` that reads the PROXY header at the start of every connection.
 *
 * Once a connection's header phase succeeds, the server emits `"proxyConnection"` with the
 * socket (`onConnection` is added as a listener of it). The socket is the accepted
 * `net.Socket` itself, with `proxyHeader` and the addresses from the header defined on it;
 * the bytes after the header are put back at the front of its buffer, so `data`, `pipe`,
 * `read()` and async iteration see the client's bytes from the first one, without a copy.
 *
 * Every refused connection (see the options: policy, trust, timeout, malformed header,
 * `validate`, a peer that resets or closes during the header) is reported to `onError`
 * with a {@linkcode ProxyProtocolError} and destroyed; the server keeps accepting and never
 * throws or emits `error` because of what a client sent. The usual `"connection"` event
 * still fires, with the raw socket, before the header is read.
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
  // Everything else is net.createServer's, including options newer than these types.
  const {
    policy: _policy,
    trust: _trust,
    untrusted: _untrusted,
    timeout: _timeout,
    allowShortTimeout: _allowShortTimeout,
    maxHeaderLength: _maxHeaderLength,
    verifyChecksum: _verifyChecksum,
    validate: _validate,
    onError: _onError,
    ...serverOptions
  } = options;
  const server = net.createServer(serverOptions);
  server.on("connection", (socket: net.Socket) => accept(server, resolved, socket));
  if (onConnection !== undefined) server.on(PROXY_CONNECTION, onConnection);
  return server;
}

const PROXY_CONNECTION = "proxyConnection";

/** Whether the peer's end of input is in: the stream's own flag, set before `end` fires. */
function inputEnded(socket: net.Socket): boolean {
  return (socket as unknown as { _readableState?: { ended?: unknown } })._readableState
    ?.ended === true;
}

/** Runs one connection's header phase and hands the socket on if it succeeds. */
function accept(server: net.Server, resolved: ResolvedOptions, socket: net.Socket): void {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (
    remoteAddress === undefined || remotePort === undefined || localAddress === undefined ||
    localPort === undefined
  ) {
    // Closed before we got to it: there is no peer to speak of.
    socket.on("error", ignore);
    report(
      resolved,
      new ProxyProtocolError("CONNECTION_CLOSED", "the connection closed at once"),
      undefined,
    );
    socket.destroy();
    return;
  }
  new Connection(server, resolved, socket, {
    remoteAddress,
    remotePort,
    localAddress,
    localPort,
  }).start();
}

function ignore(): void {}

/** One accepted socket during its header phase. */
class Connection {
  #server: net.Server;
  #options: ResolvedOptions;
  #socket: net.Socket;
  #peer: PeerInfo;
  #session: HeaderSession | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #finished = false;

  constructor(server: net.Server, options: ResolvedOptions, socket: net.Socket, peer: PeerInfo) {
    this.#server = server;
    this.#options = options;
    this.#socket = socket;
    this.#peer = peer;
  }

  start(): void {
    const socket = this.#socket;
    socket.on("error", this.#onError);
    let policy: ProxyPolicy | "deny";
    try {
      policy = policyFor(this.#options, this.#peer);
    } catch (error) {
      return this.#fail(error);
    }
    if (policy === "deny") {
      return this.#fail(untrustedError(this.#peer));
    }
    if (policy === "skip") return this.#handOver(null);
    this.#session = new HeaderSession(policy, this.#options);
    const ms = this.#options.timeout;
    this.#timer = setTimeout(() => this.#fail(timeoutError(ms)), ms);
    socket.on("close", this.#onClose);
    socket.on("end", this.#onEnd);
    socket.on("readable", this.#onReadable);
  }

  #onError = (error: Error): void => this.#fail(error);

  #onClose = (): void => {
    this.#fail(
      new ProxyProtocolError(
        "CONNECTION_CLOSED",
        "the connection closed before the PROXY header was complete",
      ),
    );
  };

  #onReadable = (): void => {
    const session = this.#session;
    if (this.#finished || session === undefined) return;
    const socket = this.#socket;
    let result: SessionResult | null = null;
    try {
      // read(n) of exactly what is buffered: unlike read(), it does not queue `end` when it
      // drains an ended stream, so `end` waits for the application's first read.
      let length: number;
      while (result === null && (length = socket.readableLength) > 0) {
        const chunk = socket.read(length) as Uint8Array | null;
        if (chunk === null) break;
        result = session.push(chunk);
      }
      // The peer's end is in and `end` is due: settle now, while bytes can still be put back.
      if (result === null && inputEnded(socket)) result = session.end();
    } catch (error) {
      return this.#fail(error);
    }
    if (result !== null) this.#complete(result);
  };

  #onEnd = (): void => {
    // Reached only where a runtime hides the stream's ended flag from #onReadable: bytes
    // read so far cannot be put back after `end`, so then the connection is refused.
    const session = this.#session;
    if (this.#finished || session === undefined) return;
    let result: SessionResult;
    try {
      result = session.end();
    } catch (error) {
      return this.#fail(error);
    }
    if (result.rest.length > 0) {
      return this.#fail(
        new ProxyProtocolError("CONNECTION_CLOSED", "the connection ended during the header"),
      );
    }
    this.#complete(result);
  };

  #complete(result: SessionResult): void {
    const socket = this.#socket;
    socket.removeListener("readable", this.#onReadable);
    socket.removeListener("end", this.#onEnd);
    const rest = result.rest;
    if (rest.length > 0) socket.unshift(rest);
    const { header } = result;
    // Hand over on a later tick than the one removing "readable" queued: that tick resumes
    // the stream when it has "data" listeners, which would undo a pause() the application
    // makes in its handler. Errors the application throws surface as uncaught, as from any
    // listener.
    if (header === null || this.#options.validate === undefined) {
      process.nextTick(() => this.#handOver(header));
      return;
    }
    validateHeader(this.#options, header, this.#peer).then(
      () => process.nextTick(() => this.#handOver(header)),
      (error) => this.#fail(error),
    );
  }

  #fail(error: unknown): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#timer);
    const socket = this.#socket;
    socket.removeListener("readable", this.#onReadable);
    socket.removeListener("end", this.#onEnd);
    socket.removeListener("close", this.#onClose);
    // #onError stays: a late error on the destroyed socket must not go unhandled.
    report(this.#options, error, this.#peer);
    socket.destroy();
  }

  #handOver(header: ProxyHeader | null): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#timer);
    const socket = this.#socket;
    socket.removeListener("error", this.#onError);
    socket.removeListener("close", this.#onClose);
    const addresses = effectiveAddresses(header, this.#peer);
    define(socket, "remoteAddress", addresses.remoteAddress);
    define(socket, "remotePort", addresses.remotePort);
    define(socket, "remoteFamily", addresses.family);
    define(socket, "localAddress", addresses.localAddress);
    define(socket, "localPort", addresses.localPort);
    define(socket, "localFamily", addresses.family);
    define(socket, "proxyHeader", header);
    this.#server.emit(PROXY_CONNECTION, socket);
  }
}

function define(socket: net.Socket, name: string, value: unknown): void {
  Object.defineProperty(socket, name, { value, configurable: true, enumerable: true });
}
