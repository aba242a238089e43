/**
 * `encodeHeader`, `encodeHeaderInto` and `encodedLength`: a header is checked and sized
 * first (nothing written), then written once, straight into the output bytes.
 *
 * @module
 */

import { ProxyProtocolError } from "./error.ts";
import { TlvType } from "./constants.ts";
import { tlvProblem } from "./decode_v2.ts";
import { crc32cUpdate } from "./crc32c.ts";
import { formatIPv6, parseIPv4String, parseIPv6String } from "./ip.ts";
import type {
  EncodeOptions,
  ProxyAddress,
  ProxyHeaderInit,
  ProxyProtocolFamily,
  Tlv,
} from "./types.ts";

const UNIX_PATH_MAX = 108;
const utf8 = new TextEncoder();
const NO_TLVS: readonly Tlv[] = [];

/** How the v2 address block is filled. */
const ZEROS = 0, INET4 = 4, INET6 = 6, UNIX = 1;
/** What a v1 line carries. */
const V1_UNKNOWN = 0, V1_TCP4 = 4, V1_TCP6 = 6;

/**
 * A checked, sized header, ready to write. Sizing parses the addresses once; writing
 * reuses what sizing found, so `encodeHeader` does the work once, not twice.
 */
class Plan {
  version = 0;
  /** Total bytes. */
  length = 0;
  srcPort = 0;
  dstPort = 0;
  // v1
  v1 = V1_UNKNOWN;
  srcText = "";
  dstText = "";
  // v2
  commandByte = 0;
  familyByte = 0;
  addressLength = 0;
  mode = ZEROS;
  a = 0;
  b = 0;
  /** IPv6 source at 0, destination at 16. */
  v6: Uint8Array = new Uint8Array(32);
  /** UNIX paths, NUL padded: source at 0, destination at 108. */
  unix: Uint8Array | null = null;
  tlvs: readonly Tlv[] = NO_TLVS;
  /** Add a CRC32C TLV first. */
  addCrc = false;
  /** Fill in the first CRC32C TLV of `tlvs`. */
  fillCrc = false;
}

/** Used by every call but a re-entrant one (a getter on the header that encodes). */
const shared = new Plan();
let busy = false;

function invalid(what: string): never {
  throw new ProxyProtocolError("INVALID_HEADER", what);
}

/**
 * Encodes a PROXY protocol header into new bytes.
 *
 * - v1 writes `TCP4` and `TCP6` lines, and `PROXY UNKNOWN\r\n` for LOCAL or UNKNOWN
 *   headers; any other protocol, or TLVs, cannot be written as v1 and are an error.
 * - v2 writes every family and both commands. A LOCAL header of protocol `UNKNOWN` is
 *   written as the spec asks senders to, UNSPEC with no address block; a LOCAL header of
 *   another protocol keeps its family byte and writes its addresses, or zeros.
 * - IPv6 addresses are written in canonical form; IPv4 text must be strict dotted decimal.
 *
 * To write into a buffer of your own (no allocation), use {@linkcode encodeHeaderInto}.
 *
 * @param header The header; a decoded {@linkcode ProxyHeader} will do.
 * @param options `checksum: true` adds (or fills in) a CRC32C TLV.
 * @returns The header's bytes.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` when the header cannot be
 * written as asked, or would not decode: a bad address or port, a TLV over 65535 bytes, a
 * CRC32C TLV not of 4 bytes, a UNIQUE_ID over 128 bytes, an SSL TLV whose sub-TLVs do not
 * fill it.
 *
 * @example A v2 header with a checksum
 * ```ts
 * import { decodeHeader, encodeHeader } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeHeader({
 *   version: 2,
 *   command: "PROXY",
 *   protocol: "TCP6",
 *   source: { address: "2001:db8::1", port: 51000 },
 *   destination: { address: "2001:db8::2", port: 443 },
 * }, { checksum: true });
 * assert.equal(bytes.length, 16 + 36 + 7);
 * assert.equal(decodeHeader(bytes)?.header.source?.address, "2001:db8::1");
 * ```
 *
 * @example A v1 line
 * ```ts
 * import { encodeHeader } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const line = encodeHeader({
 *   version: 1,
 *   command: "PROXY",
 *   protocol: "TCP4",
 *   source: { address: "192.168.0.1", port: 56324 },
 *   destination: { address: "192.168.0.11", port: 443 },
 * });
 * assert.equal(new TextDecoder().decode(line), "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
 * ```
 */
