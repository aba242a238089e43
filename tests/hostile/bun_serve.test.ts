// The hostile suite (suite.ts) on `serve` of ./bun (a relay into Bun.serve), and the same
// server out of file descriptors (exhaustion.ts). Runs under `bun test` only.
import { describe, it } from "node:test";
import { serve } from "@proxy-protocol/edge/bun";
import { defineHostileSuite, printSizes } from "./suite.ts";
import { exhaustionCase } from "./exhaustion.ts";

printSizes("bun_serve.test.ts");

defineHostileSuite("bun serve", {
  app: "http",
  start(options) {
    const addresses: string[] = [];
    const server = serve({
      ...options,
      hostname: "127.0.0.1",
      port: 0,
      fetch(request, server) {
        const ip = server.requestIP(request);
        addresses.push(ip?.address ?? "");
        return Response.json({ remoteAddress: ip?.address, remotePort: ip?.port });
      },
    });
    return Promise.resolve({
      port: server.port,
      addresses,
      close: () => server.stop(true),
    });
  },
}, { describe, it });

describe("bun serve: out of file descriptors", () => exhaustionCase("bun", { describe, it }));
