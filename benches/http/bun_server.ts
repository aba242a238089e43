/**
 * The servers of `bun_bench.mjs`, in one Bun process: (a) `Bun.serve`, (b) Bun's
 * `node:http`, (c) this library's `serve` (a relay into an inner `Bun.serve`), (d) Bun's
 * `node:http` behind `serve` from `./node` (each connection emitted to it as
 * `"connection"`), all with the same small response; with `TLS=cert.pem,key.pem`, their
 * TLS variants. Prints `{"a":port,...}` on stdout once listening.
 *
 * @module
 */

import http from "node:http";
import https from "node:https";
import type net from "node:net";
import { readFileSync } from "node:fs";
import process from "node:process";
import { serve } from "@proxy-protocol/edge/bun";
import { serve as serveNode } from "@proxy-protocol/edge/node";

interface BunLike {
  serve(options: Record<string, unknown>): { port: number };
}
const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;

const BODY = "hello world\n";
const files = process.env.TLS?.split(",");
const tls = files === undefined
  ? undefined
  : { cert: readFileSync(files[0]!, "utf8"), key: readFileSync(files[1]!, "utf8") };

const a = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  ...(tls ? { tls } : {}),
  fetch: () => new Response(BODY),
});

const handler = (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(BODY);
};
const listenOn = (server: { listen(...args: unknown[]): unknown; address(): unknown }) =>
  new Promise<number>((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port));
  });
const b = await listenOn(tls ? https.createServer(tls, handler) : http.createServer(handler));

const c = serve({
  hostname: "127.0.0.1",
  port: 0,
  ...(tls ? { tls } : {}),
  fetch: () => new Response(BODY),
});

const d = await listenOn(
  serveNode(tls ? https.createServer(tls, handler) : http.createServer(handler)),
);

console.log(JSON.stringify({ a: a.port, b, c: c.port, d }));
