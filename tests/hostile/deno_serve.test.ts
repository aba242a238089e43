// The hostile suite (suite.ts) on `serve` of ./deno (a relay into Deno.serve), each
// scenario a Deno.test with the op and resource sanitizers on, and the same server out of
// file descriptors (exhaustion.ts). Runs under `deno test` only.
import { serve } from "@proxy-protocol/edge/deno";
import { sanitized } from "../deno/registrar.ts";
import { defineHostileSuite, printSizes, type Registrar } from "./suite.ts";
import { exhaustionCase } from "./exhaustion.ts";

printSizes("deno_serve.test.ts");

const registrar: Registrar = {
  describe: sanitized.describe,
  it: (name, _options, fn) => sanitized.it(name, fn),
};

defineHostileSuite("deno serve", {
  app: "http",
  start(options) {
    const addresses: string[] = [];
    const server = serve(
      { ...options, hostname: "127.0.0.1", port: 0, onListen() {} },
      (_request, info) => {
        addresses.push(info.remoteAddr.hostname);
        return Response.json({
          remoteAddress: info.remoteAddr.hostname,
          remotePort: info.remoteAddr.port,
        });
      },
    );
    return Promise.resolve({
      port: server.addr.port,
      addresses,
      close: () => server.shutdown(),
    });
  },
}, registrar);

registrar.describe("deno serve: out of file descriptors", () => exhaustionCase("deno", registrar));
