/**
 * The v1 (text) decoder, spec §2.1. Internal: use `decodeHeader`.
 *
 * @module
 */

import { ProxyProtocolError, type ProxyProtocolErrorCode } from "./error.ts";
import { V1_MAX_LENGTH } from "./constants.ts";
import { formatIPv4, formatIPv6, isIPv6Prefix, parseIPv6 } from "./ip.ts";
import type { DecodeResult } from "./types.ts";

const SP = 0x20, CR = 0x0d, LF = 0x0a, DOT = 0x2e, ZERO = 0x30, NINE = 0x39;
const PREFIX = [0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]; // "PROXY "
const TCP = [0x54, 0x43, 0x50]; // "TCP"
const UNKNOWN = [0x55, 0x4e, 0x4b, 0x4e, 0x4f, 0x57, 0x4e]; // "UNKNOWN"

/** The port the last port scan completed. */
let field = 0;
/** Scanned addresses, as bytes: two IPv4 at 0 and 4, or two IPv6 at 0 and 16. */
const scratch = new Uint8Array(32);

function fail(code: ProxyProtocolErrorCode, what: string, offset: number): never {
  throw new ProxyProtocolError(code, `${what} at byte ${offset}`, { offset });
}

/**
 * The line ran out at `end` without being complete: more bytes may finish it, unless
 * the 107 bytes a v1 line may take are used up.
 */
function more(n: number, limit: number): null {
  if (n >= limit) {
    if (limit < V1_MAX_LENGTH) {
      fail("HEADER_TOO_LONG", `PROXY v1 line longer than the ${limit} bytes allowed`, limit);
    }
    fail("V1_TOO_LONG", "PROXY v1 line has no CRLF within 107 bytes", limit);
  }
  return null;
}

/**
 * Scans strict dotted-decimal IPv4 text from `i` up to the space that ends it. Returns
 * that space's index and leaves the address in `scratch[out..out+4)`, or returns -1 when
 * `end` comes first; throws as soon as a byte rules the text out.
 */
function scanIPv4(b: Uint8Array, i: number, end: number, out: number): number {
  let octet = 0, digits = 0, parts = 0;
  const start = i;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c >= ZERO && c <= NINE) {
      if (digits === 1 && octet === 0) {
        fail("INVALID_ADDRESS", "IPv4 number with a leading zero", i);
      }
      octet = octet * 10 + (c - ZERO);
      if (octet > 255) fail("INVALID_ADDRESS", "IPv4 number above 255", i);
      digits++;
    } else if (c === DOT) {
      if (digits === 0 || parts === 3) fail("INVALID_ADDRESS", "misplaced dot in IPv4 address", i);
      scratch[out + parts] = octet;
      parts++;
      octet = 0;
      digits = 0;
    } else if (c === SP && i > start) {
      if (digits === 0 || parts !== 3) {
        fail("INVALID_ADDRESS", "IPv4 address needs four numbers", i);
      }
      scratch[out + 3] = octet;
      return i;
    } else {
      fail(c === SP ? "V1_MALFORMED" : "INVALID_ADDRESS", "unexpected byte in IPv4 address", i);
    }
  }
  return -1;
}

/** As {@linkcode scanIPv4} for IPv6 text; the 16 bytes go to `scratch[out..]`. */
function scanIPv6(b: Uint8Array, i: number, end: number, out: number): number {
  const start = i;
  for (; i < end; i++) {
    if (b[i] === SP) {
      if (i === start) fail("V1_MALFORMED", "empty address field", i);
      if (!parseIPv6(b, start, i, scratch, out)) {
        fail("INVALID_ADDRESS", "invalid IPv6 address", start);
      }
      return i;
    }
  }
  if (!isIPv6Prefix(b, start, end)) fail("INVALID_ADDRESS", "invalid IPv6 address", start);
  return -1;
}

/** Scans a port up to `term` (space or CR) into `field`; as {@linkcode scanIPv4} otherwise. */
function scanPort(b: Uint8Array, i: number, end: number, term: number): number {
  let value = 0, digits = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c === term && digits > 0) {
      field = value;
      return i;
    }
    if (c < ZERO || c > NINE) {
      if (digits === 0) fail("V1_MALFORMED", "empty or misplaced port field", i);
      if (c === LF || c === CR) fail("V1_MALFORMED", "line must end with CRLF", i);
      fail("INVALID_PORT", "unexpected byte in port", i);
    }
    if (digits === 1 && value === 0) fail("INVALID_PORT", "port with a leading zero", i);
    value = value * 10 + (c - ZERO);
    if (value > 65535) fail("INVALID_PORT", "port above 65535", i);
    digits++;
  }
  return -1;
}

/**
 * Decodes a v1 line at the start of `b` (whose first byte is `P`), reading at most
 * `limit` bytes (107, or less where the caller caps the header's size).
 */
