/**
 * A listener of the CLI's servers (gateway, inspect): the library's `createServer` (on
 * `node:net`, which runs on Deno, Bun and Node), with refusals logged, a cap on open
 * connections, optional TLS after the header, and a graceful close. The library's own
 * `metrics` option counts accepted, refused and open connections and times the header
 * phase; this adds what the library cannot see: failed TLS handshakes and connections
 * dropped at the cap. Internal.
 *
 * @module
 */

import type net from "node:net";
import tls from "node:tls";
import { createServer, type ProxySocket } from "../lib/node/listen.ts";
import { startTls } from "../lib/node/tls.ts";
import type { ProxyProtocolOptions } from "../lib/connection/options.ts";
import { ListenerMetrics } from "../lib/connection/metrics.ts";
import { type Endpoint, errorFields, formatEndpoint, type Logger } from "./_common.ts";

/** What a connection's handler learns besides the socket. */
export interface Accepted {
  /** The socket's own peer (the balancer, or the client when no header came). */
  peer: { address: string; port: number };
  /** Milliseconds from accept to hand-over. */
  headerMs: number;
}

/** Options of {@linkcode startListener}. */
export interface ListenerOptions {
  /** Where to listen. */
  listen: Endpoint;
  /** The accept options (policy, trust, timeout, max header). */
  accept: ProxyProtocolOptions;
  /** Logs. */
  log: Logger;
  /**
   * Counters: the library's listener keeps them (accepted, refused, open, bytes), and this
   * adds `TLS_HANDSHAKE` and `MAX_CONNECTIONS` refusals.
   */
  metrics: ListenerMetrics;
  /** The most connections open at once (header phase included); 0 for no cap. */
  maxConnections: number;
  /** TLS after the header, when given. */
  tls?: tls.SecureContextOptions | undefined;
  /** Let several processes listen on the port (Deno and Bun; Node uses node:cluster). */
  reusePort?: boolean;
  /** Called with each connection whose header phase (and TLS handshake) succeeded. */
  onConnection(socket: ProxySocket | tls.TLSSocket, info: Accepted, raw: ProxySocket): void;
}

/** A running listener. */
export interface Listener {
  /** The bound address. */
  address: Endpoint;
  /** Its counters. */
  metrics: ListenerMetrics;
  /** Connections open now: in their header phase or handed on. */
  readonly connections: number;
  /**
   * Stops accepting, waits up to `drainMs` for open connections to finish, then destroys
   * the rest.
   *
   * @returns How many connections were cut at the deadline.
   */
  close(drainMs: number): Promise<number>;
}

/** Starts listening; rejects when the port cannot be bound. */
export function startListener(options: ListenerOptions): Promise<Listener> {
  const { log, metrics } = options;
  const started = new WeakMap<net.Socket, { at: number; address: string; port: number }>();
  const sockets = new Set<net.Socket>();
  let drained: (() => void) | undefined;
  const context = options.tls === undefined ? undefined : tls.createSecureContext(options.tls);

  const server = createServer({
    ...options.accept,
    metrics,
    allowHalfOpen: true,
    noDelay: true,
    onError(error, peer) {
      log.log("warn", "refused", {
        ...errorFields(error),
        peer: peer === undefined ? undefined : `${peer.remoteAddress}:${peer.remotePort}`,
      });
    },
  }, (socket) => {
    const start = started.get(socket);
    const headerMs = start === undefined ? 0 : performance.now() - start.at;
    const peer = { address: start?.address ?? "", port: start?.port ?? 0 };
    if (context === undefined) {
      options.onConnection(socket, { peer, headerMs }, socket);
      return;
    }
    startTls(socket, {
      secureContext: context,
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: options.accept.timeout ?? 10_000,
    }).then((secure) => {
      options.onConnection(secure, { peer, headerMs }, socket);
    }, (error: Error & { code?: string }) => {
      // Counted accepted (its header phase succeeded), and refused here; the raw socket's
      // close counts it closed.
      metrics.onRefused("TLS_HANDSHAKE");
      log.log("warn", "refused", {
        code: "TLS_HANDSHAKE",
        message: error.message,
        peer: `${peer.address}:${peer.port}`,
      });
    });
  });
  if (options.maxConnections > 0) server.maxConnections = options.maxConnections;
  server.on("drop", () => {
    metrics.onRefused("MAX_CONNECTIONS");
    log.log("warn", "refused", { code: "MAX_CONNECTIONS", max: options.maxConnections });
  });
  server.prependListener("connection", (socket: net.Socket) => {
    started.set(socket, {
      at: performance.now(),
      address: socket.remoteAddress ?? "",
      port: socket.remotePort ?? 0,
    });
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      if (sockets.size === 0) drained?.();
    });
  });

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(
      {
        host: options.listen.host,
        port: options.listen.port,
        ...(options.reusePort ? { reusePort: true } : {}),
      },
      () => {
        server.off("error", reject);
        const bound = server.address() as net.AddressInfo;
        const address = { host: bound.address, port: bound.port };
        log.log("info", "listening", { listen: formatEndpoint(address) });
        resolve({
          address,
          metrics,
          get connections() {
            return sockets.size;
          },
          close(drainMs: number): Promise<number> {
            server.close();
            if (sockets.size === 0) return Promise.resolve(0);
            return new Promise<number>((done) => {
              const timer = setTimeout(() => {
                const cut = sockets.size;
                for (const s of sockets) s.destroy();
                done(cut);
              }, drainMs);
              drained = () => {
                clearTimeout(timer);
                done(0);
              };
            });
          },
        });
      },
    );
  });
}

export { ListenerMetrics };
