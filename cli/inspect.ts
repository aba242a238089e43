/**
 * `inspect --listen HOST:PORT`: answers every connection with the header it came with, as
 * JSON (an HTTP request gets an HTTP response, other bytes a JSON line), and logs one JSON
 * line a connection: what is my load balancer actually sending?
 *
 * @module
 */

import type { ProxySocket } from "../lib/node/listen.ts";
import { ListenerMetrics } from "../lib/connection/metrics.ts";
import {
  ACCEPT_FLAGS,
  ACCEPT_USAGE,
  acceptOptions,
  type Command,
  COMMON_FLAGS,
  COMMON_USAGE,
  describeHeader,
  endpoint,
  EXIT,
  integer,
  type Io,
  json,
  Logger,
  onShutdown,
  parse,
  UsageError,
} from "./_common.ts";
import { type Accepted, type Listener, startListener } from "./_server.ts";

const FLAGS = {
  ...COMMON_FLAGS,
  ...ACCEPT_FLAGS,
  listen: { type: "string" },
  "drain-timeout": { type: "string" },
} as const;

/** The `inspect` command. */
export const inspect: Command = {
  summary: "answer each connection with its decoded header as JSON",
  usage: `Usage: inspect --listen HOST:PORT [--accept POLICY] [--trust CIDR ...] [flags]

Answers every connection with what it arrived with, as JSON: the client (from the header),
the socket's own peer (the balancer), and the header with its TLVs by meaning. An HTTP
request gets an HTTP response with a JSON body; other bytes, or none within 200 ms, get one
JSON line. Each connection is also logged as one JSON line on stderr.

  --listen HOST:PORT   where to listen (":8080" for every interface)
  --drain-timeout MS   on SIGINT/SIGTERM, wait this long for open connections (default 5000)
${ACCEPT_USAGE}
${COMMON_USAGE}

Exit codes: 0 stopped by SIGINT/SIGTERM; 1 cannot listen; 2 usage error.

Example:
  inspect --listen :8081 --accept optional  &  curl http://127.0.0.1:8081/`,
  async run(args: string[], io: Io): Promise<number> {
    const { values } = parse(args, FLAGS);
    const log = new Logger(values["log-level"], io.stderr, { command: "inspect" });
    if (values.listen === undefined) throw new UsageError("--listen HOST:PORT is required");
    const server = await startInspect({
      listen: values.listen,
      accept: values,
      log,
      drainMs: integer(values["drain-timeout"], "--drain-timeout", 5000),
    });
    return await server.done;
  },
};

/** Starts an inspect server; `done` resolves with the exit code after a signal. */
export async function startInspect(options: {
  listen: string;
  accept: Parameters<typeof acceptOptions>[0];
  log: Logger;
  drainMs: number;
  signals?: boolean;
}): Promise<{ listener: Listener; done: Promise<number>; stop(): Promise<number> }> {
  const { log } = options;
  const listener = await startListener({
    listen: endpoint(options.listen, "--listen"),
    accept: acceptOptions(options.accept),
    log,
    metrics: new ListenerMetrics(),
    maxConnections: 0,
    onConnection: (socket, info) => answer(socket as ProxySocket, info, log),
  });
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => finish = resolve);
  const stop = async () => {
    const cut = await listener.close(options.drainMs);
    log.log("info", "stopped", { cut });
    finish(EXIT.OK);
    return EXIT.OK;
  };
  if (options.signals !== false) {
    const off = onShutdown((signal) => {
      log.log("info", "shutting down", { signal, open: listener.connections });
      stop().finally(off);
    });
  }
  return { listener, done, stop };
}

const HTTP_REQUEST = /^[A-Z]{3,10} \S+ HTTP\/1\.[01]\r?\n/;
const HTTP_START = /^[A-Z]{3,10} /;

function answer(socket: ProxySocket, info: Accepted, log: Logger) {
  const report = {
    client: { address: socket.remoteAddress, port: socket.remotePort },
    destination: { address: socket.localAddress, port: socket.localPort },
    peer: info.peer,
    header: socket.proxyHeader === null ? null : describeHeader(socket.proxyHeader),
    headerMs: Math.round(info.headerMs * 1000) / 1000,
  };
  let received = "";
  let done = false;
  const reply = (http: boolean) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    const body = json(report, 2) + "\n";
    log.log("info", "connection", { ...report, http });
    if (http) {
      socket.end(
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n` +
          `content-length: ${new TextEncoder().encode(body).length}\r\nconnection: close\r\n\r\n` +
          body,
      );
    } else {
      socket.end(json(report) + "\n");
    }
  };
  const timer = setTimeout(() => reply(false), 200);
  socket.setEncoding("latin1");
  socket.on("data", (chunk: string) => {
    if (done) return;
    received += chunk;
    if (!HTTP_START.test(received) && !/^[A-Z]{1,10}$/.test(received)) return reply(false);
    if (received.includes("\r\n\r\n") || received.includes("\n\n")) {
      return reply(HTTP_REQUEST.test(received));
    }
    if (received.length > 16384) reply(false);
  });
  socket.on("end", () => reply(HTTP_REQUEST.test(received)));
  socket.on("error", () => {});
  socket.once("close", () => clearTimeout(timer)); // the listener counts the close
}