export function encodeHeader(
  header: ProxyHeaderInit,
  options?: EncodeOptions,
): Uint8Array {
  if (busy) {
    const plan = prepare(new Plan(), header, options);
    const out = new Uint8Array(plan.length);
    write(plan, out, 0);
    return out;
  }
  busy = true;
  try {
    prepare(shared, header, options);
    const out = new Uint8Array(shared.length);
    write(shared, out, 0);
    return out;
  } finally {
    busy = false;
  }
}

/**
 * Encodes a PROXY protocol header into `target`, starting at `offset`, with no allocation:
 * for servers that reuse a send buffer, or put the header in front of the first payload
 * bytes. The bytes written are exactly those {@linkcode encodeHeader} returns.
 *
 * The header is checked and sized before anything is written, so when this throws,
 * `target` is unchanged. Bytes before `offset`, and after the header, are never touched.
 * Size the buffer with {@linkcode encodedLength}, or give it the most a header can take:
 * `V1_MAX_LENGTH` (107) bytes for v1, or 16 + 216 bytes for a v2 header without TLVs.
 *
 * @param header The header; a decoded {@linkcode ProxyHeader} will do.
 * @param target Where to write the header.
 * @param offset Where in `target` the header starts. Default: 0.
 * @param options `checksum: true` adds (or fills in) a CRC32C TLV.
 * @returns The number of bytes written: the header is `target[offset, offset + n)`.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` when the header cannot be
 * written as asked (checked first, as {@linkcode encodeHeader} does).
 * @throws {RangeError} When the header does not fit in `target` from `offset`, or `offset`
 * is not an integer from 0 to `target.length`.
 * @throws {TypeError} When `target` is not a `Uint8Array` (a Node `Buffer` is one).
 *
 * @example Put a header in front of the first payload bytes, in one buffer
 * ```ts
 * import { decodeHeader, encodeHeaderInto } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const buffer = new Uint8Array(1024);
 * const n = encodeHeaderInto({
 *   version: 2,
 *   command: "PROXY",
 *   protocol: "TCP4",
 *   source: { address: "172.31.7.113", port: 51442 },
 *   destination: { address: "172.31.10.31", port: 80 },
 * }, buffer);
 * assert.equal(n, 28);
 * const payload = new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n");
 * buffer.set(payload, n);
 * const first = buffer.subarray(0, n + payload.length);
 * assert.equal(decodeHeader(first)?.length, 28);
 * ```
 *
 * @example At an offset, and a target too small
 * ```ts
 * import { encodeHeaderInto } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const header = {
 *   version: 1,
 *   command: "PROXY",
 *   protocol: "TCP4",
 *   source: { address: "192.168.0.1", port: 56324 },
 *   destination: { address: "192.168.0.11", port: 443 },
 * } as const;
 * const buffer = new Uint8Array(64);
 * const n = encodeHeaderInto(header, buffer, 4);
 * assert.equal(
 *   new TextDecoder().decode(buffer.subarray(4, 4 + n)),
 *   "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
 * );
 * assert.throws(() => encodeHeaderInto(header, buffer, 32), RangeError);
 * ```
 */
export function encodeHeaderInto(
  header: ProxyHeaderInit,
  target: Uint8Array,
  offset = 0,
  options?: EncodeOptions,
): number {
  if (!(target instanceof Uint8Array)) throw new TypeError("target must be a Uint8Array");
  const size = target.length;
  if (!Number.isInteger(offset) || offset < 0 || offset > size) {
    throw new RangeError(`offset ${offset} is outside the target (length ${size})`);
  }
  const plan = busy ? new Plan() : shared;
  const owner = !busy;
  busy = true;
  try {
    const n = prepare(plan, header, options).length;
    if (n > size - offset) {
      throw new RangeError(
        `the header takes ${n} bytes; the target has ${size - offset} from offset ${offset}`,
      );
    }
    write(plan, target, offset);
    return n;
  } finally {
    if (owner) busy = false;
  }
}

/**
 * The number of bytes {@linkcode encodeHeader} would return for `header`, and
 * {@linkcode encodeHeaderInto} would write: for sizing a buffer. It checks the header as
 * they do.
 *
 * @param header The header.
 * @param options As for {@linkcode encodeHeader}; `checksum: true` may add 7 bytes.
 * @returns The header's length in bytes.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` when the header cannot be
 * written as asked.
 *
 * @example Size a buffer for a header and a payload
 * ```ts
 * import { encodedLength, encodeHeaderInto } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const header = {
 *   version: 2,
 *   command: "PROXY",
 *   protocol: "TCP6",
 *   source: { address: "2001:db8::1", port: 51000 },
 *   destination: { address: "2001:db8::2", port: 443 },
 * } as const;
 * const payload = new TextEncoder().encode("hello");
 * const length = encodedLength(header, { checksum: true });
 * assert.equal(length, 16 + 36 + 7);
 * const out = new Uint8Array(length + payload.length);
 * encodeHeaderInto(header, out, 0, { checksum: true });
 * out.set(payload, length);
 * ```
 */
