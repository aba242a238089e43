// Loopback servers and clients for the Node adapter's tests. Every server and socket is
// closed by its own handle before a helper resolves, so no test leaks one.
import net from "node:net";
import { Buffer } from "node:buffer";
import {
  createServer,
  type CreateServerOptions,
  type PeerInfo,
  type ProxyProtocolError,
  type ProxySocket,
} from "@proxy-protocol/edge/node";

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const delay = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `condition` holds (checked every 2 ms), failing after `ms`. */
export async function until(condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await delay(2);
  }
}

/** What the default handler saw of a connection, sent back to the client as JSON. */
export interface Seen {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  remoteFamily: string | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
  command: string | null;
  version: number | null;
  protocol: string | null;
  /** The first chunk the application read, base64. */
  first: string;
  /** Everything the application read, base64. */
  payload: string;
}

/** A refused connection as onError saw it. */
export interface Refusal {
  error: ProxyProtocolError;
  peer: PeerInfo | undefined;
}

export interface TestServer {
  server: net.Server;
  port: number;
  host: string;
  refusals: Refusal[];
  /** Sockets handed over, in order. */
  accepted: ProxySocket[];
  close(): Promise<void>;
}

/**
 * The default application: reads until the client ends, then answers with a JSON
 * {@linkcode Seen} and ends.
 */
export function reportSeen(socket: ProxySocket): void {
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("error", () => {});
  socket.on("end", () => {
    const header = socket.proxyHeader;
    const seen: Seen = {
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
      remoteFamily: socket.remoteFamily,
      localAddress: socket.localAddress,
      localPort: socket.localPort,
      command: header?.command ?? null,
      version: header?.version ?? null,
      protocol: header?.protocol ?? null,
      first: (chunks[0] ?? Buffer.alloc(0)).toString("base64"),
      payload: Buffer.concat(chunks).toString("base64"),
    };
    socket.end(JSON.stringify(seen));
  });
}

/** Starts a server on port 0 of `host` with `onError` recording refusals. */
export async function serve(
  options: CreateServerOptions,
  onConnection: (socket: ProxySocket) => void = reportSeen,
  host = "127.0.0.1",
): Promise<TestServer> {
  const refusals: Refusal[] = [];
  const accepted: ProxySocket[] = [];
  const userOnError = options.onError;
  const server = createServer({
    ...options,
    onError(error, peer) {
      refusals.push({ error, peer });
      userOnError?.(error, peer);
    },
  }, (socket) => {
    accepted.push(socket);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    server,
    port,
    host,
    refusals,
    accepted,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
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
  target: { port: number; host: string },
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
    socket.on(
      "close",
      () => resolve({ reply: Buffer.concat(chunks), error, localPort, localAddress }),
    );
    socket.on("connect", async () => {
      localPort = socket.localPort ?? 0;
      localAddress = socket.localAddress ?? "";
      for (let i = 0; i < parts.length; i++) {
        if (i > 0 && gap > 0) await delay(gap);
        if (socket.destroyed) return;
        socket.write(parts[i]!);
      }
      if (reset) {
        // Node 20 closes with FIN, not RST, when the reset follows a write too closely.
        await delay(5);
        socket.resetAndDestroy();
      } else if (end) socket.end();
    });
  });
}

/** {@linkcode talk}, then the server's {@linkcode Seen} report. */
export async function seen(
  target: { port: number; host: string },
  parts: readonly (Uint8Array | string)[],
  options?: TalkOptions,
): Promise<Seen & { client: Talk }> {
  const client = await talk(target, parts, options);
  const body = client.reply.toString("utf8");
  if (body === "") throw new Error(`no reply (client error ${client.error})`);
  return { ...JSON.parse(body) as Seen, client };
}

export const b64 = (bytes: Uint8Array | string): string =>
  Buffer.from(typeof bytes === "string" ? text(bytes) : bytes).toString("base64");

/** Joins byte arrays. */
export function concat(...parts: (Uint8Array | string)[]): Uint8Array {
  return Buffer.concat(parts.map((p) => typeof p === "string" ? text(p) : p));
}
