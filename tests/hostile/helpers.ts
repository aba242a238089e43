// The hostile suite's harness: loopback clients that misbehave on purpose (each records
// what it sent and when the server closed it), a bounded pool to run many at once, the
// process's own descriptors and timers (to prove a scenario leaks none), and a server in a
// child process under `ulimit -n`. Runtime-neutral: node:net and /proc (Linux).
import net from "node:net";
import process from "node:process";
import { readdirSync, readlinkSync } from "node:fs";
import path from "node:path";
import { Buffer } from "node:buffer";
import { delay } from "../listen/client.ts";
import { Child, runtime } from "../faults/helpers.ts";

export { runtime };

// ---- numbers ----

/** A seeded generator (xorshift32): the same cases every run. */
export class Rng {
  #x: number;
  constructor(seed: number) {
    this.#x = seed >>> 0 || 1;
  }
  /** A float in [0, 1). */
  next(): number {
    let x = this.#x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#x = x >>> 0;
    return this.#x / 2 ** 32;
  }
  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }
}

/** The p-th percentile (0..100) of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** "p50 3 ms, max 12 ms (n 40)". */
export function spread(values: readonly number[]): string {
  return `p50 ${percentile(values, 50)} ms, max ${Math.max(...values)} ms (n ${values.length})`;
}

/** Counts of each value: {"106": 40, "107": 10}. */
export function histogram(values: readonly (number | string)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

/** Runs `fn(0..n-1)` with at most `limit` running at once; resolves with every result. */
export async function pool<T>(
  n: number,
  limit: number,
  fn: (i: number) => Promise<T>,
): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return out;
}

// ---- what the process holds ----

/**
 * The timers set through the global functions and still pending, counted by wrapping
 * `setTimeout`, `setInterval` and their `clear*` from this module's import on. The
 * library looks these up when it calls them, so its timers count, unref'd ones included:
 * Node's `process.getActiveResourcesInfo()` lists only timers that keep the process alive
 * (the listeners' header clock is unref'd), and Bun's lists none (Bun 1.4.5).
 */
const pendingTimers = new Set<unknown>();
{
  type Fn = (...args: unknown[]) => unknown;
  type Timers = Record<"setTimeout" | "setInterval" | "clearTimeout" | "clearInterval", Fn>;
  const g = globalThis as unknown as Timers;
  const { setTimeout: st, setInterval: si, clearTimeout: ct, clearInterval: ci } = { ...g };
  /** The wrapper, with the original's own properties (util.promisify.custom). */
  const like = (original: Fn, wrapper: Fn): Fn => {
    const { length: _l, name: _n, prototype: _p, ...rest } = Object.getOwnPropertyDescriptors(
      original,
    );
    return Object.defineProperties(wrapper, rest);
  };
  g.setTimeout = like(st, (fn: unknown, ms: unknown, ...args: unknown[]) => {
    const handle: unknown = st(
      (...a: unknown[]) => {
        pendingTimers.delete(handle);
        (fn as Fn)(...a);
      },
      ms,
      ...args,
    );
    pendingTimers.add(handle);
    return handle;
  });
  g.setInterval = like(si, (fn: unknown, ms: unknown, ...args: unknown[]) => {
    const handle = si(fn, ms, ...args);
    pendingTimers.add(handle);
    return handle;
  });
  g.clearTimeout = like(ct, (handle: unknown) => {
    pendingTimers.delete(handle);
    return ct(handle);
  });
  g.clearInterval = like(ci, (handle: unknown) => {
    pendingTimers.delete(handle);
    return ci(handle);
  });
}

/** Pending timers set through the global functions, the library's included. */
export function activeTimers(): number {
  return pendingTimers.size;
}

/** Node's and Deno's active `Timeout` handles (those that keep the process alive). */
export function activeHandles(): number {
  if (runtime === "bun") return 0; // none listed
  return process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
}

/** This process's open file descriptors (/proc/self/fd, less the one reading it). */
export function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

/** What each descriptor is (socket, pipe, ...), counted: for a failure's message. */
function fdKinds(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const fd of readdirSync("/proc/self/fd")) {
    let kind = "?";
    try {
      kind = readlinkSync(`/proc/self/fd/${fd}`).replace(/\[\d+\]$/, "").replace(/^\/.*/, "file");
    } catch {
      continue; // the directory's own descriptor, closed by now
    }
    out[kind] = (out[kind] ?? 0) + 1;
  }
  return out;
}

export interface Resources {
  fds: number;
  /** {@linkcode activeTimers}. */
  timers: number;
  /** {@linkcode activeHandles}. */
  handles: number;
}

export function resources(): Resources {
  return { fds: openFds(), timers: activeTimers(), handles: activeHandles() };
}

const over = (now: Resources, baseline: Resources) =>
  now.fds > baseline.fds || now.timers > baseline.timers || now.handles > baseline.handles;

/**
 * Waits (up to `ms`) until the process holds no more descriptors and timers than at
 * `baseline`, and returns how long that took; throws with what is left otherwise.
 */
