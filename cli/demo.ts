/**
 * `demo` (`npm start`): a gateway on 127.0.0.1:8080 that takes connections with or without
 * a header and sends v2 to an inspect server on 127.0.0.1:8081, which shows the client's
 * address carried through.
 *
 * @module
 */

import {
  type Command,
  COMMON_FLAGS,
  COMMON_USAGE,
  endpoint,
  EXIT,
  formatEndpoint,
  type Io,
  Logger,
  onShutdown,
  parse,
} from "./_common.ts";
import { gatewayConfig, startGateway } from "./gateway.ts";
import { startInspect } from "./inspect.ts";

const FLAGS = {
  ...COMMON_FLAGS,
  listen: { type: "string" },
  inspect: { type: "string" },
} as const;

/** The `demo` command. */
export const demo: Command = {
  summary: "npm start: a gateway on 127.0.0.1:8080 in front of an inspect server",
  usage: `Usage: demo [--listen HOST:PORT] [--inspect HOST:PORT]

Runs a gateway (--accept optional, --send v2) on --listen (default 127.0.0.1:8080) in front
of an inspect server on --inspect (default 127.0.0.1:8081), and prints the curl line to try:
the answer shows your own address, carried to the inspect server in a v2 header.
Stop it with Ctrl-C.
${COMMON_USAGE}`,
  async run(args: string[], io: Io): Promise<number> {
    const { values } = parse(args, FLAGS);
    const log = new Logger(values["log-level"] ?? "warn", io.stderr, { command: "demo" });
    const listen = values.listen ?? "127.0.0.1:8080";
    const inspectAt = values.inspect ?? "127.0.0.1:8081";
    endpoint(listen, "--listen");
    endpoint(inspectAt, "--inspect");
    const inspector = await startInspect({
      listen: inspectAt,
      accept: { accept: "require", trust: ["127.0.0.0/8", "::1/128"] },
      log,
      drainMs: 1000,
      signals: false,
    });
    const gw = await startGateway(
      gatewayConfig({
        listen,
        upstream: [formatEndpoint(inspector.listener.address)],
        accept: "optional",
        send: "v2",
        "unique-id": true,
        "drain-timeout": "1000",
      }),
      log,
      { signals: false },
    );
    const at = formatEndpoint(gw.listener.address);
    io.stdout.write(
      `gateway   ${at} (accepts connections with or without a PROXY header, sends v2)\n` +
        `  -> inspect ${
          formatEndpoint(inspector.listener.address)
        } (answers with the header it got)\n\n` +
        `Try:\n  curl http://${at}/\n\nCtrl-C to stop.\n`,
    );
    await new Promise<void>((resolve) => {
      const off = onShutdown(() => {
        off();
        resolve();
      });
    });
    await gw.stop();
    await inspector.stop();
    return EXIT.OK;
  },
};
