// The listener tests' client side, written once for every runtime: a node:net client on
// loopback (Node's, Deno's and Bun's node:net), the report an application sends back, and
// small byte helpers. Every socket is closed before a helper resolves.
import net from "node:net";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { ProxyAddress, ProxyHeader } from "@proxy-protocol/edge";

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const decode = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
export const delay = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `condition` holds (checked every 2 ms), failing after `ms`. */
export async function until(condition: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await delay(2);
  }
}

/** Joins byte arrays (strings as UTF-8). */
export function concat(...parts: (Uint8Array | string)[]): Uint8Array {
  return Buffer.concat(parts.map((p) => typeof p === "string" ? text(p) : p));
}

export const b64 = (bytes: Uint8Array | string): string =>
  Buffer.from(typeof bytes === "string" ? text(bytes) : bytes).toString("base64");

export const sha256 = (bytes: Uint8Array): string =>
  createHash("sha256").update(bytes).digest("hex");

/** What an application saw of a connection, sent back to the client as JSON. */
export interface Seen {
  remoteAddress: string | null;
  remotePort: number | null;
  /** `null` where the runtime's connection has no family (Deno). */
  remoteFamily: string | null;
  localAddress: string | null;
  localPort: number | null;
  command: string | null;
  version: number | null;
  protocol: string | null;
  source: ProxyAddress | null;
  destination: ProxyAddress | null;
  /** The header's TLVs, their values base64. */
  tlvs: { type: number; value: string }[];
  /** The first chunk the application read, base64. */
  first: string;
  /** Everything the application read, base64 (empty above 64 KiB: see `sha256`). */
  payload: string;
  /** How many bytes the application read. */
  length: number;
  /** SHA-256 of everything the application read. */
  sha256: string;
}

/** A header's TLVs as {@linkcode Seen} reports them. */
export function tlvsOf(header: ProxyHeader | null): { type: number; value: string }[] {
  return (header?.tlvs ?? []).map((tlv) => ({ type: tlv.type, value: b64(tlv.value) }));
}

/** The addresses a connection reports, as each runtime names them. */
export interface Reported {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  remoteFamily?: string | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
}

/** The report an application sends back once the client has ended. */
export function report(
  addresses: Reported,
  header: ProxyHeader | null,
  chunks: readonly Uint8Array[],
): string {
  const all = concat(...chunks);
  const seen: Seen = {
    remoteAddress: addresses.remoteAddress ?? null,
    remotePort: addresses.remotePort ?? null,
    remoteFamily: addresses.remoteFamily ?? null,
    localAddress: addresses.localAddress ?? null,
    localPort: addresses.localPort ?? null,
    command: header?.command ?? null,
    version: header?.version ?? null,
    protocol: header?.protocol ?? null,
    source: header?.source ?? null,
    destination: header?.destination ?? null,
    tlvs: tlvsOf(header),
    first: b64(chunks[0] ?? new Uint8Array(0)),
    payload: all.length <= 65536 ? b64(all) : "",
    length: all.length,
    sha256: sha256(all),
  };
  return JSON.stringify(seen);
}

export interface Target {
  port: number;
  host: string;
}

export interface Talk {
  /** Everything the server sent. */
  reply: Buffer;
  /** The client's error code, if its socket failed (ECONNRESET, EPIPE, ...). */
  error: string | undefined;
  /** The client's own port. */
  localPort: number;
  /** The client's own address. */
  localAddress: string;
}

export interface TalkOptions {
  /** Milliseconds between writes. */
  gap?: number;
  /** Bind the client here (default: the server's host). */
  localAddress?: string;
  /** End the client's side after the last write (default true). */
  end?: boolean;
  /** Reset (RST) instead of ending after the last write. */
  reset?: boolean;
}

/**
 * Connects, writes `parts` with `gap` ms between them, ends, and resolves once the
 * connection is closed, with what the server sent.
 */
export function talk(
  target: Target,
  parts: readonly (Uint8Array | string)[],
  options: TalkOptions = {},
): Promise<Talk> {
  const { gap = 0, end = true, reset = false } = options;
  return new Promise((resolve) => {
    const socket = net.connect({
      port: target.port,
      host: target.host,
      localAddress: options.localAddress ?? target.host,
    });
    socket.setNoDelay(true);
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let localPort = 0;
    let localAddress = "";
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", (e: Error & { code?: string }) => (error = e.code ?? e.message));
    // Resolves once the socket is closed and the writes below have stopped (no timer of
    // theirs left running: Deno's sanitizers would see it).
    let writing = Promise.resolve();
    socket.on("close", () => {
      writing.then(() => resolve({ reply: Buffer.concat(chunks), error, localPort, localAddress }));
    });
    socket.on("connect", () => {
      localPort = socket.localPort ?? 0;
      localAddress = socket.localAddress ?? "";
      writing = (async () => {
        for (let i = 0; i < parts.length; i++) {
          if (i > 0 && gap > 0) await delay(gap);
          if (socket.destroyed) return;
          socket.write(parts[i]!);
        }
        if (reset) {
          // Node 20 closes with FIN, not RST, when the reset follows a write too closely.
          await delay(5);
          if (!socket.destroyed) socket.resetAndDestroy();
        } else if (end) socket.end();
      })();
    });
  });
}

/** {@linkcode talk}, then the application's {@linkcode Seen} report. */
export async function seen(
  target: Target,
  parts: readonly (Uint8Array | string)[],
  options?: TalkOptions,
): Promise<Seen & { client: Talk }> {
  const client = await talk(target, parts, options);
  const body = client.reply.toString("utf8");
  if (body === "") throw new Error(`no reply (client error ${client.error})`);
  return { ...JSON.parse(body) as Seen, client };
}

/** A node:net client on loopback that stays open, for tests that drive it step by step. */
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
  return { socket, received: () => concat(...chunks), closed, localPort: socket.localPort! };
}

/** Writes each part with `gap` ms between them, then ends the stream unless told not to. */
export async function send(
  port: number,
  parts: (Uint8Array | string)[],
  { gap = 2, end = true, host }: { gap?: number; end?: boolean; host?: string } = {},
): Promise<Client> {
  const client = await connect(port, host);
  for (let i = 0; i < parts.length; i++) {
    if (i > 0 && gap > 0) await delay(gap);
    if (!client.socket.destroyed) client.socket.write(parts[i]!);
  }
  if (end && !client.socket.destroyed) client.socket.end();
  return client;
}
