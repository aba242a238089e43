// The Node adapter's own tests: a recording createServer on loopback. The client side
// (talk, seen, send, ...) is shared by every runtime: tests/listen/client.ts.
import type net from "node:net";
import type { Buffer } from "node:buffer";
import {
  createServer,
  type CreateServerOptions,
  type PeerInfo,
  type ProxyProtocolError,
  type ProxySocket,
} from "@proxy-protocol/edge/node";
import { report } from "../listen/client.ts";

export * from "../listen/client.ts";

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
 * The default application: reads until the client ends, then answers with the shared
 * JSON report (tests/listen/client.ts `Seen`) and ends.
 */
export function reportSeen(socket: ProxySocket): void {
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("error", () => {});
  socket.on("end", () => socket.end(report(socket, socket.proxyHeader, chunks)));
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
