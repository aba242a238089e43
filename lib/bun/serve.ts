/**
 * `serve`: `Bun.serve` behind a PROXY header. Bun's HTTP server takes no existing socket,
 * so each connection is relayed, after its header, into an inner `Bun.serve` on loopback;
 * the inner server knows each of its connections by the relay's local port, and so each
 * request's client.
 *
 * @module
 */

import { ProxyProtocolError } from "../error.ts";
import { OPTION_KEYS, type ProxyProtocolOptions, refuseLazy } from "../connection/options.ts";
import type { PeerInfo } from "../connection/peer.ts";
import { report } from "../connection/report.ts";
import { RelayRegistry } from "../connection/relay.ts";
import type { ProxyHeader } from "../types.ts";
import { bun, type BunRelaySocket, type BunServer } from "./_host.ts";
import { listen, type ProxyListener, type ProxySocketHandler } from "./listen.ts";
import { clientEvents, endClient, innerEvents, RelayLink, startInner } from "./_relay.ts";

export { RelayLink };

/** An address as `server.requestIP(request)` gives it. */
export interface SocketAddress {
  /** The client's address (from the header). */
  address: string;
  /** The client's port. */
  port: number;
  /** Its family. */
  family: "IPv4" | "IPv6";
}

/** A key, certificate or CA as `Bun.serve`'s `tls` takes it: PEM text, bytes or a file. */
export type TlsInput = string | ArrayBufferView | ArrayBuffer | Blob;

/** `Bun.serve`'s (and `Bun.listen`'s) `tls` options, passed on as they are. */
export interface TlsOptions {
  /** The private key(s), PEM. */
  key?: TlsInput | readonly TlsInput[];
  /** The certificate chain(s), PEM. */
  cert?: TlsInput | readonly TlsInput[];
  /** CA certificates, to verify clients' certificates. */
  ca?: TlsInput | readonly TlsInput[];
  /** The key's passphrase. */
  passphrase?: string;
  /** The server name this certificate is for (SNI, with several `tls` entries). */
  serverName?: string;
  /** Ask clients for a certificate. */
  requestCert?: boolean;
  /** Refuse clients without a valid certificate (with `requestCert`). */
  rejectUnauthorized?: boolean;
  /** Diffie-Hellman parameters file. */
  dhParamsFile?: string;
  /** Use the lowest memory TLS settings. */
  lowMemoryMode?: boolean;
}

/**
 * A WebSocket of the server: Bun's `ServerWebSocket`, described by the members commonly
 * used (with Bun's types installed, cast it to `ServerWebSocket<Data>` for the rest).
 * Its `remoteAddress` is the relay's (loopback): take the client's from
 * `server.requestIP(request)` at `upgrade` time and keep it in `data`.
 */
export interface ProxyServerWebSocket<Data = undefined> {
  /** The `data` given to `server.upgrade`. */
  data: Data;
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** Sends a message; returns bytes sent, 0 if dropped, -1 under backpressure. */
  send(data: string | ArrayBufferView | ArrayBuffer, compress?: boolean): number;
  /** Closes the WebSocket with a code and reason. */
  close(code?: number, reason?: string): void;
  /** Subscribes to a topic of `server.publish`. */
  subscribe(topic: string): void;
  /** Unsubscribes from a topic. */
  unsubscribe(topic: string): void;
  /** Sends to every other subscriber of a topic. */
  publish(topic: string, data: string | ArrayBufferView | ArrayBuffer, compress?: boolean): number;
}

