/**
 * The Bun adapter: {@linkcode listen} is `Bun.listen` that reads the PROXY header off every
 * connection before the application sees it. The handlers get Bun's own socket, so writes,
 * `drain` and backpressure are exactly Bun's; only the addresses and `proxyHeader` are
 * defined on it from the header.
 *
 * This module runs on Bun only. It does not depend on Bun's type definitions: the few
 * parts of Bun's API it uses are declared here, so it type-checks anywhere.
 *
 * @example Serve TCP behind a load balancer (runs on Bun)
 * ```ts ignore
 * import { listen } from "@proxy-protocol/edge/bun";
 *
 * const listener = listen({
 *   hostname: "0.0.0.0",
 *   port: 4000,
 *   trust: ["10.0.0.0/8"],
 *   socket: {
 *     open(socket) {
 *       console.log(`client ${socket.remoteAddress}:${socket.remotePort}`);
 *     },
 *     data(socket, data) {
 *       socket.write(data); // echo
 *     },
 *   },
 *   onError(error, peer) {
 *     console.warn(`refused ${peer?.remoteAddress}: ${error.code}`);
 *   },
 * });
 * console.log(`listening on ${listener.hostname}:${listener.port}`);
 * ```
 *
 * @module
 */

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
export type { ProxyProtocolErrorCode } from "./error.ts";
export type { PeerInfo, ProxyPolicy, ProxyProtocolOptions, UntrustedPolicy };
export type {
  InetAddress,
  ProxyAddress,
  ProxyCommand,
  ProxyHeader,
  ProxyProtocolFamily,
  ProxyVersion,
  Tlv,
  UnixAddress,
} from "./types.ts";

/** What Bun's socket `write` and `end` accept. */
export type SocketWritable = string | ArrayBufferView | ArrayBuffer;

/**
 * The Bun TCP socket the handlers receive: Bun's own socket object, described here by the
 * members this library's users commonly need (with Bun's types installed, cast it to
 * `Socket<Data>` for the rest). `remoteAddress`, `remotePort` and `remoteFamily` are the
 * client's from the header, and `localAddress`, `localPort` and `localFamily` what the
 * client connected to; for LOCAL and UNKNOWN headers (health checks), for no header and
 * under policy `ignore` they are the socket's own.
 */