export function encodedLength(header: ProxyHeaderInit, options?: EncodeOptions): number {
  const plan = busy ? new Plan() : shared;
  const owner = !busy;
  busy = true;
  try {
    return prepare(plan, header, options).length;
  } finally {
    if (owner) busy = false;
  }
}

// ---------------------------------------------------------------------------------------
// Checking and sizing: reads the header, throws INVALID_HEADER, writes nothing.

function prepare(plan: Plan, header: ProxyHeaderInit, options: EncodeOptions | undefined): Plan {
  const version = header.version;
  plan.version = version;
  if (version === 2) prepareV2(plan, header, options?.checksum === true);
  else if (version === 1) prepareV1(plan, header);
  else invalid(`unknown version ${String(version)}`);
  return plan;
}

function port(address: ProxyAddress, which: string): number {
  const port = address.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    invalid(`${which} port must be an integer from 0 to 65535`);
  }
  return port;
}

function ipText(address: ProxyAddress | null | undefined, which: string): string {
  if (address == null || typeof address.address !== "string") {
    invalid(`${which} must be an IP address and port`);
  }
  return address.address;
}

function ipv4(text: string, which: string): number {
  const value = parseIPv4String(text);
  if (value < 0) invalid(`${which} address is not dotted-decimal IPv4`);
  return value;
}

function ipv6(text: string, which: string, out: Uint8Array, offset: number): void {
  if (!parseIPv6String(text, out, offset)) invalid(`${which} address is not IPv6`);
}

function digits(n: number): number {
  return n < 10 ? 1 : n < 100 ? 2 : n < 1000 ? 3 : n < 10000 ? 4 : 5;
}

function prepareV1(plan: Plan, header: ProxyHeaderInit): void {
  const tlvs = header.tlvs;
  if (tlvs !== undefined && tlvs.length > 0) invalid("v1 cannot carry TLVs");
  const protocol = header.protocol;
  if (header.command === "LOCAL" || protocol === "UNKNOWN") {
    plan.v1 = V1_UNKNOWN;
    plan.length = 15; // "PROXY UNKNOWN\r\n"
    return;
  }
  if (protocol !== "TCP4" && protocol !== "TCP6") {
    invalid(`v1 carries only TCP4, TCP6 and UNKNOWN, not ${protocol}`);
  }
  const source = header.source, destination = header.destination;
  const a = ipText(source, "source");
  const sp = port(source!, "source");
  const b = ipText(destination, "destination");
  const dp = port(destination!, "destination");
  let srcText: string, dstText: string;
  if (protocol === "TCP4") {
    // Strict dotted decimal is its own canonical form: the text is written as given.
    ipv4(a, "source");
    ipv4(b, "destination");
    srcText = a;
    dstText = b;
    plan.v1 = V1_TCP4;
  } else {
    const v6 = plan.v6;
    ipv6(a, "source", v6, 0);
    ipv6(b, "destination", v6, 16);
    srcText = formatIPv6(v6, 0);
    dstText = formatIPv6(v6, 16);
    plan.v1 = V1_TCP6;
  }
  plan.srcText = srcText;
  plan.dstText = dstText;
  plan.srcPort = sp;
  plan.dstPort = dp;
  // "PROXY TCPx " a " " b " " sp " " dp "\r\n"
  plan.length = 11 + srcText.length + 1 + dstText.length + 1 + digits(sp) + 1 + digits(dp) + 2;
}

function familyOf(protocol: ProxyProtocolFamily): number {
  switch (protocol) {
    case "TCP4":
      return 0x11;
    case "TCP6":
      return 0x21;
    case "UDP4":
      return 0x12;
    case "UDP6":
      return 0x22;
    case "UNIX_STREAM":
      return 0x31;
    case "UNIX_DGRAM":
      return 0x32;
    case "UNKNOWN":
      return 0x00;
    default:
      return invalid(`unknown protocol ${String(protocol)}`);
  }
}

