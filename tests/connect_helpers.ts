// What the connect() tests of every runtime share: the header they send, and a plain
// node:net server that records each connection's reads as they came.
import net from "node:net";
import type { Buffer } from "node:buffer";
import type { ProxyHeaderInit } from "@proxy-protocol/edge";

/** The header the connect() tests send. */
export const HEADER: ProxyHeaderInit = {
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "203.0.113.7", port: 51234 },
  destination: { address: "10.0.0.5", port: 443 },
};

/** A raw node:net server recording each connection's reads. */
export async function rawServer(onSocket?: (socket: net.Socket) => void): Promise<{
  port: number;
  conns: { chunks: Buffer[]; ended: Promise<void> }[];
  close: () => Promise<void>;
}> {
  const conns: { chunks: Buffer[]; ended: Promise<void> }[] = [];
  const server = net.createServer((socket) => {
    const chunks: Buffer[] = [];
    const ended = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => socket.end());
    socket.on("error", () => {});
    conns.push({ chunks, ended });
    onSocket?.(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