/** `Bun.serve`'s `websocket` handlers and settings, passed on as they are. */
export interface WebSocketHandlers<Data = undefined> {
  /** A message came. */
  message(ws: ProxyServerWebSocket<Data>, message: string | Uint8Array): void | Promise<void>;
  /** The WebSocket opened. */
  open?(ws: ProxyServerWebSocket<Data>): void | Promise<void>;
  /** The WebSocket closed. */
  close?(ws: ProxyServerWebSocket<Data>, code: number, reason: string): void | Promise<void>;
  /** The WebSocket can take more after `send` returned -1. */
  drain?(ws: ProxyServerWebSocket<Data>): void | Promise<void>;
  /** A ping came. */
  ping?(ws: ProxyServerWebSocket<Data>, data: Uint8Array): void | Promise<void>;
  /** A pong came. */
  pong?(ws: ProxyServerWebSocket<Data>, data: Uint8Array): void | Promise<void>;
  /** The largest message accepted, in bytes. */
  maxPayloadLength?: number;
  /** Idle timeout, in seconds. */
  idleTimeout?: number;
  /** Per-message deflate. */
  perMessageDeflate?: boolean | Record<string, unknown>;
  /** Bytes buffered before `send` reports backpressure. */
  backpressureLimit?: number;
  /** Close the connection when the backpressure limit is reached. */
  closeOnBackpressureLimit?: boolean;
  /** Send pings to keep the connection alive. */
  sendPings?: boolean;
  /** Whether `publish` also sends to the publishing WebSocket. */
  publishToSelf?: boolean;
}

/** What a `fetch` handler returns: a response, or nothing after `server.upgrade`. */
export type FetchResult = Response | undefined | void;

/** A request handler: Bun's, with the server wrapper that knows the client. */
export type FetchHandler<WebSocketData = undefined> = (
  this: ProxyServer<WebSocketData>,
  request: Request,
  server: ProxyServer<WebSocketData>,
) => FetchResult | Promise<FetchResult>;

/** A `routes` entry: a static response, a handler, or one of either per method. */
export type RouteValue<WebSocketData = undefined> =
  | Response
  | FetchHandler<WebSocketData>
  | Record<string, Response | FetchHandler<WebSocketData>>;

/**
 * Options of {@linkcode serve}: `Bun.serve`'s and the shared PROXY protocol options.
 * `hostname`, `port`, `reusePort` and `ipv6Only` are the outer listener's (the one clients
 * reach); the rest go on to the inner `Bun.serve`. `unix` is not supported.
 */
export interface ServeOptions<WebSocketData = undefined> extends ProxyProtocolOptions {
  /** The address to listen on; default `"0.0.0.0"`. */
  hostname?: string;
  /** The port to listen on; default 3000; 0 picks a free one. */
  port?: number;
  /** `SO_REUSEPORT`. */
  reusePort?: boolean;
  /** On `"::"`, accept IPv6 only. */
  ipv6Only?: boolean;
  /** The request handler. */
  fetch?: FetchHandler<WebSocketData>;
  /** Bun's routes; handlers get the server wrapper too. */
  routes?: Record<string, RouteValue<WebSocketData>>;
  /** WebSocket handlers, for `server.upgrade`. */
  websocket?: WebSocketHandlers<WebSocketData>;
  /** TLS after the header: certificate and key, as `Bun.serve` takes them. */
  tls?: TlsOptions | readonly TlsOptions[];
  /** Turns an error thrown by `fetch` into a response. */
  error?: (error: Error) => Response | Promise<Response> | void | Promise<void>;
  /** Seconds a connection may idle (Bun's default 10). */
  idleTimeout?: number;
  /** The largest request body, in bytes. */
  maxRequestBodySize?: number;
  /** Bun's development mode (error pages). */
  development?: boolean;
  /** An id for hot reloading. */
  id?: string;
  /** Not supported: the PROXY protocol runs over TCP here. Throws a `TypeError`. */
  unix?: never;
}

/**
 * The server {@linkcode serve} returns and hands to `fetch`: `requestIP(request)` gives the
 * client's address from the header and `proxyHeader(request)` the header; `port`,
 * `hostname` and `url` are the listener's that clients reach; everything else is
 * `Bun.serve`'s, forwarded to the inner server.
 */