function prepareV2(plan: Plan, header: ProxyHeaderInit, checksum: boolean): void {
  const command = header.command;
  const local = command === "LOCAL";
  if (!local && command !== "PROXY") invalid("command must be PROXY or LOCAL");
  const familyByte = familyOf(header.protocol);
  const high = familyByte >> 4;
  const addressLength = high === 1 ? 12 : high === 2 ? 36 : high === 3 ? 216 : 0;

  let mode = ZEROS;
  if (addressLength !== 0) {
    const source = header.source, destination = header.destination;
    // A LOCAL header's addresses are discarded by the receiver: zeros when none are given.
    if (!(local && source == null && destination == null)) {
      if (addressLength === 12) {
        const a = ipv4(ipText(source, "source"), "source");
        const b = ipv4(ipText(destination, "destination"), "destination");
        plan.a = a;
        plan.b = b;
        mode = INET4;
      } else if (addressLength === 36) {
        ipv6(ipText(source, "source"), "source", plan.v6, 0);
        ipv6(ipText(destination, "destination"), "destination", plan.v6, 16);
        mode = INET6;
      } else {
        const unix = plan.unix ??= new Uint8Array(2 * UNIX_PATH_MAX);
        unix.fill(0);
        unixPath(source, unix, 0, "source");
        unixPath(destination, unix, UNIX_PATH_MAX, "destination");
        mode = UNIX;
      }
      if (mode !== UNIX) {
        plan.srcPort = port(source!, "source");
        plan.dstPort = port(destination!, "destination");
      }
    }
  }

  const tlvs: readonly Tlv[] = header.tlvs ?? NO_TLVS;
  let tlvLength = 0;
  let hasCrc = false;
  for (let i = 0; i < tlvs.length; i++) {
    const tlv = tlvs[i]!;
    const type = tlv.type, value = tlv.value;
    if (!Number.isInteger(type) || type < 0 || type > 255) invalid("TLV type must be 0-255");
    if (!(value instanceof Uint8Array) || value.length > 0xffff) {
      invalid("TLV value must be a Uint8Array of at most 65535 bytes");
    }
    if (type === TlvType.CRC32C) {
      if (value.length !== 4) invalid("CRC32C TLV must be 4 bytes");
      hasCrc = true;
    } else if (type === TlvType.UNIQUE_ID || type === TlvType.SSL) {
      const problem = tlvProblem(type, value);
      if (problem !== undefined) invalid(problem);
    }
    tlvLength += 3 + value.length;
  }
  const addCrc = checksum && !hasCrc;
  const body = addressLength + (addCrc ? 7 : 0) + tlvLength;
  if (body > 0xffff) invalid(`header body of ${body} bytes exceeds 65535`);

  plan.commandByte = local ? 0x20 : 0x21;
  plan.familyByte = familyByte;
  plan.addressLength = addressLength;
  plan.mode = mode;
  plan.tlvs = tlvs;
  plan.addCrc = addCrc;
  plan.fillCrc = checksum && hasCrc;
  plan.length = 16 + body;
}

function unixPath(
  address: ProxyAddress | null | undefined,
  out: Uint8Array,
  offset: number,
  which: string,
): void {
  if (address == null || typeof address.path !== "string") invalid(`${which} must be a UNIX path`);
  const path = address.path;
  const { written, read } = utf8.encodeInto(path, out.subarray(offset, offset + UNIX_PATH_MAX));
  if (read !== path.length) invalid(`${which} path is longer than ${UNIX_PATH_MAX} bytes`);
  if (out.subarray(offset, offset + written).includes(0)) invalid(`${which} path contains NUL`);
}

// ---------------------------------------------------------------------------------------
// Writing: every byte of [offset, offset + plan.length) is written (the target may hold
// anything), nothing else.

function write(plan: Plan, out: Uint8Array, offset: number): void {
  if (plan.version === 2) writeV2(plan, out, offset);
  else writeV1(plan, out, offset);
}

/** Writes ASCII text; returns the offset after it. */
function ascii(out: Uint8Array, p: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[p++] = text.charCodeAt(i);
  return p;
}

/** Writes a port in decimal; returns the offset after it. */
function decimal(out: Uint8Array, p: number, n: number): number {
  const end = p + digits(n);
  let i = end;
  do {
    const q = (n / 10) | 0;
    out[--i] = 0x30 + n - q * 10;
    n = q;
  } while (n > 0);
  return end;
}

