/**
 * `connect`: `net.connect()` that sends a PROXY header before any byte of the
 * application. Glue between `net.Socket` and the runtime-neutral sender.
 *
 * @module
 */

import net from "node:net";
import process from "node:process";
import { headerBytes, runtimeConnectOptions, type SendOptions } from "../connection/sender.ts";

/** Options of {@linkcode connect}: `net.connect`'s TCP options and the header to send. */
export interface ConnectOptions extends net.TcpNetConnectOpts, SendOptions {}

/**
 * Connects like `net.connect` and sends a PROXY header before any byte of the
 * application: `header` as given, or what the accepted connection `from` says
 * (`headerFor(from)`: pass a socket of this library's `createServer`, or a plain one), or,
 * with neither, a v2 LOCAL header (a health check).
 *
 * When the header goes out, exactly: the socket is corked at once and the header written
 * into it; it is uncorked on the tick after `connect`. Everything the application writes
 * before then (right after this call, or in a `connect` listener) goes out with the header
 * in one `writev`: one TCP segment for a small payload, as HAProxy sends it. When nothing
 * was written by then, the header goes out alone, so a server that speaks first hears it.
 * `end(data)` uncorks at once; the header and `data` still go in one `writev` once
 * connected. The header is always first, so `tls.connect({ socket })` over the returned
 * socket sends its handshake after it.
 *
 * @param options `net.connect`'s TCP options (`host`, `port`, `localAddress`, `noDelay`,
 *   ...), and `header`, `from`, `checksum`.
 * @param connectListener Added as a `connect` listener, as `net.connect` does.
 * @returns The `net.Socket`, connecting; the caller ends or destroys it.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` when the header cannot be
 *   written (thrown before connecting).
 * @throws {TypeError} When both `header` and `from` are given.
 *
 * @example Relay a client to a PROXY-protocol backend
 * ```ts
 * import { connect, createServer, type ProxySocket } from "@proxy-protocol/edge/node";
 * import assert from "node:assert/strict";
 * import net from "node:net";
 *
 * const seen: string[] = [];
 * const backend = createServer({}, (socket: ProxySocket) => {
 *   seen.push(`${socket.remoteAddress}:${socket.remotePort}`);
 *   socket.pipe(socket);
 * });
 * await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
 * const { port } = backend.address() as net.AddressInfo;
 *
 * const socket = connect({
 *   host: "127.0.0.1",
 *   port,
 *   header: {
 *     version: 2,
 *     command: "PROXY",
 *     protocol: "TCP4",
 *     source: { address: "203.0.113.7", port: 51234 },
 *     destination: { address: "10.0.0.5", port: 443 },
 *   },
 *   checksum: true,
 * });
 * socket.end("ping"); // the header and "ping" leave in one write
 * let echo = "";
 * for await (const chunk of socket) echo += chunk;
 * assert.equal(echo, "ping");
 * assert.deepEqual(seen, ["203.0.113.7:51234"]);
 * await new Promise((resolve) => backend.close(resolve));
 * ```
 *
 * @example Pass on what an accepted socket says (HAProxy's send-proxy)
 * ```ts
 * import { connect, createServer, type ProxySocket } from "@proxy-protocol/edge/node";
 * import assert from "node:assert/strict";
 * import net from "node:net";
 *
 * let relayed!: (address: string) => void;
 * const seen = new Promise<string>((resolve) => relayed = resolve);
 * const back = createServer({}, (socket: ProxySocket) => {
 *   relayed(`${socket.remoteAddress}:${socket.remotePort}`);
 *   socket.end();
 * });
 * await new Promise<void>((resolve) => back.listen(0, "127.0.0.1", resolve));
 * const backPort = (back.address() as net.AddressInfo).port;
 * const front = createServer({}, (socket: ProxySocket) => {
 *   const upstream = connect({ host: "127.0.0.1", port: backPort, from: socket });
 *   socket.pipe(upstream).pipe(socket);
 *   upstream.on("close", () => socket.destroy());
 * });
 * await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
 * const frontPort = (front.address() as net.AddressInfo).port;
 *
 * const client = net.connect(frontPort, "127.0.0.1");
 * client.write("PROXY TCP4 198.51.100.9 192.0.2.1 40000 80\r\n");
 * assert.equal(await seen, "198.51.100.9:40000");
 * for await (const _ of client);
 * await new Promise((resolve) => front.close(resolve));
 * await new Promise((resolve) => back.close(resolve));
 * ```
 */
export function connect(options: ConnectOptions, connectListener?: () => void): net.Socket {
  const { bytes } = headerBytes(options);
  // Everything else is net.connect's, including options newer than these types.
  const socket = net.connect(runtimeConnectOptions(options));
  socket.cork();
  socket.write(bytes);
  socket.once("connect", () => process.nextTick(uncork, socket));
  if (connectListener !== undefined) socket.once("connect", connectListener);
  return socket;
}

function uncork(socket: net.Socket): void {
  // `end()` may have uncorked already; uncork() of an uncorked socket does nothing.
  socket.uncork();
}
