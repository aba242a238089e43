/**
 * The parts of Bun's API this folder uses, declared here so that it type-checks without
 * Bun's type package (on Deno, Node's `tsc` and JSR). Internal.
 *
 * @module
 */

/** Bun's socket as the adapters use it, before the addresses are defined on it. */
export interface BunSocket {
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;
  readonly readyState?: unknown;
  end(): unknown;
  terminate(): unknown;
  pause(): unknown;
  resume(): unknown;
}

/** A set of socket handlers, as `Bun.listen` and `socket.reload` take them. */
export interface BunSocketHandler {
  open(socket: BunSocket): unknown;
  data(socket: BunSocket, data: Uint8Array): unknown;
  drain?(socket: BunSocket): unknown;
  end(socket: BunSocket): unknown;
  close(socket: BunSocket, error?: Error): unknown;
  timeout?(socket: BunSocket): unknown;
  error?(socket: BunSocket, error: Error): unknown;
  binaryType?: "buffer" | "uint8array";
}

/** A connected socket as the relay (`serve`, `listenTls`) uses it. */
export interface BunRelaySocket extends BunSocket {
  data: unknown;
  readonly localPort: number;
  write(data: Uint8Array): number;
  shutdown(halfClose?: boolean): void;
}

/** Bun's TCP listener, as the relay uses its inner one. */
export interface BunListener {
  readonly port: number;
  stop(closeActiveConnections?: boolean): void;
  ref(): void;
  unref(): void;
}

/** Bun's HTTP server (`Bun.serve`), as `serve` forwards to it. */
export interface BunServer {
  readonly port: number;
  readonly protocol?: string;
  readonly development: boolean;
  readonly id: string;
  readonly pendingRequests: number;
  readonly pendingWebSockets: number;
  requestIP(request: Request): { address: string; port: number; family: string } | null;
  upgrade(request: Request, options?: unknown): boolean;
  publish(topic: string, data: unknown, compress?: boolean): number;
  subscriberCount(topic: string): number;
  timeout(request: Request, seconds: number): void;
  fetch(request: Request | string): Promise<Response>;
  reload(options: Record<string, unknown>): unknown;
  stop(closeActiveConnections?: boolean): Promise<void>;
  closeIdleConnections?(): void;
  ref(): void;
  unref(): void;
}

/** `Bun`, as far as the adapters use it. */
export interface BunGlobal {
  listen(options: Record<string, unknown>): unknown;
  /** Bun.connect: resolves to the socket once connected. */
  connect(options: Record<string, unknown>): Promise<unknown>;
  /** Bun.serve. */
  serve(options: Record<string, unknown>): BunServer;
  /** Bun.udpSocket: resolves to the socket once bound. */
  udpSocket(options: Record<string, unknown>): Promise<BunUdpSocket>;
}

/** Bun's UDP socket (`Bun.udpSocket`), as `listenDatagram` uses it. */
export interface BunUdpSocket {
  readonly hostname: string;
  readonly port: number;
  readonly address: { address: string; family: string; port: number };
  readonly closed: boolean;
  /** Sends one datagram; false when it could not be sent now (`drain` follows). */
  send(data: Uint8Array | string, port: number, address: string): boolean;
  close(): void;
  ref(): void;
  unref(): void;
}

/** The handlers `Bun.udpSocket` takes in `socket`. */
export interface BunUdpHandler {
  data?(socket: BunUdpSocket, data: Uint8Array, port: number, address: string): unknown;
  drain?(socket: BunUdpSocket): unknown;
  error?(socket: BunUdpSocket, error: Error): unknown;
}

/** Node's `Buffer` on Bun, to make the `Buffer` chunks Bun's handlers expect. */
export interface BufferConstructorLike {
  from(buffer: ArrayBufferLike, byteOffset: number, length: number): Uint8Array;
}

/** `globalThis.Bun`, or a `TypeError` off Bun. */
export function bun(): BunGlobal {
  const bun = (globalThis as unknown as { Bun?: BunGlobal }).Bun;
  if (bun === undefined) throw new TypeError("@proxy-protocol/edge/bun runs on Bun only");
  return bun;
}

/** Bun reports a closed socket's `readyState` as -1 (older versions: `"closed"`). */
export function isClosed(socket: BunSocket): boolean {
  const state = socket.readyState;
  return state === -1 || state === "closed";
}
