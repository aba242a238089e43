/**
 * `listenDatagram`: a `node:dgram` socket behind a UDP proxy that sends a PROXY v2 or SPP
 * header in every datagram. Glue between `node:dgram` and the shared per-datagram logic
 * (`lib/connection/datagram_socket.ts`).
 *
 * @module
 */

import dgram from "node:dgram";
import { EventEmitter } from "node:events";
import type { AddressInfo } from "node:net";
import {
  DatagramMessage,
  type DatagramOptions,
  DatagramReceiver,
  type ReceivedDatagram,
} from "../connection/datagram_socket.ts";

/**
 * Options of {@linkcode listenDatagram}: `dgram`'s socket and bind options, and the PROXY
 * protocol ones of {@linkcode DatagramOptions} (`format`, `replyHeader`, `policy`, `trust`,
 * `untrusted`, `maxHeaderLength`, `verifyChecksum`, `onError`; no `timeout`: a datagram is
 * whole or refused, never waited for).
 */
export interface ListenDatagramOptions extends DatagramOptions {
  /** `udp4` or `udp6`; default `udp6` when `address` contains a colon, else `udp4`. */
  type?: "udp4" | "udp6";
  /** The address to bind; default: every address of the type (`0.0.0.0` or `::`). */
  address?: string;
  /** The port to bind; default 0 (any free port: read it from `address()`). */
  port?: number;
  /** `udp6` only: do not also receive IPv4 datagrams. */
  ipv6Only?: boolean;
  /** Bind even if the port is in use by another socket with `reuseAddr`. */
  reuseAddr?: boolean;
  /** `SO_RCVBUF`, in bytes. */
  recvBufferSize?: number;
  /** `SO_SNDBUF`, in bytes. */
  sendBufferSize?: number;
}

/**
 * The second argument of the `"message"` event: a {@linkcode DatagramMessage} that also
 * reads like `dgram`'s `rinfo`, with `address` and `port` the client's (the header's
 * source; the peer's when there is none) and `proxy` the datagram's real sender.
 */
export class ProxyRemoteInfo extends DatagramMessage {
  /** The client's address, as `message.client.address`. */
  get address(): string {
    return this.client.address;
  }
  /** The client's port, as `message.client.port`. */
  get port(): number {
    return this.client.port;
  }
  /** The family of the client's address. */
  get family(): "IPv4" | "IPv6" {
    return this.client.address.includes(":") ? "IPv6" : "IPv4";
  }
  /** The payload's size in bytes (the header not counted). */
  get size(): number {
    return this.data.length;
  }
}

/** The events of a {@linkcode ProxyDatagramSocket} and their listeners. */
export interface ProxyDatagramSocketEvents {
  /** A datagram that passed: its payload (a `Buffer` view) and who sent it. */
  message: [data: Uint8Array, info: ProxyRemoteInfo];
  /** An error of the socket itself (never one of a datagram: those go to `onError`). */
  error: [error: Error];
  /** The socket closed. */
  close: [];
}

/**
 * A bound UDP socket that reads a PROXY v2 or SPP header off every datagram. Emits
 * `"message"` as `dgram.Socket` does, with the payload and a {@linkcode ProxyRemoteInfo};
 * `send(data, info)` answers through the proxy the datagram came from.
 *
 * Every refused datagram (untrusted peer under `deny`, a header cut short, too long,
 * malformed, missing under `require`, forbidden under `reject`) is dropped and reported to
 * `onError` with its peer; the socket goes on serving, and emits `"error"` only for errors
 * of its own. The socket is the application's to close.
 */
export class ProxyDatagramSocket extends EventEmitter<ProxyDatagramSocketEvents> {
  /** The `dgram.Socket` underneath (for options such as `setTTL`; don't `send` on it). */
  readonly socket: dgram.Socket;
  readonly #receiver: DatagramReceiver;

  /**
   * Internal: use {@linkcode listenDatagram}.
   *
   * @param socket A bound socket.
   * @param receiver The per-datagram logic.
   */
  constructor(socket: dgram.Socket, receiver: DatagramReceiver) {
    super();
    this.socket = socket;
    this.#receiver = receiver;
    const local = socket.address();
    socket.on("message", (bytes: Uint8Array, rinfo: dgram.RemoteInfo) => {
      const received: ReceivedDatagram | undefined = receiver.receive(bytes, {
        remoteAddress: rinfo.address,
        remotePort: rinfo.port,
        localAddress: local.address,
        localPort: local.port,
      });
      if (received !== undefined) {
        const info = new ProxyRemoteInfo(received);
        this.emit("message", info.data, info);
      }
    });
    socket.on("error", (error) => this.emit("error", error));
    socket.on("close", () => this.emit("close"));
  }

