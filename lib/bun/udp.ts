/**
 * `listenDatagram`: `Bun.udpSocket` behind a proxy that sends a PROXY v2 or SPP header in
 * every datagram. Glue between Bun's UDP handlers and the shared per-datagram logic
 * (`lib/connection/datagram_socket.ts`).
 *
 * @module
 */

import {
  DatagramMessage,
  type DatagramOptions,
  DatagramReceiver,
} from "../connection/datagram_socket.ts";
import { bun, type BunUdpHandler, type BunUdpSocket } from "./_host.ts";

/**
 * The handlers of {@linkcode listenDatagram}, in `Bun.udpSocket`'s shape. `data` gets
 * the payload and the client's port and address (from the header; the peer's when there
 * is none), then the whole {@linkcode DatagramMessage} to answer with `socket.send`.
 */
export interface DatagramHandler {
  /**
   * A datagram that passed.
   *
   * @param socket The socket.
   * @param data The payload after the header (a view; a `Buffer` unless `binaryType` is
   *   `uint8array`).
   * @param port The client's port.
   * @param address The client's address.
   * @param message The message, for `socket.send(reply, message)`; `message.proxy` is the
   *   datagram's real sender.
   */
  data(
    socket: ProxyUdpSocket,
    data: Uint8Array,
    port: number,
    address: string,
    message: DatagramMessage,
  ): unknown;
  /** The socket can send again after `send` returned false. */
  drain?(socket: ProxyUdpSocket): unknown;
  /** An error of the socket itself (never one of a datagram: those go to `onError`). */
  error?(socket: ProxyUdpSocket, error: Error): unknown;
}

/**
 * Options of {@linkcode listenDatagram}: `Bun.udpSocket`'s (`hostname`, `port`,
 * `binaryType`, `socket` handlers) and the PROXY protocol ones of
 * {@linkcode DatagramOptions} (`format`, `replyHeader`, `policy`, `trust`, `untrusted`,
 * `maxHeaderLength`, `verifyChecksum`, `onError`; no `timeout`: a datagram is whole or
 * refused, never waited for).
 */
export interface ListenDatagramOptions extends DatagramOptions {
  /** The address to bind; default `0.0.0.0`. */
  hostname?: string;
  /** The port to bind; default 0 (any free port: read it from `port`). */
  port?: number;
  /** How payloads arrive: `buffer` (Node's `Buffer`, Bun's default) or `uint8array`. */
  binaryType?: "buffer" | "uint8array";
  /** The handlers. */
  socket: DatagramHandler;
}

/** The socket {@linkcode listenDatagram} resolves to: Bun's UDP socket, for replies. */
export interface ProxyUdpSocket {
  /** The address it is bound to. */
  readonly hostname: string;
  /** The port it is bound to. */
  readonly port: number;
  /** The bound address, port and family. */
  readonly address: { address: string; family: string; port: number };
  /** Whether it is closed. */
  readonly closed: boolean;
  /**
   * Answers a message: sends `data` to the proxy it came through (`message.proxy`),
   * behind the header that proxy expects (SPP: the request's header; PROXY v2: none, or
   * the request's turned around with `replyHeader: true`).
   *
   * @param data The reply's payload (a string is sent as UTF-8).
   * @param message The message answered.
   * @returns As Bun's `send`: false when it could not be sent now (`drain` follows).
   * @throws {TypeError} When `message` is not one this socket received.
   */
  send(data: Uint8Array | string, message: DatagramMessage): boolean;
  /** Closes the socket. */
  close(): void;
  /** Keeps the process alive while the socket is open (the default). */
  ref(): void;
  /** Lets the process exit while the socket is open. */
  unref(): void;
}

class UdpSocket implements ProxyUdpSocket {
  inner: BunUdpSocket | undefined = undefined;
  readonly #receiver: DatagramReceiver;

  constructor(receiver: DatagramReceiver) {
    this.#receiver = receiver;
  }

