/**
 * Counters of a listener's connections, runtime-neutral, and their Prometheus text form:
 * accepted, refused by error code, open, header-phase latency, bytes each way, upstream
 * connect failures. A listener (or the CLI's gateway) calls the `on*` methods; whoever
 * serves metrics reads the fields or {@linkcode ListenerMetrics.prometheus}.
 *
 * @module
 */

/** Upper bounds of the header-latency histogram, in seconds (Prometheus `le`). */
export const HEADER_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/**
 * A listener's figures since it started. Give one to a listener as the `metrics` option
 * (`createServer` on Node, `listen` on Deno and Bun) and it counts its connections:
 * accepted (with the header phase's duration), refused by error code, open, and the
 * payload bytes of those that closed. Read the fields, or serve
 * {@linkcode ListenerMetrics.prometheus} to Prometheus.
 *
 * @example Count a listener's connections and render them for Prometheus
 * ```ts
 * import { ListenerMetrics } from "@proxy-protocol/edge";
 * import { createServer } from "@proxy-protocol/edge/node";
 * import assert from "node:assert/strict";
 * import net from "node:net";
 *
 * const metrics = new ListenerMetrics();
 * const server = createServer({ metrics }, (socket) => socket.end());
 * await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
 * const { port } = server.address() as net.AddressInfo;
 *
 * for (const sent of ["PROXY TCP4 203.0.113.7 10.0.0.5 51234 80\r\n", "GET / HTTP/1.1\r\n\r\n"]) {
 *   const client = net.connect(port, "127.0.0.1");
 *   client.end(sent);
 *   for await (const _ of client);
 * }
 * while (metrics.open > 0) await new Promise((resolve) => setTimeout(resolve, 5));
 * assert.equal(metrics.accepted, 1);
 * assert.equal(metrics.refused.get("HEADER_REQUIRED"), 1);
 * assert.match(metrics.prometheus(), /^proxy_protocol_connections_accepted_total 1$/m);
 * await new Promise((resolve) => server.close(resolve));
 * ```
 */
export class ListenerMetrics {
  /** Connections whose header phase succeeded and that were handed on. */
  accepted = 0;
  /** Connections refused, by `ProxyProtocolError` code (`ACCEPT_FAILED` counts bursts). */
  readonly refused: Map<string, number> = new Map();
  /** Connections handed on and not yet closed (the holder calls `onClosed`). */
  open = 0;
  /** Header-phase durations: counts per bucket of {@linkcode HEADER_BUCKETS}, then +Inf. */
  readonly headerBuckets: number[] = new Array(HEADER_BUCKETS.length + 1).fill(0);
  /** The sum of header-phase durations, in seconds. */
  headerSeconds = 0;
  /** Bytes from clients (towards the application or upstream), payload only. */
  bytesIn = 0;
  /** Bytes to clients. */
  bytesOut = 0;
  /** Failed upstream connects, by upstream (`HOST:PORT`). */
  readonly upstreamFailures: Map<string, number> = new Map();

  /**
   * A connection's header phase succeeded.
   *
   * @param ms How long it took, from accept to hand-over.
   */
  onAccepted(ms: number): void {
    this.accepted++;
    this.open++;
    const s = ms / 1000;
    this.headerSeconds += s;
    let i = 0;
    while (i < HEADER_BUCKETS.length && s > HEADER_BUCKETS[i]!) i++;
    this.headerBuckets[i]!++;
  }

  /**
   * A connection was refused.
   *
   * @param code The `ProxyProtocolError` code.
   */
  onRefused(code: string): void {
    this.refused.set(code, (this.refused.get(code) ?? 0) + 1);
  }

  /**
   * An accepted connection closed.
   *
   * @param bytesIn Payload bytes it carried from the client.
   * @param bytesOut Bytes it carried to the client.
   */
  onClosed(bytesIn = 0, bytesOut = 0): void {
    this.open--;
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
  }

  /**
   * A connect to an upstream failed (refused, timed out, unreachable).
   *
   * @param upstream Which, as `HOST:PORT`.
   */
  onUpstreamFailure(upstream: string): void {
    this.upstreamFailures.set(upstream, (this.upstreamFailures.get(upstream) ?? 0) + 1);
  }

