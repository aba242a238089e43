/**
 * The Node entry point: a `net.Server` that reads the PROXY header off every connection
 * and hands on ordinary `net.Socket`s that report the client's addresses. Also runs on
 * Deno and Bun through their `node:net`.
 *
 * @example Serve TCP behind a load balancer
 * ```ts
 * import { createServer } from "@proxy-protocol/edge/node";
 * import assert from "node:assert/strict";
 * import net from "node:net";
 *
 * const server = createServer({ policy: "require" }, (socket) => {
 *   socket.end(`hello ${socket.remoteAddress}:${socket.remotePort}\n`);
 * });
 * await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
 * const { port } = server.address() as net.AddressInfo;
 *
 * const client = net.connect(port, "127.0.0.1");
 * client.end("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n");
 * let reply = "";
 * for await (const chunk of client) reply += chunk;
 * assert.equal(reply, "hello 203.0.113.7:51234\n");
 * await new Promise((resolve) => server.close(resolve));
 * ```
 *
 * @module
 */

export * from "../common.ts";
export { createServer } from "./listen.ts";
export type { CreateServerOptions, ProxySocket } from "./listen.ts";
export { serve } from "./serve.ts";
export type { ConnectionServer, ServeOptions } from "./serve.ts";
export { startTls } from "./tls.ts";
export type { ProxyTlsSocket, StartTlsOptions } from "./tls.ts";
export { connect } from "./connect.ts";
export type { ConnectOptions } from "./connect.ts";
export { listenDatagram, ProxyDatagramSocket, ProxyRemoteInfo } from "./udp.ts";
export type { ListenDatagramOptions, ProxyDatagramSocketEvents } from "./udp.ts";
