/**
 * `gateway --listen HOST:PORT --upstream HOST:PORT`: a TCP relay in front of any service
 * that reads the incoming PROXY header and writes a fresh one upstream (HAProxy's
 * `accept-proxy` + `send-proxy-v2`), with round-robin upstreams, failover, optional TLS
 * termination, metrics, workers and a graceful shutdown.
 *
 * @module
 */

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import process from "node:process";
import { encodeHeader } from "../lib/encode.ts";
import { headerFor } from "../lib/connection/sender.ts";
import { ListenerMetrics } from "../lib/connection/metrics.ts";
import { TlvType } from "../lib/constants.ts";
import type { Tlv } from "../lib/types.ts";
import {
  ACCEPT_FLAGS,
  ACCEPT_USAGE,
  acceptOptions,
  type Command,
  COMMON_FLAGS,
  COMMON_USAGE,
  endpoint,
  errorFields,
  EXIT,
  formatEndpoint,
  integer,
  type Io,
  Logger,
  onShutdown,
  parse,
  tlvs,
  tlvType,
  UsageError,
} from "./_common.ts";
import { type Glue, type GlueConn, glueName, type Listener } from "./_glue.ts";
import { listenNode } from "./_glue_node.ts";
import { listenBun } from "./_glue_bun.ts";
import { serveMetrics } from "./metrics.ts";
import { Upstreams } from "./relay.ts";
import { runWorkers, serveWorker, workerIndex, workerListen } from "./workers.ts";

const FLAGS = {
  ...COMMON_FLAGS,
  ...ACCEPT_FLAGS,
  listen: { type: "string" },
  upstream: { type: "string", multiple: true },
  send: { type: "string" },
  crc32c: { type: "boolean" },
  "unique-id": { type: "boolean" },
  tlv: { type: "string", multiple: true },
  "pass-tlv": { type: "string", multiple: true },
  "connect-timeout": { type: "string" },
  "idle-timeout": { type: "string" },
  "max-connections": { type: "string" },
  "drain-timeout": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  metrics: { type: "string" },
  workers: { type: "string" },
} as const;

/** The `gateway` command. */
export const gateway: Command = {
  summary: "relay TCP to upstreams, reading the incoming header and sending a fresh one",
  usage: `Usage: gateway --listen HOST:PORT --upstream HOST:PORT [--upstream ...] [flags]

A TCP relay: reads each connection's PROXY header by the accept flags, connects to an
upstream (round-robin; on a failed connect the next one) and sends it a fresh header for
the client, then copies bytes both ways (backpressure kept, half-closes passed on). As
HAProxy's "accept-proxy" in and "send-proxy-v2" out.

  --listen HOST:PORT        where to listen (":8080" for every interface)
  --upstream HOST:PORT      a backend (repeat for several: round-robin with failover)
${ACCEPT_USAGE}

The header sent upstream:
  --send v1|v2|none         its version, or none (default v2)
  --crc32c                  add a CRC32C TLV (v2)
  --unique-id               add a UNIQUE_ID TLV (0x05): a UUID a connection, also logged
  --tlv TYPE=HEX            add a TLV (v2; repeat), e.g. --tlv 0xE0=0102
  --pass-tlv TYPE           forward the incoming header's TLVs of this type (repeat)

Connections:
  --connect-timeout MS      per upstream attempt (default 5000)
  --idle-timeout MS         cut a connection idle this long both ways (default 3600000; 0 never)
  --max-connections N       refuse connections beyond N open (default 10000; 0 no cap)
  --drain-timeout MS        on SIGINT/SIGTERM: stop accepting, wait this long for open
                            connections, then cut them (default 30000)
  --tls-cert FILE           terminate TLS with this certificate chain (PEM) ...
  --tls-key FILE            ... and key; the SSL TLVs go upstream (version, cipher, the
                            client certificate's CN; SNI as AUTHORITY)

Operations:
  --metrics HOST:PORT       serve Prometheus metrics at http://HOST:PORT/metrics
  --workers N               N processes on one port (reusePort on Deno and Bun,
                            node:cluster on Node); default 1
${COMMON_USAGE}

Exit codes: 0 stopped by SIGINT/SIGTERM (drained, or cut at --drain-timeout); 1 cannot
listen (port in use, bad certificate); 2 usage error.

Example:
  gateway --listen :8080 --accept optional --upstream 127.0.0.1:8081 --send v2`,
  async run(args: string[], io: Io): Promise<number> {
    const { values } = parse(args, FLAGS);
    const config = gatewayConfig(values);
    const workers = integer(values.workers, "--workers", 1, 1, 256);
    const worker = workerIndex();
    if (workers > 1 && worker === undefined) {
      return await runWorkers(workers, config, io, ["gateway", ...args], values["log-level"]);
    }
    const log = new Logger(values["log-level"], io.stderr, {
      command: "gateway",
      ...(worker === undefined ? {} : { worker }),
    });
    if (worker === undefined) return await (await startGateway(config, log)).done;
    // A worker of --workers: the primary serves metrics and chose the address.
    const running = await startGateway({ ...config, listen: workerListen(config) }, log, {
      reusePort: true,
      serveMetrics: false,
    });
    serveWorker(running);
    return await running.done;
  },
};

