/**
 * The gateway's socket glue, one per runtime behind one interface: a listener that reads
 * each connection's header and hands it on, and per connection the upstream connect and
 * the relay. `gateway.ts` keeps the runtime-neutral logic (upstream choice, failover, the
 * header, idle timeout, caps, drain, metrics); the glue only moves bytes. Node (and TLS
 * termination on every runtime) uses `node:net` (`_glue_node.ts`); Deno `Deno.listen` and
 * `Deno.connect` (`_glue_deno.ts`); Bun `Bun.listen` and `Bun.connect` (`_glue_bun.ts`).
 * Internal.
 *
 * @module
 */

import type { AcceptedConnection } from "../lib/connection/sender.ts";
import type { ProxyProtocolOptions } from "../lib/connection/options.ts";
import type { ListenerMetrics } from "../lib/connection/metrics.ts";
import type { Tlv } from "../lib/types.ts";
import { type Endpoint, formatEndpoint, type Logger } from "./_common.ts";

/** What a relay carried. */
export interface RelayResult {
  /** Bytes from the client to the upstream (payload). */
  bytesIn: number;
  /** Bytes from the upstream to the client. */
  bytesOut: number;
  /** Why it ended: `end` (both sides closed), `error`, `idle`. */
  reason: "end" | "error" | "idle";
  /** The error, for `error`, when the glue knows it. */
  error?: Error;
}

/** One accepted connection, its header read (and TLS done), as the gateway drives it. */
export interface GlueConn {
  /** The client as the header gave it, for `headerFor`. */
  readonly from: AcceptedConnection;
  /** The socket's own peer (`address:port`), when the glue knows it. */
  readonly peer: string | undefined;
  /** The SSL TLVs of a TLS-terminated connection; none otherwise. */
  sslTlvs(): Tlv[];
  /** Whether the client went away (checked between connect attempts). */
  readonly gone: boolean;
  /**
   * Connects to `target` and writes `first` (the header) as soon as connected.
   * @throws The connect's error, or a timeout after `timeoutMs`.
   */
  connect(target: Endpoint, first: Uint8Array, timeoutMs: number): Promise<void>;
  /** The connected upstream's `address:port`. */
  readonly upstream: string;
  /**
   * Copies both ways until both sides are done (half-closes passed on); an error on either
   * side, or no traffic either way for `idleMs` (0: never), closes both.
   */
  relay(idleMs: number): Promise<RelayResult>;
  /** Closes the client (and the upstream, if connected) at once. */
  destroy(): void;
}

/** Options of a glue's listener. */
export interface GlueListenOptions {
  /** Where to listen. */
  listen: Endpoint;
  /** The accept options (policy, trust, timeout, max header). */
  accept: ProxyProtocolOptions;
  /** Logs. */
  log: Logger;
  /** The library's listener counters, plus the glue's refusals. */
  metrics: ListenerMetrics;
  /** The most connections open at once; 0 for no cap. */
  maxConnections: number;
  /** TLS after the header, when given (the `node:net` glue only). */
  tls?: { cert: Uint8Array; key: Uint8Array } | undefined;
  /** Let several processes listen on the port. */
  reusePort?: boolean;
  /** Called with each connection whose header phase (and TLS handshake) succeeded. */
  onConnection(conn: GlueConn): void;
}

/** A running listener. */
export interface Listener {
  /** The bound address. */
  address: Endpoint;
  /** Its counters. */
  metrics: ListenerMetrics;
  /** Connections open now. */
  readonly connections: number;
  /**
   * Stops accepting, waits up to `drainMs` for open connections to finish, then closes
   * the rest.
   *
   * @returns How many connections were cut at the deadline.
   */
  close(drainMs: number): Promise<number>;
}

/**
 * The {@linkcode Listener} of a native glue, once it listens at `address`: logs it, counts
 * `open`, and on close stops accepting (`stop`) and drains `open`.
 */
