/**
 * The Bun entry point: {@linkcode listen} is `Bun.listen` that reads the PROXY header off
 * every connection before the application sees it. The handlers get Bun's own socket, so
 * writes, `drain` and backpressure are exactly Bun's; only the addresses and
 * `proxyHeader` are defined on it from the header.
 *
 * This module runs on Bun only. It does not depend on Bun's type definitions: the few
 * parts of Bun's API it uses are declared in `_host.ts`, so it type-checks anywhere.
 *
 * @example Serve TCP behind a load balancer (runs on Bun)
 * ```ts ignore
 * import { listen } from "@proxy-protocol/edge/bun";
 *
 * const listener = listen({
 *   hostname: "0.0.0.0",
 *   port: 4000,
 *   trust: ["10.0.0.0/8"],
 *   socket: {
 *     open(socket) {
 *       console.log(`client ${socket.remoteAddress}:${socket.remotePort}`);
 *     },
 *     data(socket, data) {
 *       socket.write(data); // echo
 *     },
 *   },
 *   onError(error, peer) {
 *     console.warn(`refused ${peer?.remoteAddress}: ${error.code}`);
 *   },
 * });
 * console.log(`listening on ${listener.hostname}:${listener.port}`);
 * ```
 *
 * @module
 */

export * from "../common.ts";
export { listen } from "./listen.ts";
export type {
  ListenOptions,
  ProxyListener,
  ProxyListenOptions,
  ProxySocket,
  ProxySocketHandler,
  SocketWritable,
  TcpSocket,
} from "./listen.ts";
export { serve } from "./serve.ts";
export type {
  FetchHandler,
  FetchResult,
  ProxyServer,
  ProxyServerWebSocket,
  RouteValue,
  ServeOptions,
  SocketAddress,
  TlsInput,
  TlsOptions,
  WebSocketHandlers,
} from "./serve.ts";
export { listenTls } from "./tls.ts";
export type { ListenTlsOptions, TlsSocketHandler } from "./tls.ts";
export { connect } from "./connect.ts";
export type { ClientSocket, ClientSocketHandler, ConnectOptions } from "./connect.ts";
export { listenDatagram } from "./udp.ts";
export type { DatagramHandler, ListenDatagramOptions, ProxyUdpSocket } from "./udp.ts";
