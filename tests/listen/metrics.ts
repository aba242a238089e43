// The `metrics` option, shared by each runtime's listener test: a known mix of good and
// refused connections against an echo server, then the counters and their Prometheus text.
import assert from "node:assert/strict";
import { encodeHeader, type ListenerMetrics } from "@proxy-protocol/edge";
import { connect, until } from "./client.ts";

const header = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "203.0.113.7", port: 51234 },
  destination: { address: "10.0.0.5", port: 443 },
});

/** Sends `parts`, ends, and waits for the server to close; the bytes echoed back. */
async function exchange(port: number, parts: (Uint8Array | string)[]): Promise<number> {
  const c = await connect(port);
  for (const p of parts) c.socket.write(p);
  c.socket.end();
  await c.closed;
  return c.received().length;
}

/**
 * `echo` (trusting every peer) and `strict` (trusting 10.0.0.0/8 only) are echo servers
 * sharing `metrics`: 3 good connections (a v2 header, then "hello"), 2 bad headers, 1
 * untrusted peer.
 */
export async function checkMetricsMix(
  metrics: ListenerMetrics,
  echo: number,
  strict: number,
  options: { bytes: boolean } = { bytes: true },
): Promise<void> {
  for (let i = 0; i < 3; i++) assert.equal(await exchange(echo, [header, "hello"]), 5);
  assert.equal(await exchange(echo, ["GET / HTTP/1.1\r\n\r\n"]), 0);
  assert.equal(await exchange(echo, ["PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"]), 0);
  assert.equal(await exchange(strict, [header, "hello"]), 0);
  await until(() => metrics.open === 0 && metrics.accepted === 3 && metrics.refused.size === 3);
  assert.equal(metrics.accepted, 3);
  assert.deepEqual(Object.fromEntries(metrics.refused), {
    HEADER_REQUIRED: 1,
    INVALID_PORT: 1,
    UNTRUSTED_SOURCE: 1,
  });
  assert.equal(metrics.headerBuckets.reduce((a, b) => a + b, 0), 3);
  assert.ok(metrics.headerSeconds > 0 && metrics.headerSeconds < 3);
  // Payload only: the header's 28 bytes are not counted.
  assert.equal(metrics.bytesIn, options.bytes ? 15 : 0);
  assert.equal(metrics.bytesOut, options.bytes ? 15 : 0);
  const text = metrics.prometheus();
  assert.match(text, /^# TYPE proxy_protocol_connections_accepted_total counter$/m);
  assert.match(text, /^proxy_protocol_connections_accepted_total 3$/m);
  assert.match(text, /^proxy_protocol_connections_refused_total\{code="HEADER_REQUIRED"\} 1$/m);
  assert.match(text, /^proxy_protocol_connections_refused_total\{code="INVALID_PORT"\} 1$/m);
  assert.match(text, /^proxy_protocol_connections_refused_total\{code="UNTRUSTED_SOURCE"\} 1$/m);
  assert.match(text, /^proxy_protocol_connections_open 0$/m);
  assert.match(text, /^proxy_protocol_header_duration_seconds_bucket\{le="\+Inf"\} 3$/m);
  assert.match(text, /^proxy_protocol_header_duration_seconds_count 3$/m);
  const bytes = options.bytes ? 15 : 0;
  assert.match(text, new RegExp(`^proxy_protocol_bytes_total\\{direction="in"\\} ${bytes}$`, "m"));
  assert.match(text, new RegExp(`^proxy_protocol_bytes_total\\{direction="out"\\} ${bytes}$`, "m"));
}
