// Shared plumbing of the hostile-client tests of the gateway, the datagram receivers and the
// senders (issue 10): an upstream that decodes the gateway's outgoing header and answers with
// the address in it, hostile upstreams, clients that misbehave, the gateway's metrics, and
// a process's file descriptors and RSS read from /proc. Linux only (/proc). Runtime-neutral:
// node:net and node:fs, which Node, Deno and Bun all have.
import http from "node:http";
import net from "node:net";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import process from "node:process";
import { Buffer } from "node:buffer";
import { decodeHeader, ProxyProtocolError } from "@proxy-protocol/edge";

export const runtime: "deno" | "bun" | "node" = "Deno" in globalThis
  ? "deno"
  : process.versions.bun !== undefined
  ? "bun"
  : "node";

export const MiB = 1024 * 1024;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** How many file descriptors a process has open (`self` for this one). */
export function fds(pid: number | "self" = "self"): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What a process's descriptors point at (`socket:[inode]`, `anon_inode:[eventpoll]`...). */
export function fdKinds(pid: number | "self" = "self"): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/\[\d+\]$/, ""));
    } catch {
      // closed meanwhile
    }
  }
  return out.sort();
}

/** A process's resident set (VmRSS), in bytes. */
export function rss(pid: number | "self" = "self"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Waits until `condition` holds (checked every 10 ms), failing after `ms` with `what`. */
export async function until(
  condition: () => boolean | Promise<boolean>,
  ms: number,
  what: string | (() => string),
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`not within ${ms} ms: ${typeof what === "function" ? what() : what}`);
    }
    await sleep(10);
  }
}

/** Deterministic bytes (xorshift32). */
export function noise(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** What an upstream saw of one connection. */
export interface UpstreamConn {
  /** `address:port` of the header's source, `local` for LOCAL/UNKNOWN, `error:CODE`. */
  seen: string;
  /** The socket's own peer (the gateway). */
  peer: string;
}

/** A node:net server in this process. */
export interface Upstream {
  port: number;
  target: string;
  /** One entry a connection, in the order their headers were read. */
  conns: UpstreamConn[];
  /** Connections accepted (before any header). */
  accepted: number;
  /** Closes the server and destroys every socket it holds. */
  close(): Promise<void>;
}

async function listening(
  server: net.Server,
  sockets: Set<net.Socket>,
): Promise<{ port: number; close(): Promise<void> }> {
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * The upstream of the gateway tests: reads the gateway's outgoing header with the codec
 * (`decodeHeader`, not a listener), answers `"<source address>:<port>\n"` (or `local`), and
 * ends its side; closes when the gateway does.
 */
export async function addressUpstream(): Promise<Upstream> {
  const conns: UpstreamConn[] = [];
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    accepted++;
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    let buffered = Buffer.alloc(0);
    let done = false;
    socket.on("error", () => {});
    socket.on("end", () => socket.end());
    socket.on("data", (chunk: Buffer) => {
      if (done) return;
      buffered = Buffer.concat([buffered, chunk]);
      let seen: string;
      try {
        const result = decodeHeader(buffered);
        if (result === null) return;
        const s = result.header.source;
        seen = s === null ? "local" : `${s.address}:${s.port}`;
      } catch (error) {
        seen = `error:${error instanceof ProxyProtocolError ? error.code : String(error)}`;
      }
      done = true;
      conns.push({ seen, peer });
      socket.end(seen + "\n");
    });
  });
  const l = await listening(server, sockets);
  return {
    port: l.port,
    target: `127.0.0.1:${l.port}`,
    conns,
    get accepted() {
      return accepted;
    },
    close: l.close,
  };
}

/** A hostile upstream: `reset` accepts and resets at once; `blackhole` never reads. */
export async function hostileUpstream(kind: "reset" | "blackhole"): Promise<Upstream> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    accepted++;
    socket.on("error", () => {});
    if (kind === "reset") socket.resetAndDestroy();
    else socket.pause(); // blackhole: never resumed, nothing is read, ever
  });
  const l = await listening(server, sockets);
  return {
    port: l.port,
    target: `127.0.0.1:${l.port}`,
    conns: [],
    get accepted() {
      return accepted;
    },
    close: l.close,
  };
}

/** A loopback port nothing listens on. */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** A client connection driven step by step. */
export interface Client {
  socket: net.Socket;
  /** Everything received so far, as text. */
  received(): string;
  /** Resolves once the socket is closed. */
  closed: Promise<void>;
  /** Milliseconds from connect to close, once closed. */
  closedAfter: number | undefined;
  /** The client's socket error code, if any. */
  error: string | undefined;
}

/** Connects (from `localAddress`, default 127.0.0.1) and resolves once connected. */
export function open(port: number, localAddress = "127.0.0.1"): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress, noDelay: true });
    const chunks: Buffer[] = [];
    const t0 = Date.now();
    const client: Client = {
      socket,
      received: () => Buffer.concat(chunks).toString("utf8"),
      closed: new Promise<void>((r) =>
        socket.once("close", () => {
          client.closedAfter = Date.now() - t0;
          r();
        })
      ),
      closedAfter: undefined,
      error: undefined,
    };
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.once("connect", () => {
      socket.off("error", reject);
      socket.on("error", (e: Error & { code?: string }) => client.error ??= e.code ?? e.message);
      resolve(client);
    });
    socket.once("error", reject);
  });
}

/** Resolves with `p`, or rejects after `ms` with `what`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * One request through the gateway: connects, writes `bytes`, waits for the upstream's
 * answer and the close. Resolves with the answer ("" when closed without one) and the time.
 */
export async function ask(
  port: number,
  bytes: Uint8Array | string,
  { localAddress, ms = 5000 }: { localAddress?: string; ms?: number } = {},
): Promise<{ answer: string; ms: number; error: string | undefined }> {
  const t0 = Date.now();
  const c = await open(port, localAddress);
  c.socket.write(bytes);
  c.socket.on("end", () => c.socket.end());
  await within(c.closed, ms, "an answer through the gateway");
  return { answer: c.received().trim(), ms: Date.now() - t0, error: c.error };
}

/** A v1 header from `address:port` (TCP4) to 10.0.0.5:443. */
export function v1From(address: string, port: number): string {
  return `PROXY TCP4 ${address} 10.0.0.5 ${port} 443\r\n`;
}

/**
 * The gateway's Prometheus text, as `name{labels}` → value. On a connection of its own,
 * closed after (no keep-alive socket left in the gateway to count as a descriptor).
 */
export async function metrics(url: string): Promise<Map<string, number>> {
  const body = await new Promise<string>((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { connection: "close" } }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => data += d);
      res.on("end", () => resolve(data));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
  const out = new Map<string, number>();
  for (const line of body.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** The refused counts by code, from {@linkcode metrics}. */
export function refusedByCode(m: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of m) {
    const code = /^proxy_protocol_connections_refused_total\{code="([A-Z0-9_]+)"\}$/.exec(key)?.[1];
    if (code !== undefined) out[code] = value;
  }
  return out;
}

/** `after - before`, code by code, leaving out zeros. */
export function delta(
  after: Record<string, number>,
  before: Record<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [code, n] of Object.entries(after)) {
    const d = n - (before[code] ?? 0);
    if (d !== 0) out[code] = d;
  }
  return out;
}

/** Runs `fn` over `items`, at most `limit` at once. */
export async function pool<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
