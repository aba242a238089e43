/**
 * The v1 (text) decoder, spec §2.1. Internal: use `decodeHeader`.
 *
 * @module
 */

import { ProxyProtocolError, type ProxyProtocolErrorCode } from "./error.ts";
import { V1_MAX_LENGTH } from "./constants.ts";
import { formatIPv4, formatIPv6, isIPv6Prefix, parseIPv6 } from "./ip.ts";
import type { DecodeResult } from "./types.ts";

const SP = 0x20, CR = 0x0d, LF = 0x0a, DOT = 0x2e, COLON = 0x3a, ZERO = 0x30, NINE = 0x39;
const PREFIX = [0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]; // "PROXY "
const TCP = [0x54, 0x43, 0x50]; // "TCP"
const UNKNOWN = [0x55, 0x4e, 0x4b, 0x4e, 0x4f, 0x57, 0x4e]; // "UNKNOWN"

/** The fewest bytes of any line: `PROXY UNKNOWN\r\n`. */
const SHORTEST = 15;
/** The fewest bytes of a TCP4 line: `PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n`. */
const SHORTEST_TCP4 = 32;
/** The fewest bytes of a TCP6 line: `PROXY TCP6 :: :: 0 0\r\n`. */
const SHORTEST_TCP6 = 22;
/** The fewest bytes after a TCP4 source address: ` 0.0.0.0 0 0\r\n`. */
const AFTER_SOURCE_IPV4 = 14;
/** The fewest bytes after a TCP6 source address: ` :: 0 0\r\n`. */
const AFTER_SOURCE_IPV6 = 9;
/** The fewest bytes after the destination address: ` 0 0\r\n`. */
const AFTER_DESTINATION = 6;
/** The fewest bytes after the source port: ` 0\r\n`. */
const AFTER_SOURCE_PORT = 4;

/** The port the last port scan completed. */
let field = 0;
/**
 * The fewest bytes the field being scanned still needs to be complete, set by a scan that
 * runs out of input (returns -1).
 */
let short = 0;
/**
 * Where the byte that ruled the line out was found, set by {@linkcode fail}: the bytes
 * before it were still a valid beginning (see {@linkcode decodeV1}).
 */
let detected = 0;
/** Scanned addresses, as bytes: two IPv4 at 0 and 4, or two IPv6 at 0 and 16. */
const scratch = new Uint8Array(32);

/**
 * Throws the error for a problem reported at `offset` and found on reading byte `at`
 * (the same byte, except for an address judged as a whole).
 */
function fail(code: ProxyProtocolErrorCode, what: string, offset: number, at = offset): never {
  detected = at;
  throw new ProxyProtocolError(code, `${what} at byte ${offset}`, { offset });
}

/**
 * The line ran out at `end` without being complete, and any valid ending still needs at
 * least `need` more bytes: more bytes may finish it, unless that takes it past `limit`
 * (107 bytes, or the caller's smaller cap), in which case no continuation can be valid.
 */
function more(end: number, need: number, limit: number): null {
  if (end + need > limit) {
    if (limit < V1_MAX_LENGTH) {
      fail("HEADER_TOO_LONG", `PROXY v1 line cannot end within the ${limit} bytes allowed`, limit);
    }
    fail("V1_TOO_LONG", "PROXY v1 line cannot end with CRLF within 107 bytes", limit);
  }
  return null;
}

/** Whether `error` is the "line cannot end within the limit" error of {@linkcode more}. */
function isTooLong(error: unknown): boolean {
  return error instanceof ProxyProtocolError &&
    (error.code === "V1_TOO_LONG" || error.code === "HEADER_TOO_LONG");
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
  // The current number (unless it has a digit), then ".0" for each number still missing.
  short = (digits === 0 ? 1 : 0) + 2 * (3 - parts);
  return -1;
}

/** As {@linkcode scanIPv4} for IPv6 text; the 16 bytes go to `scratch[out..]`. */
function scanIPv6(b: Uint8Array, i: number, end: number, out: number): number {
  const start = i;
  for (; i < end; i++) {
    if (b[i] === SP) {
      if (i === start) fail("V1_MALFORMED", "empty address field", i);
      if (!parseIPv6(b, start, i, scratch, out)) {
        fail("INVALID_ADDRESS", "invalid IPv6 address", start, i);
      }
      return i;
    }
  }
  if (!isIPv6Prefix(b, start, end)) {
    // Find the byte that ended the prefix (isIPv6Prefix holds for every shorter text).
    let good = start, bad = end;
    while (bad - good > 1) {
      const mid = (good + bad) >>> 1;
      if (isIPv6Prefix(b, start, mid)) good = mid;
      else bad = mid;
    }
    fail("INVALID_ADDRESS", "invalid IPv6 address", start, good);
  }
  short = ipv6Short(b, start, end);
  return -1;
}

/**
 * The fewest bytes that complete the IPv6 text `b[start..end)`, which
 * {@linkcode isIPv6Prefix} accepts: exact for text that can be completed, and never
 * smaller, for one byte more, by more than one (so that "cannot end within the limit"
 * stays true once true).
 */
