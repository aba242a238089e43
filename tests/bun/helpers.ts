// The Bun adapter's own tests: a listener on loopback that records every handler call.
// The client side (connect, send, ...) is shared by every runtime: tests/listen/client.ts.
import { listen, type ProxyListenOptions, type ProxySocket } from "@proxy-protocol/edge/bun";
import type { PeerInfo, ProxyHeader, ProxyProtocolError } from "@proxy-protocol/edge";

export * from "../listen/client.ts";

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
