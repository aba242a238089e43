/**
 * The v2 (binary) decoder, spec §2.2. Internal: use `decodeHeader`.
 *
 * @module
 */

import { ProxyProtocolError, type ProxyProtocolErrorCode } from "./error.ts";
import { TlvType, V2_SIGNATURE } from "./constants.ts";
import { crc32cUpdate, crc32cZeros } from "./crc32c.ts";
import { formatIPv4, formatIPv6 } from "./ip.ts";
import type { DecodeResult, ProxyAddress, ProxyProtocolFamily, Tlv } from "./types.ts";

/** Address block size by family/transport byte; -1 for bytes the spec does not define. */
const ADDRESS_LENGTH = new Int16Array(256).fill(-1);
/** Protocol name by family/transport byte. */
const FAMILY: ProxyProtocolFamily[] = [];
for (
  const [byte, length, name] of [
    [0x00, 0, "UNKNOWN"],
    [0x11, 12, "TCP4"],
    [0x12, 12, "UDP4"],
    [0x21, 36, "TCP6"],
    [0x22, 36, "UDP6"],
    [0x31, 216, "UNIX_STREAM"],
    [0x32, 216, "UNIX_DGRAM"],
  ] as const
) {
  ADDRESS_LENGTH[byte] = length;
  FAMILY[byte] = name;
}

/** Largest UNIQUE_ID value (spec §2.2.6). */
const UNIQUE_ID_MAX = 128;
/** Fixed part of the SSL TLV: client (1 byte) and verify (4 bytes). */
const SSL_FIXED = 5;

const utf8 = new TextDecoder();

function fail(code: ProxyProtocolErrorCode, what: string, offset: number): never {
  throw new ProxyProtocolError(code, `${what} at byte ${offset}`, { offset });
}

/** Decodes a v2 header at the start of `b` (whose first byte is 0x0D). */
export function decodeV2(
  b: Uint8Array,
  maxLength: number,
  verifyChecksum: boolean,
): DecodeResult | null {
  const n = b.length;
  const sigEnd = n < 12 ? n : 12;
  for (let i = 1; i < sigEnd; i++) {
    if (b[i] !== V2_SIGNATURE[i]) fail("NOT_PROXY_PROTOCOL", "not a PROXY v2 signature", i);
  }
  if (n <= 12) return null;
  const verCmd = b[12]!;
  if (verCmd >> 4 !== 2) fail("UNSUPPORTED_VERSION", "PROXY v2 version must be 2", 12);
  const local = (verCmd & 0x0f) === 0;
  if (!local && (verCmd & 0x0f) !== 1) {
    fail("INVALID_COMMAND", "command must be LOCAL or PROXY", 12);
  }
  if (n <= 13) return null;
  const fam = b[13]!;
  const addressLength = ADDRESS_LENGTH[fam]!;
  if (addressLength < 0) fail("INVALID_FAMILY", "unknown address family or transport", 13);
  if (n < 16) return null;
  const length = 16 + (b[14]! << 8 | b[15]!);
  if (length > maxLength) {
    fail("HEADER_TOO_LONG", `PROXY v2 header of ${length} bytes exceeds ${maxLength}`, 14);
  }
  const end = 16 + addressLength;
  if (length < end && !local) {
    fail("INVALID_LENGTH", "length is shorter than the address block", 14);
  }
  if (n < length) {
    // Malformed TLVs never reject a LOCAL header, so only PROXY ones are walked early.
    if (!local) walkTlvs(b, length, { next: end, sub: 0 });
    return null;
  }
  const protocol = FAMILY[fam]!;

  if (local) {
    // Spec §2.2: the receiver discards the protocol block. TLVs are still reported when
    // they are well formed (HAProxy's checks carry CRC32C), but never reject the header.
    const tlvs = length < end ? [] : parseTlvs(b, end, length, false) ?? [];
    if (verifyChecksum && tlvs.length > 0) verifyCrc(b, length, tlvs);
    return {
      header: { version: 2, command: "LOCAL", protocol, source: null, destination: null, tlvs },
      length,
    };
  }

  let source: ProxyAddress | null = null, destination: ProxyAddress | null = null;
  if (addressLength === 12) {
    source = { address: formatIPv4(b, 16), port: b[24]! << 8 | b[25]! };
    destination = { address: formatIPv4(b, 20), port: b[26]! << 8 | b[27]! };
  } else if (addressLength === 36) {
    source = { address: formatIPv6(b, 16), port: b[48]! << 8 | b[49]! };
    destination = { address: formatIPv6(b, 32), port: b[50]! << 8 | b[51]! };
  } else if (addressLength === 216) {
    source = { path: unixPath(b, 16) };
    destination = { path: unixPath(b, 124) };
  }
  const tlvs = end === length ? [] : parseTlvs(b, end, length, true)!;
  if (verifyChecksum && tlvs.length > 0) verifyCrc(b, length, tlvs);
  return {
    header: { version: 2, command: "PROXY", protocol, source, destination, tlvs },
    length,
  };
}

