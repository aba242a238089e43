// The hostile suite (suite.ts) on `serve(server)` of ./node around a node:http server, and
// the same server out of file descriptors (exhaustion.ts): under Node (against the build),
// Deno and Bun.
import { describe, it } from "node:test";
import http from "node:http";
import type net from "node:net";
import { serve } from "@proxy-protocol/edge/node";
import { defineHostileSuite, printSizes } from "./suite.ts";
import { exhaustionCase } from "./exhaustion.ts";
import { runtime } from "./helpers.ts";

printSizes("node_serve.test.ts");

defineHostileSuite("node serve", {
  app: "http",
  async start(options) {
    const addresses: string[] = [];
    const app = http.createServer((req, res) => {
      const { remoteAddress, remotePort } = req.socket;
      addresses.push(remoteAddress ?? "");
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ remoteAddress, remotePort }));
    });
    serve(app, options);
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    return {
      port: (app.address() as net.AddressInfo).port,
      addresses,
      close: () =>
        new Promise<void>((resolve) => {
          app.closeAllConnections();
          app.close(() => resolve());
        }),
    };
  },
}, { describe, it });

// Deno's node:net stops accepting for good after EMFILE, even without this library (see
// tests/faults/suite.ts): there, use the Deno adapter (deno_serve.test.ts).
if (runtime !== "deno") {
  describe("node serve: out of file descriptors", () => exhaustionCase("node", { describe, it }));
}
