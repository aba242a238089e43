/**
 * `connect`: `Bun.connect` that sends a PROXY header before any byte of the application.
 * Glue between Bun's socket handlers and the runtime-neutral sender.
 *
 * @module
 */

import { headerBytes, runtimeConnectOptions, type SendOptions } from "../connection/sender.ts";
import { bun, type BunSocket } from "./_host.ts";
import type { SocketWritable, TcpSocket } from "./listen.ts";

/**
 * The Bun TCP socket {@linkcode connect} resolves to and its handlers receive: Bun's own
 * socket object, described here by the members commonly needed (with Bun's types
 * installed, cast it to `Socket<Data>` for the rest).
 */
export interface ClientSocket<Data = undefined> extends TcpSocket<Data> {
  /** The server's address. */
  readonly remoteAddress: string;
  /** The server's port. */
  readonly remotePort: number;
  /** This end's address. */
  readonly localAddress: string;
  /** This end's port. */
  readonly localPort: number;
  /**
   * Writes bytes, as Bun does: returns how many were written (less than asked for under
   * backpressure; `drain` follows when more can be written), or -1 when closed. The first
   * write carries the header in front (see {@linkcode connect}); its result counts only
   * your bytes.
   */
  write(data: SocketWritable, byteOffset?: number, byteLength?: number): number;
}

/** The handlers of {@linkcode connect}: `Bun.connect`'s, called as Bun calls them. */
export interface ClientSocketHandler<Data = undefined> {
  /**
   * Connected. The header goes out with the first write made here, or alone as soon as
   * this returns (its synchronous part) when none is.
   */
  open?(socket: ClientSocket<Data>): void | Promise<void>;
  /** Bytes from the server. */
  data?(socket: ClientSocket<Data>, data: Uint8Array): void | Promise<void>;
  /** The socket can take more writes after `write` returned less than asked for. */
  drain?(socket: ClientSocket<Data>): void | Promise<void>;
  /** The server finished sending (TCP FIN). */
  end?(socket: ClientSocket<Data>): void | Promise<void>;
  /** The connection closed. */
  close?(socket: ClientSocket<Data>, error?: Error): void | Promise<void>;
  /** A handler threw. */
  error?(socket: ClientSocket<Data>, error: Error): void | Promise<void>;
  /** The idle timeout set with `socket.timeout()` elapsed. */
  timeout?(socket: ClientSocket<Data>): void | Promise<void>;
  /** The connection could not be made (the promise rejects too). */
  connectError?(socket: ClientSocket<Data>, error: Error): void | Promise<void>;
  /** The type of the `data` handler's bytes: Bun's `Buffer` (default) or `Uint8Array`. */
  binaryType?: "buffer" | "uint8array";
}

/**
 * Options of {@linkcode connect}: those of `Bun.connect` for TCP, passed on to it, and the
 * header to send. `tls` is not supported: Bun would start the handshake before the header;
 * to run TLS over the connection, call Bun's `socket.upgradeTLS()` after it.
 */
export interface ConnectOptions<Data = undefined> extends SendOptions {
  /** The server's host name or address. */
  hostname: string;
  /** The server's port. */
  port: number;
  /** The connection's handlers. */
  socket: ClientSocketHandler<Data>;
  /** The initial `socket.data`. */
  data?: Data;
  /** Bun: keep the socket writable after the server's FIN, until `end()`. */
  allowHalfOpen?: boolean;
  /** Not supported: see {@linkcode ConnectOptions}. Throws a `TypeError`. */
  tls?: never;
}

/** Bun's socket, with the members this file replaces while the header is pending. */
type Writer = BunSocket & {
  write(data: SocketWritable, byteOffset?: number, byteLength?: number): number;
  end(data?: SocketWritable, byteOffset?: number, byteLength?: number): number;
};

const utf8 = new TextEncoder();

/** The header, then the bytes of a `write(data, byteOffset, byteLength)`, in one buffer. */
function prepend(
  header: Uint8Array,
  data?: SocketWritable,
  byteOffset?: number,
  byteLength?: number,
): Uint8Array {
  let bytes: Uint8Array;
  if (data === undefined) bytes = new Uint8Array(0);
  else if (typeof data === "string") bytes = utf8.encode(data);
  else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (byteOffset !== undefined || byteLength !== undefined) {
    const start = byteOffset ?? 0;
    bytes = bytes.subarray(start, byteLength === undefined ? undefined : start + byteLength);
  }
  const out = new Uint8Array(header.length + bytes.length);
  out.set(header);
  out.set(bytes, header.length);
  return out;
}

/**
 * The header of one connection while it is pending: Bun's `write` and `end` are replaced
 * on the socket itself until the header is out, then the socket is Bun's own again.
 */
class PendingHeader {
  #rest: Uint8Array | undefined;

  constructor(bytes: Uint8Array) {
    this.#rest = bytes;
  }

  get pending(): boolean {
    return this.#rest !== undefined;
  }

  /** Replaces `write` and `end` on the socket until the header is out. */
  install(socket: Writer): void {
    Object.defineProperty(socket, "write", {
      configurable: true,
      writable: true,
      value: (...args: Parameters<Writer["write"]>): number => {
        const rest = this.#rest;
        if (rest === undefined) return own(socket).write(...args);
        const n = own(socket).write(prepend(rest, ...args));
        if (n < 0) return n;
        return this.#wrote(socket, n) ? n - rest.length : 0;
      },
    });
    Object.defineProperty(socket, "end", {
      configurable: true,
      writable: true,
      value: (...args: Parameters<Writer["end"]>): number => {
        const rest = this.#rest;
        if (rest === undefined) return own(socket).end(...args);
        this.#rest = undefined;
        this.#restore(socket);
        return Math.max(-1, own(socket).end(prepend(rest, ...args)) - rest.length);
      },
    });
  }

