/**
 * CRC32c (Castagnoli), the checksum of the PROXY protocol's `PP2_TYPE_CRC32C` TLV.
 *
 * @module
 */

const POLY = 0x82f63b78; // reflected Castagnoli polynomial

/**
 * Slicing-by-8 tables: 8 x 256 entries, built once on first use. Int32Array, and no `>>> 0`
 * inside the loops, so every engine keeps the running value in int32 registers (JSC falls
 * off its fast path for uint32 values above 2^31).
 */
let tables: Int32Array | undefined;

function buildTables(): Int32Array {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
}

/**
 * Advances a running CRC state (already inverted) over `bytes[start..end)`.
 * Internal: the decoder uses it to checksum a header around its zeroed field
 * without copying it. The state is an int32; `~state >>> 0` is the checksum.
 */
export function crc32cUpdate(
  state: number,
  bytes: Uint8Array,
  start: number,
  end: number,
): number {
  const t = tables ??= buildTables();
  let c = state | 0;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const lo = c ^ (bytes[i]! | bytes[i + 1]! << 8 | bytes[i + 2]! << 16 | bytes[i + 3]! << 24);
    c = t[1792 + (lo & 0xff)]! ^ t[1536 + ((lo >>> 8) & 0xff)]! ^
      t[1280 + ((lo >>> 16) & 0xff)]! ^ t[1024 + (lo >>> 24)]! ^
      t[768 + bytes[i + 4]!]! ^ t[512 + bytes[i + 5]!]! ^
      t[256 + bytes[i + 6]!]! ^ t[bytes[i + 7]!]!;
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

/** Advances a running CRC state over `count` zero bytes. Internal. */
export function crc32cZeros(state: number, count: number): number {
  const t = tables ??= buildTables();
  let c = state | 0;
  for (let i = 0; i < count; i++) c = t[c & 0xff]! ^ (c >>> 8);
  return c;
}

/**
 * Computes the CRC32c (Castagnoli) of `bytes`, as an unsigned 32-bit number.
 * Pass the result of an earlier call as `previous` to checksum data that comes in parts.
 *
 * @param bytes The data to checksum.
 * @param previous The checksum of the data before `bytes`, if it comes in parts.
 * @returns The checksum, from 0 to 2^32 - 1.
 *
 * @example The check value
 * ```ts
 * import { crc32c } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const data = new TextEncoder().encode("123456789");
 * assert.equal(crc32c(data), 0xe3069283);
 * assert.equal(crc32c(data.subarray(4), crc32c(data.subarray(0, 4))), 0xe3069283);
 * ```
 */
export function crc32c(bytes: Uint8Array, previous = 0): number {
  return ~crc32cUpdate(~previous, bytes, 0, bytes.length) >>> 0;
}