/** A UNIX path: up to 108 bytes, ending at the first NUL. */
function unixPath(b: Uint8Array, offset: number): string {
  let end = offset;
  const limit = offset + 108;
  while (end < limit && b[end] !== 0) end++;
  return utf8.decode(b.subarray(offset, end));
}

/**
 * Parses the TLVs in `b[start..end)`. They must exactly fill it; CRC32C must be 4 bytes,
 * UNIQUE_ID at most 128, SSL a well-formed client/verify/sub-TLV block. Where `strict`
 * is false a malformed block gives `null` instead of an error.
 *
 * For each TLV the rules are checked in the order in which its bytes decide them (type and
 * length; the 1 or 2 stray bytes its length leaves at the end; the SSL sub-TLVs), the
 * order {@linkcode walkTlvs} checks a partial header in, so both report the same offset.
 */
function parseTlvs(b: Uint8Array, start: number, end: number, strict: boolean): Tlv[] | null {
  const tlvs: Tlv[] = [];
  let p = start;
  if (p < end && end - p < 3) {
    if (!strict) return null;
    fail("INVALID_TLV", "stray bytes after the last TLV", p);
  }
  while (p < end) {
    // Here p + 3 <= end: the first TLV was checked above, the others below.
    const type = b[p]!;
    const valueEnd = p + 3 + (b[p + 1]! << 8 | b[p + 2]!);
    let problem = headerProblem(type, p, valueEnd, end);
    if (problem === undefined) {
      const left = end - valueEnd;
      if (left > 0 && left < 3) {
        if (!strict) return null;
        fail("INVALID_TLV", "stray bytes after the last TLV", valueEnd);
      }
      if (type === TlvType.SSL) problem = sslProblem(b, p + 3 + SSL_FIXED, valueEnd, valueEnd);
    }
    if (problem !== undefined) {
      if (!strict) return null;
      fail("INVALID_TLV", problem, p);
    }
    tlvs.push({ type, value: b.subarray(p + 3, valueEnd) });
    p = valueEnd;
  }
  return tlvs;
}

/**
 * What is wrong with the TLV at `p`, of `type`, whose value ends at `valueEnd`, judged
 * from its type and length alone, in a TLV area that ends at `end`: it overruns the area,
 * or its length breaks its type's rule.
 */
function headerProblem(
  type: number,
  p: number,
  valueEnd: number,
  end: number,
): string | undefined {
  if (valueEnd > end) return `TLV 0x${type.toString(16)} overruns the header`;
  const length = valueEnd - p - 3;
  if (type === TlvType.CRC32C) {
    if (length !== 4) return "CRC32C TLV must be 4 bytes";
  } else if (type === TlvType.UNIQUE_ID) {
    if (length > UNIQUE_ID_MAX) return "UNIQUE_ID TLV longer than 128 bytes";
  } else if (type === TlvType.SSL) {
    if (length < SSL_FIXED) return "SSL TLV shorter than its 5 fixed bytes";
  }
  return undefined;
}

