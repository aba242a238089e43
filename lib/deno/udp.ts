/**
 * `listenDatagram`: a UDP socket behind a proxy that sends a PROXY v2 or SPP header in
 * every datagram, shaped like `Deno.DatagramConn` (`for await`, `receive`, `send`,
 * `close`). Glue between Deno's `node:dgram` and the shared per-datagram logic
 * (`lib/connection/datagram_socket.ts`).
 *
 * Why `node:dgram` and not `Deno.listenDatagram`: the latter is unstable in Deno 2.9 and
 * exists only under `--unstable-net`. A library cannot set that flag for its users (a
 * `deno.json` `"unstable"` entry applies to this repository's own runs, not to a program
 * that imports the package), so with it every user would have to add the flag or see
 * `Deno.listenDatagram is not a function`. Deno's `node:dgram` needs only `--allow-net`.
 *
 * @module
 */

import dgram from "node:dgram";
import {
  DatagramMessage,
  type DatagramOptions,
  DatagramReceiver,
} from "../connection/datagram_socket.ts";

/**
 * Options of {@linkcode listenDatagram}: where to bind, as `Deno.listenDatagram` takes
 * it, and the PROXY protocol ones of {@linkcode DatagramOptions} (`format`,
 * `replyHeader`, `policy`, `trust`, `untrusted`, `maxHeaderLength`, `verifyChecksum`,
 * `onError`; no `timeout`: a datagram is whole or refused, never waited for).
 */
export interface ListenDatagramOptions extends DatagramOptions {
  /** The address to bind; default `0.0.0.0`. An IPv6 address binds an IPv6 socket. */
  hostname?: string;
  /** The port to bind; 0 picks a free one (read it from `addr`). */
  port: number;
  /** Bind even if the port is in use by another socket that allows it. */
  reuseAddress?: boolean;
}

/** Datagrams kept for the application while it does not read; more are dropped. */
const QUEUE_LIMIT = 1024;

/**
 * A bound UDP socket that reads a PROXY v2 or SPP header off every datagram and yields
 * {@linkcode DatagramMessage}s: iterate it, or call `receive()`. `send(data, message)`
 * answers through the proxy the message came from.
 *
 * Every refused datagram (untrusted peer under `deny`, a header cut short, too long,
 * malformed, missing under `require`, forbidden under `reject`) is dropped and reported to
 * `onError` with its peer; the socket goes on serving. Up to 1024 messages wait for the
 * application; while that many wait, further datagrams are dropped, as a kernel drops them
 * from a full receive buffer. The socket is the application's to close.
 */
