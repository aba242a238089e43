/**
 * Reading the header off a stream, runtime-neutral: `readProxyHeader` for a
 * `ReadableStream`, `readProxyHeaderFrom` for `read(p)`-style readers such as `Deno.Conn`.
 *
 * @module
 */

import { bytesNeeded } from "./header_reader.ts";
import { AcceptPhase, type AcceptStep } from "./connection/accept.ts";
import { type ProxyProtocolOptions, resolveOptions } from "./connection/options.ts";
import { NO_PEER, type PeerInfo } from "./connection/peer.ts";
import { needsPeer } from "./connection/policy.ts";
import type { ProxyHeader } from "./types.ts";

/** Options for the stream helpers: the shared options, and the peer they apply to. */
export interface ReadProxyHeaderOptions extends ProxyProtocolOptions {
  /**
   * The socket's real endpoints. Needed for `trust` and for a `policy` function, and passed
   * to `validate`.
   */
  peer?: PeerInfo;
}

/** What {@linkcode readProxyHeader} resolves to. */
export interface ProxyStreamResult {
  /** The header, or `null` where the policy allows none (or ignores it). */
  header: ProxyHeader | null;
  /**
   * Everything after the header. When the source is a byte stream and the header came in
   * whole, this is the source itself, untouched; otherwise the first chunk is a subarray of
   * the chunk the header ended in, and later chunks pass through as they are.
   */
  readable: ReadableStream<Uint8Array>;
}

/** A stream's header phase: on timeout, it cancels what it reads. */
class StreamPhase extends AcceptPhase {
  cancel: ((reason: unknown) => void) | undefined = undefined;

  protected override timedOut(): void {
    this.cancel?.(this.error);
  }
}

/** Resolves the options for one stream, which needs a peer for trust and policy functions. */
function streamPhase(options: ReadProxyHeaderOptions): StreamPhase {
  const resolved = resolveOptions(options);
  resolved.metrics = undefined; // a listener's: a stream has no close to count
  if (options.peer === undefined && needsPeer(resolved)) {
    throw new TypeError("trust and policy functions need options.peer");
  }
  return new StreamPhase(resolved, options.peer ?? NO_PEER);
}

/**
 * Reads the PROXY header at the start of a stream and gives back the header and a stream of
 * everything after it. On any failure the source is cancelled and the promise rejects with a
 * {@linkcode ProxyProtocolError}.
 *
 * Byte streams (`type: "bytes"`, such as `Deno.Conn.readable`) are read with a BYOB reader
 * that asks for no more bytes than the header can still need, so nothing past the header
 * is taken and the source itself is handed back.
 *
 * @param readable The connection's bytes.
 * @param options Policy, trust (with `peer`), timeout, size limit, checksum, `validate`.
 * @returns The header and the rest of the stream.
 * @throws {ProxyProtocolError} When the policy refuses the connection, or on timeout.
 *
 * @example
 * ```ts
 * import { readProxyHeader } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const bytes = new TextEncoder().encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nhello");
 * const source = new ReadableStream<Uint8Array>({
 *   start(c) {
 *     c.enqueue(bytes.subarray(0, 12));
 *     c.enqueue(bytes.subarray(12));
 *     c.close();
 *   },
 * });
 * const { header, readable } = await readProxyHeader(source);
 * assert.equal(header?.source?.address, "1.2.3.4");
 * const rest = await new Response(readable).text();
 * assert.equal(rest, "hello");
 * ```
 */
export async function readProxyHeader(
  readable: ReadableStream<Uint8Array>,
  options: ReadProxyHeaderOptions = {},
): Promise<ProxyStreamResult> {
  const phase = streamPhase(options);
  try {
    let step = phase.start();
    if (step === "open") return { header: null, readable }; // skip
    if (step === "refuse") {
      await readable.cancel(phase.error).catch(() => {});
      throw phase.error;
    }
    let byob: ReadableStreamBYOBReader | undefined;
    try {
      byob = readable.getReader({ mode: "byob" });
    } catch {
      byob = undefined;
    }
    const reader = byob ?? readable.getReader();
    phase.cancel = (reason) => reader.cancel(reason).catch(() => {});
    step = byob !== undefined
      ? await readExactly(byob, phase)
      : await readChunks(reader as ReadableStreamDefaultReader<Uint8Array>, phase);
    if (step === "pause") step = await phase.settled!;
    if (step !== "open") {
      await reader.cancel(phase.error).catch(() => {});
      throw phase.error;
    }
    const { header, rest, ended } = phase;
    if (byob !== undefined && rest.length === 0 && !ended) {
      byob.releaseLock();
      return { header, readable };
    }
    return { header, readable: continueWith(rest, ended ? undefined : reader) };
  } finally {
    phase.options.deadlines.stop();
  }
}