/** The gateway's settings, checked. */
export interface GatewayConfig {
  listen: string;
  upstreams: ReturnType<typeof endpoint>[];
  accept: ReturnType<typeof acceptOptions>;
  send: 0 | 1 | 2;
  crc32c: boolean;
  uniqueId: boolean;
  tlvs: Tlv[];
  passTlvs: number[];
  connectTimeout: number;
  idleTimeout: number;
  maxConnections: number;
  drainTimeout: number;
  tls: { cert: string; key: string } | undefined;
  metrics: string | undefined;
}

/** Checks the flags. @throws {UsageError} */
export function gatewayConfig(
  values: ReturnType<typeof parse<typeof FLAGS>>["values"],
): GatewayConfig {
  if (values.listen === undefined) throw new UsageError("--listen HOST:PORT is required");
  endpoint(values.listen, "--listen");
  if (values.upstream === undefined || values.upstream.length === 0) {
    throw new UsageError("--upstream HOST:PORT is required (repeat it for several)");
  }
  const send = values.send ?? "v2";
  if (send !== "v1" && send !== "v2" && send !== "none") {
    throw new UsageError(`--send: expected v1, v2 or none, got ${send}`);
  }
  const version = send === "v1" ? 1 : send === "v2" ? 2 : 0;
  const extra = tlvs(values.tlv);
  const passTlvs = (values["pass-tlv"] ?? []).map((t) => tlvType(t, "--pass-tlv"));
  if (
    version !== 2 &&
    (extra.length > 0 || passTlvs.length > 0 || values.crc32c || values["unique-id"] ||
      values["tls-cert"] !== undefined)
  ) {
    throw new UsageError(
      "--tlv, --pass-tlv, --crc32c, --unique-id and TLS's SSL TLVs need --send v2",
    );
  }
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  if (values.metrics !== undefined) endpoint(values.metrics, "--metrics");
  return {
    listen: values.listen,
    upstreams: values.upstream.map((u) => endpoint(u, "--upstream")),
    accept: acceptOptions(values),
    send: version,
    crc32c: values.crc32c === true,
    uniqueId: values["unique-id"] === true,
    tlvs: extra,
    passTlvs,
    connectTimeout: integer(values["connect-timeout"], "--connect-timeout", 5000, 1),
    idleTimeout: integer(values["idle-timeout"], "--idle-timeout", 3_600_000),
    maxConnections: integer(values["max-connections"], "--max-connections", 10_000),
    drainTimeout: integer(values["drain-timeout"], "--drain-timeout", 30_000),
    tls: values["tls-cert"] === undefined
      ? undefined
      : { cert: values["tls-cert"], key: values["tls-key"]! },
    metrics: values.metrics,
  };
}

/** A running gateway. */
export interface RunningGateway {
  /** Its listener. */
  listener: Listener;
  /** Resolves with the exit code once it has shut down. */
  done: Promise<number>;
  /** Shuts down as on SIGTERM. */
  stop(): Promise<number>;
}

/**
 * Starts a gateway in this process.
 *
 * @param config The checked settings.
 * @param log Where to log.
 * @param options `reusePort` when workers share the port; `signals: false` to leave
 *   SIGINT/SIGTERM alone (tests); `metrics` to count into a given object.
 * @returns The running gateway.
 */