function writeV1(plan: Plan, out: Uint8Array, p: number): void {
  // "PROXY "
  out[p] = 0x50;
  out[p + 1] = 0x52;
  out[p + 2] = 0x4f;
  out[p + 3] = 0x58;
  out[p + 4] = 0x59;
  out[p + 5] = 0x20;
  if (plan.v1 === V1_UNKNOWN) {
    ascii(out, p + 6, "UNKNOWN\r\n");
    return;
  }
  // "TCP4 " or "TCP6 "
  out[p + 6] = 0x54;
  out[p + 7] = 0x43;
  out[p + 8] = 0x50;
  out[p + 9] = plan.v1 === V1_TCP4 ? 0x34 : 0x36;
  out[p + 10] = 0x20;
  p = ascii(out, p + 11, plan.srcText);
  out[p++] = 0x20;
  p = ascii(out, p, plan.dstText);
  out[p++] = 0x20;
  p = decimal(out, p, plan.srcPort);
  out[p++] = 0x20;
  p = decimal(out, p, plan.dstPort);
  out[p] = 0x0d;
  out[p + 1] = 0x0a;
}

function writeV2(plan: Plan, out: Uint8Array, start: number): void {
  const body = plan.length - 16;
  // The signature, \r\n\r\n\0\r\nQUIT\n.
  out[start] = 0x0d;
  out[start + 1] = 0x0a;
  out[start + 2] = 0x0d;
  out[start + 3] = 0x0a;
  out[start + 4] = 0x00;
  out[start + 5] = 0x0d;
  out[start + 6] = 0x0a;
  out[start + 7] = 0x51;
  out[start + 8] = 0x55;
  out[start + 9] = 0x49;
  out[start + 10] = 0x54;
  out[start + 11] = 0x0a;
  out[start + 12] = plan.commandByte;
  out[start + 13] = plan.familyByte;
  out[start + 14] = body >> 8;
  out[start + 15] = body & 0xff;
  let p = start + 16;
  const addressLength = plan.addressLength;
  switch (plan.mode) {
    case INET4: {
      const a = plan.a, b = plan.b;
      out[p] = a >>> 24;
      out[p + 1] = (a >>> 16) & 0xff;
      out[p + 2] = (a >>> 8) & 0xff;
      out[p + 3] = a & 0xff;
      out[p + 4] = b >>> 24;
      out[p + 5] = (b >>> 16) & 0xff;
      out[p + 6] = (b >>> 8) & 0xff;
      out[p + 7] = b & 0xff;
      break;
    }
    case INET6: {
      const v6 = plan.v6;
      for (let i = 0; i < 32; i++) out[p + i] = v6[i]!;
      break;
    }
    case UNIX:
      out.set(plan.unix!, p);
      break;
    default:
      out.fill(0, p, p + addressLength);
  }
  if (plan.mode === INET4 || plan.mode === INET6) {
    const at = p + addressLength - 4;
    const sp = plan.srcPort, dp = plan.dstPort;
    out[at] = sp >> 8;
    out[at + 1] = sp & 0xff;
    out[at + 2] = dp >> 8;
    out[at + 3] = dp & 0xff;
  }
  p += addressLength;

  let crcAt = -1;
  if (plan.addCrc) {
    out[p] = TlvType.CRC32C;
    out[p + 1] = 0;
    out[p + 2] = 4;
    crcAt = p + 3;
    p += 7;
  }
  const tlvs = plan.tlvs;
  const fill = plan.fillCrc;
  for (let i = 0; i < tlvs.length; i++) {
    const tlv = tlvs[i]!;
    const type = tlv.type, value = tlv.value;
    const n = value.length;
    out[p] = type;
    out[p + 1] = n >> 8;
    out[p + 2] = n & 0xff;
    p += 3;
    if (fill && type === TlvType.CRC32C && crcAt < 0) {
      crcAt = p;
    } else if (n < 16) {
      for (let j = 0; j < n; j++) out[p + j] = value[j]!;
    } else {
      out.set(value, p);
    }
    p += n;
  }
  if (crcAt >= 0) {
    // The checksum covers the whole header with its own field zero.
    out[crcAt] = 0;
    out[crcAt + 1] = 0;
    out[crcAt + 2] = 0;
    out[crcAt + 3] = 0;
    const crc = ~crc32cUpdate(-1, out, start, start + plan.length) >>> 0;
    out[crcAt] = crc >>> 24;
    out[crcAt + 1] = (crc >>> 16) & 0xff;
    out[crcAt + 2] = (crc >>> 8) & 0xff;
    out[crcAt + 3] = crc & 0xff;
  }
}