export interface ProxySocket<Data = undefined> {
  /** The per-socket data, initialised from the listener's `data` as Bun does. */
  data: Data;
  /** The header that came, or `null` when none came or the policy ignores it. */
  readonly proxyHeader: ProxyHeader | null;
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
 * The handlers of {@linkcode listen}: `Bun.listen`'s, called with the same arguments at the
 * same moments, except that a connection's life begins (with `open`) once its header phase
 * succeeds. Connections refused before that are reported to `onError` only: none of these
 * handlers is called for them.
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
export interface ProxyListenOptions<Data = undefined> extends ProxyProtocolOptions {
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
  /** Not supported: see {@linkcode ProxyListenOptions}. Throws a `TypeError`. */
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

// --- The parts of Bun this module touches ---------------------------------------------

/** Bun's socket as this module uses it, before the properties are defined. */
interface RawSocket {
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;
  readonly readyState?: unknown;
  end(): unknown;
}

/** The handlers given to the real `Bun.listen`. */
interface RawHandler {
  open(socket: RawSocket): void;
  data(socket: RawSocket, data: Uint8Array): unknown;
  drain(socket: RawSocket): unknown;
  end(socket: RawSocket): unknown;
  close(socket: RawSocket, error?: Error): unknown;
  timeout(socket: RawSocket): unknown;
  error?(socket: RawSocket, error: Error): unknown;
  binaryType?: "buffer" | "uint8array";
}

interface BunLike {
  listen(options: Record<string, unknown>): unknown;
}

interface BufferLike {
  from(buffer: ArrayBufferLike, byteOffset: number, length: number): Uint8Array;
}

/** The keys of {@linkcode ProxyProtocolOptions}: everything else goes to `Bun.listen`. */
const OWN_KEYS = new Set<string>([
  "policy",
  "trust",
  "untrusted",
  "timeout",
  "allowShortTimeout",
  "maxHeaderLength",
  "verifyChecksum",
  "validate",
  "onError",
  "socket",
]);

/** A connection's header phase, kept beside Bun's socket (never in `socket.data`). */
interface State {
  /** `header`: reading; `validating`: `validate` pending; `open`: handed on; `refused`. */
  phase: "header" | "validating" | "open" | "refused";
  peer: PeerInfo;
  session: HeaderSession | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** What arrived while `validate` ran: copies of chunks, and `null` for the client's FIN. */
  queue: (Uint8Array | null)[];
}

const EMPTY = new Uint8Array(0);

/**
 * Listens for TCP connections like `Bun.listen`, reading the PROXY header at the start of
 * every connection before the handlers see it.
 *
 * The handlers have `Bun.listen`'s shape and get Bun's own socket: `open` fires once the
 * header is in, with `remoteAddress`, `remotePort`, `localAddress`, `localPort` (and the
 * families) set from the header and `proxyHeader` set to it; `data` receives payload only,
 * the first call a view into the chunk that held the header. After `open`, every event is
 * Bun's own: writes, `drain` and backpressure behave exactly as in Bun.
 *
 * Every connection refused in the header phase (policy, trust, timeout, a malformed or too
 * long header, `validate`, a client that leaves before the header is in) is reported to
 * `onError` with a {@linkcode ProxyProtocolError} and closed, and no handler is called
 * for it; the listener keeps accepting. Nothing a client sends throws into your code.
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
 */
export function listen<Data = undefined>(options: ProxyListenOptions<Data>): ProxyListener<Data> {
  const resolved = resolveOptions(options);
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
  const bun = (globalThis as unknown as { Bun?: BunLike }).Bun;
  if (bun === undefined) throw new TypeError("@proxy-protocol/edge/bun runs on Bun only");

  const bunOptions: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (!OWN_KEYS.has(key)) bunOptions[key] = value;
  }
  bunOptions.socket = rawHandler(resolved, handlers as ProxySocketHandler<unknown>);
  return bun.listen(bunOptions) as ProxyListener<Data>;
}

/** The handlers given to Bun: the header phase, then the user's handlers. */
function rawHandler(resolved: ResolvedOptions, user: ProxySocketHandler<unknown>): RawHandler {
  const states = new WeakMap<RawSocket, State>();
  const binaryType = user.binaryType ?? "buffer";
  const toUser = (socket: RawSocket) => socket as unknown as ProxySocket<unknown>;

  /** Bytes the library produced, in the type the user's `data` expects. */
  function deliverable(bytes: Uint8Array): Uint8Array {
    if (binaryType !== "buffer") return bytes;
    const buffer = (globalThis as unknown as { Buffer: BufferLike }).Buffer;
    return buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  function refuse(socket: RawSocket, state: State, error: unknown): void {
    if (state.phase === "refused" || state.phase === "open") return;
    clearTimeout(state.timer);
    state.phase = "refused";
    state.session = undefined;
    state.queue = [];
    try {
      socket.end();
    } catch {
      // Already closed.
    }
    report(resolved, error, state.peer);
  }

  /**
   * Ends the header phase: defines the addresses, calls `open`, then `data` with the rest.
   * A throw from `data` goes on to the caller, like any throw from the user's handlers.
   */
  function handOver(
    socket: RawSocket,
    state: State,
    header: ProxyHeader | null,
    rest: Uint8Array,
  ): unknown {
    clearTimeout(state.timer);
    state.phase = "open";
    state.session = undefined;
    state.timer = undefined;
    const addresses = effectiveAddresses(header, state.peer);
    const define = (key: string, value: unknown) =>
      Object.defineProperty(socket, key, { value, enumerable: true, configurable: true });
    define("remoteAddress", addresses.remoteAddress);
    define("remotePort", addresses.remotePort);
    define("remoteFamily", addresses.family);
    define("localAddress", addresses.localAddress);
    define("localPort", addresses.localPort);
    define("localFamily", addresses.family);
    define("proxyHeader", header);
    try {
      user.open?.(toUser(socket));
    } catch (error) {
      // As in Bun: the error goes to `error` (else it is uncaught), and the connection closes.
      userError(socket, error);
      try {
        socket.end();
      } catch {
        // Already closed.
      }
      return;
    }
    if (rest.length === 0 || isClosed(socket)) return;
    return user.data?.(toUser(socket), rest);
  }

  /** The header phase is over; `validate` decides, now or (when async) later. */
  function finish(socket: RawSocket, state: State, result: SessionResult, ended: boolean) {
    if (resolved.validate === undefined || result.header === null) {
      const rest = result.rest.length > 0 ? deliverable(result.rest) : result.rest;
      if (!ended) return handOver(socket, state, result.header, rest);
      // The client's FIN ended the header phase: then comes Bun's `end` event.
      runUserCode(socket, () => handOver(socket, state, result.header, rest));
      if (state.phase === "open" && !isClosed(socket)) return user.end?.(toUser(socket));
      return;
    }
    state.phase = "validating";
    state.session = undefined;
    // Keep copies: the chunks are Bun's.
    if (result.rest.length > 0) state.queue.push(copy(result.rest));
    if (ended) state.queue.push(null);
    const header = result.header;
    validateHeader(resolved, header, state.peer).then(() => {
      if (state.phase !== "validating") return; // closed or timed out meanwhile
      const queue = state.queue;
      state.queue = [];
      const first = queue[0] !== undefined && queue[0] !== null ? queue.shift()! : EMPTY;
      runUserCode(socket, () => handOver(socket, state, header, deliverable(first)));
      for (const item of queue) {
        if (isClosed(socket)) break;
        runUserCode(
          socket,
          () =>
            item === null
              ? user.end?.(toUser(socket))
              : user.data?.(toUser(socket), deliverable(item)),
        );
      }
    }, (error) => refuse(socket, state, error));
  }

  /**
   * Runs user code outside Bun's handlers as Bun would inside them: a throw goes to the
   * user's `error` handler, else it is an uncaught exception.
   */
  function runUserCode(socket: RawSocket, fn: () => unknown): void {
    try {
      fn();
    } catch (error) {
      userError(socket, error);
    }
  }

  /** A throw from the user's code: to `error` if there is one, else uncaught. */
  function userError(socket: RawSocket, error: unknown): void {
    try {
      if (user.error === undefined) throw error;
      user.error(toUser(socket), asError(error));
    } catch (uncaught) {
      queueMicrotask(() => {
        throw uncaught;
      });
    }
  }

  const raw: RawHandler = {
    open(socket) {
      const peer: PeerInfo = {
        remoteAddress: socket.remoteAddress ?? "",
        remotePort: socket.remotePort ?? 0,
        localAddress: socket.localAddress ?? "",
        localPort: socket.localPort ?? 0,
      };
      const state: State = {
        phase: "header",
        peer,
        session: undefined,
        timer: undefined,
        queue: [],
      };
      states.set(socket, state);
      let policy: ProxyPolicy | "deny";
      try {
        policy = policyFor(resolved, peer);
      } catch (error) {
        refuse(socket, state, error);
        return;
      }
      if (policy === "deny") {
        refuse(socket, state, untrustedError(peer));
        return;
      }
      if (policy === "skip") {
        handOver(socket, state, null, EMPTY);
        return;
      }
      state.session = new HeaderSession(policy, resolved);
      state.timer = setTimeout(() => {
        refuse(socket, state, timeoutError(resolved.timeout));
      }, resolved.timeout);
      // Do not keep the process alive for a header alone.
      (state.timer as { unref?: () => void }).unref?.();
    },

    data(socket, chunk) {
      const state = states.get(socket);
      if (state === undefined) return;
      switch (state.phase) {
        case "open":
          return user.data?.(toUser(socket), chunk);
        case "header": {
          let result: SessionResult | null;
          try {
            // A plain view: `slice()` on Bun's Buffer would not copy what the reader keeps.
            result = state.session!.push(
              new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
            );
          } catch (error) {
            refuse(socket, state, error);
            return;
          }
          if (result === null) return;
          return finish(socket, state, result, false);
        }
        case "validating":
          state.queue.push(copy(chunk));
          return;
      }
    },

    end(socket) {
      const state = states.get(socket);
      if (state === undefined) return;
      switch (state.phase) {
        case "open":
          return user.end?.(toUser(socket));
        case "header": {
          let result: SessionResult;
          try {
            result = state.session!.end();
          } catch (error) {
            refuse(socket, state, error);
            return;
          }
          return finish(socket, state, result, true);
        }
        case "validating":
          state.queue.push(null);
          return;
      }
    },

    close(socket, error) {
      const state = states.get(socket);
      if (state === undefined) return;
      if (state.phase === "open") {
        states.delete(socket);
        return user.close?.(toUser(socket), error);
      }
      refuse(
        socket,
        state,
        new ProxyProtocolError(
          "CONNECTION_CLOSED",
          "the connection closed before the PROXY header was complete",
          error === undefined ? undefined : { cause: error },
        ),
      );
      states.delete(socket);
    },

    drain(socket) {
      if (states.get(socket)?.phase === "open") return user.drain?.(toUser(socket));
    },

    timeout(socket) {
      if (states.get(socket)?.phase === "open") return user.timeout?.(toUser(socket));
    },
  };
  if (user.error !== undefined) {
    raw.error = (socket, error) => {
      if (states.get(socket)?.phase === "open") return user.error?.(toUser(socket), error);
    };
  }
  if (user.binaryType !== undefined) raw.binaryType = user.binaryType;
  return raw;
}

/** Bun reports a closed socket's `readyState` as -1 (older versions: `"closed"`). */
function isClosed(socket: RawSocket): boolean {
  const state = socket.readyState;
  return state === -1 || state === "closed";
}

/** A copy (`slice()` on Bun's `Buffer` would give a view). */
function copy(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
