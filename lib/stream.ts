/**
 * Reading the header off a stream, runtime-neutral: `readProxyHeader` for a
 * `ReadableStream`, `readProxyHeaderFrom` for `read(p)`-style readers such as `Deno.Conn`.
 *
 * @module
 */

import { bytesNeeded } from "./header_reader.ts";
import {
  HeaderSession,
  type PeerInfo,
  policyFor,
  type ProxyPolicy,
  type ProxyProtocolOptions,
  type ResolvedOptions,
  resolveOptions,
  type SessionResult,
  timeoutError,
  untrustedError,
  validateHeader,
} from "./connection.ts";
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

const NO_PEER: PeerInfo = { remoteAddress: "", remotePort: 0, localAddress: "", localPort: 0 };

function sessionPolicy(
  resolved: ResolvedOptions,
  peer: PeerInfo | undefined,
): ProxyPolicy | "deny" {
  if (peer === undefined) {
    if (resolved.trust !== undefined || typeof resolved.policy === "function") {
      throw new TypeError("trust and policy functions need options.peer");
    }
    return resolved.policy as ProxyPolicy;
  }
  return policyFor(resolved, peer);
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
  const resolved = resolveOptions(options);
  const peer = options.peer;
  const policy = sessionPolicy(resolved, peer);
  if (policy === "deny") {
    await readable.cancel().catch(() => {});
    throw untrustedError(peer);
  }
  if (policy === "skip") return { header: null, readable };

  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = readable.getReader({ mode: "byob" });
  } catch {
    byob = undefined;
  }
  const session = new HeaderSession(policy, resolved);
  let timedOut = false;
  const reader = byob ?? readable.getReader();
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel(timeoutError(resolved.timeout)).catch(() => {});
  }, resolved.timeout);
  try {
    const outcome = byob !== undefined
      ? await readExactly(byob, session, resolved.maxHeaderLength)
      : await readChunks(reader as ReadableStreamDefaultReader<Uint8Array>, session);
    if (timedOut) throw timeoutError(resolved.timeout);
    await validateHeader(resolved, outcome.header, peer ?? NO_PEER);
    if (byob !== undefined && outcome.rest.length === 0 && !outcome.ended) {
      byob.releaseLock();
      return { header: outcome.header, readable };
    }
    return {
      header: outcome.header,
      readable: continueWith(outcome.rest, outcome.ended ? undefined : reader),
    };
  } catch (error) {
    const e = timedOut ? timeoutError(resolved.timeout) : error;
    await reader.cancel(e).catch(() => {});
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

interface Outcome extends SessionResult {
  /** The source ended while the header was read. */
  ended: boolean;
}

async function readChunks(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  session: HeaderSession,
): Promise<Outcome> {
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { ...session.end(), ended: true };
    const result = session.push(value);
    if (result !== null) return { ...result, ended: false };
  }
}

async function readExactly(
  reader: ReadableStreamBYOBReader,
  session: HeaderSession,
  max: number,
): Promise<Outcome> {
  let buffer = new ArrayBuffer(Math.max(max, 108));
  let have = 0;
  for (;;) {
    const want = Math.min(
      bytesNeeded(new Uint8Array(buffer, 0, have)) || 1,
      buffer.byteLength - have,
    );
    const { value, done } = await reader.read(new Uint8Array(buffer, have, want));
    if (value !== undefined) buffer = value.buffer as ArrayBuffer;
    if (done) return { ...session.end(), ended: true };
    const result = session.push(value);
    have += value.length;
    if (result !== null) return { ...result, ended: false };
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
export function readProxyHeaderFrom(
  reader: PullReader,
  options: ReadProxyHeaderOptions = {},
): Promise<PullResult> {
  let resolved: ResolvedOptions, policy: ProxyPolicy | "deny";
  try {
    resolved = resolveOptions(options);
    policy = sessionPolicy(resolved, options.peer);
  } catch (error) {
    return Promise.reject(error);
  }
  if (policy === "deny") return Promise.reject(untrustedError(options.peer));
  return pullHeader(reader, resolved, policy, options.peer ?? NO_PEER);
}

/**
 * {@linkcode readProxyHeaderFrom} with options already resolved and the policy chosen, for
 * the adapters. Internal.
 */
export async function pullHeader(
  reader: PullReader,
  resolved: ResolvedOptions,
  policy: ProxyPolicy,
  peer: PeerInfo,
): Promise<PullResult> {
  if (policy === "skip") return { header: null, rest: new Uint8Array(0), ended: false };
  const session = new HeaderSession(policy, resolved);
  const buffer = new Uint8Array(Math.max(resolved.maxHeaderLength, 108));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timeoutError(resolved.timeout)), resolved.timeout);
  });
  try {
    let have = 0;
    let outcome: PullResult;
    for (;;) {
      const want = Math.min(bytesNeeded(buffer.subarray(0, have)) || 1, buffer.length - have);
      const n = await Promise.race([reader.read(buffer.subarray(have, have + want)), timeout]);
      if (n === null) {
        outcome = { ...session.end(), ended: true };
        break;
      }
      const result = session.push(buffer.subarray(have, have + n));
      have += n;
      if (result !== null) {
        outcome = { ...result, ended: false };
        break;
      }
    }
    await Promise.race([validateHeader(resolved, outcome.header, peer), timeout]);
    return outcome;
  } finally {
    clearTimeout(timer);
  }
}
