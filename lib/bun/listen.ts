/**
 * `listen`: `Bun.listen` that reads the PROXY header off every connection before the
 * application sees it. Glue between Bun's socket handlers and the shared accept phase.
 *
 * @module
 */

import { AcceptPhase, type AcceptStep } from "../connection/accept.ts";
import { headerAddresses } from "../connection/addresses.ts";
import {
  OPTION_KEYS,
  type ProxyProtocolOptions,
  type ResolvedOptions,
  resolveOptions,
  runtimeOptions,
} from "../connection/options.ts";
import type { PeerInfo } from "../connection/peer.ts";
import type { ProxyHeader } from "../types.ts";
import {
  type BufferConstructorLike,
  bun,
  type BunSocket,
  type BunSocketHandler,
  isClosed,
} from "./_host.ts";

/** What Bun's socket `write` and `end` accept. */
export type SocketWritable = string | ArrayBufferView | ArrayBuffer;

/**
 * What every Bun TCP socket this library hands out offers, server or client side: Bun's
 * own socket, described by the members commonly needed (with Bun's types installed, cast
 * it to `Socket<Data>` for the rest).
 */
export interface TcpSocket<Data = undefined> {
  /** The per-socket data, initialised from the listener's or the options' `data`. */
  data: Data;
  /**
   * Writes bytes, as Bun does: returns how many were written (less than asked for under
   * backpressure; `drain` follows when more can be written), or -1 when closed.
   */
  write(data: SocketWritable, byteOffset?: number, byteLength?: number): number;
  /** Writes the last bytes, if any, and closes the connection. */
  end(data?: SocketWritable, byteOffset?: number, byteLength?: number): number;
  /** Sends buffered bytes now. */
  flush(): void;
  /** Closes the connection at once, dropping unsent bytes. */
  terminate(): void;
  /** Shuts down the write half (`halfClose`) or both halves. */
  shutdown(halfClose?: boolean): void;
  /** Sets the idle timeout in seconds (0 disables it); the `timeout` handler fires on it. */
  timeout(seconds: number): void;
  /** Stops reading. */
  pause(): void;
  /** Reads again after `pause`. */
  resume(): void;
  /** Lets the process exit while the socket is open. */
  unref(): void;
  /** Keeps the process alive while the socket is open (the default). */
  ref(): void;
  /** Sets `TCP_NODELAY`. */
  setNoDelay(noDelay?: boolean): boolean;
  /** Sets `SO_KEEPALIVE`. */
  setKeepAlive(enable?: boolean, initialDelay?: number): boolean;
}

/**
 * The Bun TCP socket the handlers receive: Bun's own socket object, described here by the
 * members this library's users commonly need (with Bun's types installed, cast it to
 * `Socket<Data>` for the rest). `remoteAddress`, `remotePort` and `remoteFamily` are the
 * client's from the header, and `localAddress`, `localPort` and `localFamily` what the
 * client connected to; for LOCAL and UNKNOWN headers (health checks), for no header and
 * under policy `ignore` they are the socket's own.
 */
export interface ProxySocket<Data = undefined> extends TcpSocket<Data> {
  /**
   * The header that came, or `null` when none came or the policy ignores it (and, from a
   * `lazy` listener, until the header phase is over).
   */
  readonly proxyHeader: ProxyHeader | null;
  /**
   * Resolves to `proxyHeader` once the header phase is over, after which it and the
   * addresses are final; already resolved unless the listener is `lazy`. On a lazy socket
   * it rejects with the `ProxyProtocolError` when the connection is refused (the
   * listener has then reported it to `onError` and closed the socket).
   */
  readonly proxyHeaderSettled: Promise<ProxyHeader | null>;
  /** The client's address. */
  readonly remoteAddress: string;
  /** The client's port. */
  readonly remotePort: number;
  /** The client's address family. */
  readonly remoteFamily: "IPv4" | "IPv6";
  /** The address the client connected to. */
  readonly localAddress: string;
  /** The port the client connected to. */
  readonly localPort: number;
  /** The family of `localAddress`. */
  readonly localFamily: "IPv4" | "IPv6";
}

