// Shared harness of the Bun adapter's tests: a recording listener and a node:net client,
// both on real loopback sockets.
import net from "node:net";
import { listen, type ProxyListenOptions, type ProxySocket } from "@proxy-protocol/edge/bun";
import type { PeerInfo, ProxyHeader, ProxyProtocolError } from "@proxy-protocol/edge";
import { concatBytes } from "@proxy-protocol/edge";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A queue whose `next()` waits for the next item pushed. */
export class Queue<T> {
  readonly items: T[] = [];
  #taken = 0;
  #waiters: ((item: T) => void)[] = [];

  push(item: T): void {
    this.items.push(item);
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter(this.items[this.#taken++]!);
  }

  next(ms = 3000): Promise<T> {
    if (this.#taken < this.items.length) return Promise.resolve(this.items[this.#taken++]!);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nothing came within ${ms} ms`)), ms);
      this.#waiters.push((item) => {
        clearTimeout(timer);
        resolve(item);
      });
    });
  }
}

/** What the listener saw of one connection. */
export interface Conn {
  socket: ProxySocket<undefined>;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  header: ProxyHeader | null;
  /** The `data` chunks as received (views kept as Bun gave them). */
  chunks: Uint8Array[];
  /** Event names in order: open, data, end, close, drain, error. */
  events: string[];
  /** Resolves at `end` or `close`, whichever comes first. */
  finished: Promise<void>;
  closed: Promise<void>;
}

export interface Refusal {
  error: ProxyProtocolError;
  peer: PeerInfo | undefined;
}

export type ServeOptions = Omit<ProxyListenOptions<undefined>, "hostname" | "port" | "socket"> & {
  /** Extra handlers run after the recording ones. */
  socket?: ProxyListenOptions<undefined>["socket"];
};

/** A listener on 127.0.0.1 that records connections and refusals. */
export function serve(options: ServeOptions = {}, hostname = "127.0.0.1") {
  const conns = new Queue<Conn>();
  const refusals = new Queue<Refusal>();
  const byServerSocket = new Map<
    ProxySocket<undefined>,
    Conn & { done: () => void; close: () => void }
  >();
  const extra = options.socket ?? {};
  /** Handler calls that must not happen (close or error for a connection never opened). */
  const strays: string[] = [];
  const listener = listen({
    ...options,
    hostname,
    port: 0,
    onError(error, peer) {
      refusals.push({ error, peer });
      options.onError?.(error, peer);
    },
    socket: {
      ...extra,
      open(socket) {
        let done!: () => void, close!: () => void;
        const conn = {
          socket,
          remoteAddress: socket.remoteAddress,
          remotePort: socket.remotePort,
          localAddress: socket.localAddress,
          localPort: socket.localPort,
          header: socket.proxyHeader,
          chunks: [],
          events: ["open"],
          finished: new Promise<void>((r) => done = r),
          closed: new Promise<void>((r) => close = r),
          done: () => done(),
          close: () => close(),
        };
        byServerSocket.set(socket, conn);
        conns.push(conn);
        return extra.open?.(socket);
      },
      data(socket, data) {
        const conn = byServerSocket.get(socket)!;
        conn.events.push("data");
        conn.chunks.push(data);
        return extra.data?.(socket, data);
      },
      end(socket) {
        const conn = byServerSocket.get(socket)!;
        conn.events.push("end");
        conn.done();
        return extra.end?.(socket);
      },
      close(socket, error) {
        const conn = byServerSocket.get(socket);
        if (conn === undefined) {
          strays.push("close without open");
          return;
        }
        conn.events.push("close");
        conn.done();
        conn.close();
        byServerSocket.delete(socket);
        return extra.close?.(socket, error);
      },
      drain(socket) {
        byServerSocket.get(socket)?.events.push("drain");
        return extra.drain?.(socket);
      },
      error(socket, error) {
        const conn = byServerSocket.get(socket);
        if (conn === undefined) strays.push(`error without open: ${error.message}`);
        else conn.events.push("error");
        return extra.error?.(socket, error);
      },
    },
  });
  return {
    listener,
    port: listener.port,
    conns,
    refusals,
    strays,
    /** Stops the listener; throws if a handler was called for a connection never opened. */
    stop: () => {
      listener.stop(true);
      if (strays.length > 0) throw new Error(strays.join("; "));
    },
  };
}

/** A node:net client on loopback. */
export interface Client {
  socket: net.Socket;
  /** Everything received so far. */
  received: () => Uint8Array;
  /** Resolves when the socket closed. */
  closed: Promise<void>;
  localPort: number;
}

export async function connect(port: number, host = "127.0.0.1"): Promise<Client> {
  const socket = net.connect({ port, host, noDelay: true });
  const chunks: Uint8Array[] = [];
  socket.on("data", (d: Uint8Array) => chunks.push(d));
  socket.on("error", () => {}); // the server closing refused connections is expected
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, received: () => concat(chunks), closed, localPort: socket.localPort! };
}

/** Writes each part with `gap` ms between them, then ends the stream unless told not to. */
export async function send(
  port: number,
  parts: (Uint8Array | string)[],
  { gap = 2, end = true, host }: { gap?: number; end?: boolean; host?: string } = {},
): Promise<Client> {
  const client = await connect(port, host);
  for (let i = 0; i < parts.length; i++) {
    if (i > 0 && gap > 0) await sleep(gap);
    if (!client.socket.destroyed) client.socket.write(parts[i]!);
  }
  if (end && !client.socket.destroyed) client.socket.end();
  return client;
}

/** The library's own `concatBytes`, under the name these tests use. */
export const concat: (parts: readonly Uint8Array[]) => Uint8Array = concatBytes;

export const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Waits until `ok()` holds, polling; throws after `ms`. */
export async function until(ok: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await sleep(5);
  }
}
