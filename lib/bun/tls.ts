/**
 * `listenTls`: {@linkcode listen} with server-side TLS on the bytes after the PROXY header,
 * for protocols other than HTTP (for HTTPS, give `serve` a `tls` option).
 *
 * Bun's ways to start server-side TLS on an existing socket (`socket.upgradeTLS`,
 * `new tls.TLSSocket(socket, { isServer: true })`) have had bugs where the TLS role
 * follows the underlying socket, and neither takes bytes already read (the header's chunk
 * often holds the start of the ClientHello). So each connection is relayed after its
 * header into an inner `Bun.listen({ tls })` on loopback, which knows each of its
 * connections by the relay's local port.
 *
 * @module
 */

import { ProxyProtocolError } from "../error.ts";
import { OPTION_KEYS, refuseLazy } from "../connection/options.ts";
import { report } from "../connection/report.ts";
import { bun, type BunListener, type BunSocket, type BunSocketHandler } from "./_host.ts";
import {
  listen,
  type ListenOptions,
  type ProxyListener,
  type ProxySocket,
  type ProxySocketHandler,
} from "./listen.ts";
import { INNER_PORT, Relay, type RelayLink, type TlsOptions } from "./serve.ts";

/** The handlers of {@linkcode listenTls}: {@linkcode listen}'s, and Bun's `handshake`. */
export interface TlsSocketHandler<Data = undefined> extends ProxySocketHandler<Data> {
  /**
   * The TLS handshake finished; `success` says whether it did, `authorizationError` why a
   * client certificate (with `requestCert`) was not accepted.
   */
  handshake?(
    socket: ProxySocket<Data>,
    success: boolean,
    authorizationError: Error | null,
  ): void | Promise<void>;
}

/**
 * Options of {@linkcode listenTls}: {@linkcode listen}'s with `tls` (certificate and key,
 * as `Bun.listen` takes them) and handlers that may take `handshake`.
 */
export interface ListenTlsOptions<Data = undefined>
  extends Omit<ListenOptions<Data>, "tls" | "socket"> {
  /** The certificate and key; TLS runs on the bytes after the header. */
  tls: TlsOptions | readonly TlsOptions[];
  /** The handlers, called with the TLS socket (plaintext in, plaintext out). */
  socket: TlsSocketHandler<Data>;
}

/**
 * Listens like {@linkcode listen}, then runs server-side TLS on the bytes after each
 * connection's header: the handlers get Bun's TLS socket, with `remoteAddress`,
 * `remotePort`, `localAddress`, `localPort` (and families) and `proxyHeader` defined from
 * the header as {@linkcode listen} does, and read and write plaintext.
 *
 * How: each connection is relayed after its header phase into an inner
 * `Bun.listen({ tls })` on 127.0.0.1, which knows each of its connections by the relay's
 * local port and closes (and reports to `onError`, `UNTRUSTED_SOURCE`) any other. The
 * relay keeps backpressure both ways and passes FIN on.
 *
 * Connections refused in the header phase are reported to `onError` and closed; no
 * handler is called for them. Connections handed to `open` are yours to close; closing
 * the TLS socket closes the client's.
 *
 * @param options {@linkcode listen}'s options, `tls`, and handlers that may take
 *   `handshake`.
 * @returns The listener: `port` and `hostname` are those clients reach; `stop()` stops
 *   both listeners.
 * @throws {TypeError} For bad options (no `tls`, `lazy`, an unknown policy, a bad CIDR
 *   range), or when not running on Bun.
 * @throws {RangeError} For a timeout below 3 s without `allowShortTimeout`, or a bad
 *   `maxHeaderLength`.
 *
 * @example A TLS echo server that knows the client (runs on Bun)
 * ```ts ignore
 * import { listenTls } from "@proxy-protocol/edge/bun";
 *
 * const listener = listenTls({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   tls: { key: Bun.file("key.pem"), cert: Bun.file("cert.pem") },
 *   socket: {
 *     open(socket) {
 *       socket.write(`hello ${socket.remoteAddress}\n`); // sent once TLS is up
 *     },
 *     data(socket, data) {
 *       socket.write(data);
 *     },
 *   },
 * });
 * // A client writes "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n", then speaks TLS.
 * // ... later
 * listener.stop(true);
 * ```
 */