export interface ProxyServer<WebSocketData = undefined> {
  /** The address listened on. */
  readonly hostname: string;
  /** The port listened on (the one picked when 0 was asked for). */
  readonly port: number;
  /** `http://host:port/`, or `https://` with `tls`. */
  readonly url: URL;
  /** The listener's address. */
  readonly address: SocketAddress;
  /** `"http"`, or `"https"` with `tls`. */
  readonly protocol: "http" | "https";
  /** Bun's development mode. */
  readonly development: boolean;
  /** The server's id. */
  readonly id: string;
  /** Requests in progress. */
  readonly pendingRequests: number;
  /** Open WebSockets. */
  readonly pendingWebSockets: number;
  /**
   * The client of a request: the header's source address for PROXY headers, the
   * connection's own peer for LOCAL or UNKNOWN headers (health checks), without a header,
   * and under policy `ignore`. `null` for requests that came over no connection (made
   * with `server.fetch`).
   */
  requestIP(request: Request): SocketAddress | null;
  /** The header of a request's connection, or `null` (none, or ignored). */
  proxyHeader(request: Request): ProxyHeader | null;
  /** Upgrades a request to a WebSocket, as `Bun.serve` does; `true` on success. */
  upgrade(
    request: Request,
    options?: { headers?: HeadersInit; data?: WebSocketData },
  ): boolean;
  /** Sends to every subscriber of a topic. */
  publish(topic: string, data: string | ArrayBufferView | ArrayBuffer, compress?: boolean): number;
  /** How many WebSockets subscribe to a topic. */
  subscriberCount(topic: string): number;
  /** Sets a request's idle timeout, in seconds. */
  timeout(request: Request, seconds: number): void;
  /** Runs a request through the handlers, with no connection. */
  fetch(request: Request | string): Promise<Response>;
  /** Replaces the handlers (`fetch`, `routes`, `websocket`, `error`). */
  reload(options: Partial<ServeOptions<WebSocketData>>): this;
  /**
   * Stops listening; with `true`, also closes open connections. Resolves when the inner
   * server has stopped.
   */
  stop(closeActiveConnections?: boolean): Promise<void>;
  /** Closes idle keep-alive connections. */
  closeIdleConnections(): void;
  /** Keeps the process alive while listening (the default). */
  ref(): void;
  /** Lets the process exit while listening. */
  unref(): void;
}

/**
 * Serves HTTP like `Bun.serve` on connections that start with a PROXY header.
 *
 * `fetch(request, server)` gets a server whose `requestIP(request)` returns the client's
 * `{ address, port, family }` from the header (where frameworks look: Hono's
 * `getConnInfo` from `hono/bun` works as it is) and whose `proxyHeader(request)` returns
 * the header; everything else (`upgrade`, `publish`, `timeout`, ...) is `Bun.serve`'s.
 * With `tls`, TLS runs on the bytes after the header.
 *
 * How: `Bun.serve` takes no existing socket, so each connection is relayed after its
 * header phase into an inner `Bun.serve` on 127.0.0.1 (a port of its own), which knows
 * each of its connections by the relay's local port. The inner server answers requests
 * that came over any other connection with 403 and reports them to `onError`
 * (`UNTRUSTED_SOURCE`). Keep-alive, pipelining, streamed bodies and WebSockets are
 * `Bun.serve`'s own. The relay costs a copy each way: see `benches/http/`.
 *
 * Connections refused in the header phase are reported to `onError` and closed by the
 * server; nothing a client sends throws into your code.
 *
 * @param options `Bun.serve`'s options and the PROXY protocol options (`policy`, `trust`,
 *   `untrusted`, `timeout`, `maxHeaderLength`, `verifyChecksum`, `validate`, `onError`).
 * @returns The server: `port`, `hostname`, `url`, `requestIP`, `stop()`, ...
 * @throws {TypeError} For bad options (no `fetch` nor `routes`, `unix`, `lazy`, an
 *   unknown policy, a bad CIDR range), or when not running on Bun.
 * @throws {RangeError} For a timeout below 3 s without `allowShortTimeout`, or a bad
 *   `maxHeaderLength`.
 *
 * @example Greet the client by its real address (runs on Bun)
 * ```ts ignore
 * import { serve } from "@proxy-protocol/edge/bun";
 *
 * const server = serve({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   fetch(request, server) {
 *     const client = server.requestIP(request)!;
 *     return new Response(`hello ${client.address}:${client.port}\n`);
 *   },
 * });
 *
 * // What a load balancer sends: the header, then the request.
 * const client = await Bun.connect({
 *   hostname: "127.0.0.1",
 *   port: server.port,
 *   socket: {
 *     open(socket) {
 *       socket.write("PROXY TCP4 203.0.113.7 10.0.0.5 51234 80\r\n");
 *       socket.write("GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
 *     },
 *     data(_socket, data) {
 *       console.log(new TextDecoder().decode(data)); // ... "hello 203.0.113.7:51234\n"
 *     },
 *   },
 * });
 * // ... later
 * client.end();
 * await server.stop(true);
 * ```
 */