/** Feeds chunks to the phase until it decides. */
async function readChunks(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  phase: AcceptPhase,
): Promise<AcceptStep> {
  for (;;) {
    let step: AcceptStep;
    try {
      const { value, done } = await reader.read();
      step = done ? phase.end() : phase.data(value);
    } catch (error) {
      return phase.closed(error);
    }
    if (step !== "wait") return step;
    if (phase.done) return "refuse"; // timed out meanwhile
  }
}

/** Feeds the phase, reading no byte past the header. */
async function readExactly(
  reader: ReadableStreamBYOBReader,
  phase: AcceptPhase,
): Promise<AcceptStep> {
  let buffer = new ArrayBuffer(Math.max(phase.options.maxHeaderLength, 108));
  let have = 0;
  for (;;) {
    const want = Math.min(
      bytesNeeded(new Uint8Array(buffer, 0, have)) || 1,
      buffer.byteLength - have,
    );
    let step: AcceptStep;
    try {
      const { value, done } = await reader.read(new Uint8Array(buffer, have, want));
      if (value !== undefined) buffer = value.buffer as ArrayBuffer;
      step = done ? phase.end() : phase.data(value);
      if (!done) have += value.length;
    } catch (error) {
      return phase.closed(error);
    }
    if (step !== "wait") return step;
    if (phase.done) return "refuse"; // timed out meanwhile
  }
}

/**
 * A stream of `first` (when not empty) and then whatever `reader` still gives; cancelling it
 * cancels the reader. Internal: also the Deno adapter's `readable` after bytes read ahead.
 */
export function continueWith(
  first: Uint8Array,
  reader: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader | undefined,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (first.length > 0) controller.enqueue(first);
      if (reader === undefined) controller.close();
    },
    async pull(controller) {
      if (reader === undefined) return;
      const { value, done } = reader instanceof ReadableStreamDefaultReader
        ? await reader.read()
        : await reader.read(new Uint8Array(16384));
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader?.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** A `read(p)`-style reader, such as `Deno.Conn`. */
export interface PullReader {
  /** Reads up to `p.length` bytes into `p`; resolves to how many, or `null` at the end. */
  read(p: Uint8Array): Promise<number | null>;
}

/** What {@linkcode readProxyHeaderFrom} resolves to. */
export interface PullResult {
  /** The header, or `null` where the policy allows none (or ignores it). */
  header: ProxyHeader | null;
  /**
   * Bytes read that belong to the application: empty when a header came (reads never go
   * past it), else what was read while looking for one.
   */
  rest: Uint8Array;
  /** The reader reached its end while the header was read. */
  ended: boolean;
}

/**
 * Reads the PROXY header from a `read(p)`-style reader, asking for no more bytes than the
 * header can still need, so that after a header the reader is positioned exactly at the
 * payload and can be handed on with zero overhead. The caller owns the reader: on timeout
 * this rejects with `TIMEOUT` and the caller should close it (which ends the pending read).
 *
 * @param reader Where to read from, e.g. a `Deno.Conn`.
 * @param options As for {@linkcode readProxyHeader}.
 * @returns The header, and any bytes read that belong to the application.
 * @throws {ProxyProtocolError} When the policy refuses the connection, or on timeout.
 *
 * @example
 * ```ts
 * import { readProxyHeaderFrom } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const bytes = new TextEncoder().encode("PROXY UNKNOWN\r\nhello");
 * let at = 0;
 * const reader = {
 *   read(p: Uint8Array) {
 *     const n = Math.min(p.length, bytes.length - at);
 *     p.set(bytes.subarray(at, at + n));
 *     at += n;
 *     return Promise.resolve(n === 0 ? null : n);
 *   },
 * };
 * const { header, rest } = await readProxyHeaderFrom(reader);
 * assert.equal(header?.command, "LOCAL");
 * assert.equal(rest.length, 0);
 * assert.equal(at, 15); // nothing past the header was read
 * ```
 */
export async function readProxyHeaderFrom(
  reader: PullReader,
  options: ReadProxyHeaderOptions = {},
): Promise<PullResult> {
  const phase = streamPhase(options);
  let timedOut!: (error: unknown) => void;
  const timeout = new Promise<never>((_, reject) => timedOut = reject);
  timeout.catch(() => {});
  phase.cancel = timedOut;
  try {
    let step = phase.start();
    if (step === "open") return { header: null, rest: new Uint8Array(0), ended: false };
    if (step === "refuse") throw phase.error;
    const buffer = new Uint8Array(Math.max(phase.options.maxHeaderLength, 108));
    let have = 0;
    while (step === "wait") {
      if (phase.done) throw phase.error;
      const want = Math.min(bytesNeeded(buffer.subarray(0, have)) || 1, buffer.length - have);
      const n = await Promise.race([reader.read(buffer.subarray(have, have + want)), timeout]);
      step = n === null ? phase.end() : phase.data(buffer.subarray(have, have + n));
      if (n !== null) have += n;
    }
    if (step === "pause") step = await Promise.race([phase.settled!, timeout]);
    if (step !== "open") throw phase.error;
    return { header: phase.header, rest: phase.rest, ended: phase.ended };
  } finally {
    phase.options.deadlines.stop();
  }
}