function ipv6Short(b: Uint8Array, start: number, end: number): number {
  if (end === start) return 2; // "::"
  let groups = 0, run = 0, dots = 0, gap = false;
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c === COLON) {
      if (i > start && b[i - 1] === COLON) gap = true;
      run = 0;
    } else if (c === DOT) {
      dots++;
      run = 0;
    } else {
      if (run === 0 && dots === 0) groups++;
      run++;
    }
  }
  // In the dotted IPv4 tail: the current number (unless it has a digit), then ".0"s.
  if (dots > 0) return 2 * (3 - dots) + (run === 0 ? 1 : 0);
  // After `::` nothing more is needed; after a single colon, a digit or a second colon.
  if (b[end - 1] === COLON) return end - start > 1 && b[end - 2] === COLON ? 0 : 1;
  // In a group: done with a `::` before or eight groups, else "::" ends it.
  return gap || groups === 8 ? 0 : 2;
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
  short = digits === 0 ? 1 : 0;
  return -1;
}

/**
 * Decodes a v1 line at the start of `b` (whose first byte is `P`), reading at most
 * `limit` bytes (107, or less where the caller caps the header's size).
 *
 * Throws as soon as no continuation can be valid: on a byte that breaks the grammar, and
 * on a valid beginning that cannot end within `limit` (the fewest bytes any valid ending
 * still needs would take it past). Whichever comes first in the input wins, so that the
 * answer, once an error, stays the same error however many bytes follow.
 */
export function decodeV1(b: Uint8Array, limit: number): DecodeResult | null {
  try {
    return scan(b, limit);
  } catch (error) {
    // A byte that breaks the line is the answer only if the bytes before it could still
    // end within the limit; otherwise the earlier "too long" is.
    const at = detected;
    if (!isTooLong(error) && at > 0) decodeV1(b.subarray(0, at), limit);
    throw error;
  }
}

/** {@linkcode decodeV1} without the check that an error is the earliest one. */
function scan(b: Uint8Array, limit: number): DecodeResult | null {
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
    const unknown = decodePrefix(b, end, limit);
    if (unknown !== undefined) return unknown;
    family = b[9]!;
  }
  let i: number, source: string, destination: string;
  if (family === 0x34) {
    i = scanIPv4(b, 11, end, 0);
    if (i < 0) return more(end, short + AFTER_SOURCE_IPV4, limit);
    i = scanIPv4(b, i + 1, end, 4);
    if (i < 0) return more(end, short + AFTER_DESTINATION, limit);
    source = formatIPv4(scratch, 0);
    destination = formatIPv4(scratch, 4);
  } else {
    i = scanIPv6(b, 11, end, 0);
    if (i < 0) return more(end, short + AFTER_SOURCE_IPV6, limit);
    i = scanIPv6(b, i + 1, end, 16);
    if (i < 0) return more(end, short + AFTER_DESTINATION, limit);
    source = formatIPv6(scratch, 0);
    destination = formatIPv6(scratch, 16);
  }
  i = scanPort(b, i + 1, end, SP);
  if (i < 0) return more(end, short + AFTER_SOURCE_PORT, limit);
  const sourcePort = field;
  i = scanPort(b, i + 1, end, CR);
  if (i < 0) return more(end, short + 2, limit);
  if (i + 1 >= end) return more(end, 1, limit);
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
  end: number,
  limit: number,
): DecodeResult | null | undefined {
  for (let i = 0; i < 6; i++) {
    if (i >= end) return more(end, SHORTEST - end, limit);
    if (b[i] !== PREFIX[i]) {
      fail(i < 5 ? "NOT_PROXY_PROTOCOL" : "V1_MALFORMED", "not a PROXY v1 line", i);
    }
  }
  if (end <= 6) return more(end, SHORTEST - end, limit);
  if (b[6] === 0x55) return decodeUnknown(b, end, limit);
  for (let i = 0; i < 3; i++) {
    if (6 + i >= end) return more(end, SHORTEST_TCP6 - end, limit);
    if (b[6 + i] !== TCP[i]) fail("V1_MALFORMED", "family must be TCP4, TCP6 or UNKNOWN", 6 + i);
  }
  if (end <= 9) return more(end, SHORTEST_TCP6 - end, limit);
  const family = b[9];
  if (family !== 0x34 && family !== 0x36) {
    fail("V1_MALFORMED", "family must be TCP4, TCP6 or UNKNOWN", 9);
  }
  if (end <= 10) return more(end, (family === 0x34 ? SHORTEST_TCP4 : SHORTEST_TCP6) - end, limit);
  if (b[10] !== SP) fail("V1_MALFORMED", "expected a single space after the family", 10);

  return undefined;
}

/** `PROXY UNKNOWN` then CRLF, or a space and anything up to CRLF (spec §2.1). */
function decodeUnknown(
  b: Uint8Array,
  end: number,
  limit: number,
): DecodeResult | null {
  for (let k = 0; k < 7; k++) {
    if (6 + k >= end) return more(end, SHORTEST - end, limit);
    if (b[6 + k] !== UNKNOWN[k]) {
      fail("V1_MALFORMED", "family must be TCP4, TCP6 or UNKNOWN", 6 + k);
    }
  }
  let i = 13;
  if (i >= end) return more(end, 2, limit);
  if (b[i] === SP) {
    // The spec: for UNKNOWN "the receiver must ignore anything presented before the CRLF",
    // a lone CR included.
    for (i++; i < end; i++) {
      const c = b[i];
      if (c === CR && (i + 1 >= end || b[i + 1] === LF)) break;
      if (c === LF) fail("V1_MALFORMED", "line must end with CRLF", i);
    }
    if (i >= end) return more(end, 2, limit);
  } else if (b[i] !== CR) {
    fail("V1_MALFORMED", "expected CRLF or a space after UNKNOWN", i);
  }
  if (i + 1 >= end) return more(end, 1, limit);
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
