/**
 * `serve`: `Deno.serve()` for HTTP servers behind a PROXY protocol load balancer.
 *
 * `Deno.serve` takes no connection that was already accepted, so this is a relay: a
 * {@linkcode listen} listener reads each header, connects to a `Deno.serve` of its own on
 * `127.0.0.1` (with `cert` and `key` when given, so TLS, ALPN and HTTP/2 are Deno's), and
 * copies bytes both ways. The inner handler finds the client by the port of the relay's
 * connection; any connection to the inner port that the relay did not make gets 421.
 *
 * @module
 */

import type { ProxyHeader } from "../types.ts";
import { type ProxyProtocolOptions, refuseLazy } from "../connection/options.ts";
import { misdirected, RelayRegistry } from "../connection/relay.ts";
import { listen, type ProxyConn, type ProxyListener } from "./listen.ts";

/** What the handler gets besides the request: `Deno.ServeHandlerInfo` with the client's. */
export interface ServeHandlerInfo extends Deno.ServeHandlerInfo<Deno.NetAddr> {
  /** The client, from the header; the load balancer's socket for LOCAL or no header. */
  remoteAddr: Deno.NetAddr;
  /** What the client connected to, from the header; else this server's own address. */
  localAddr: Deno.NetAddr;
  /** The decoded header, or `null` when none came (or the policy ignores it). */
  proxyHeader: ProxyHeader | null;
}

/** A request handler, as `Deno.ServeHandler`, whose info carries the client. */
export type ServeHandler = (
  request: Request,
  info: ServeHandlerInfo,
) => Response | Promise<Response>;

/** Options for {@linkcode serve}: those of `Deno.serve` over TCP and the shared ones. */
export interface ServeOptions extends ProxyProtocolOptions {
  /** The port to listen on; default 8000, as `Deno.serve`. `0` picks a free one. */
  port?: number;
  /** The address to listen on; default `"0.0.0.0"`, as `Deno.serve`. */
  hostname?: string;
  /** Share the port with other processes (Linux), as `Deno.serve`. */
  reusePort?: boolean;
  /** Connections whose header is in that may wait to be relayed; default 128. */
  acceptQueue?: number;
  /** PEM certificate chain: serve HTTPS on the bytes after the header (with `key`). */
  cert?: string;
  /** PEM private key for `cert`. */
  key?: string;
  /** Aborting it shuts the server down, as {@linkcode ProxyHttpServer.shutdown}. */
  signal?: AbortSignal;
  /** Called once listening; by default the address is logged, as `Deno.serve` does. */
  onListen?: (localAddr: Deno.NetAddr) => void;
  /** The handler, when it is not passed as the second argument. */
  handler?: ServeHandler;
}

/**
 * Each relay direction reads into one buffer of its own, reused: 4 KiB at first (an idle
 * keep-alive connection costs two of these), doubled each time a read fills it, up to
 * 64 KiB for bulk transfers.
 */
const FIRST_BUFFER = 4 * 1024, MAX_BUFFER = 64 * 1024;

/**
 * First buffers of finished pumps, reused: two a connection otherwise make garbage at the
 * connection rate (32 MiB a second at 4,000 connections a second), and collecting it shows
 * in the tail latency. At most 1 MiB is kept.
 */
const spare: Uint8Array[] = [];
const SPARE_MAX = 256;

/** The part of a connection the relay uses. Internal. */
export interface RelayEnd {
  /** As `Deno.Conn.read`. */
  read(p: Uint8Array): Promise<number | null>;
  /** As `Deno.Conn.write`. */
  write(p: Uint8Array): Promise<number>;
  /** As `Deno.Conn.closeWrite`. */
  closeWrite(): Promise<void>;
  /** As `Deno.Conn.close`. */
  close(): void;
}

function closeQuietly(conn: RelayEnd): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/**
 * Copies `from` to `to` with one reused buffer, then passes the end on with `closeWrite`,
 * unless the other direction has ended too (`ended()`): both are then closed at once, which
 * sends the FIN anyway, and a `shutdown` a connection is saved. Resolves `false` when a
 * socket failed (the caller then closes both).
 */
