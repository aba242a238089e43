/**
 * IPv4 and IPv6 text: strict parsing over bytes, and RFC 5952 formatting.
 * Internal to the codec and the adapters; not exported from `mod.ts`.
 *
 * @module
 */

const DEC: string[] = [];
const DEC_DOT: string[] = [];
/** Hex without leading zeros ("0".."ff"), and with them ("00".."ff"). */
const HEX: string[] = [];
const HEX2: string[] = [];
for (let i = 0; i < 256; i++) {
  DEC.push(String(i));
  DEC_DOT.push(i + ".");
  HEX.push(i.toString(16));
  HEX2.push(i.toString(16).padStart(2, "0"));
}

/** A 16-bit group in lower-case hex without leading zeros. */
function hexGroup(hi: number, lo: number): string {
  return hi === 0 ? HEX[lo]! : HEX[hi]! + HEX2[lo]!;
}

/** Formats the IPv4 address in `bytes[offset..offset+4)` as dotted decimal. */
export function formatIPv4(bytes: Uint8Array, offset: number): string {
  return DEC_DOT[bytes[offset]!]! + DEC_DOT[bytes[offset + 1]!]! +
    DEC_DOT[bytes[offset + 2]!]! + DEC[bytes[offset + 3]!]!;
}

/** Formats an IPv4 address held as an unsigned 32-bit number. */
export function formatIPv4Number(value: number): string {
  return DEC_DOT[value >>> 24]! + DEC_DOT[(value >>> 16) & 0xff]! +
    DEC_DOT[(value >>> 8) & 0xff]! + DEC[value & 0xff]!;
}

/**
 * Formats the IPv6 address in `bytes[offset..offset+16)` in RFC 5952 canonical form:
 * lower-case hex without leading zeros, the longest run of two or more zero groups
 * (the first of equals) shortened to `::`, and IPv4-mapped addresses as `::ffff:a.b.c.d`.
 */
export function formatIPv6(bytes: Uint8Array, offset: number): string {
  let zeros10 = true;
  for (let i = 0; i < 10; i++) {
    if (bytes[offset + i] !== 0) {
      zeros10 = false;
      break;
    }
  }
  if (zeros10 && bytes[offset + 10] === 0xff && bytes[offset + 11] === 0xff) {
    return "::ffff:" + formatIPv4(bytes, offset + 12);
  }
  // Find the longest run of zero groups (length >= 2; the first wins a tie).
  let bestStart = -1, bestLen = 1, runStart = -1;
  for (let g = 0; g < 8; g++) {
    const zero = bytes[offset + 2 * g] === 0 && bytes[offset + 2 * g + 1] === 0;
    if (zero) {
      if (runStart < 0) runStart = g;
      const len = g - runStart + 1;
      if (len > bestLen) {
        bestLen = len;
        bestStart = runStart;
      }
    } else {
      runStart = -1;
    }
  }
  let out = "";
  for (let g = 0; g < 8; g++) {
    if (g === bestStart) {
      out += "::";
      g += bestLen - 1;
      continue;
    }
    if (g > 0 && g !== bestStart + bestLen) out += ":";
    out += hexGroup(bytes[offset + 2 * g]!, bytes[offset + 2 * g + 1]!);
  }
  return out;
}

/** Hex digit value of an ASCII byte, or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x57;
  return -1;
}

/**
 * Parses strict dotted-decimal IPv4 text in `bytes[start..end)`: four numbers 0-255,
 * no leading zeros, nothing else. Returns the address as an unsigned 32-bit number, or
 * -1 when the text is not valid.
 */