  /**
   * Adds another listener's figures to these (workers into one total).
   *
   * @param other Figures as {@linkcode ListenerMetrics.toJSON} gives them.
   */
  add(other: MetricsSnapshot): void {
    this.accepted += other.accepted;
    this.open += other.open;
    this.headerSeconds += other.headerSeconds;
    this.bytesIn += other.bytesIn;
    this.bytesOut += other.bytesOut;
    other.headerBuckets.forEach((n, i) => this.headerBuckets[i]! += n);
    for (const [k, n] of Object.entries(other.refused)) {
      this.refused.set(k, (this.refused.get(k) ?? 0) + n);
    }
    for (const [k, n] of Object.entries(other.upstreamFailures)) {
      this.upstreamFailures.set(k, (this.upstreamFailures.get(k) ?? 0) + n);
    }
  }

  /** The figures as plain JSON (to send between processes). */
  toJSON(): MetricsSnapshot {
    return {
      accepted: this.accepted,
      refused: Object.fromEntries(this.refused),
      open: this.open,
      headerBuckets: [...this.headerBuckets],
      headerSeconds: this.headerSeconds,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      upstreamFailures: Object.fromEntries(this.upstreamFailures),
    };
  }

  /**
   * The figures in Prometheus' text exposition format (version 0.0.4).
   *
   * @param prefix Metric name prefix; default `proxy_protocol`.
   * @returns The text, ending with a newline.
   */
  prometheus(prefix = "proxy_protocol"): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: string[]) => {
      lines.push(`# HELP ${prefix}_${name} ${help}`, `# TYPE ${prefix}_${name} ${type}`);
      for (const s of samples) lines.push(`${prefix}_${name}${s}`);
    };
    metric("connections_accepted_total", "counter", "Connections whose header phase succeeded.", [
      ` ${this.accepted}`,
    ]);
    metric(
      "connections_refused_total",
      "counter",
      "Connections refused, by error code.",
      [...this.refused].map(([code, n]) => `{code="${label(code)}"} ${n}`),
    );
    metric("connections_open", "gauge", "Accepted connections not yet closed.", [` ${this.open}`]);
    let cumulative = 0;
    const buckets = HEADER_BUCKETS.map((le, i) => {
      cumulative += this.headerBuckets[i]!;
      return `_bucket{le="${le}"} ${cumulative}`;
    });
    const count = cumulative + this.headerBuckets[HEADER_BUCKETS.length]!;
    metric("header_duration_seconds", "histogram", "From accept to the header read.", [
      ...buckets,
      `_bucket{le="+Inf"} ${count}`,
      `_sum ${this.headerSeconds}`,
      `_count ${count}`,
    ]);
    metric("bytes_total", "counter", "Payload bytes of closed connections, by direction.", [
      `{direction="in"} ${this.bytesIn}`,
      `{direction="out"} ${this.bytesOut}`,
    ]);
    metric(
      "upstream_connect_failures_total",
      "counter",
      "Failed connects to an upstream.",
      [...this.upstreamFailures].map(([u, n]) => `{upstream="${label(u)}"} ${n}`),
    );
    return lines.join("\n") + "\n";
  }
}

/** {@linkcode ListenerMetrics} as JSON. */
export interface MetricsSnapshot {
  /** See {@linkcode ListenerMetrics.accepted}. */
  accepted: number;
  /** Refusals by code. */
  refused: Record<string, number>;
  /** See {@linkcode ListenerMetrics.open}. */
  open: number;
  /** See {@linkcode ListenerMetrics.headerBuckets}. */
  headerBuckets: number[];
  /** See {@linkcode ListenerMetrics.headerSeconds}. */
  headerSeconds: number;
  /** See {@linkcode ListenerMetrics.bytesIn}. */
  bytesIn: number;
  /** See {@linkcode ListenerMetrics.bytesOut}. */
  bytesOut: number;
  /** Failures by upstream. */
  upstreamFailures: Record<string, number>;
}

function label(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}
