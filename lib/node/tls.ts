/**
 * `startTls`: server-side TLS on a connection whose PROXY header has been read, for TLS
 * passthrough at the balancer (the header comes in clear, the client's handshake follows).
 *
 * @module
 */

import type net from "node:net";
import tls from "node:tls";
import { ProxyProtocolError } from "../error.ts";
import type { ProxyHeader } from "../types.ts";
import { headerPending, type ProxySocket } from "./listen.ts";

/**
 * A server-side `tls.TLSSocket` whose `remoteAddress`, `remotePort`, `remoteFamily`,
 * `localAddress`, `localPort` and `localFamily` are those of the connection it runs on
 * (the header's, see {@linkcode ProxySocket}), with the same `proxyHeader`.
 */
export interface ProxyTlsSocket extends tls.TLSSocket {
  /** The header of the underlying connection, or `null`. */
  readonly proxyHeader: ProxyHeader | null;
}

/**
 * Options of {@linkcode startTls}: those of `new tls.TLSSocket` (`secureContext`, or `key`
 * and `cert`; `ALPNProtocols`, `SNICallback`, `requestCert`, ...), always server-side.
 */
export interface StartTlsOptions extends Omit<tls.TLSSocketOptions, "isServer"> {
  /**
   * Milliseconds the client has to finish its handshake; default 120 000, as
   * `tls.Server`'s `handshakeTimeout`. `0` waits for ever.
   */
  handshakeTimeout?: number;
}

/**
 * Starts server-side TLS on a connection and resolves once the handshake is done.
 *
 * The bytes already read past the header (the client's `ClientHello` often comes in the
 * same packet) are fed to TLS first. The TLS socket reports the connection's addresses
 * (the header's) and its `proxyHeader` from the start, so `tlsClientError` handlers and
 * `req.socket.remoteAddress` see the client.
 *
 * Who closes what: the TLS socket takes the connection over. Once resolved, it is the
 * caller's; ending or destroying it closes the connection. When the handshake fails,
 * times out or the client leaves, both are destroyed here and the promise rejects with a
 * {@linkcode ProxyProtocolError} (`TIMEOUT`, or `CONNECTION_CLOSED` with the TLS error as
 * `cause`); do not use the connection after calling this. On a socket of a `lazy` server,
 * TLS starts once its header is in, and the promise rejects with the header phase's error
 * if the connection is refused.
 *
 * @param socket A connection from `createServer` (or any `net.Socket` or Duplex).
 * @param options The TLS options; `isServer` is forced.
 * @returns The TLS socket, once secure.
 *
 * @example TLS passthrough: a TLS echo server behind a load balancer
 * (run by tests/node/tls.test.ts, which makes a certificate first)
 * ```ts ignore
 * import { createServer, startTls } from "@proxy-protocol/edge/node";
 * import tls from "node:tls";
 *
 * const key = "...PEM...", cert = "...PEM...";
 * const server = createServer({ onError: (e) => console.error(e.code) }, async (socket) => {
 *   try {
 *     const secure = await startTls(socket, { key, cert, ALPNProtocols: ["echo"] });
 *     secure.write(`hello ${secure.remoteAddress}\n`);
 *     secure.pipe(secure);
 *   } catch (error) {
 *     console.error(error); // the connection is already closed
 *   }
 * });
 * server.listen(7443);
 * ```
 */
export function startTls(
  socket: net.Socket | ProxySocket,
  options: StartTlsOptions = {},
): Promise<ProxyTlsSocket> {
  // A lazy socket: TLS starts once its header is in (and not at all if it is refused).
  const pending = headerPending(socket);
  if (pending !== undefined) return pending.then(() => startTls(socket, options));
  const { handshakeTimeout = 120_000, ...rest } = options;
  const secure = new tls.TLSSocket(socket, { ...rest, isServer: true }) as ProxyTlsSocket;
  adoptAddresses(secure, socket);
  return new Promise((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const settle = (error: ProxyProtocolError | undefined) => {
      clearTimeout(timer);
      secure.removeListener("secure", onSecure);
      secure.removeListener("error", onError);
      secure.removeListener("close", onClose);
      if (error === undefined) return resolve(secure);
      secure.on("error", ignore);
      secure.destroy();
      socket.destroy();
      reject(error);
    };
    const onSecure = () => settle(undefined);
    const onError = (cause: Error) =>
      settle(
        new ProxyProtocolError("CONNECTION_CLOSED", `TLS handshake failed: ${cause.message}`, {
          cause,
        }),
      );
    const onClose = () =>
      settle(
        new ProxyProtocolError(
          "CONNECTION_CLOSED",
          "the connection closed during the TLS handshake",
        ),
      );
    secure.on("secure", onSecure);
    secure.on("error", onError);
    secure.on("close", onClose);
    if (handshakeTimeout > 0) {
      timer = setTimeout(
        () =>
          settle(
            new ProxyProtocolError(
              "TIMEOUT",
              `no TLS handshake within ${handshakeTimeout} ms`,
            ),
          ),
        handshakeTimeout,
      );
    }
  });
}

/**
 * Makes a socket built on another one (a `TLSSocket` on a connection) report that
 * connection's addresses and header: `net.Socket` caches its endpoints in `_peername` and
 * `_sockname`, read by every getter; where a runtime does not, the getters are shadowed.
 * Nothing happens when `from` did not come through the header phase. Internal.
 */
export function adoptAddresses(to: net.Socket, from: net.Socket): void {
  if (!Object.hasOwn(from, "proxyHeader")) return;
  const source = from as unknown as Record<string, unknown>;
  const target = to as unknown as Record<string, unknown>;
  target.proxyHeader = source.proxyHeader;
  if (source._peername !== undefined) target._peername = source._peername;
  if (source._sockname !== undefined) target._sockname = source._sockname;
  for (
    const name of [
      "remoteAddress",
      "remotePort",
      "remoteFamily",
      "localAddress",
      "localPort",
      "localFamily",
    ] as const
  ) {
    const value = from[name];
    if (to[name] !== value) {
      Object.defineProperty(to, name, { value, configurable: true, enumerable: true });
    }
  }
}

function ignore(): void {}