export function listenTls<Data = undefined>(options: ListenTlsOptions<Data>): ProxyListener<Data> {
  if (options === null || typeof options !== "object" || options.tls == null) {
    throw new TypeError("options.tls must give a certificate and key");
  }
  const handlers = options.socket;
  if (handlers === null || typeof handlers !== "object") {
    throw new TypeError("options.socket must be an object of handlers");
  }
  refuseLazy(options, "listenTls");
  const relay = new Relay();
  const proxyOptions: Record<string, unknown> = {};
  const innerOptions: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (OPTION_KEYS.has(key)) proxyOptions[key] = value;
    else if (key === "tls" || key === "data" || key === "allowHalfOpen") innerOptions[key] = value;
  }
  const onError = options.onError;
  const innerPort = () => inner.port;
  const inner = bun().listen({
    ...innerOptions,
    hostname: "127.0.0.1",
    port: 0,
    socket: innerHandler(handlers as TlsSocketHandler<unknown>, relay, (socket) => {
      report(
        { onError },
        new ProxyProtocolError(
          "UNTRUSTED_SOURCE",
          `${socket.remoteAddress}:${socket.remotePort} reached the inner TLS listener without the relay`,
        ),
        {
          remoteAddress: socket.remoteAddress ?? "",
          remotePort: socket.remotePort ?? 0,
          localAddress: "127.0.0.1",
          localPort: innerPort(),
        },
      );
    }),
  }) as BunListener;
  let outer: ProxyListener<RelayLink | undefined>;
  try {
    outer = listen<RelayLink | undefined>({
      ...proxyOptions,
      hostname: options.hostname,
      port: options.port,
      ...(options.reusePort !== undefined ? { reusePort: options.reusePort } : {}),
      ...(options.ipv6Only !== undefined ? { ipv6Only: options.ipv6Only } : {}),
      ...(options.exclusive !== undefined ? { exclusive: options.exclusive } : {}),
      allowHalfOpen: true,
      data: undefined,
      socket: relay.handlers(inner.port),
    });
  } catch (error) {
    inner.stop(true);
    throw error;
  }
  const innerListener = inner as BunListener & { data: Data };
  const listener: ProxyListener<Data> & { readonly [INNER_PORT]: number } = {
    get hostname() {
      return outer.hostname;
    },
    get port() {
      return outer.port;
    },
    get [INNER_PORT]() {
      return innerListener.port;
    },
    get data() {
      return innerListener.data;
    },
    set data(value: Data) {
      innerListener.data = value;
    },
    stop(closeActiveConnections?: boolean) {
      outer.stop(closeActiveConnections);
      if (closeActiveConnections) relay.closeAll();
      innerListener.stop(closeActiveConnections);
    },
    ref() {
      outer.ref();
      innerListener.ref();
    },
    unref() {
      outer.unref();
      innerListener.unref();
    },
  };
  return listener;
}

/** Set on inner sockets the relay did not make: no handler of the user's sees them. */
const REFUSED = Symbol("proxyProtocolRefused");

type InnerSocket = BunSocket & { [REFUSED]?: true };

/**
 * The inner listener's handlers: `open` finds the connection's link and defines the
 * client's addresses and header on the TLS socket; the rest are the user's, skipped for
 * refused sockets.
 */
function innerHandler(
  user: TlsSocketHandler<unknown>,
  relay: Relay,
  refused: (socket: BunSocket) => void,
): BunSocketHandler & { handshake?: unknown } {
  const u = user as unknown as BunSocketHandler & {
    handshake?(socket: BunSocket, success: boolean, error: Error | null): unknown;
  };
  const handler: BunSocketHandler & {
    handshake?(socket: BunSocket, success: boolean, error: Error | null): unknown;
  } = {
    open(socket: InnerSocket) {
      const link = relay.get(socket.remoteAddress ?? "", socket.remotePort ?? 0);
      if (link === undefined) {
        socket[REFUSED] = true;
        refused(socket);
        socket.terminate();
        return;
      }
      const client = link.client;
      define(socket, "remoteAddress", client.remoteAddress);
      define(socket, "remotePort", client.remotePort);
      define(socket, "remoteFamily", link.address.family);
      define(socket, "localAddress", client.localAddress);
      define(socket, "localPort", client.localPort);
      define(socket, "localFamily", client.localAddress.includes(":") ? "IPv6" : "IPv4");
      define(socket, "proxyHeader", link.header);
      return u.open?.(socket);
    },
    data(socket: InnerSocket, data) {
      if (socket[REFUSED] !== true) return u.data?.(socket, data);
    },
    end(socket: InnerSocket) {
      if (socket[REFUSED] !== true) return u.end?.(socket);
    },
    close(socket: InnerSocket, error) {
      if (socket[REFUSED] !== true) return u.close?.(socket, error);
    },
    drain(socket: InnerSocket) {
      if (socket[REFUSED] !== true) return u.drain?.(socket);
    },
    timeout(socket: InnerSocket) {
      if (socket[REFUSED] !== true) return u.timeout?.(socket);
    },
  };
  if (u.handshake !== undefined) {
    handler.handshake = (socket: InnerSocket, success, error) => {
      if (socket[REFUSED] !== true) return u.handshake?.(socket, success, error);
    };
  }
  if (u.error !== undefined) {
    handler.error = (socket: InnerSocket, error) => {
      if (socket[REFUSED] !== true) return u.error?.(socket, error);
    };
  }
  if (user.binaryType !== undefined) handler.binaryType = user.binaryType;
  return handler;
}

function define(socket: BunSocket, key: string, value: unknown): void {
  Object.defineProperty(socket, key, { value, enumerable: true, configurable: true });
}
