/**
 * `serve`: puts an existing `http.Server`, `https.Server`, `http2` or `tls.Server` behind
 * the PROXY header, keeping the server object that Express, Fastify, Koa and
 * `@hono/node-server` apps hold.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import type { ProxyProtocolOptions } from "../connection/options.ts";
import { OPTION_KEYS, refuseLazy } from "../connection/options.ts";
import { createServer, type ProxySocket } from "./listen.ts";
import { adoptAddresses, startTls, type StartTlsOptions } from "./tls.ts";

/** Options of {@linkcode serve}: the shared PROXY protocol options. */
export interface ServeOptions extends ProxyProtocolOptions {}

/**
 * What {@linkcode serve} takes: a server that handles the connections emitted to it as
 * `"connection"` events, as `http.Server`, `https.Server`, the `http2` servers and
 * `tls.Server` do.
 */
export interface ConnectionServer {
  /** Emits an event; `serve` puts its `"connection"` events behind the header. */
  emit(event: string | symbol, ...args: unknown[]): boolean;
  /** Starts listening, as `net.Server.listen`. */
  listen(...args: unknown[]): unknown;
}

const SERVED = Symbol("proxyProtocolServed");
/** Events of a `tls.Server` that carry its TLS socket, and at which argument. */
const TLS_EVENTS: Record<string, number> = { secureConnection: 0, tlsClientError: 1 };

/**
 * Puts an existing server behind the PROXY header and returns it: each connection it
 * accepts first goes through the header phase (policy, trust, timeout, `maxHeaderLength`,
 * `validate`; refusals go to `onError` and are closed), then to the server's own
 * `"connection"` handling, with the socket reporting the header's addresses. So
 * `req.socket.remoteAddress` (and Hono's `getConnInfo`, Express's `req.ip`) is the
 * client's, for every request of a keep-alive connection, for `upgrade` requests and for
 * HTTP/2 streams; LOCAL health checks are served with the socket's own addresses;
 * `req.socket.proxyHeader` is the header.
 *
 * TLS servers (`https.Server`, `http2.createSecureServer`, `tls.Server`) run their TLS on
 * the bytes after the header, as with TLS passthrough at the balancer: the header comes in
 * clear, then the handshake; ALPN picks HTTP/2 or HTTP/1.1 as the server allows, and the
 * TLS socket reports the header's addresses too.
 *
 * Call it before or after `listen`; the server's `listen`, `close`, `address` and events
 * work as before. Sockets emitted by hand with `server.emit("connection", socket)` go
 * through the header phase as well, except those that already did (from
 * {@linkcode createServer}). On Node and Deno this wraps the server's `emit`. Bun's
 * `http.Server`, `https.Server` and `tls.Server` (so http2's secure server) accept
 * connections natively, TLS included, where no header can be read: there `serve` has them
 * listen through a `net.Server` of its own (`listen`, `address`, `close` and `listening`
 * are redirected to it, and connections emitted by hand skip the header) and runs their
 * TLS with {@linkcode startTls} (`https.Server`: HTTP/1.1 only).
 *
 * @param server The server: an `http`, `https`, `http2` or `tls` server.
 * @param options The PROXY protocol options.
 * @returns The same server.
 * @throws {TypeError} For a server already served, `lazy` (HTTP clients speak first), bad
 *   options (as `createServer`).
 * @throws {RangeError} For a timeout below 3 s without `allowShortTimeout`, or a bad size.
 *
 * @example An existing node:http server behind a load balancer
 * ```ts
 * import { serve } from "@proxy-protocol/edge/node";
 * import assert from "node:assert/strict";
 * import http from "node:http";
 * import net from "node:net";
 *
 * const server = serve(
 *   http.createServer((req, res) => res.end(req.socket.remoteAddress)),
 *   { trust: ["127.0.0.1"], onError: (error) => console.error(error.code) },
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
 * ```
 *
 * @example Express, Koa, Fastify and Hono keep their server
 * ```ts ignore
 * import { serve } from "@proxy-protocol/edge/node";
 * import { createAdaptorServer } from "@hono/node-server";
 * import https from "node:https";
 *
 * serve(app.listen(8080)); // Express, Koa: the server app.listen returned
 * serve(fastify.server); // Fastify, before fastify.listen()
 * serve(createAdaptorServer({ fetch: hono.fetch })).listen(8080); // Hono
 * serve(https.createServer({ key, cert }, handler)).listen(8443); // TLS passthrough
 * ```
 */
export function serve<S extends ConnectionServer>(server: S, options: ServeOptions = {}): S {
  const marked = server as S & { [SERVED]?: true };
  if (marked[SERVED]) throw new TypeError("this server is already behind the PROXY header");
  refuseLazy(options, "serve");
  const proxyOptions: ServeOptions = {};
  for (const [key, value] of Object.entries(options)) {
    if (OPTION_KEYS.has(key)) (proxyOptions as Record<string, unknown>)[key] = value;
  }
  const emit = server.emit;
  if (IS_BUN && server instanceof tls.Server) {
    // Bun's tls.Server (and http2's secure server) runs TLS natively on what it accepts,
    // where the header cannot be read: listen through a net.Server, run TLS here, and hand
    // the server "secureConnection" as its own TLS layer would.
    hostOn(
      server as unknown as Hosted,
      emit,
      proxyOptions,
      secureOptionsOf(server),
      "secureConnection",
    );
  } else if (server instanceof net.Server) {
    // Node and Deno: the server's own accepts come through emit("connection").
    const gate = createServer(proxyOptions, (socket) => emit.call(server, "connection", socket));
    server.emit = function (this: S, event: string | symbol, ...args: unknown[]): boolean {
      if (event === "connection") {
        const socket = args[0] as net.Socket;
        if (!Object.hasOwn(socket, "proxyHeader")) return gate.emit("connection", socket);
      } else if (typeof event === "string" && TLS_EVENTS[event] !== undefined) {
        const secure = args[TLS_EVENTS[event]!] as { _parent?: net.Socket | null } | undefined;
        if (secure?._parent != null) adoptAddresses(secure as net.Socket, secure._parent);
      }
      return emit.call(this, event, ...args);
    };
  } else {
    // Bun's http.Server and https.Server listen natively too: the same, with the TLS of an
    // https.Server (HTTP/1.1) run here.
    const own = tlsOptionsOf(server);
    const secure: StartTlsOptions | undefined = own && {
      secureContext: tls.createSecureContext(own), // one for every connection
      ALPNProtocols: ["http/1.1"],
    };
    hostOn(server as unknown as Hosted, emit, proxyOptions, secure, "connection");
  }
  marked[SERVED] = true;
  return server;
}

