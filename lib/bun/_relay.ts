/**
 * The relay of Bun's `serve` and `listenTls` (into an inner server) and of the CLI's gateway
 * (to an upstream): one client socket after its header phase and one outgoing socket,
 * backpressure both ways (bytes a socket does not take are kept and the other side paused
 * until `drain`), FIN passed on (half close). The callers add how the outgoing socket is
 * opened and what its close means. FIN is passed on with `shutdown()`: Bun's
 * `shutdown(true)` also stops the socket's reading, which would lose the other side's
 * answer to a half-close. Internal.
 *
 * @module
 */

import type { ProxyHeader } from "../types.ts";
import { type BunRelaySocket, isClosed } from "./_host.ts";
import type { ProxySocket, ProxySocketHandler } from "./listen.ts";
import type { SocketAddress } from "./serve.ts";

/** One relayed connection: the client's socket after its header, and the inner one. */
export class RelayLink {
  /** The client's socket. */
  readonly client: ProxySocket<RelayLink | undefined>;
  /** The connection into the inner server, once open. */
  inner: BunRelaySocket | undefined = undefined;
  /** The inner connection's local port: the relay's key. */
  port = 0;
  /** The client, as `requestIP` reports it. */
  readonly address: SocketAddress;
  /** The header, or `null`. */
  readonly header: ProxyHeader | null;
  /** Bytes for the inner side that it could not take yet. */
  toInner: Uint8Array[] | undefined = undefined;
  /** Bytes for the client that it could not take yet. */
  toClient: Uint8Array[] | undefined = undefined;
  /** The client sent FIN, or closed. */
  clientEnded = false;
  /** The client's socket closed. */
  clientClosed = false;
  /** The inner side sent FIN, or closed. */
  innerEnded = false;
  /** Payload bytes from the client, and to it. */
  bytesIn = 0;
  /** Bytes from the inner side (to the client). */
  bytesOut = 0;
  /** The inner server has taken the connection up (looked it up by its port). */
  seen = false;
  /** The client left before that: the inner side's grace runs (see `Relay.handlers`). */
  graced = false;

  constructor(client: ProxySocket<RelayLink | undefined>) {
    this.client = client;
    const address = client.remoteAddress;
    const family = (client as { remoteFamily?: string }).remoteFamily;
    this.address = Object.freeze({
      address,
      port: client.remotePort,
      family: family === "IPv6" || family === "IPv4"
        ? family
        : address.includes(":")
        ? "IPv6"
        : "IPv4",
    });
    this.header = client.proxyHeader;
  }
}

/**
 * The outgoing socket `inner` of `link` is open (and `link.inner` set): write what the
 * client sent meanwhile, then let the client read (or pass its FIN on).
 */
export function startInner(link: RelayLink, inner: BunRelaySocket): void {
  if (link.toInner !== undefined) {
    link.toInner = flush(inner, link.toInner);
    if (link.toInner !== undefined) return; // drain resumes the client
  }
  if (link.clientEnded) inner.shutdown();
  else link.client.resume();
}

/** The outgoing socket's events, whose `data` is the link (`open` is the caller's). */
export const innerEvents = {
  data(inner: BunRelaySocket, chunk: Uint8Array): void {
    const link = inner.data as RelayLink;
    link.bytesOut += chunk.length;
    link.toClient = forward(link.client, link.toClient, chunk);
    if (link.toClient !== undefined) inner.pause();
  },
  drain(inner: BunRelaySocket): void {
    const link = inner.data as RelayLink;
    if (link.toInner === undefined) return;
    link.toInner = flush(inner, link.toInner);
    if (link.toInner !== undefined) return;
    if (link.clientEnded) inner.shutdown();
    else link.client.resume();
  },
  end(inner: BunRelaySocket): void {
    const link = inner.data as RelayLink;
    link.innerEnded = true;
    if (link.toClient === undefined) endClient(link);
  },
  close(inner: BunRelaySocket): void {
    const link = inner.data as RelayLink;
    link.innerEnded = true;
    link.toInner = undefined; // it can take nothing more
    if (link.toClient === undefined) endClient(link);
  },
};

/** The client socket's events, whose `data` is the link (`open` is the caller's). */
export const clientEvents: Required<
  Pick<ProxySocketHandler<RelayLink | undefined>, "data" | "drain" | "end" | "close">
> = {
  data(client, chunk) {
    const link = client.data!;
    link.bytesIn += chunk.length;
    const inner = link.inner;
    if (inner === undefined) {
      (link.toInner ??= []).push(new Uint8Array(chunk));
      return;
    }
    link.toInner = forward(inner, link.toInner, chunk);
    if (link.toInner !== undefined) client.pause();
  },
  drain(client) {
    const link = client.data!;
    if (link.toClient === undefined) return;
    link.toClient = flush(client as unknown as BunRelaySocket, link.toClient);
    if (link.toClient !== undefined) return;
    if (link.innerEnded) endClient(link);
    else link.inner?.resume();
  },
  end(client) {
    const link = client.data!;
    link.clientEnded = true;
    if (link.innerEnded && link.toClient === undefined) { // both done
      client.end();
      return;
    }
    if (link.inner !== undefined && link.toInner === undefined) link.inner.shutdown();
  },
  close(client) {
    const link = client.data;
    if (link === undefined) return;
    link.clientEnded = link.clientClosed = true;
    link.toClient = undefined;
    const inner = link.inner;
    if (inner !== undefined && !isClosed(inner)) inner.end();
  },
};

/**
 * The inner side is done and everything for the client was written: pass its end on. A
 * client whose inner connection never opened, or has closed, is closed: nothing more can
 * come, and nothing it sends can be delivered. After a half close (FIN) of the inner side
 * it gets a FIN and is read on (it may be paused), so that its own FIN or close is seen and
 * its socket freed: a paused socket never learns that its peer left.
 */
export function endClient(link: RelayLink): void {
  const client = link.client;
  if (link.clientClosed || isClosed(client as unknown as BunRelaySocket)) return;
  const inner = link.inner;
  if (link.clientEnded || inner === undefined || isClosed(inner)) {
    client.end();
    return;
  }
  client.shutdown();
  client.resume();
}

/**
 * Writes `chunk` after anything queued. Returns the queue of what the socket did not take
 * (copied: Bun's chunk is only lent), or `undefined` when all was written (or the socket
 * is closed).
 */
export function forward(
  to: { write(data: Uint8Array): number },
  queue: Uint8Array[] | undefined,
  chunk: Uint8Array,
): Uint8Array[] | undefined {
  if (queue !== undefined) {
    queue.push(new Uint8Array(chunk));
    return queue;
  }
  const written = to.write(chunk);
  if (written < 0 || written >= chunk.length) return undefined;
  return [new Uint8Array(chunk.subarray(written))];
}

/** Writes queued bytes; returns what is still left, or `undefined`. */
export function flush(to: BunRelaySocket, queue: Uint8Array[]): Uint8Array[] | undefined {
  while (queue.length > 0) {
    const chunk = queue[0]!;
    const written = to.write(chunk);
    if (written < 0) return undefined;
    if (written < chunk.length) {
      queue[0] = chunk.subarray(written);
      return queue;
    }
    queue.shift();
  }
  return undefined;
}