  /** Writes what is left of the header, alone. */
  flush(socket: Writer): void {
    const rest = this.#rest;
    if (rest === undefined) return;
    const n = own(socket).write(rest);
    if (n >= 0) this.#wrote(socket, n);
  }

  /** `n` bytes of the header went out: true when all of it has. */
  #wrote(socket: Writer, n: number): boolean {
    const rest = this.#rest!;
    if (n < rest.length) {
      this.#rest = rest.subarray(n);
      return false;
    }
    this.#rest = undefined;
    this.#restore(socket);
    return true;
  }

  #restore(socket: Writer): void {
    delete (socket as Partial<Writer>).write;
    delete (socket as Partial<Writer>).end;
  }
}

/** Bun's own `write` and `end` of the socket, past the replacements on the instance. */
function own(socket: Writer): Writer {
  const bun = Object.getPrototypeOf(socket) as Writer;
  // The arguments as given: Bun tells `write(data)` from `write(data, undefined)`.
  return {
    write: (...args: Parameters<Writer["write"]>) => bun.write.apply(socket, args),
    end: (...args: Parameters<Writer["end"]>) => bun.end.apply(socket, args),
  } as Writer;
}

/**
 * Connects like `Bun.connect` and sends a PROXY header before any byte of the
 * application: `header` as given, or what the accepted connection `from` says
 * (`headerFor(from)`: a socket of this library's `listen`, or a plain one), or, with
 * neither, a v2 LOCAL header (a health check).
 *
 * When the header goes out, exactly: in `open`. The first `socket.write` (or `end`) made
 * in your `open` handler carries it in front of its bytes, in one write: one TCP segment
 * for a small payload, as HAProxy sends it. If `open` writes nothing, the header is
 * written alone as soon as `open` returns, so a server that speaks first hears it; the
 * promise resolves after that. Under backpressure the first `write` may take only part of
 * the header: it then returns 0, and the rest goes out before your `drain` is called (or
 * in front of your next write). The socket is Bun's own once the header is out.
 *
 * @param options `Bun.connect`'s TCP options (`hostname`, `port`, `socket`, `data`, ...),
 *   and `header`, `from`, `checksum`.
 * @returns Bun's socket, once connected; the caller ends it.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` when the header cannot be
 *   written (before connecting).
 * @throws {TypeError} When both `header` and `from` are given, for `tls`, or off Bun.
 *
 * @example Relay a client to a PROXY-protocol backend (runs on Bun)
 * ```ts ignore
 * import { connect } from "@proxy-protocol/edge/bun";
 *
 * const socket = await connect({
 *   hostname: "127.0.0.1",
 *   port: 8080,
 *   header: {
 *     version: 2,
 *     command: "PROXY",
 *     protocol: "TCP4",
 *     source: { address: "203.0.113.7", port: 51234 },
 *     destination: { address: "10.0.0.5", port: 443 },
 *   },
 *   checksum: true,
 *   socket: {
 *     open(socket) {
 *       socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); // one segment with the header
 *     },
 *     data(socket, data) {
 *       console.log(new TextDecoder().decode(data));
 *     },
 *   },
 * });
 * // ... later
 * socket.end();
 * ```
 *
 * @example Pass on what an accepted socket says (HAProxy's send-proxy; runs on Bun)
 * ```ts ignore
 * import { connect, listen } from "@proxy-protocol/edge/bun";
 *
 * listen({
 *   hostname: "0.0.0.0",
 *   port: 4000,
 *   socket: {
 *     async open(client) {
 *       await connect({
 *         hostname: "10.0.0.9",
 *         port: 8080,
 *         from: client, // the client's addresses, from the header it came with
 *         socket: {
 *           data(_upstream, data) {
 *             client.write(data);
 *           },
 *         },
 *       });
 *     },
 *   },
 * });
 * ```
 */
export function connect<Data = undefined>(
  options: ConnectOptions<Data>,
): Promise<ClientSocket<Data>> {
  const { bytes } = headerBytes(options);
  const user = options.socket;
  if (user === null || typeof user !== "object") {
    throw new TypeError("options.socket must be an object of handlers");
  }
  if ((options as { tls?: unknown }).tls !== undefined) {
    throw new TypeError("tls is not supported: Bun would start the handshake before the header");
  }
  const header = new PendingHeader(bytes);
  const u = user as ClientSocketHandler<unknown> as {
    open?(socket: Writer): unknown;
    drain?(socket: Writer): unknown;
  };
  const bunOptions = runtimeConnectOptions(options) as Record<string, unknown>;
  bunOptions.socket = {
    ...user,
    open(socket: Writer) {
      header.install(socket);
      try {
        return u.open?.(socket);
      } finally {
        header.flush(socket);
      }
    },
    drain(socket: Writer) {
      if (header.pending) {
        header.flush(socket);
        if (header.pending) return;
      }
      return u.drain?.(socket);
    },
  };
  return bun().connect(bunOptions) as Promise<ClientSocket<Data>>;
}