export class ProxyDatagramConn implements AsyncIterable<DatagramMessage> {
  /** The address the socket is bound to. */
  readonly addr: Deno.NetAddr;
  readonly #socket: dgram.Socket;
  readonly #receiver: DatagramReceiver;
  readonly #queue: DatagramMessage[] = [];
  #head = 0;
  #waiters: {
    resolve: (message: DatagramMessage) => void;
    reject: (error: unknown) => void;
  }[] = [];
  #error: unknown = undefined;
  #closed = false;
  readonly #finished: Promise<void>;

  /**
   * Internal: use {@linkcode listenDatagram}.
   *
   * @param socket A bound socket.
   * @param receiver The per-datagram logic.
   */
  constructor(socket: dgram.Socket, receiver: DatagramReceiver) {
    this.#socket = socket;
    this.#receiver = receiver;
    const local = socket.address();
    this.addr = { transport: "udp", hostname: local.address, port: local.port };
    socket.on("message", (buffer: Uint8Array, rinfo: dgram.RemoteInfo) => {
      // A plain Uint8Array view of node:dgram's Buffer, as Deno's own APIs give: no copy.
      const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      const received = receiver.receive(bytes, {
        remoteAddress: rinfo.address,
        remotePort: rinfo.port,
        localAddress: local.address,
        localPort: local.port,
      });
      if (received === undefined) return;
      const message = new DatagramMessage(received);
      const waiter = this.#waiters.shift();
      if (waiter !== undefined) waiter.resolve(message);
      else if (this.#queue.length - this.#head < QUEUE_LIMIT) this.#queue.push(message);
    });
    socket.on("error", (error) => this.#fail(error));
    this.#finished = new Promise((resolve) => socket.once("close", resolve));
  }

  /**
   * The next message.
   *
   * @returns It, once one has passed.
   * @throws {Deno.errors.BadResource} Once the socket is closed (rejects).
   */
  receive(): Promise<DatagramMessage> {
    if (this.#head < this.#queue.length) {
      const message = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined!;
      if (this.#head === this.#queue.length) {
        this.#queue.length = 0;
        this.#head = 0;
      }
      return Promise.resolve(message);
    }
    if (this.#closed) return Promise.reject(this.#error ?? closed());
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /**
   * Answers a message: sends `data` to the proxy it came through (`message.proxy`),
   * behind the header that proxy expects (SPP: the request's header; PROXY v2: none, or
   * the request's turned around with `replyHeader: true`).
   *
   * @param data The reply's payload.
   * @param message The message answered.
   * @returns The number of bytes sent, header included.
   * @throws {TypeError} When `message` is not one this socket received.
   */
  send(data: Uint8Array, message: DatagramMessage): Promise<number> {
    const bytes = this.#receiver.reply(message, data);
    const { address, port } = message.proxy;
    return new Promise((resolve, reject) => {
      this.#socket.send(bytes, port, address, (error, n) => error ? reject(error) : resolve(n));
    });
  }

  /** Closes the socket; waiting `receive` calls reject and iteration ends. */
  close(): void {
    if (this.#closed) return;
    this.#fail(undefined);
    this.#socket.close();
  }

  /** Resolves once the socket is closed. */
  finished(): Promise<void> {
    return this.#finished;
  }

  /** Yields messages until the socket is closed. */
  async *[Symbol.asyncIterator](): AsyncIterableIterator<DatagramMessage> {
    while (true) {
      let message: DatagramMessage;
      try {
        message = await this.receive();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource) return;
        throw error;
      }
      yield message;
    }
  }

  /** Closes the socket and waits until it is closed (`await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return this.#finished;
  }

  #fail(error: unknown): void {
    this.#closed = true;
    if (error !== undefined) this.#error ??= error;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.reject(this.#error ?? closed());
  }
}

function closed(): Error {
  return new Deno.errors.BadResource("the datagram socket is closed");
}

/**
 * Binds a UDP socket for datagrams relayed by a proxy that puts a header in each (PROXY v2
 * `UDP4`/`UDP6`, or Cloudflare Spectrum's SPP with `format: "spp"`).
 *
 * Each datagram is decided on its own: its peer is checked against `trust` (outside it,
 * `untrusted` applies: `deny` drops it and reports `UNTRUSTED_SOURCE`; `reject`, `ignore`
 * and `skip` serve it without ever taking an address from a header), then its header is
 * decoded under the policy. The socket keeps no state per client: see
 * `lib/connection/datagram_socket.ts`. Needs `--allow-net`, not `--unstable-net`.
 *
 * @param options Where to bind, and PROXY protocol options.
 * @returns The socket, once bound.
 * @throws {TypeError} For a bad `format`, policy or CIDR range (synchronously).
 * @throws {Error} When binding fails (`EADDRINUSE`, ...): the promise rejects.
 *
 * @example An SPP echo server, and Spectrum's side of it
 * ```ts
 * import { listenDatagram } from "@proxy-protocol/edge/deno";
 * import { decodeDatagram, encodeDatagram } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 * import dgram from "node:dgram";
 *
 * await using conn = await listenDatagram({ hostname: "127.0.0.1", port: 0, format: "spp" });
 * const served = (async () => {
 *   for await (const message of conn) {
 *     assert.equal(message.client.address, "::ffff:203.0.113.7"); // IPv4, mapped
 *     await conn.send(message.data, message); // echo, through the proxy
 *     return;
 *   }
 * })();
 *
 * // Spectrum's side: the client's address in front of every datagram, both ways.
 * const proxy = dgram.createSocket("udp4");
 * const reply = new Promise<Uint8Array>((resolve) => proxy.once("message", resolve));
 * const header = {
 *   source: { address: "203.0.113.7", port: 5353 },
 *   destination: { address: "198.51.100.1", port: 53 },
 * };
 * const ping = new TextEncoder().encode("ping");
 * proxy.send(encodeDatagram(header, ping, { format: "spp" }), conn.addr.port, "127.0.0.1");
 * const answer = decodeDatagram(await reply, { format: "spp" });
 * assert.equal(answer.header.source.address, "::ffff:203.0.113.7"); // the same header
 * assert.equal(new TextDecoder().decode(answer.payload), "ping");
 * await served;
 * await new Promise<void>((resolve) => proxy.close(resolve));
 * ```
 */
export function listenDatagram(options: ListenDatagramOptions): Promise<ProxyDatagramConn> {
  const receiver = new DatagramReceiver(options);
  const hostname = options.hostname ?? "0.0.0.0";
  const socket = dgram.createSocket({
    type: hostname.includes(":") ? "udp6" : "udp4",
    reuseAddr: options.reuseAddress ?? false,
  });
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
    socket.bind({ port: options.port, address: hostname }, () => {
      socket.off("error", failed);
      resolve(new ProxyDatagramConn(socket, receiver));
    });
  });
}
