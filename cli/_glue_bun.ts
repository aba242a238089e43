/**
 * The gateway's Bun glue: the library's `listen` (on `Bun.listen`) reads the header,
 * `Bun.connect` reaches the upstream, and the relay of Bun's `serve` (`lib/bun/_relay.ts`:
 * backpressure both ways, half-closes passed on) copies. Internal.
 *
 * @module
 */

import { bun, type BunRelaySocket, isClosed } from "../lib/bun/_host.ts";
import { clientEvents, endClient, innerEvents, RelayLink, startInner } from "../lib/bun/_relay.ts";
import { listen, type ProxySocket } from "../lib/bun/listen.ts";
import type { ProxyProtocolError } from "../lib/error.ts";
import type { Tlv } from "../lib/types.ts";
import { type Endpoint, errorFields, formatEndpoint } from "./_common.ts";
import {
  type GlueConn,
  type GlueListenOptions,
  IdleTimer,
  type Listener,
  nativeListener,
  OpenSet,
  type RelayResult,
} from "./_glue.ts";

/** A link with the gateway's connection on it. */
class GatewayLink extends RelayLink {
  conn!: BunConn;
}

/** One connect attempt: the outgoing socket's `data` until it is the link's. */
class Attempt {
  done = false;
  readonly link: GatewayLink;
  readonly first: Uint8Array;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    link: GatewayLink,
    first: Uint8Array,
    resolve: () => void,
    reject: (error: Error) => void,
  ) {
    this.link = link;
    this.first = first;
    this.resolve = resolve;
    this.reject = reject;
  }

  fail(error: Error): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.reject(error);
  }
}

/**
 * The outgoing socket's handlers: an attempt until it opens, when it becomes the link's
 * (synchronously, so no byte is missed) with the header written first.
 */
const upstreamHandlers = {
  open(socket: BunRelaySocket) {
    const attempt = socket.data;
    if (!(attempt instanceof Attempt)) return;
    if (attempt.done || attempt.link.clientClosed) {
      attempt.fail(new Error("the client left"));
      socket.terminate();
      return;
    }
    attempt.done = true;
    clearTimeout(attempt.timer);
    const link = attempt.link;
    socket.data = link;
    link.inner = socket;
    const first = attempt.first;
    if (first.length > 0) {
      const written = socket.write(first);
      if (written >= 0 && written < first.length) {
        // Before what the client sent meanwhile.
        link.toInner = [first.subarray(written), ...(link.toInner ?? [])];
      }
    }
    attempt.resolve();
  },
  data(socket: BunRelaySocket, chunk: Uint8Array) {
    if (socket.data instanceof RelayLink) innerEvents.data(socket, chunk);
  },
  drain(socket: BunRelaySocket) {
    if (socket.data instanceof RelayLink) innerEvents.drain(socket);
  },
  end(socket: BunRelaySocket) {
    if (socket.data instanceof RelayLink) innerEvents.end(socket);
  },
  close(socket: BunRelaySocket) {
    const link = socket.data;
    if (link instanceof GatewayLink) {
      innerEvents.close(socket);
      link.conn.closed(false);
    } else if (link instanceof Attempt) {
      link.fail(new Error("connection closed"));
    }
  },
  connectError(socket: BunRelaySocket, error: Error) {
    const attempt = socket.data;
    if (attempt instanceof Attempt) attempt.fail(error);
  },
  error(socket: BunRelaySocket, error: Error) {
    const link = socket.data;
    if (link instanceof GatewayLink) link.conn.failure ??= error;
  },
};