async function pump(from: RelayEnd, to: RelayEnd, ended: () => boolean): Promise<boolean> {
  const first = spare.pop() ?? new Uint8Array(FIRST_BUFFER);
  let buffer = first;
  let idle = true; // no read or write of `first` is in flight
  try {
    while (true) {
      idle = false;
      const n = await from.read(buffer);
      if (n === null) break;
      const full = n === buffer.length;
      let at = await to.write(full ? buffer : buffer.subarray(0, n));
      while (at < n) at += await to.write(buffer.subarray(at, n));
      idle = true;
      if (full && n < MAX_BUFFER) buffer = new Uint8Array(n * 2);
    }
    idle = true;
    if (!ended()) await to.closeWrite();
    return true;
  } catch {
    return false;
  } finally {
    // A failed read or write may still hold the buffer: then it is left to the collector.
    if (idle && spare.length < SPARE_MAX) spare.push(first);
  }
}

/**
 * How long the relay keeps a client's connection open after the inner side has ended and
 * its end was passed on, waiting for the client to close: a client that never does is
 * closed then (and so is not leaked).
 */
const LINGER_MS = 2000;

/**
 * Relays two connections until both directions have ended (half-closes are passed on) or
 * one fails, then closes both. Once `inner` has ended, `client` gets {@linkcode LINGER_MS}
 * to close its side. Internal: shared by {@linkcode serve} and `startTls`.
 *
 * @param client The client's connection.
 * @param inner The relay's connection to the inner server.
 * @param lingerMs How long `client` may stay open once `inner` has ended; `Infinity` to
 *   wait for it (the CLI's gateway, whose idle timeout covers it).
 * @returns When both are closed.
 */
export async function relayConns(
  client: RelayEnd,
  inner: RelayEnd,
  lingerMs: number = LINGER_MS,
): Promise<void> {
  let failed = false;
  let linger: ReturnType<typeof setTimeout> | undefined;
  const closeBoth = () => {
    closeQuietly(client);
    closeQuietly(inner);
  };
  const fail = (ok: boolean) => {
    if (ok || failed) return;
    failed = true;
    closeBoth();
  };
  let outDone = false, inDone = false;
  const outbound = pump(client, inner, () => inDone).then((ok) => {
    outDone = true;
    fail(ok);
  });
  const inbound = pump(inner, client, () => outDone).then((ok) => {
    inDone = true;
    fail(ok);
    if (ok && Number.isFinite(lingerMs)) linger = setTimeout(closeBoth, lingerMs);
  });
  await Promise.all([outbound, inbound]);
  clearTimeout(linger);
  closeBoth();
}

interface Client {
  remoteAddr: Deno.NetAddr;
  localAddr: Deno.NetAddr;
  proxyHeader: ProxyHeader | null;
}

interface Relay {
  conn: ProxyConn;
  out: Deno.TcpConn | undefined;
}

const innerAddrs = new WeakMap<ProxyHttpServer, Deno.NetAddr>();

/**
 * The loopback address of a server's inner `Deno.serve`: for tests that check it refuses
 * connections the relay did not make. Internal.
 *
 * @param server A server from {@linkcode serve}.
 * @returns The inner server's address.
 */
export function innerAddr(server: ProxyHttpServer): Deno.NetAddr {
  return innerAddrs.get(server)!;
}

/** The first wait before starting a new inner server after one stopped: see `#watch`. */
const INNER_RETRY_MS = 50;

/**
 * A running server, shaped like `Deno.HttpServer`: `addr`, `finished`, `shutdown()`,
 * `ref()`, `unref()` and `await using`.
 */
export class ProxyHttpServer implements Deno.HttpServer<Deno.NetAddr> {
  /** The address the server listens on (read `port` back after `port: 0`). */
  readonly addr: Deno.NetAddr;
  /** Resolves once the server has shut down and every relayed connection is closed. */
  readonly finished: Promise<void>;
  #listener: ProxyListener;
  #inner: Deno.HttpServer<Deno.NetAddr>;
  #startInner: () => Deno.HttpServer<Deno.NetAddr>;
  #refed = true;
  #restart: ReturnType<typeof setTimeout> | undefined;
  #registry: RelayRegistry<Client>;
  #relays = new Set<Relay>();
  #running = new Set<Promise<void>>();
  #shutdown: Promise<void> | undefined;
  #done!: () => void;
  #signal: AbortSignal | undefined;
  #onAbort = () => void this.shutdown();