export function serve<WebSocketData = undefined>(
  options: ServeOptions<WebSocketData>,
): ProxyServer<WebSocketData> {
  if (options === null || typeof options !== "object") {
    throw new TypeError("options must be an object");
  }
  if ((options as { unix?: unknown }).unix !== undefined) {
    throw new TypeError("unix is not supported: the PROXY header comes over TCP here");
  }
  refuseLazy(options, "serve");
  if (typeof options.fetch !== "function" && options.routes === undefined) {
    throw new TypeError("options.fetch must be a function (or give routes)");
  }
  return new RelayServer<WebSocketData>(options);
}

/** The options that belong to the outer listener, not the inner server. */
const OUTER: ReadonlySet<string> = new Set([
  "hostname",
  "port",
  "reusePort",
  "ipv6Only",
  "exclusive",
  "unix",
  ...OPTION_KEYS,
]);

/**
 * The inner server's (or listener's) port on 127.0.0.1, on the objects `serve` and
 * `listenTls` return. Internal: for tests that check the inner side refuses strangers.
 */
export const INNER_PORT: unique symbol = Symbol("proxyProtocolInnerPort");

/** The handlers the inner server takes, which the wrapper wraps. */
const HANDLERS = ["fetch", "routes", "websocket", "error"] as const;

class RelayServer<WebSocketData> implements ProxyServer<WebSocketData> {
  readonly #inner: BunServer;
  readonly #outer: ProxyListener<RelayLink | undefined>;
  readonly #relay: Relay;
  readonly #tls: boolean;
  readonly #onError: ProxyProtocolOptions["onError"];