  /** The address and port the socket is bound to. */
  address(): AddressInfo {
    return this.socket.address();
  }

  /**
   * Answers a message: sends `data` to the proxy it came through (`message.proxy`),
   * behind the header that proxy expects (SPP: the request's header; PROXY v2: none, or
   * the request's turned around with `replyHeader: true`).
   *
   * @param data The reply's payload (a string is sent as UTF-8).
   * @param message The message answered.
   * @param callback Called once sent, with the error or the datagram's size.
   * @throws {TypeError} When `message` is not one this socket received.
   */
  send(
    data: Uint8Array | string,
    message: DatagramMessage,
    callback?: (error: Error | null, bytes: number) => void,
  ): void {
    const payload = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const bytes = this.#receiver.reply(message, payload);
    const { address, port } = message.proxy;
    this.socket.send(bytes, port, address, callback);
  }

  /**
   * Closes the socket.
   *
   * @param callback Called once closed.
   */
  close(callback?: () => void): void {
    this.socket.close(callback);
  }

  /** Lets the process exit while the socket is open. */
  unref(): this {
    this.socket.unref();
    return this;
  }

  /** Keeps the process alive while the socket is open (the default). */
  ref(): this {
    this.socket.ref();
    return this;
  }
}

/**
 * Binds a UDP socket for datagrams relayed by a proxy that puts a header in each (PROXY v2
 * `UDP4`/`UDP6`, or Cloudflare Spectrum's SPP with `format: "spp"`).
 *
 * Each datagram is decided on its own: its peer is checked against `trust` (outside it,
 * `untrusted` applies: `deny` drops it and reports `UNTRUSTED_SOURCE`; `reject`, `ignore`
 * and `skip` serve it without ever taking an address from a header), then its header is
 * decoded under the policy. The socket keeps no state per client: see
 * `lib/connection/datagram_socket.ts`.
 *
 * @param options Bind options and PROXY protocol options.
 * @returns The socket, once bound.
 * @throws {TypeError} For a bad `format`, policy or CIDR range (synchronously).
 * @throws {Error} When binding fails (`EADDRINUSE`, ...): the promise rejects.
 *
 * @example An echo server behind a PROXY v2 UDP proxy (runs on Node, Deno and Bun)
 * ```ts
 * import { listenDatagram } from "@proxy-protocol/edge/node";
 * import { encodeDatagram } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 * import dgram from "node:dgram";
 *
 * const server = await listenDatagram({ address: "127.0.0.1", port: 0 });
 * server.on("message", (data, info) => {
 *   assert.equal(info.address, "203.0.113.7"); // the client, from the header
 *   server.send(`echo ${new TextDecoder().decode(data)}`, info); // back through the proxy
 * });
 *
 * // The proxy's side: one datagram, header and payload together.
 * const proxy = dgram.createSocket("udp4");
 * const reply = new Promise<string>((resolve) => proxy.once("message", (m) => resolve(String(m))));
 * proxy.send(
 *   encodeDatagram({
 *     version: 2,
 *     command: "PROXY",
 *     protocol: "UDP4",
 *     source: { address: "203.0.113.7", port: 5353 },
 *     destination: { address: "10.0.0.5", port: 53 },
 *   }, new TextEncoder().encode("ping")),
 *   server.address().port,
 *   "127.0.0.1",
 * );
 * assert.equal(await reply, "echo ping"); // PROXY v2 replies go bare by default
 * proxy.close();
 * server.close();
 * ```
 */
export function listenDatagram(options: ListenDatagramOptions = {}): Promise<ProxyDatagramSocket> {
  const receiver = new DatagramReceiver(options);
  const type = options.type ?? (options.address?.includes(":") ? "udp6" : "udp4");
  const socketOptions: dgram.SocketOptions = { type };
  if (options.ipv6Only !== undefined) socketOptions.ipv6Only = options.ipv6Only;
  if (options.reuseAddr !== undefined) socketOptions.reuseAddr = options.reuseAddr;
  if (options.recvBufferSize !== undefined) socketOptions.recvBufferSize = options.recvBufferSize;
  if (options.sendBufferSize !== undefined) socketOptions.sendBufferSize = options.sendBufferSize;
  const socket = dgram.createSocket(socketOptions);
  return new Promise((resolve, reject) => {
    const failed = (error: Error) => {
      try {
        socket.close();
      } catch {
        // Never bound: nothing to close.
      }
      reject(error);
    };
    socket.once("error", failed);
    const bind: dgram.BindOptions = { port: options.port ?? 0 };
    if (options.address !== undefined) bind.address = options.address;
    socket.bind(bind, () => {
      socket.off("error", failed);
      resolve(new ProxyDatagramSocket(socket, receiver));
    });
  });
}
