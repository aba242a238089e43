/**
 * Small byte helpers (JSR's `@std/bytes` is not a dependency here).
 *
 * @module
 */

/**
 * Joins byte arrays into one new array.
 *
 * @param parts The arrays, in order.
 * @returns A new array holding all of them.
 *
 * @example
 * ```ts
 * import { concatBytes } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]), new Uint8Array([1, 2, 3]));
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Parses hex text into bytes; spaces, newlines and colons between digits are ignored.
 *
 * @param text Hex digits, in pairs.
 * @returns The bytes.
 * @throws {SyntaxError} When the text holds other characters or an odd number of digits.
 *
 * @example
 * ```ts
 * import { fromHex } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(fromHex("0d0a 0D0A"), new Uint8Array([13, 10, 13, 10]));
 * ```
 */
export function fromHex(text: string): Uint8Array {
  const digits = text.replace(/[\s:]/g, "");
  if (digits.length % 2 !== 0 || /[^0-9a-fA-F]/.test(digits)) {
    throw new SyntaxError("fromHex: expected pairs of hex digits");
  }
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/**
 * Formats bytes as lower-case hex without separators.
 *
 * @param bytes The bytes.
 * @returns Two hex digits a byte.
 *
 * @example
 * ```ts
 * import { toHex } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * assert.equal(toHex(new Uint8Array([0xe8, 0xd6, 0x89, 0x2d])), "e8d6892d");
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += bytes[i]!.toString(16).padStart(2, "0");
  return out;
}

/** Decodes bytes one character a byte (Latin-1; ASCII stays ASCII). Internal. */
export function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 4096) as unknown as number[]);
  }
  return out;
}