  constructor(options: ServeOptions<WebSocketData>) {
    this.#tls = options.tls !== undefined;
    this.#onError = options.onError;
    const innerOptions: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(options)) {
      if (!OUTER.has(key)) innerOptions[key] = value;
    }
    this.#relay = new Relay();
    Object.assign(innerOptions, this.#handlers(options), { hostname: "127.0.0.1", port: 0 });
    this.#inner = bun().serve(innerOptions);
    try {
      const outerOptions: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(options)) {
        if (OUTER.has(key)) outerOptions[key] = value;
      }
      this.#outer = listen<RelayLink | undefined>({
        ...outerOptions,
        hostname: options.hostname ?? "0.0.0.0",
        port: options.port ?? 3000,
        allowHalfOpen: true,
        data: undefined,
        socket: this.#relay.handlers(this.#inner.port),
      });
    } catch (error) {
      this.#inner.stop(true);
      throw error;
    }
  }

  get hostname(): string {
    return this.#outer.hostname;
  }

  get [INNER_PORT](): number {
    return this.#inner.port;
  }

  get port(): number {
    return this.#outer.port;
  }

  get url(): URL {
    const host = this.hostname.includes(":") ? `[${this.hostname}]` : this.hostname;
    return new URL(`${this.protocol}://${host}:${this.port}/`);
  }

  get address(): SocketAddress {
    const address = this.hostname;
    return { address, port: this.port, family: address.includes(":") ? "IPv6" : "IPv4" };
  }

  get protocol(): "http" | "https" {
    return this.#tls ? "https" : "http";
  }

  get development(): boolean {
    return this.#inner.development;
  }

  get id(): string {
    return this.#inner.id;
  }

  get pendingRequests(): number {
    return this.#inner.pendingRequests;
  }

  get pendingWebSockets(): number {
    return this.#inner.pendingWebSockets;
  }

  requestIP(request: Request): SocketAddress | null {
    return this.#link(request)?.address ?? null;
  }

  proxyHeader(request: Request): ProxyHeader | null {
    return this.#link(request)?.header ?? null;
  }

  upgrade(request: Request, options?: { headers?: HeadersInit; data?: WebSocketData }): boolean {
    return this.#inner.upgrade(request, options);
  }

  publish(topic: string, data: string | ArrayBufferView | ArrayBuffer, compress?: boolean): number {
    return this.#inner.publish(topic, data, compress);
  }

  subscriberCount(topic: string): number {
    return this.#inner.subscriberCount(topic);
  }

  timeout(request: Request, seconds: number): void {
    this.#inner.timeout(request, seconds);
  }

  fetch(request: Request | string): Promise<Response> {
    return this.#inner.fetch(request);
  }

  reload(options: Partial<ServeOptions<WebSocketData>>): this {
    this.#inner.reload(this.#handlers(options));
    return this;
  }

  stop(closeActiveConnections = false): Promise<void> {
    this.#outer.stop(closeActiveConnections);
    if (closeActiveConnections) this.#relay.closeAll();
    return this.#inner.stop(closeActiveConnections);
  }

  closeIdleConnections(): void {
    this.#inner.closeIdleConnections?.();
  }

  ref(): void {
    this.#outer.ref();
    this.#inner.ref();
  }

  unref(): void {
    this.#outer.unref();
    this.#inner.unref();
  }

  /** The relayed connection a request came over, if any. */
  #link(request: Request): RelayLink | undefined {
    let ip;
    try {
      ip = this.#inner.requestIP(request);
    } catch {
      return undefined; // not a request of this server
    }
    return ip === null ? undefined : this.#relay.get(ip.address, ip.port);
  }

  /** The handlers given to the inner server: each checks the connection, then calls yours. */
  #handlers(options: Partial<ServeOptions<WebSocketData>>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const key of HANDLERS) {
      const value = options[key];
      if (value === undefined) continue;
      if (key === "fetch") out.fetch = this.#guard(value as FetchHandler<WebSocketData>);
      else if (key === "routes") {
        out.routes = this.#routes(value as ServeOptions<WebSocketData>["routes"]);
      } else out[key] = value;
    }
    return out;
  }

  #routes(routes: ServeOptions<WebSocketData>["routes"]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [path, value] of Object.entries(routes ?? {})) {
      if (typeof value === "function" || value instanceof Response) {
        out[path] = this.#guard(value as FetchHandler<WebSocketData> | Response);
      } else if (value !== null && typeof value === "object") {
        const methods: Record<string, unknown> = {};
        for (const [method, handler] of Object.entries(value)) {
          methods[method] = this.#guard(handler as FetchHandler<WebSocketData> | Response);
        }
        out[path] = methods;
      } else {
        out[path] = value;
      }
    }
    return out;
  }

  /**
   * A handler of the inner server: refuses requests over connections the relay did not
   * make, then calls the user's handler with this wrapper.
   */
  #guard(handler: FetchHandler<WebSocketData> | Response): (request: Request) => unknown {
    const relay = this.#relay;
    return (request: Request) => {
      const ip = this.#inner.requestIP(request);
      if (ip !== null && relay.get(ip.address, ip.port) === undefined) {
        return this.#refuse(ip);
      }
      if (handler instanceof Response) return handler.clone();
      return handler.call(this, request, this);
    };
  }

  #refuse(ip: { address: string; port: number }): Response {
    const peer: PeerInfo = {
      remoteAddress: ip.address,
      remotePort: ip.port,
      localAddress: "127.0.0.1",
      localPort: this.#inner.port,
    };
    report(
      { onError: this.#onError },
      new ProxyProtocolError(
        "UNTRUSTED_SOURCE",
        `${ip.address}:${ip.port} reached the inner server without the relay`,
      ),
      peer,
    );
    return new Response("Forbidden\n", { status: 403, headers: { connection: "close" } });
  }
}

