// The hostile suite (suite.ts) on the Deno adapter, each scenario a Deno.test with the op
// and resource sanitizers on. Runs under `deno test` only.
import { listen } from "@proxy-protocol/edge/deno";
import { reportSeen } from "../deno/helpers.ts";
import { sanitized } from "../deno/registrar.ts";
import { defineHostileSuite, printSizes } from "./suite.ts";

printSizes("deno_listen.test.ts");

defineHostileSuite("deno listen", {
  app: "tcp",
  start(options) {
    const listener = listen({ ...options, hostname: "127.0.0.1", port: 0 });
    const addresses: string[] = [];
    const open = new Set<Promise<void>>();
    const loop = (async () => {
      for await (const conn of listener) {
        addresses.push(conn.remoteAddr.hostname);
        const done: Promise<void> = reportSeen(conn).finally(() => open.delete(done));
        open.add(done);
      }
    })();
    return Promise.resolve({
      port: listener.addr.port,
      addresses,
      async close() {
        listener.close();
        await listener.finished();
        await loop;
        await Promise.all(open);
      },
    });
  },
}, { describe: sanitized.describe, it: (name, _options, fn) => sanitized.it(name, fn) });
