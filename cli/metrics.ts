/**
 * `--metrics HOST:PORT`: Prometheus text at `/metrics`, on `node:http`. Internal.
 *
 * @module
 */

import http from "node:http";
import type net from "node:net";
import { type Endpoint, formatEndpoint, type Logger } from "./_common.ts";

/** Serves `render()` at `/metrics` until closed. */
export function serveMetrics(
  at: Endpoint,
  render: () => string | Promise<string>,
  log: Logger,
): Promise<{ address: Endpoint; close(): Promise<void> }> {
  const server = http.createServer(async (req, res) => {
    if (req.url !== "/metrics" && req.url !== "/") {
      res.writeHead(404).end("see /metrics\n");
      return;
    }
    try {
      const body = await render();
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
      res.end(body);
    } catch (error) {
      res.writeHead(500).end(String(error) + "\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => {
      server.off("error", reject);
      const a = server.address() as net.AddressInfo;
      const address = { host: a.address, port: a.port };
      log.log("info", "metrics", { url: `http://${formatEndpoint(address)}/metrics` });
      resolve({
        address,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections?.();
          }),
      });
    });
  });
}
