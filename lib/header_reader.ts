/**
 * Incremental header reading shared by the stream helpers and the server adapters:
 * how many bytes a partial header still needs, and a reader fed chunk by chunk that hands
 * the bytes after the header on as a subarray of the chunk they came in.
 *
 * @module
 */

import { decodeHeader } from "./decode.ts";
import { checkPartialV2, type TlvWalk } from "./decode_v2.ts";
import type { DecodeOptions, DecodeResult } from "./types.ts";

const SP = 0x20, CR = 0x0d, LF = 0x0a;
/** The shortest header of all: `PROXY UNKNOWN\r\n`. */
const SHORTEST = 15;

/**
 * The fewest bytes that could still complete the header that `bytes` begins, so that a
 * reader which asks for exactly this many never takes a byte past the header. Returns 0
 * when `bytes` holds a complete header or cannot begin one (decode it to find out which).
 *
 * @param bytes The bytes read so far.
 * @returns How many more bytes to read at most before decoding again.
 *
 * @example
 * ```ts
 * import { bytesNeeded } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * assert.equal(bytesNeeded(new Uint8Array(0)), 15); // `PROXY UNKNOWN\r\n` is 15 bytes
 * assert.equal(bytesNeeded(new TextEncoder().encode("PROXY UNKNOWN\r")), 1);
 * ```
 */
export function bytesNeeded(bytes: Uint8Array): number {
  const n = bytes.length;
  if (n === 0) return SHORTEST;
  const first = bytes[0];
  if (first === 0x0d) {
    if (n < 16) return 16 - n;
    const total = 16 + (bytes[14]! << 8 | bytes[15]!);
    return total > n ? total - n : 0;
  }
  if (first !== 0x50) return 0;
  if (n < SHORTEST) return SHORTEST - n;
  const last = bytes[n - 1];
  if (last === CR) return 1;
  if (n >= 2 && bytes[n - 2] === CR) {
    // CRLF: the line is complete. A lone CR breaks a TCP line (decode says so), but in the
    // ignored rest of `PROXY UNKNOWN ...` it is one more byte: CRLF is still to come.
    return last !== LF && bytes[6] === 0x55 && bytes[13] === SP ? 2 : 0;
  }
  if (bytes[6] !== 0x54) return 2; // UNKNOWN (or not v1): at least CRLF
  // "PROXY TCPx " then src SP dst SP sport SP dport CRLF: count the spaces after byte 10.
  let spaces = 0;
  for (let i = 11; i < n; i++) if (bytes[i] === SP) spaces++;
  if (spaces > 3) return 0;
  return (last === SP ? 1 : 0) + 2 * (3 - spaces) + 2;
}

/** What {@linkcode HeaderReader.push} gives once the header is in. */
export interface HeaderReadResult {
  /** The decoded header and its length. */
  result: DecodeResult;
  /**
   * The bytes after the header in the chunk that completed it: a subarray of that chunk,
   * never a copy (empty when the chunk ended with the header).
   */
  rest: Uint8Array;
}

/**
 * Reads a header from chunks as they arrive. The common case, a header whole in the first
 * chunk, decodes straight from that chunk; a header split across chunks is gathered in a
 * buffer that grows geometrically, so even a 64 KiB header trickled a byte at a time costs
 * linear time.
 *
 * @example
 * ```ts
 * import { HeaderReader } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const reader = new HeaderReader();
 * const bytes = new TextEncoder().encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nhello");
 * assert.equal(reader.push(bytes.subarray(0, 10)), null);
 * const done = reader.push(bytes.subarray(10));
 * assert.equal(done?.result.header.source?.address, "1.2.3.4");
 * assert.equal(new TextDecoder().decode(done?.rest), "hello");
 * assert.equal(done?.rest.buffer, bytes.buffer); // a view, not a copy
 * ```
 */
export class HeaderReader {
  #options: DecodeOptions | undefined;
  #buffer: Uint8Array | undefined;
  #used = 0;
  #first: Uint8Array | undefined;
  /** How far the checks of a partial v2 header's TLVs got, over the pushes since. */
  #walk: TlvWalk = { next: 0, sub: 0 };

  /**
   * Creates a reader.
   *
   * @param options Passed to `decodeHeader` (`maxLength`, `verifyChecksum`).
   */
  constructor(options?: DecodeOptions) {
    this.#options = options;
  }

  /** How many bytes have been pushed and not yet handed back. */
  get buffered(): number {
    return this.#buffer !== undefined ? this.#used : this.#first?.length ?? 0;
  }

  /**
   * Everything pushed so far, for a caller that gives up on a header and hands the bytes
   * on: the first chunk itself when only one came, else a view of the gathered copy.
   *
   * @returns The bytes pushed so far.
   */
  pending(): Uint8Array {
    if (this.#buffer !== undefined) return this.#buffer.subarray(0, this.#used);
    return this.#first ?? new Uint8Array(0);
  }

  /**
   * Adds a chunk.
   *
   * @param chunk The next bytes of the connection.
   * @returns The header and the rest of this chunk once the header is complete, else `null`.
   * @throws {ProxyProtocolError} When the bytes cannot be a valid header.
   */
  push(chunk: Uint8Array): HeaderReadResult | null {
    if (this.#first === undefined && this.#buffer === undefined) {
      const result = decodeHeader(chunk, this.#options);
      if (result !== null) return { result, rest: chunk.subarray(result.length) };
      // Keep a copy: some runtimes reuse the memory behind a chunk once it is handled.
      // (Not `chunk.slice()`: on a Node or Bun Buffer that is a view, not a copy.)
      this.#first = new Uint8Array(chunk);
      return null;
    }
    const before = this.buffered;
    this.#append(chunk);
    const buffered = this.#buffer!.subarray(0, this.#used);
    // A v2 header whose first 16 bytes were checked by an earlier call cannot complete
    // before its length is in: until then only check the TLVs that have arrived, resuming
    // where the last check stopped (decoding the whole buffer each time would cost
    // quadratic time for a large header trickled a byte at a time).
    if (before >= 16 && buffered[0] === 0x0d && bytesNeeded(buffered) > 0) {
      checkPartialV2(buffered, this.#walk);
      return null;
    }
    const result = decodeHeader(buffered, this.#options);
    if (result === null) return null;
    this.#buffer = undefined;
    this.#first = undefined;
    this.#used = 0;
    this.#walk = { next: 0, sub: 0 };
    return { result, rest: chunk.subarray(result.length - before) };
  }

  #append(chunk: Uint8Array): void {
    if (this.#buffer === undefined) {
      const first = this.#first!;
      this.#buffer = new Uint8Array(Math.max(256, 2 * (first.length + chunk.length)));
      this.#buffer.set(first);
      this.#used = first.length;
      this.#first = undefined;
    }
    if (this.#used + chunk.length > this.#buffer.length) {
      const grown = new Uint8Array(Math.max(2 * this.#buffer.length, this.#used + chunk.length));
      grown.set(this.#buffer.subarray(0, this.#used));
      this.#buffer = grown;
    }
    this.#buffer.set(chunk, this.#used);
    this.#used += chunk.length;
  }
}