export async function backTo(baseline: Resources, ms = 10_000): Promise<number> {
  const start = Date.now();
  let now = resources();
  while (over(now, baseline)) {
    if (Date.now() - start > ms) {
      throw new Error(
        `leak: ${now.fds} descriptors (baseline ${baseline.fds}: ${
          JSON.stringify(fdKinds())
        }), ${now.timers} timers (baseline ${baseline.timers}) and ${now.handles} timer ` +
          `handles (baseline ${baseline.handles}) after ${ms} ms`,
      );
    }
    await delay(20);
    now = resources();
  }
  return Date.now() - start;
}

// ---- clients ----

export interface Target {
  host: string;
  port: number;
}

/**
 * One hostile loopback connection, open once {@linkcode Hostile.open} resolves: what it
 * wrote, and when and how the server ended it.
 */
export class Hostile {
  readonly socket: net.Socket;
  /** `Date.now()` before connecting: the server cannot have accepted it earlier. */
  readonly openedAt: number = Date.now();
  /** `Date.now()` when this client saw the connection established. */
  connectedAt = 0;
  /** `Date.now()` when the socket closed (0 while open). */
  closedAt = 0;
  /** Bytes handed to `write` (not what the kernel took: what this client chose to send). */
  sent = 0;
  /** `sent` when the close was seen. */
  sentAtClose = -1;
  /** `Date.now()` of the last write. */
  lastWriteAt = 0;
  /** Bytes the server sent. */
  received = 0;
  /** The socket's error code, if it failed (ECONNRESET, EPIPE). */
  error: string | undefined;
  localPort = 0;
  /** Resolves once the socket is closed, by either side. */
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.received += chunk.length);
    socket.on("error", (e: Error & { code?: string }) => this.error ??= e.code ?? e.message);
    this.closed = new Promise((resolve) => {
      socket.once("close", () => {
        this.closedAt = Date.now();
        this.sentAtClose = this.sent;
        resolve();
      });
    });
  }

  /** Connects; resolves once connected. */
  static open(target: Target): Promise<Hostile> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port: target.port, host: target.host });
      const client = new Hostile(socket);
      socket.once("connect", () => {
        client.connectedAt = Date.now();
        client.localPort = socket.localPort ?? 0;
        resolve(client);
      });
      socket.once("error", reject);
    });
  }

  get isClosed(): boolean {
    return this.closedAt !== 0;
  }

  /** Writes `bytes` unless the socket is closed already. */
  write(bytes: Uint8Array | string): void {
    if (this.isClosed || this.socket.destroyed) return;
    this.socket.write(bytes);
    this.sent += typeof bytes === "string" ? Buffer.byteLength(bytes) : bytes.length;
    this.lastWriteAt = Date.now();
  }

  /** Resolves once closed, or rejects after `ms` (the socket is then destroyed). */
  async closedWithin(ms: number, what: string): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.destroy();
        reject(new Error(`${what}: the server did not close the connection within ${ms} ms`));
      }, ms);
    });
    try {
      await Promise.race([this.closed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes from this side, and waits for it. */
  async destroy(): Promise<void> {
    this.socket.destroy();
    await this.closed;
  }
}

/** What a connection that writes `bytes` and waits for the server's close got back. */
export interface Exchange {
  reply: Buffer;
  localPort: number;
  /** From connect to close, in ms. */
  ms: number;
  error: string | undefined;
}

/**
 * Connects, writes `bytes` (without ending: the server answers and closes, as an HTTP
 * server does for `Connection: close`, or refuses), and resolves with what came back once
 * the server closed; fails after `ms`.
 */
export function exchange(
  target: Target,
  bytes: Uint8Array | string,
  { ms = 10_000, end = false }: { ms?: number; end?: boolean } = {},
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const socket = net.connect({ port: target.port, host: target.host, noDelay: true });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let localPort = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${ms} ms (got ${Buffer.concat(chunks).length} bytes)`));
    }, ms);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", (e: Error & { code?: string }) => error ??= e.code ?? e.message);
    socket.on("connect", () => {
      localPort = socket.localPort ?? 0;
      if (end) socket.end(bytes);
      else socket.write(bytes);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks), localPort, ms: Date.now() - start, error });
    });
  });
}

/** Waits for `promise` (its failure ignored), but no longer than `ms`. */
export async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}

/** Runs `tick()` every `ms` until stopped (one timer for many clients). */
export function ticker(ms: number, tick: () => void): { stop(): void } {
  const timer = setInterval(tick, ms);
  return { stop: () => clearInterval(timer) };
}

// ---- a server in a child process ----

/** The fixture, from the repository root (the Node runner bundles tests elsewhere). */
export const SERVE_FIXTURE = path.resolve("tests/hostile/fixtures/serve.mjs");

/** tests/hostile/fixtures/serve.mjs of `adapter` in a child of this runtime, under `ulimit -n`. */
export function serveChild(adapter: string, nofile: number): Promise<Child> {
  return Child.spawn(SERVE_FIXTURE, [adapter], nofile);
}