export function parseIPv4(
  bytes: Uint8Array,
  start: number,
  end: number,
): number {
  let value = 0, octet = 0, digits = 0, parts = 0;
  for (let i = start; i < end; i++) {
    const c = bytes[i]!;
    if (c === 0x2e) {
      if (digits === 0 || parts === 3) return -1;
      value = value * 256 + octet;
      parts++;
      octet = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits === 1 && octet === 0) return -1; // leading zero
      octet = octet * 10 + (c - 0x30);
      if (octet > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (digits === 0 || parts !== 3) return -1;
  return value * 256 + octet;
}

const groups = new Uint16Array(8);

/**
 * Parses IPv6 text in `bytes[start..end)` into 16 bytes at `out[outOffset..]`: hex groups
 * of 1-4 digits in either case, at most one `::`, exactly 128 bits, an optional trailing
 * dotted IPv4 part, no zone id. Returns false when the text is not valid.
 */
export function parseIPv6(
  bytes: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  outOffset: number,
): boolean {
  let i = start, count = 0, gap = -1;
  if (end - start < 2) return false;
  if (bytes[i] === 0x3a) {
    if (bytes[i + 1] !== 0x3a) return false;
    gap = 0;
    i += 2;
  }
  while (i < end) {
    if (count === 8) return false;
    const groupStart = i;
    let value = 0, digits = 0;
    while (i < end && digits <= 4) {
      const h = hexValue(bytes[i]!);
      if (h < 0) break;
      value = value << 4 | h;
      digits++;
      i++;
    }
    if (i < end && bytes[i] === 0x2e) {
      // Embedded IPv4 in the last 32 bits.
      if (count > 6) return false;
      const v4 = parseIPv4(bytes, groupStart, end);
      if (v4 < 0) return false;
      groups[count++] = v4 >>> 16;
      groups[count++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (digits === 0 || digits > 4) return false;
    groups[count++] = value;
    if (i === end) break;
    if (bytes[i] !== 0x3a) return false;
    i++;
    if (i < end && bytes[i] === 0x3a) {
      if (gap >= 0) return false;
      gap = count;
      i++;
    } else if (i === end) {
      return false; // trailing single colon
    }
  }
  if (gap < 0 ? count !== 8 : count > 7) return false;
  const fill = 8 - count;
  for (let g = 0, src = 0; g < 8; g++) {
    let v = 0;
    if (gap >= 0 && g >= gap && g < gap + fill) v = 0;
    else v = groups[src++]!;
    out[outOffset + 2 * g] = v >>> 8;
    out[outOffset + 2 * g + 1] = v & 0xff;
  }
  return true;
}

/**
 * Whether `bytes[start..end)` can still grow into valid IPv6 text: allowed characters,
 * at most four hex digits a group, at most one `::`, at most 45 characters. Used to fail
 * early on partial v1 lines.
 */
export function isIPv6Prefix(
  bytes: Uint8Array,
  start: number,
  end: number,
): boolean {
  if (end - start > 45) return false;
  let run = 0, colons = 0, doubles = 0, dots = 0, groupCount = 0;
  for (let i = start; i < end; i++) {
    const c = bytes[i]!;
    if (c === 0x3a) {
      if (dots > 0 || ++colons > 8) return false;
      if (i > start && bytes[i - 1] === 0x3a) {
        if (++doubles > 1) return false; // a second `::`, or `:::`
      }
      run = 0;
    } else if (i === start + 1 && bytes[start] === 0x3a) {
      return false; // a single leading colon
    } else if (c === 0x2e) {
      // The hex run before the first dot was the IPv4 part's first number: it takes the
      // place of two groups.
      if (run === 0 || ++dots > 3) return false;
      if (dots === 1 && ++groupCount > 8 - doubles) return false;
      run = 0;
    } else if (dots > 0) {
      if (c < 0x30 || c > 0x39 || ++run > 3) return false;
    } else {
      if (hexValue(c) < 0 || ++run > 4) return false;
      if (run === 1 && ++groupCount > 8 - doubles) return false;
    }
  }
  return true;
}

/**
 * Parses an IPv4 address string (strict, as {@linkcode parseIPv4}). Returns the address as
 * an unsigned 32-bit number, or -1.
 */
export function parseIPv4String(s: string): number {
  const n = s.length;
  return n < 7 || n > 15 ? -1 : parseIPv4Chars(s, 0, n);
}

/**
 * {@linkcode parseIPv4} over `s[start..end)`, read straight from the string (no copy): the
 * encoder parses two addresses a header.
 */
function parseIPv4Chars(s: string, start: number, end: number): number {
  let value = 0, octet = 0, digits = 0, parts = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || parts === 3) return -1;
      value = value * 256 + octet;
      parts++;
      octet = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits === 1 && octet === 0) return -1; // leading zero
      octet = octet * 10 + (c - 0x30);
      if (octet > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (digits === 0 || parts !== 3) return -1;
  return value * 256 + octet;
}

/** Scratch space for parsing strings without allocating. */
const text = new Uint8Array(64);

/** Copies an ASCII string of at most 64 characters into the scratch space; -1 if it cannot. */
function toScratch(s: string): number {
  const n = s.length;
  if (n > text.length) return -1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return -1;
    text[i] = c;
  }
  return n;
}

/** Parses an IPv6 address string into `out[outOffset..+16)`; false when not valid. */
export function parseIPv6String(
  s: string,
  out: Uint8Array,
  outOffset: number,
): boolean {
  const n = toScratch(s);
  return n >= 0 && parseIPv6(text, 0, n, out, outOffset);
}