/**
 * The handlers of {@linkcode listen}: `Bun.listen`'s, called with the same arguments at the
 * same moments, except that a connection's life begins (with `open`) once its header phase
 * succeeds. Connections refused before that are reported to `onError` only: none of these
 * handlers is called for them. With `lazy: true`, `open` fires at once, before the header:
 * see {@linkcode listen}.
 */
export interface ProxySocketHandler<Data = undefined> {
  /**
   * The header phase succeeded: `socket.remoteAddress` and `socket.proxyHeader` are set.
   * As in Bun, a throw here goes to `error` and closes the connection.
   */
  open?(socket: ProxySocket<Data>): void | Promise<void>;
  /**
   * Bytes from the client, payload only: the first call gets the bytes after the header
   * (a view into the chunk that held it, not a copy), later calls Bun's chunks as they are.
   */
  data?(socket: ProxySocket<Data>, data: Uint8Array): void | Promise<void>;
  /** The socket can take more writes after `write` returned less than asked for. */
  drain?(socket: ProxySocket<Data>): void | Promise<void>;
  /** The client finished sending (TCP FIN). */
  end?(socket: ProxySocket<Data>): void | Promise<void>;
  /** The connection closed. */
  close?(socket: ProxySocket<Data>, error?: Error): void | Promise<void>;
  /**
   * A handler threw (as in Bun). Registered with Bun only if given, so that without it a
   * throwing handler is an uncaught exception, as in Bun.
   */
  error?(socket: ProxySocket<Data>, error: Error): void | Promise<void>;
  /** The idle timeout set with `socket.timeout()` elapsed. */
  timeout?(socket: ProxySocket<Data>): void | Promise<void>;
  /**
   * The type of the `data` handler's bytes: Bun's `Buffer` (default) or a plain
   * `Uint8Array`.
   */
  binaryType?: "buffer" | "uint8array";
}

/**
 * Options of {@linkcode listen}: those of `Bun.listen` for TCP, passed on to it, and the
 * shared PROXY protocol options. `tls` is not supported: the PROXY header comes before
 * the TLS handshake, so Bun's TLS listener would read it as a bad handshake; terminate TLS
 * in the load balancer, or behind this listener.
 */
export interface ListenOptions<Data = undefined> extends ProxyProtocolOptions {
  /** The address to listen on, e.g. `"0.0.0.0"`, `"::"` or `"127.0.0.1"`. */
  hostname: string;
  /** The port to listen on; 0 picks a free one (read it back from the listener). */
  port: number;
  /** The connection handlers. */
  socket: ProxySocketHandler<Data>;
  /** The initial `socket.data` of every connection. */
  data?: Data;
  /** Bun: fail rather than share the port with another process. */
  exclusive?: boolean;
  /** Bun: `SO_REUSEPORT`. */
  reusePort?: boolean;
  /** Bun: on `"::"`, accept IPv6 only. */
  ipv6Only?: boolean;
  /** Bun: keep the socket writable after the client's FIN, until `end()`. */
  allowHalfOpen?: boolean;
  /** Not supported: see {@linkcode ListenOptions}. Throws a `TypeError`. */
  tls?: never;
}

/** Bun's TCP listener, as {@linkcode listen} returns it. */
export interface ProxyListener<Data = undefined> {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on (the one picked when 0 was asked for). */
  readonly port: number;
  /** The listener's `data`. */
  data: Data;
  /** Stops accepting; with `true`, also closes the open connections. */
  stop(closeActiveConnections?: boolean): void;
  /** Keeps the process alive while listening (the default). */
  ref(): void;
  /** Lets the process exit while listening. */
  unref(): void;
}

/** @deprecated Renamed {@linkcode ListenOptions}, after its function. */
export type ProxyListenOptions<Data = undefined> = ListenOptions<Data>;