  get hostname(): string {
    return this.inner!.hostname;
  }
  get port(): number {
    return this.inner!.port;
  }
  get address(): { address: string; family: string; port: number } {
    return this.inner!.address;
  }
  get closed(): boolean {
    return this.inner!.closed;
  }
  send(data: Uint8Array | string, message: DatagramMessage): boolean {
    const payload = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const { address, port } = message.proxy;
    return this.inner!.send(this.#receiver.reply(message, payload), port, address);
  }
  close(): void {
    this.inner!.close();
  }
  ref(): void {
    this.inner!.ref();
  }
  unref(): void {
    this.inner!.unref();
  }
}

/**
 * `Bun.udpSocket` for datagrams relayed by a proxy that puts a header in each (PROXY v2
 * `UDP4`/`UDP6`, or Cloudflare Spectrum's SPP with `format: "spp"`).
 *
 * Each datagram is decided on its own: its peer is checked against `trust` (outside it,
 * `untrusted` applies: `deny` drops it and reports `UNTRUSTED_SOURCE`; `reject`, `ignore`
 * and `skip` serve it without ever taking an address from a header), then its header is
 * decoded under the policy; `data` sees only datagrams that passed. Every refused one
 * (a header cut short, too long, malformed, missing under `require`, forbidden under
 * `reject`) is dropped and reported to `onError` with its peer, and the socket goes on
 * serving. It keeps no state per client: see `lib/connection/datagram_socket.ts`. The
 * socket is the application's to close.
 *
 * @param options Bind options, handlers and PROXY protocol options.
 * @returns The socket, once bound.
 * @throws {TypeError} Off Bun, or for a bad `format`, policy or CIDR range (the promise
 *   rejects, as it does when binding fails).
 *
 * @example An echo server behind a PROXY v2 UDP proxy (runs on Bun; twin test in tests/bun/udp.test.ts)
 * ```ts ignore
 * import { listenDatagram } from "@proxy-protocol/edge/bun";
 *
 * const socket = await listenDatagram({
 *   hostname: "0.0.0.0",
 *   port: 5353,
 *   trust: ["10.0.0.0/8"],
 *   socket: {
 *     data(socket, data, port, address, message) {
 *       console.log(`${address}:${port} via ${message.proxy.address}`); // the client
 *       socket.send(data, message); // echo, back through the proxy
 *     },
 *   },
 *   onError(error, peer) {
 *     console.warn(`dropped a datagram from ${peer?.remoteAddress}: ${error.code}`);
 *   },
 * });
 * console.log(`listening on ${socket.hostname}:${socket.port}`);
 * ```
 */
export async function listenDatagram(options: ListenDatagramOptions): Promise<ProxyUdpSocket> {
  const receiver = new DatagramReceiver(options);
  const handler = options.socket;
  const socket = new UdpSocket(receiver);
  const own: BunUdpHandler = {
    data(inner, bytes, remotePort, remoteAddress) {
      socket.inner ??= inner;
      const received = receiver.receive(bytes, {
        remoteAddress,
        remotePort,
        localAddress: inner.hostname,
        localPort: inner.port,
      });
      if (received === undefined) return;
      const message = new DatagramMessage(received);
      return handler.data(
        socket,
        message.data,
        message.client.port,
        message.client.address,
        message,
      );
    },
  };
  if (handler.drain !== undefined) {
    own.drain = (inner) => {
      socket.inner ??= inner;
      return handler.drain!(socket);
    };
  }
  if (handler.error !== undefined) {
    own.error = (inner, error) => {
      socket.inner ??= inner;
      return handler.error!(socket, error);
    };
  }
  const bindOptions: Record<string, unknown> = { socket: own };
  if (options.hostname !== undefined) bindOptions.hostname = options.hostname;
  if (options.port !== undefined) bindOptions.port = options.port;
  if (options.binaryType !== undefined) bindOptions.binaryType = options.binaryType;
  socket.inner = await bun().udpSocket(bindOptions);
  return socket;
}