/** Listens with the library's Bun `listen`. */
export function listenBun(options: GlueListenOptions): Promise<Listener> {
  const { log, metrics } = options;
  const open = new OpenSet<BunConn>();
  const max = options.maxConnections;
  const listener = listen<GatewayLink | undefined>({
    ...options.accept,
    hostname: options.listen.host,
    port: options.listen.port,
    ...(options.reusePort ? { reusePort: true } : {}),
    allowHalfOpen: true,
    metrics,
    data: undefined,
    onError(error: ProxyProtocolError, peer) {
      log.log("warn", "refused", {
        ...errorFields(error),
        peer: peer === undefined ? undefined : `${peer.remoteAddress}:${peer.remotePort}`,
      });
    },
    socket: {
      ...(clientEvents as unknown as Required<
        Pick<
          Parameters<typeof listen<GatewayLink | undefined>>[0]["socket"],
          "data" | "drain" | "end"
        >
      >),
      open(client) {
        if (max > 0 && open.size >= max) {
          metrics.onRefused("MAX_CONNECTIONS");
          log.log("warn", "refused", { code: "MAX_CONNECTIONS", max });
          client.terminate();
          return;
        }
        const link = new GatewayLink(client as ProxySocket<RelayLink | undefined>);
        client.data = link;
        client.pause(); // until the upstream is connected
        client.setNoDelay(true);
        const conn = new BunConn(link, () => open.delete(conn));
        link.conn = conn;
        open.add(conn);
        options.onConnection(conn);
      },
      close(client) {
        const link = client.data;
        if (link === undefined) return;
        clientEvents.close(client as ProxySocket<RelayLink | undefined>);
        link.conn.closed(true);
      },
      error(client, error) {
        const link = client.data;
        if (link !== undefined) link.conn.failure ??= error;
      },
    },
  });
  return nativeListener(
    { host: listener.hostname, port: listener.port },
    options,
    open,
    () => listener.stop(false),
  );
}

class BunConn implements GlueConn {
  readonly #link: GatewayLink;
  readonly #onClose: () => void;
  readonly peer: string | undefined;
  failure: Error | undefined;
  #clientClosed = false;
  #upstreamClosed = false;
  #done: (() => void) | undefined;
  #upstream = "";

  constructor(link: GatewayLink, onClose: () => void) {
    this.#link = link;
    this.#onClose = onClose;
    this.peer = socketPeer(link.client);
  }

  get from(): ProxySocket<RelayLink | undefined> {
    return this.#link.client;
  }

  get gone(): boolean {
    return this.#link.clientClosed;
  }

  get upstream(): string {
    return this.#upstream;
  }

  sslTlvs(): Tlv[] {
    return [];
  }

  connect(target: Endpoint, first: Uint8Array, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const connected = () => {
        this.#upstream = formatEndpoint(target);
        resolve();
      };
      const attempt = new Attempt(this.#link, first, connected, reject);
      attempt.timer = setTimeout(() => {
        attempt.fail(new Error(`no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      bun().connect({
        hostname: target.host,
        port: target.port,
        allowHalfOpen: true,
        data: attempt,
        socket: upstreamHandlers,
      }).then((socket) => {
        // Opened after its timeout: nobody wants it.
        if (attempt.link.inner !== socket) (socket as BunRelaySocket).terminate();
      }, (error: Error) => attempt.fail(error));
    });
  }

  /** A side closed: the relay is over once both are (or the client alone, unconnected). */
  closed(client: boolean): void {
    if (client) this.#clientClosed = true;
    else this.#upstreamClosed = true;
    if (this.#clientClosed && (this.#upstreamClosed || this.#link.inner === undefined)) {
      this.#onClose();
      this.#done?.();
    }
  }

  relay(idleMs: number): Promise<RelayResult> {
    const link = this.#link;
    const inner = link.inner!;
    (inner as unknown as { setNoDelay?(on: boolean): void }).setNoDelay?.(true);
    let reason: RelayResult["reason"] = "end";
    const idle = new IdleTimer(idleMs, () => link.bytesIn + link.bytesOut, () => {
      reason = "idle";
      this.destroy();
    });
    const finished = new Promise<void>((resolve) => this.#done = resolve);
    if (this.#clientClosed && this.#upstreamClosed) this.#done!();
    else if (link.clientClosed && !isClosed(inner)) inner.end();
    else startInner(link, inner);
    return finished.then(() => {
      idle.stop();
      if (this.failure !== undefined && reason === "end") reason = "error";
      const result: RelayResult = { bytesIn: link.bytesIn, bytesOut: link.bytesOut, reason };
      if (this.failure !== undefined) result.error = this.failure;
      return result;
    });
  }

  destroy(): void {
    const link = this.#link;
    link.inner?.terminate();
    link.client.terminate();
    if (link.inner === undefined) endClient(link);
  }
}

/** The socket's own peer: Bun's getter, which the header's address shadows. */
function socketPeer(socket: object): string | undefined {
  const proto = Object.getPrototypeOf(socket);
  const get = (key: string) => Object.getOwnPropertyDescriptor(proto, key)?.get?.call(socket);
  const address = get("remoteAddress"), port = get("remotePort");
  return typeof address === "string" ? `${address}:${port}` : undefined;
}