/**
 * Listens for TCP connections like `Bun.listen`, reading the PROXY header at the start of
 * every connection before the handlers see it.
 *
 * The handlers have `Bun.listen`'s shape and get Bun's own socket: `open` fires once the
 * header is in, with `remoteAddress`, `remotePort`, `localAddress`, `localPort` (and the
 * families) set from the header and `proxyHeader` set to it; `data` receives payload only,
 * the first call a view into the chunk that held the header. From `open` on, the socket
 * runs your handlers itself (`socket.reload`): every event is Bun's own, with nothing of
 * this library in between, and writes, `drain` and backpressure behave exactly as in Bun.
 * While an async `validate` runs, the socket stops reading.
 *
 * Every connection refused in the header phase (policy, trust, timeout, a malformed or too
 * long header, `validate`, a client that leaves before the header is in) is reported to
 * `onError` with a {@linkcode ProxyProtocolError} and closed by the listener, and no
 * handler is called for it; the listener keeps accepting. Nothing a client sends throws
 * into your code. Connections handed to `open` are yours to close.
 *
 * With `lazy: true`, for protocols where the server speaks first, `open` fires at once,
 * before the header: writes (and `drain`, `timeout`) go through, `data` gets payload only,
 * after the header, and `await socket.proxyHeaderSettled` waits for it; until then
 * `proxyHeader` is `null` and the addresses are the socket's own. A lazy connection
 * refused later (a bad header, the timeout, `validate`, the client leaving) is reported
 * to `onError` and closed by the listener: `proxyHeaderSettled` rejects, and `close` is
 * called, as for every socket that was opened.
 *
 * @param options `Bun.listen`'s TCP options (`hostname`, `port`, `socket`, `data`, ...) and
 *   the PROXY protocol options (`policy`, `trust`, `untrusted`, `timeout`,
 *   `maxHeaderLength`, `verifyChecksum`, `validate`, `onError`).
 * @returns Bun's listener: `port`, `hostname`, `stop()`, `ref()`, `unref()`.
 * @throws {TypeError} For bad options (an unknown policy, a bad CIDR range, `tls`), or when
 *   not running on Bun.
 * @throws {RangeError} For a timeout below 3 s without `allowShortTimeout`, or a bad
 *   `maxHeaderLength`.
 *
 * @example An echo server that greets the client by its real address (runs on Bun)
 * ```ts ignore
 * import { listen } from "@proxy-protocol/edge/bun";
 *
 * const listener = listen<{ bytes: number }>({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   data: { bytes: 0 },
 *   policy: "require",
 *   socket: {
 *     open(socket) {
 *       socket.write(`hello ${socket.remoteAddress}:${socket.remotePort}\n`);
 *     },
 *     data(socket, data) {
 *       socket.data.bytes += data.length;
 *       socket.write(data);
 *     },
 *   },
 * });
 *
 * const client = await Bun.connect({
 *   hostname: "127.0.0.1",
 *   port: listener.port,
 *   socket: {
 *     open(socket) {
 *       socket.write("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\nping");
 *     },
 *     data(socket, data) {
 *       console.log(new TextDecoder().decode(data)); // "hello 203.0.113.7:51234\n", "ping"
 *     },
 *   },
 * });
 * // ... later
 * client.end();
 * listener.stop(true);
 * ```
 *
 * @example A server that speaks first (SMTP): `lazy` (runs on Bun)
 * ```ts ignore
 * import { listen } from "@proxy-protocol/edge/bun";
 *
 * listen({
 *   hostname: "0.0.0.0",
 *   port: 2525,
 *   lazy: true,
 *   socket: {
 *     open(socket) {
 *       socket.write("220 ready\r\n"); // at once: the header comes after it
 *     },
 *     data(socket) {
 *       socket.write(`250 ${socket.remoteAddress}\r\n`); // the header's client
 *     },
 *   },
 * });
 * ```
 */
export function listen<Data = undefined>(options: ListenOptions<Data>): ProxyListener<Data> {
  const resolved = resolveOptions(options);
  resolved.deadlines.unref = true; // the server's own handle keeps the process alive
  const handlers = options.socket;
  if (handlers === null || typeof handlers !== "object") {
    throw new TypeError("options.socket must be an object of handlers");
  }
  if ((options as { tls?: unknown }).tls !== undefined) {
    throw new TypeError(
      "tls is not supported: the PROXY header comes before the TLS handshake",
    );
  }
  const binaryType: unknown = handlers.binaryType;
  if (binaryType !== undefined && binaryType !== "buffer" && binaryType !== "uint8array") {
    throw new TypeError(`binaryType ${JSON.stringify(binaryType)} is not supported`);
  }
  const bunOptions = runtimeOptions(options, SOCKET);
  bunOptions.socket = headerHandler(resolved, handlers as ProxySocketHandler<unknown>);
  return bun().listen(bunOptions) as ProxyListener<Data>;
}