export async function startGateway(
  config: GatewayConfig,
  log: Logger,
  options: { reusePort?: boolean; signals?: boolean; serveMetrics?: boolean } = {},
): Promise<RunningGateway> {
  const metrics = new RelayMetrics();
  const upstreams = new Upstreams(config.upstreams, config.connectTimeout);
  const tlsOptions = config.tls === undefined
    ? undefined
    : { cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) };
  const listen = await glue(config.tls !== undefined);
  const listener = await listen({
    listen: endpoint(config.listen, "--listen"),
    accept: config.accept,
    log,
    metrics,
    maxConnections: config.maxConnections,
    tls: tlsOptions,
    reusePort: options.reusePort === true,
    onConnection: (conn) => handle(conn, config, upstreams, metrics, log),
  });
  const metricsServer = config.metrics !== undefined && options.serveMetrics !== false
    ? await serveMetrics(endpoint(config.metrics, "--metrics"), () => metrics.prometheus(), log)
    : undefined;
  log.log("info", options.serveMetrics === false ? "worker ready" : "gateway ready", {
    listen: formatEndpoint(listener.address),
    upstreams: config.upstreams.map(formatEndpoint),
    send: config.send === 0 ? "none" : `v${config.send}`,
  });
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => finish = resolve);
  let stopping: Promise<number> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      const cut = await listener.close(config.drainTimeout);
      await metricsServer?.close();
      log.log("info", "stopped", { cut });
      finish(EXIT.OK);
      return EXIT.OK;
    })();
  if (options.signals !== false) {
    const off = onShutdown((signal) => {
      log.log("info", "shutting down", {
        signal,
        open: listener.connections,
        drainTimeout: config.drainTimeout,
      });
      stop().finally(off);
    });
  }
  return { listener, done, stop };
}

/**
 * The socket glue of this runtime: `Deno.listen`/`Deno.connect` on Deno, `Bun.listen`/
 * `Bun.connect` on Bun, `node:net` on Node and for TLS termination (or on any runtime with
 * `PROXY_PROTOCOL_GLUE=node`, to compare).
 */
async function glue(tls: boolean): Promise<Glue> {
  const name = glueName(tls, process.env.PROXY_PROTOCOL_GLUE);
  if (name === "bun") return listenBun;
  if (name === "deno") {
    // Not a literal: Node's build neither bundles nor type-checks Deno's glue.
    const path = "./_glue_deno.ts";
    return ((await import(path)) as { listenDeno: Glue }).listenDeno;
  }
  return listenNode;
}

/** The header for a connection, encoded; empty with `--send none`. */
function headerFor_(conn: GlueConn, config: GatewayConfig, id: string | undefined): Uint8Array {
  if (config.send === 0) return new Uint8Array(0);
  const added: Tlv[] = [];
  if (id !== undefined) {
    added.push({ type: TlvType.UNIQUE_ID, value: new TextEncoder().encode(id) });
  }
  added.push(...conn.sslTlvs());
  added.push(...config.tlvs);
  const header = headerFor(conn.from, {
    version: config.send,
    passTlvs: config.passTlvs,
    tlvs: added,
  });
  return encodeHeader(header, { checksum: config.crc32c });
}

async function handle(
  conn: GlueConn,
  config: GatewayConfig,
  upstreams: Upstreams,
  metrics: RelayMetrics,
  log: Logger,
): Promise<void> {
  const id = config.uniqueId ? randomUUID() : undefined;
  const from = fromOf(conn);
  let header: Uint8Array;
  try {
    header = headerFor_(conn, config, id);
  } catch (error) {
    // A passed TLV too long for the header, say: nothing to send.
    log.log("warn", "cannot write header", { from, ...errorFields(error) });
    conn.destroy();
    return;
  }
  const connected = await upstreams.connect(conn, header, (target, error) => {
    metrics.onUpstreamFailure(target);
    log.log("warn", "upstream connect failed", { upstream: target, error: error.message });
  });
  if (!connected || conn.gone) {
    if (!connected && !conn.gone) log.log("error", "no upstream", { from });
    conn.destroy();
    return;
  }
  if (log.enabled("debug")) {
    log.log("debug", "open", { from, peer: conn.peer, to: conn.upstream, id });
  }
  const result = await conn.relay(config.idleTimeout);
  metrics.relayed(result.bytesIn, result.bytesOut);
  if (log.enabled("info")) {
    log.log("info", "connection", {
      from,
      peer: conn.peer,
      to: conn.upstream,
      ...(id === undefined ? {} : { id }),
      in: result.bytesIn,
      out: result.bytesOut,
      end: result.reason,
      ...(result.error ? { error: result.error.message } : {}),
    });
  }
}

/** The client as `address:port`, from the header (or the socket). */
function fromOf(conn: GlueConn): string {
  const f = conn.from;
  if (f.remoteAddr !== undefined) return `${f.remoteAddr.hostname}:${f.remoteAddr.port}`;
  return `${f.remoteAddress}:${f.remotePort}`;
}

/**
 * The gateway's counters: the library's listener counts connections (accepted, refused,
 * open, the header phase's time) and this, upstream failures and the relay's payload
 * bytes, counted after TLS, in place of the raw socket's.
 */
class RelayMetrics extends ListenerMetrics {
  /** The listener's close: the bytes come from {@linkcode RelayMetrics.relayed}. */
  override onClosed(): void {
    super.onClosed(0, 0);
  }

  /** A relay's payload bytes, each way. */
  relayed(bytesIn: number, bytesOut: number): void {
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
  }
}
