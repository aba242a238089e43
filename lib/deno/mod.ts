/**
 * The Deno entry point: `listen()` is `Deno.listen()` for servers behind a PROXY protocol
 * load balancer. Its connections are shaped like `Deno.Conn`, report the client's
 * addresses, and carry the decoded `proxyHeader`.
 *
 * @example Serve TCP behind a load balancer
 * ```ts
 * import { listen } from "@proxy-protocol/edge/deno";
 * import assert from "node:assert/strict";
 *
 * await using listener = listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await client.write(new TextEncoder().encode("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n"));
 * using conn = await listener.accept();
 * assert.equal(conn.remoteAddr.hostname, "203.0.113.7");
 * client.close();
 * ```
 *
 * @module
 */

export * from "../common.ts";
export { listen, ProxyConn, ProxyListener } from "./listen.ts";
export type { ListenOptions } from "./listen.ts";
export { ProxyHttpServer, serve } from "./serve.ts";
export type { ServeHandler, ServeHandlerInfo, ServeOptions } from "./serve.ts";
export { ProxyTlsConn, startTls } from "./tls.ts";
export type { StartTlsOptions } from "./tls.ts";
export { connect, ProxyClientConn } from "./connect.ts";
export type { ConnectOptions } from "./connect.ts";
export { listenDatagram, ProxyDatagramConn } from "./udp.ts";
export type { ListenDatagramOptions } from "./udp.ts";