const SOCKET: ReadonlySet<string> = new Set(["socket", ...OPTION_KEYS]);

/** One accepted socket during its header phase. */
class BunPhase extends AcceptPhase {
  readonly socket: PhasedSocket;
  readonly user: ProxySocketHandler<unknown>;
  /** Lazy: the user's `open` was called before the header. */
  handed = false;

  constructor(options: ResolvedOptions, socket: BunSocket, user: ProxySocketHandler<unknown>) {
    super(options);
    this.socket = socket;
    this.user = user;
  }

  protected override readPeer(): PeerInfo | undefined {
    const { remoteAddress, remotePort, localAddress, localPort } = this.socket;
    if (remoteAddress === undefined || localAddress === undefined) return undefined;
    return { remoteAddress, remotePort: remotePort ?? 0, localAddress, localPort: localPort ?? 0 };
  }

  protected override timedOut(): void {
    this.#refused();
  }

  /** Closes the socket; a lazy one's events but `close` go nowhere from now on. */
  #refused(): void {
    const socket = this.socket as PhasedSocket;
    socket[PHASE] = this.handed ? false : null;
    end(socket);
    if (this.handed) this.announce();
  }

  /**
   * Lazy: calls the user's `open` before the header; its `data` waits for the header.
   * As from Bun, a throw goes to their `error` handler and closes the connection.
   */
  handOverLazily(): void {
    const socket = this.socket;
    this.handed = true;
    define(socket, "proxyHeader", null);
    define(socket, "proxyHeaderSettled", this.outcome);
    const proxySocket = socket as unknown as ProxySocket<unknown>;
    try {
      this.user.open?.(proxySocket);
    } catch (error) {
      userError(this.user, proxySocket, error);
      end(socket);
    }
  }

  /** Does what the accept phase asks. */
  act(step: AcceptStep): void {
    switch (step) {
      case "wait":
        return;
      case "pause":
        this.socket.pause();
        this.settled!.then((next) => {
          if (next === "open") this.socket.resume();
          this.act(next);
        });
        return;
      case "open":
        return this.#open();
      case "refuse":
        return this.#refused();
    }
  }

  /**
   * Defines the addresses, then calls the user's open (unless called already: lazy), data
   * (the rest) and end.
   */
  #open(): void {
    const { socket, user, header, ended, handed } = this;
    socket[PHASE] = undefined; // from here on, events go to the user's handlers
    const addresses = headerAddresses(header);
    if (addresses !== undefined) {
      define(socket, "remoteAddress", addresses.remoteAddress);
      define(socket, "remotePort", addresses.remotePort);
      define(socket, "remoteFamily", addresses.family);
      define(socket, "localAddress", addresses.localAddress);
      define(socket, "localPort", addresses.localPort);
      define(socket, "localFamily", addresses.family);
    }
    define(socket, "proxyHeader", header);
    if (this.options.metrics !== undefined) socket[BYTES_IN] = this.rest.length;
    if (handed) this.announce();
    else Object.defineProperty(socket, "proxyHeaderSettled", SETTLED);
    const proxySocket = socket as unknown as ProxySocket<unknown>;
    // The user's code, called here rather than by Bun: a throw goes to their `error`
    // handler (else it is uncaught) and closes the connection, as it would from Bun.
    try {
      if (!handed) user.open?.(proxySocket);
      if (this.rest.length > 0 && !isClosed(socket)) user.data?.(proxySocket, this.#bytes());
      if (ended && !isClosed(socket)) user.end?.(proxySocket);
    } catch (error) {
      userError(user, proxySocket, error);
      end(socket);
    }
  }

  /** The bytes after the header, in the type the user's `data` expects. */
  #bytes(): Uint8Array {
    const rest = this.rest;
    if (this.user.binaryType === "uint8array") return rest;
    const buffer = (globalThis as unknown as { Buffer: BufferConstructorLike }).Buffer;
    return buffer.from(rest.buffer, rest.byteOffset, rest.byteLength);
  }
}

/**
 * A socket's header phase while it runs; `undefined` once open, `null` once refused, and
 * `false` once refused after a lazy hand-over (only `close` still goes to the user).
 */
const PHASE = Symbol("proxyProtocolPhase");