export function decodeV1(b: Uint8Array, limit: number): DecodeResult | null {
  const n = b.length;
  const end = n < limit ? n : limit;
  let family: number;
  if (
    end > 10 && b[1] === 0x52 && b[2] === 0x4f && b[3] === 0x58 && b[4] === 0x59 &&
    b[5] === SP && b[6] === 0x54 && b[7] === 0x43 && b[8] === 0x50 &&
    ((family = b[9]!) === 0x34 || family === 0x36) && b[10] === SP
  ) {
    // The common case, "PROXY TCP4 " or "PROXY TCP6 ", checked at once.
  } else {
    const unknown = decodePrefix(b, n, end, limit);
    if (unknown !== undefined) return unknown;
    family = b[9]!;
  }
  let i: number, source: string, destination: string;
  if (family === 0x34) {
    i = scanIPv4(b, 11, end, 0);
    if (i < 0) return more(n, limit);
    i = scanIPv4(b, i + 1, end, 4);
    if (i < 0) return more(n, limit);
    source = formatIPv4(scratch, 0);
    destination = formatIPv4(scratch, 4);
  } else {
    i = scanIPv6(b, 11, end, 0);
    if (i < 0) return more(n, limit);
    i = scanIPv6(b, i + 1, end, 16);
    if (i < 0) return more(n, limit);
    source = formatIPv6(scratch, 0);
    destination = formatIPv6(scratch, 16);
  }
  i = scanPort(b, i + 1, end, SP);
  if (i < 0) return more(n, limit);
  const sourcePort = field;
  i = scanPort(b, i + 1, end, CR);
  if (i < 0) return more(n, limit);
  if (i + 1 >= end) return more(n, limit);
  if (b[i + 1] !== LF) fail("V1_MALFORMED", "line must end with CRLF", i + 1);
  return {
    header: {
      version: 1,
      command: "PROXY",
      protocol: family === 0x34 ? "TCP4" : "TCP6",
      source: { address: source, port: sourcePort },
      destination: { address: destination, port: field },
      tlvs: [],
    },
    length: i + 2,
  };
}

/**
 * Checks "PROXY " and the family keyword byte by byte, for short input and for errors.
 * Returns the decoded `UNKNOWN` line or `null` (more bytes needed), or `undefined` when
 * the line goes on as TCP4 or TCP6.
 */
function decodePrefix(
  b: Uint8Array,
  n: number,
  end: number,
  limit: number,
): DecodeResult | null | undefined {
  for (let i = 0; i < 6; i++) {
    if (i >= end) return more(n, limit);
    if (b[i] !== PREFIX[i]) {
      fail(i < 5 ? "NOT_PROXY_PROTOCOL" : "V1_MALFORMED", "not a PROXY v1 line", i);
    }
  }
  if (end <= 6) return more(n, limit);
  if (b[6] === 0x55) return decodeUnknown(b, n, end, limit);
  for (let i = 0; i < 3; i++) {
    if (6 + i >= end) return more(n, limit);
    if (b[6 + i] !== TCP[i]) fail("V1_MALFORMED", "family must be TCP4, TCP6 or UNKNOWN", 6 + i);
  }
  if (end <= 9) return more(n, limit);
  const family = b[9];
  if (family !== 0x34 && family !== 0x36) {
    fail("V1_MALFORMED", "family must be TCP4, TCP6 or UNKNOWN", 9);
  }
  if (end <= 10) return more(n, limit);
  if (b[10] !== SP) fail("V1_MALFORMED", "expected a single space after the family", 10);

  return undefined;
}

/** `PROXY UNKNOWN` then CRLF, or a space and anything up to CRLF (spec §2.1). */
function decodeUnknown(
  b: Uint8Array,
  n: number,
  end: number,
  limit: number,
): DecodeResult | null {
  for (let k = 0; k < 7; k++) {
    if (6 + k >= end) return more(n, limit);
    if (b[6 + k] !== UNKNOWN[k]) {
      fail("V1_MALFORMED", "family must be TCP4, TCP6 or UNKNOWN", 6 + k);
    }
  }
  let i = 13;
  if (i >= end) return more(n, limit);
  if (b[i] === SP) {
    for (i++; i < end; i++) {
      const c = b[i];
      if (c === CR) break;
      if (c === LF) fail("V1_MALFORMED", "line must end with CRLF", i);
    }
    if (i >= end) return more(n, limit);
  } else if (b[i] !== CR) {
    fail("V1_MALFORMED", "expected CRLF or a space after UNKNOWN", i);
  }
  if (i + 1 >= end) return more(n, limit);
  if (b[i + 1] !== LF) fail("V1_MALFORMED", "line must end with CRLF", i + 1);
  return {
    header: {
      version: 1,
      command: "LOCAL",
      protocol: "UNKNOWN",
      source: null,
      destination: null,
      tlvs: [],
    },
    length: i + 2,
  };
}
