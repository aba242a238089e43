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
  if (n < length) return null;
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
 */
function parseTlvs(b: Uint8Array, start: number, end: number, strict: boolean): Tlv[] | null {
  const tlvs: Tlv[] = [];
  let p = start;
  while (p < end) {
    if (p + 3 > end) {
      if (!strict) return null;
      fail("INVALID_TLV", "stray bytes after the last TLV", p);
    }
    const type = b[p]!;
    const valueEnd = p + 3 + (b[p + 1]! << 8 | b[p + 2]!);
    if (valueEnd > end) {
      if (!strict) return null;
      fail("INVALID_TLV", `TLV 0x${type.toString(16)} overruns the header`, p);
    }
    const problem = checkTlv(b, type, p + 3, valueEnd);
    if (problem !== undefined) {
      if (!strict) return null;
      fail("INVALID_TLV", problem, p);
    }
    tlvs.push({ type, value: b.subarray(p + 3, valueEnd) });
    p = valueEnd;
  }
  return tlvs;
}

/** What is wrong with one TLV's value, if anything. */
function checkTlv(b: Uint8Array, type: number, start: number, end: number): string | undefined {
  const length = end - start;
  if (type === TlvType.CRC32C) {
    if (length !== 4) return "CRC32C TLV must be 4 bytes";
  } else if (type === TlvType.UNIQUE_ID) {
    if (length > UNIQUE_ID_MAX) return "UNIQUE_ID TLV longer than 128 bytes";
  } else if (type === TlvType.SSL) {
    if (length < SSL_FIXED) return "SSL TLV shorter than its 5 fixed bytes";
    let p = start + SSL_FIXED;
    while (p < end) {
      if (p + 3 > end) return "stray bytes after the last SSL sub-TLV";
      p += 3 + (b[p + 1]! << 8 | b[p + 2]!);
      if (p > end) return "SSL sub-TLV overruns the SSL TLV";
    }
  }
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