  /** Use {@linkcode serve}. */
  constructor(
    listener: ProxyListener,
    startInner: () => Deno.HttpServer<Deno.NetAddr>,
    registry: RelayRegistry<Client>,
    signal: AbortSignal | undefined,
  ) {
    this.#listener = listener;
    this.#startInner = startInner;
    this.#registry = registry;
    this.addr = listener.addr;
    this.finished = new Promise((resolve) => this.#done = resolve);
    this.#inner = this.#watch(startInner());
    this.#acceptLoop();
    this.#signal = signal;
    if (signal?.aborted) void this.shutdown();
    else signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /**
   * Watches an inner server. Deno's `Deno.serve` stops for good when an accept fails (out of
   * file descriptors: its `finished` rejects, and unhandled, the rejection ends the
   * process); the relay then starts another on a new port, retrying while descriptors are
   * short, and goes on serving.
   */
  #watch(inner: Deno.HttpServer<Deno.NetAddr>): Deno.HttpServer<Deno.NetAddr> {
    innerAddrs.set(this, inner.addr);
    if (!this.#refed) inner.unref();
    inner.finished.catch(() => {
      if (this.#shutdown === undefined && this.#inner === inner) this.#replaceInner(INNER_RETRY_MS);
    });
    return inner;
  }

  #replaceInner(wait: number): void {
    this.#restart = setTimeout(() => {
      this.#restart = undefined;
      if (this.#shutdown !== undefined) return;
      try {
        this.#inner = this.#watch(this.#startInner());
      } catch {
        this.#replaceInner(Math.min(wait * 2, 1000)); // still out of descriptors
      }
    }, wait);
    if (!this.#refed) Deno.unrefTimer(this.#restart as unknown as number);
  }

  async #acceptLoop(): Promise<void> {
    for await (const conn of this.#listener) {
      const running = this.#relay(conn);
      this.#running.add(running);
      running.then(() => this.#running.delete(running));
    }
  }

  async #relay(conn: ProxyConn): Promise<void> {
    const relay: Relay = { conn, out: undefined };
    this.#relays.add(relay);
    let port = 0;
    try {
      const out = await Deno.connect({ hostname: "127.0.0.1", port: this.#inner.addr.port });
      relay.out = out;
      if (this.#shutdown !== undefined) {
        closeQuietly(out);
        return;
      }
      port = out.localAddr.port;
      // Registered before any byte is sent, so the inner handler always finds it.
      this.#registry.add(port, {
        remoteAddr: conn.remoteAddr,
        localAddr: conn.localAddr,
        proxyHeader: conn.proxyHeader,
      });
      conn.setNoDelay(true);
      out.setNoDelay(true);
      await relayConns(conn, out);
    } catch {
      // The inner server is gone (shutting down): nothing to relay to.
    } finally {
      closeQuietly(conn);
      if (port !== 0) this.#registry.delete(port);
      this.#relays.delete(relay);
    }
  }

  /**
   * Stops accepting, lets requests in progress finish (as `Deno.HttpServer.shutdown`), then
   * closes the connections still open.
   *
   * @returns When the server has shut down.
   */
  shutdown(): Promise<void> {
    return this.#shutdown ??= this.#close();
  }

  async #close(): Promise<void> {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#listener.close();
    clearTimeout(this.#restart);
    await this.#listener.finished();
    // An inner server that stopped on its own (see #watch) has nothing left to shut down.
    await this.#inner.shutdown().catch(() => {});
    await this.#inner.finished.catch(() => {});
    // The inner connections are closed: close what clients still hold open.
    for (const { conn, out } of this.#relays) {
      closeQuietly(conn);
      if (out !== undefined) closeQuietly(out);
    }
    while (this.#running.size > 0) await Promise.all(this.#running);
    this.#done();
  }

  /** Keeps the process alive while the server runs (the default). */
  ref(): void {
    this.#refed = true;
    this.#listener.ref();
    this.#inner.ref();
    if (this.#restart !== undefined) Deno.refTimer(this.#restart as unknown as number);
  }

  /** Lets the process exit while the server runs. */
  unref(): void {
    this.#refed = false;
    this.#listener.unref();
    this.#inner.unref();
    if (this.#restart !== undefined) Deno.unrefTimer(this.#restart as unknown as number);
  }

  /**
   * Shuts the server down, with `await using`.
   *
   * @returns When done.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}

/**
 * Serves HTTP to clients behind a PROXY protocol load balancer, as `Deno.serve` does to
 * direct ones. The handler's `info.remoteAddr` is the client's (where frameworks such as
 * Hono's `getConnInfo` read it), and `info.proxyHeader` is the header. LOCAL headers
 * (health checks) are served with the socket's addresses. Keep-alive, streaming bodies,
 * `Deno.upgradeWebSocket`, and with `cert` and `key` HTTPS with HTTP/2 by ALPN, are
 * `Deno.serve`'s own: the server relays each connection into a `Deno.serve` on
 * `127.0.0.1`, which answers 421 to any connection the relay did not make.
 *
 * @param options `Deno.serve`'s TCP options (`port`, `hostname`, `reusePort`, `cert`,
 *   `key`, `signal`, `onListen`) and the shared ones: `policy` (default `"require"`),
 *   `trust`, `untrusted`, `timeout`, `maxHeaderLength`, `verifyChecksum`, `validate`,
 *   `onError` (refused connections; a handler that throws gets `Deno.serve`'s 500).
 * @param handler The request handler (or `options.handler`).
 * @returns The running server; `shutdown()` or the `signal` stops it.
 * @throws {TypeError | RangeError} For bad options (`lazy` too: HTTP clients speak
 *   first), at once.
 *
 * @example Report the client's address
 * ```ts
 * import { serve } from "@proxy-protocol/edge/deno";
 * import assert from "node:assert/strict";
 *
 * await using server = serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   (_request, info) => new Response(`hello ${info.remoteAddr.hostname}`),
 * );
 * using client = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
 * await client.write(new TextEncoder().encode(
 *   "PROXY TCP4 203.0.113.7 10.0.0.5 51234 80\r\n" +
 *     "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
 * ));
 * const response = await new Response(client.readable).text();
 * assert.match(response, /hello 203\.0\.113\.7$/);
 * ```
 */
export function serve(
  options: ServeOptions,
  handler?: ServeHandler,
): ProxyHttpServer {
  const handle = handler ?? options.handler;
  if (typeof handle !== "function") throw new TypeError("serve needs a handler");
  refuseLazy(options, "serve");
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TypeError("cert and key go together");
  }
  const listener = listen({
    ...options,
    port: options.port ?? 8000,
    hostname: options.hostname ?? "0.0.0.0",
  });
  const registry = new RelayRegistry<Client>();
  const startInner = () =>
    Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen() {},
      ...(options.cert !== undefined ? { cert: options.cert, key: options.key! } : {}),
    }, (request, info) => {
      const client = registry.lookup(info.remoteAddr.hostname, info.remoteAddr.port);
      if (client === undefined) return misdirected();
      return handle(request, {
        remoteAddr: client.remoteAddr,
        localAddr: client.localAddr,
        proxyHeader: client.proxyHeader,
        completed: info.completed,
      });
    });
  let server: ProxyHttpServer;
  try {
    server = new ProxyHttpServer(listener, startInner, registry, options.signal);
  } catch (error) {
    listener.close();
    throw error;
  }
  if (options.onListen !== undefined) options.onListen(server.addr);
  else {
    const scheme = options.cert === undefined ? "http" : "https";
    console.log(`Listening on ${scheme}://${server.addr.hostname}:${server.addr.port}/ (PROXY)`);
  }
  return server;
}