/** How long an inner connection whose client left may go untaken: see `Relay.handlers`. */
export const INNER_GRACE_MS = 2000;

/**
 * Relays connections, after their header phase, into an inner server on 127.0.0.1, and
 * knows each inner connection by its local port. Backpressure both ways: bytes a socket
 * does not take are kept and the other side paused until `drain`; FIN is passed on (half
 * close). Internal (also used by `listenTls`).
 */
export class Relay {
  readonly #links = new RelayRegistry<RelayLink>();

  /**
   * The link of an inner connection from `address:port`, if the relay made it; the inner
   * server, asking, has taken the connection up.
   */
  get(address: string, port: number): RelayLink | undefined {
    const link = this.#links.lookup(address, port);
    if (link !== undefined) link.seen = true;
    return link;
  }

  /** Closes every relayed connection. */
  closeAll(): void {
    for (const link of this.#links.values()) {
      link.inner?.terminate();
      link.client.terminate();
    }
    this.#links.clear();
  }

  /**
   * The handlers of the outer listener: each connection is relayed to `innerPort`.
   *
   * A client that leaves (FIN or close) before the inner server has taken its connection up
   * and said anything gives the inner side {@linkcode INNER_GRACE_MS} more; then both are
   * closed. A healthy inner server on loopback takes a connection up in well under a
   * millisecond, but out of file descriptors it cannot accept, while such pairs, each
   * waiting for it, hold the descriptors it needs: without the grace, the server never
   * recovers.
   */
  handlers(innerPort: number): ProxySocketHandler<RelayLink | undefined> {
    const links = this.#links;
    const unseen = (link: RelayLink) => !link.seen && link.bytesOut === 0;
    const leave = (link: RelayLink) => {
      if (!unseen(link) || link.innerEnded || link.graced) return;
      link.graced = true;
      const timer = setTimeout(() => {
        if (!unseen(link)) return;
        link.inner?.terminate();
        link.client.terminate();
      }, INNER_GRACE_MS);
      (timer as { unref?: () => void }).unref?.();
    };
    const innerHandlers = {
      ...innerEvents,
      open(inner: BunRelaySocket) {
        const link = inner.data as RelayLink;
        link.inner = inner;
        link.port = inner.localPort;
        if (link.clientClosed) return inner.end();
        links.add(link.port, link); // before any byte reaches the inner server
        startInner(link, inner);
      },
      close(inner: BunRelaySocket) {
        const link = inner.data as RelayLink;
        if (links.lookup("127.0.0.1", link.port) === link) links.delete(link.port);
        innerEvents.close(inner);
      },
      connectError(inner: BunRelaySocket) {
        const link = inner.data as RelayLink;
        link.innerEnded = true;
        endClient(link);
      },
      error() {},
    };
    return {
      ...clientEvents,
      end(client) {
        clientEvents.end(client);
        leave(client.data!);
      },
      close(client) {
        clientEvents.close(client);
        if (client.data !== undefined) leave(client.data);
      },
      open(client) {
        const link = new RelayLink(client);
        client.data = link;
        client.pause(); // until the inner connection is open
        bun().connect({
          hostname: "127.0.0.1",
          port: innerPort,
          allowHalfOpen: true,
          data: link,
          socket: innerHandlers,
        }).catch(() => {
          link.innerEnded = true;
          endClient(link);
        });
      },
      error() {},
    };
  }
}