/**
 * What the decoder would refuse in one TLV's value, judged alone: a CRC32C not of 4 bytes,
 * a UNIQUE_ID over 128 bytes, an SSL TLV shorter than its fixed part or whose sub-TLVs do
 * not fill it. The encoder asks, so that it never writes what a strict receiver refuses.
 * Internal.
 */
export function tlvProblem(type: number, value: Uint8Array): string | undefined {
  const end = 3 + value.length;
  const problem = headerProblem(type, 0, end, end);
  if (problem !== undefined || type !== TlvType.SSL) return problem;
  return sslProblem(value, SSL_FIXED, value.length, value.length);
}

/** Where {@linkcode sslProblem} stopped. */
let sslNext = 0;

/**
 * What is wrong with the SSL sub-TLVs from `p` (a sub-TLV boundary) to `end`, the end of
 * the SSL TLV, reading only the sub-TLV headers below `n`. Leaves in `sslNext` the first
 * sub-TLV boundary whose header is not in (`end` when all were read).
 */
function sslProblem(b: Uint8Array, p: number, end: number, n: number): string | undefined {
  while (p < end) {
    if (p + 3 > end) return "stray bytes after the last SSL sub-TLV";
    if (p + 3 > n) {
      // The high byte of the length alone may already overrun.
      if (p + 1 < n && p + 3 + (b[p + 1]! << 8) > end) return "SSL sub-TLV overruns the SSL TLV";
      break;
    }
    p += 3 + (b[p + 1]! << 8 | b[p + 2]!);
    if (p > end) return "SSL sub-TLV overruns the SSL TLV";
  }
  sslNext = p;
  return undefined;
}