/** With `metrics`: the payload bytes a socket has read since its header phase. */
const BYTES_IN = Symbol("proxyProtocolBytesIn");

type PhasedSocket = BunSocket & {
  [PHASE]?: BunPhase | null | false | undefined;
  [BYTES_IN]?: number;
};

/**
 * `proxyHeaderSettled` of a socket opened with its header: one descriptor for every
 * socket, and a promise only for those asked.
 */
const SETTLED: PropertyDescriptor = {
  get(this: { proxyHeader: ProxyHeader | null }): Promise<ProxyHeader | null> {
    return Promise.resolve(this.proxyHeader);
  },
  configurable: true,
};

/**
 * The handlers given to Bun: each socket's header phase, then the user's handlers, called
 * with the same arguments (one property read in between).
 */
function headerHandler(
  resolved: ResolvedOptions,
  user: ProxySocketHandler<unknown>,
): BunSocketHandler {
  const u = user as unknown as BunSocketHandler;
  const metrics = resolved.metrics;
  const handler: BunSocketHandler = {
    open(socket: PhasedSocket) {
      const phase = new BunPhase(resolved, socket, user);
      socket[PHASE] = phase;
      const step = phase.start();
      phase.act(step);
      if (step === "wait" && resolved.lazy) phase.handOverLazily();
    },
    data(socket: PhasedSocket, chunk) {
      const phase = socket[PHASE];
      if (phase === undefined) return u.data?.(socket, chunk);
      // A plain view: the reader copies what it keeps (`slice()` of Bun's Buffer would not).
      if (phase) {
        phase.act(phase.data(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
      }
    },
    end(socket: PhasedSocket) {
      const phase = socket[PHASE];
      if (phase === undefined) return u.end?.(socket);
      if (phase) phase.act(phase.end());
    },
    close(socket: PhasedSocket, error) {
      const phase = socket[PHASE];
      if (phase === undefined && metrics !== undefined) {
        const written = (socket as { bytesWritten?: unknown }).bytesWritten;
        metrics.onClosed(socket[BYTES_IN] ?? 0, typeof written === "number" ? written : 0);
      }
      if (phase === undefined || phase === false) return u.close?.(socket, error);
      if (phase === null) return;
      phase.act(phase.closed(error));
      // Lazy: the user saw `open`, so they see `close`.
      if (phase.handed) return u.close?.(socket, error);
    },
    drain(socket: PhasedSocket) {
      if (opened(socket)) return u.drain?.(socket);
    },
    timeout(socket: PhasedSocket) {
      if (opened(socket)) return u.timeout?.(socket);
    },
  };
  if (metrics !== undefined) {
    // Bun's sockets count the bytes they write, not those they read: count the payload here.
    const data = handler.data;
    handler.data = (socket: PhasedSocket, chunk) => {
      if (socket[PHASE] === undefined) {
        socket[BYTES_IN] = (socket[BYTES_IN] ?? 0) + chunk.byteLength;
      }
      return data(socket, chunk);
    };
  }
  // Registered only if given: without it, a throwing handler is uncaught, as in Bun.
  if (u.error !== undefined) {
    handler.error = (socket: PhasedSocket, error) => {
      if (opened(socket)) return u.error?.(socket, error);
    };
  }
  if (user.binaryType !== undefined) handler.binaryType = user.binaryType;
  return handler;
}

/** Whether the user's handlers see the socket's events: open, or lazily handed over. */
function opened(socket: PhasedSocket): boolean {
  const phase = socket[PHASE];
  return phase === undefined || (phase ? phase.handed : false);
}

function define(socket: BunSocket, key: string, value: unknown): void {
  Object.defineProperty(socket, key, { value, enumerable: true, configurable: true });
}

function end(socket: BunSocket): void {
  try {
    socket.end();
  } catch {
    // Already closed.
  }
}

/** A throw from the user's code: to their `error` handler if there is one, else uncaught. */
function userError(
  user: ProxySocketHandler<unknown>,
  socket: ProxySocket<unknown>,
  error: unknown,
) {
  try {
    if (user.error === undefined) throw error;
    user.error(socket, error instanceof Error ? error : new Error(String(error)));
  } catch (uncaught) {
    queueMicrotask(() => {
      throw uncaught;
    });
  }
}
