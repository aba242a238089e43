/**
 * `decodeHeader`: detects and decodes a v1 or v2 header at the start of a byte array.
 *
 * @module
 */

import { ProxyProtocolError } from "./error.ts";
import { V1_MAX_LENGTH, V2_MAX_LENGTH } from "./constants.ts";
import { decodeV1 } from "./decode_v1.ts";
import { decodeV2 } from "./decode_v2.ts";
import type { DecodeOptions, DecodeResult } from "./types.ts";

/**
 * Decodes the PROXY protocol header (v1 or v2) at the start of `bytes`.
 *
 * - Returns `null` while `bytes` is a valid beginning of a header that needs more bytes
 *   (including when `bytes` is empty): call again with more.
 * - Throws {@linkcode ProxyProtocolError} as soon as no further bytes could make the
 *   input valid: `GET / HTTP/1.1` fails at its first byte, not after 16.
 * - Never throws anything else, whatever the bytes.
 *
 * The header's `tlvs` hold views into `bytes`, so keep `bytes` unchanged while you use
 * them. `bytes.subarray(length)` is whatever followed the header.
 *
 * @param bytes The start of the connection's stream.
 * @param options `maxLength` to cap the header's size, `verifyChecksum` (default true).
 * @returns The header and its length in bytes, or `null` when more bytes are needed.
 * @throws {ProxyProtocolError} When the bytes are not a valid header.
 *
 * @example A v1 line
 * ```ts
 * import { decodeHeader } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const bytes = new TextEncoder().encode(
 *   "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n",
 * );
 * const result = decodeHeader(bytes);
 * assert.ok(result);
 * assert.deepEqual(result.header.source, { address: "192.168.0.1", port: 56324 });
 * assert.deepEqual(result.header.destination, { address: "192.168.0.11", port: 443 });
 * assert.equal(new TextDecoder().decode(bytes.subarray(result.length)), "GET / HTTP/1.1\r\n");
 * ```
 *
 * @example Partial input
 * ```ts
 * import { decodeHeader } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * assert.equal(decodeHeader(new TextEncoder().encode("PROXY TCP4 10.0.")), null);
 * ```
 */
export function decodeHeader(
  bytes: Uint8Array,
  options?: DecodeOptions,
): DecodeResult | null {
  if (bytes.length === 0) return null;
  const maxLength = options?.maxLength ?? V2_MAX_LENGTH;
  const first = bytes[0];
  if (first === 0x0d) {
    return decodeV2(bytes, maxLength, options?.verifyChecksum ?? true);
  }
  if (first === 0x50) {
    return decodeV1(bytes, maxLength < V1_MAX_LENGTH ? maxLength : V1_MAX_LENGTH);
  }
  throw new ProxyProtocolError(
    "NOT_PROXY_PROTOCOL",
    "not a PROXY protocol header at byte 0",
    { offset: 0 },
  );
}