/** Verifies the first CRC32C TLV against the header with its value zeroed (spec §2.2.3). */
function verifyCrc(b: Uint8Array, length: number, tlvs: Tlv[]): void {
  for (let i = 0; i < tlvs.length; i++) {
    const tlv = tlvs[i]!;
    if (tlv.type !== TlvType.CRC32C) continue;
    const at = tlv.value.byteOffset - b.byteOffset;
    const v = tlv.value;
    const expected = (v[0]! << 24 | v[1]! << 16 | v[2]! << 8 | v[3]!) >>> 0;
    let c = crc32cUpdate(-1, b, 0, at);
    c = crc32cZeros(c, 4);
    c = crc32cUpdate(c, b, at + 4, length);
    const actual = ~c >>> 0;
    if (actual !== expected) {
      fail(
        "CHECKSUM_MISMATCH",
        `CRC32C ${hex8(expected)} does not match the header's ${hex8(actual)}`,
        at,
      );
    }
    return;
  }
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/**
 * Where a walk over the TLVs of a partial PROXY v2 header stopped, so that the next walk,
 * over more bytes of the same header, resumes there instead of starting over.
 */
export interface TlvWalk {
  /** The first TLV not yet all in, a TLV boundary; 0 before the first walk. */
  next: number;
  /**
   * In the TLV at `next`: 0 while its type and length are unchecked, else (for an SSL TLV)
   * the first sub-TLV boundary not yet checked.
   */
  sub: number;
}

/**
 * Walks the TLVs of a PROXY header of `length` bytes whose first `b.length` bytes (fewer)
 * are in, from where `walk` stopped, and throws `INVALID_TLV` as soon as the bytes in break
 * a rule no later byte can mend: a TLV that overruns the header, a CRC32C TLV not 4 bytes
 * long, a UNIQUE_ID longer than 128, an SSL TLV shorter than 5 bytes or whose sub-TLVs
 * overrun it or leave 1 or 2 stray bytes, or 1 or 2 bytes left after a TLV (too few for
 * another). Same checks, order and offsets as the complete header's {@linkcode parseTlvs}.
 * A TLV whose length is not all in is judged from its type and the high byte of its length
 * where every value of the rest would give the same error: a CRC32C or SSL TLV that the
 * area left cannot hold, a high byte that overruns, a CRC32C or UNIQUE_ID of 256 bytes or
 * more. (A CRC32C TLV that would leave 1 or 2 bytes, or an SSL TLV that could only leave
 * stray bytes after it or in it, fails at an offset that depends on the missing byte, so
 * it waits for that byte.)
 * Each TLV and sub-TLV header is read once over successive walks, so that a header
 * trickled a byte at a time costs linear time.
 */
function walkTlvs(b: Uint8Array, length: number, walk: TlvWalk): void {
  const n = b.length;
  let p = walk.next, sub = walk.sub;
  if (p < length && p + 3 > length) fail("INVALID_TLV", "stray bytes after the last TLV", p);
  while (p + 3 <= n) {
    const type = b[p]!;
    const valueEnd = p + 3 + (b[p + 1]! << 8 | b[p + 2]!);
    if (sub === 0) {
      const problem = headerProblem(type, p, valueEnd, length);
      if (problem !== undefined) fail("INVALID_TLV", problem, p);
      const left = length - valueEnd;
      if (left > 0 && left < 3) fail("INVALID_TLV", "stray bytes after the last TLV", valueEnd);
      sub = p + 3 + SSL_FIXED;
    }
    if (type === TlvType.SSL) {
      const problem = sslProblem(b, sub, valueEnd, n);
      if (problem !== undefined) fail("INVALID_TLV", problem, p);
      sub = sslNext;
    }
    if (valueEnd > n) break;
    p = valueEnd;
    sub = 0;
  }
  if (p < n && sub === 0) {
    // The type, and maybe the high byte of the length, are in: enough for some problems
    // whatever the rest of the length (only those reported at `p` for every rest).
    const type = b[p]!, most = length - p - 3;
    if (type === TlvType.CRC32C && most < 4) fail("INVALID_TLV", "CRC32C TLV must be 4 bytes", p);
    if (type === TlvType.SSL && most < SSL_FIXED) {
      fail("INVALID_TLV", "SSL TLV shorter than its 5 fixed bytes", p);
    }
    if (p + 1 < n) {
      const least = b[p + 1]! << 8;
      if (least > most) fail("INVALID_TLV", `TLV 0x${type.toString(16)} overruns the header`, p);
      if (least > 0 && type === TlvType.CRC32C) {
        fail("INVALID_TLV", "CRC32C TLV must be 4 bytes", p);
      }
      if (least > 0 && type === TlvType.UNIQUE_ID) {
        fail("INVALID_TLV", "UNIQUE_ID TLV longer than 128 bytes", p);
      }
    }
  }
  walk.next = p;
  walk.sub = sub;
}

/**
 * Checks the TLVs that have arrived of a partial v2 header, for a reader that gets the
 * header in pieces: `b` holds its first bytes (at least 16, fewer than the whole header),
 * whose fixed part {@linkcode decodeV2} has already accepted. Resumes where `walk`
 * (start it at `{ next: 0, sub: 0 }`) stopped, and updates it. Does nothing for LOCAL
 * headers, whose malformed TLVs are never an error.
 *
 * @throws {ProxyProtocolError} `INVALID_TLV`, as {@linkcode decodeV2} on the same bytes.
 */
export function checkPartialV2(b: Uint8Array, walk: TlvWalk): void {
  if ((b[12]! & 0x0f) === 0) return;
  if (walk.next === 0) walk.next = 16 + ADDRESS_LENGTH[b[13]!]!;
  walkTlvs(b, 16 + (b[14]! << 8 | b[15]!), walk);
}