/** Bun's `http.Server` (or `https.Server`), as far as `serve` uses it. */
interface Hosted {
  emit(event: string | symbol, ...args: unknown[]): boolean;
  listen(...args: unknown[]): unknown;
  close(callback?: (error?: Error) => void): unknown;
  address(): unknown;
  listening: boolean;
  ALPNProtocols?: unknown;
}

function hostOn(
  server: Hosted,
  emit: Hosted["emit"],
  options: ServeOptions,
  secure: StartTlsOptions | undefined,
  event: string,
): void {
  const gate = createServer(options, (socket: ProxySocket) => {
    if (secure === undefined) emit.call(server, event, socket);
    else secureThen(server, emit, socket, secure, event);
  });
  gate.on("listening", () => emit.call(server, "listening"));
  gate.on("error", (error) => emit.call(server, "error", error));
  const close = server.close;
  server.listen = (...args: unknown[]) => {
    gate.listen(...args as Parameters<net.Server["listen"]>);
    return server;
  };
  server.address = () => gate.address();
  server.close = (callback?: (error?: Error) => void) => {
    try {
      close.call(server, () => {});
    } catch {
      // Not listening natively: nothing to close there.
    }
    gate.close(callback);
    return server;
  };
  Object.defineProperty(server, "listening", { get: () => gate.listening, configurable: true });
}

const IS_BUN = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/**
 * Runs TLS on a connection after its header, then emits `event` with the TLS socket on the
 * server; a failed handshake is emitted as `tlsClientError`, as `tls.Server` does (the
 * connection is then closed already).
 */
function secureThen(
  server: object,
  emit: (event: string, ...args: unknown[]) => boolean,
  socket: ProxySocket,
  options: StartTlsOptions,
  event: string,
): void {
  startTls(socket, options).then(
    (secure) => emit.call(server, event, secure),
    (error: Error) => emit.call(server, "tlsClientError", error.cause ?? error, socket),
  );
}

/** The options of a `tls.Server` (Bun keeps them as properties), for `startTls`. */
function secureOptionsOf(server: tls.Server): StartTlsOptions {
  const own = server as unknown as Record<string, unknown>;
  const options: StartTlsOptions = { secureContext: tls.createSecureContext(contextOptions(own)) };
  const alpn = alpnList(own.ALPNProtocols);
  if (alpn !== undefined) options.ALPNProtocols = alpn;
  if (typeof own.requestCert === "boolean") options.requestCert = own.requestCert;
  if (typeof own.rejectUnauthorized === "boolean") {
    options.rejectUnauthorized = own.rejectUnauthorized;
  }
  return options;
}

/** ALPN protocols from their wire form (length-prefixed names), as `tls.Server` keeps them. */
function alpnList(wire: unknown): string[] | undefined {
  if (Array.isArray(wire)) return wire as string[];
  if (!(wire instanceof Uint8Array) || wire.length === 0) return undefined;
  const names: string[] = [];
  for (let i = 0; i < wire.length;) {
    const length = wire[i]!;
    names.push(new TextDecoder().decode(wire.subarray(i + 1, i + 1 + length)));
    i += 1 + length;
  }
  return names;
}

/** What a secure context is made of, from Bun's `https.Server` TLS options. */
const CONTEXT_KEYS = [
  "key",
  "cert",
  "ca",
  "crl",
  "pfx",
  "passphrase",
  "ciphers",
  "sigalgs",
  "ecdhCurve",
  "secureOptions",
  "minVersion",
  "maxVersion",
] as const;

/**
 * The secure-context options among a server's own properties (Bun writes unset values as
 * 0 or null, which `tls.createSecureContext` refuses).
 */
function contextOptions(own: Record<string, unknown>): tls.SecureContextOptions {
  const out: Record<string, unknown> = {};
  for (const key of CONTEXT_KEYS) {
    if (own[key] !== undefined && own[key] !== null && own[key] !== 0) out[key] = own[key];
  }
  return out as tls.SecureContextOptions;
}

/**
 * The TLS options of Bun's `https.Server`, kept under a `Symbol(tls)`, as options of
 * `tls.createSecureContext` (Bun writes unset versions as 0, which it refuses there).
 */
function tlsOptionsOf(server: object): tls.SecureContextOptions | undefined {
  for (const symbol of Object.getOwnPropertySymbols(server)) {
    if (symbol.description !== "tls") continue;
    const value = (server as Record<symbol, unknown>)[symbol];
    if (typeof value !== "object" || value === null) continue;
    const own = value as Record<string, unknown>;
    if (own.key === undefined && own.pfx === undefined) continue;
    return contextOptions(own);
  }
  return undefined;
}