export function nativeListener(
  address: Endpoint,
  options: GlueListenOptions,
  open: OpenSet<{ destroy(): void }>,
  stop: () => void,
): Promise<Listener> {
  options.log.log("info", "listening", { listen: formatEndpoint(address) });
  return Promise.resolve({
    address,
    metrics: options.metrics,
    get connections() {
      return open.size;
    },
    close(drainMs: number): Promise<number> {
      stop();
      return open.drain(drainMs);
    },
  });
}

/** A glue: how to listen. */
export type Glue = (options: GlueListenOptions) => Promise<Listener>;

/** Which glue runs: `node` on Node, for TLS, or when `PROXY_PROTOCOL_GLUE=node`. */
export function glueName(tls: boolean, override?: string): "deno" | "bun" | "node" {
  if (override === "node" || tls) return "node";
  if ("Deno" in globalThis) return "deno";
  if ("Bun" in globalThis) return "bun";
  return "node";
}

/**
 * Open connections and a drain: stop accepting, wait up to `drainMs`, then cut the rest.
 * Shared by the native glues.
 */
export class OpenSet<T extends { destroy(): void }> {
  // A list through small nodes that each connection holds (under LINK), not a Set: a Set
  // that every connection joins and leaves made Deno's young-generation collections
  // several times slower at high connection rates (benches/RESULTS.md).
  #head: Node<T> | undefined = undefined;
  #size = 0;
  #drained: (() => void) | undefined;

  /** Open connections now. */
  get size(): number {
    return this.#size;
  }

  /** A connection opened. */
  add(conn: T): void {
    const node: Node<T> = { conn, prev: undefined, next: this.#head };
    if (this.#head !== undefined) this.#head.prev = node;
    this.#head = node;
    (conn as unknown as Record<symbol, Node<T>>)[LINK] = node;
    this.#size++;
  }

  /** A connection closed. */
  delete(conn: T): void {
    const holder = conn as unknown as Record<symbol, Node<T> | undefined>;
    const node = holder[LINK];
    if (node === undefined) return;
    holder[LINK] = undefined;
    if (node.prev !== undefined) node.prev.next = node.next;
    else this.#head = node.next;
    if (node.next !== undefined) node.next.prev = node.prev;
    if (--this.#size === 0) this.#drained?.();
  }

  /** Waits for every connection to close, up to `drainMs`; returns how many were cut. */
  drain(drainMs: number): Promise<number> {
    if (this.#size === 0) return Promise.resolve(0);
    return new Promise<number>((done) => {
      const timer = setTimeout(() => {
        const cut = this.#size;
        this.#drained = undefined; // a destroy may report its close at once
        const all: T[] = [];
        for (let n = this.#head; n !== undefined; n = n.next) all.push(n.conn);
        for (const c of all) c.destroy();
        done(cut);
      }, drainMs);
      this.#drained = () => {
        clearTimeout(timer);
        done(0);
      };
    });
  }
}

/** Where a connection keeps its node of the {@linkcode OpenSet} it is in. */
const LINK = Symbol("OpenSet node");

interface Node<T> {
  conn: T;
  prev: Node<T> | undefined;
  next: Node<T> | undefined;
}

/**
 * An idle timer over both directions: fires `onIdle` once `traffic()` (a byte count) has
 * not moved for `ms`, checked every quarter period (so after `ms` to 1.25 `ms`). One timer
 * a connection, nothing per read.
 */
export class IdleTimer {
  #seen = -1;
  #quiet = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #step: number;
  readonly #traffic: () => number;
  readonly #onIdle: () => void;

  constructor(ms: number, traffic: () => number, onIdle: () => void) {
    this.#step = Math.max(1, Math.ceil(ms / 4));
    this.#traffic = traffic;
    this.#onIdle = onIdle;
    if (ms > 0) {
      this.#seen = traffic();
      this.#timer = setTimeout(this.#check, this.#step);
    }
  }

  #check = (): void => {
    const now = this.#traffic();
    if (now !== this.#seen) {
      this.#seen = now;
      this.#quiet = 0;
    } else if (++this.#quiet >= 4) {
      this.#timer = undefined;
      this.#onIdle();
      return;
    }
    this.#timer = setTimeout(this.#check, this.#step);
  };

  /** Stops it. */
  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
