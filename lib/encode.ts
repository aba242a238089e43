/**
 * `encodeHeader`: writes a v1 line or a v2 header, sized first and written once.
 *
 * @module
 */

import { ProxyProtocolError } from "./error.ts";
import { TlvType, V2_SIGNATURE } from "./constants.ts";
import { crc32c } from "./crc32c.ts";
import { formatIPv4Number, formatIPv6, parseIPv4String, parseIPv6String } from "./ip.ts";
import type {
  EncodeOptions,
  InetAddress,
  ProxyAddress,
  ProxyHeaderInit,
  ProxyProtocolFamily,
  Tlv,
} from "./types.ts";

/** Family/transport byte and address block size by protocol. */
const FAMILY: Record<ProxyProtocolFamily, readonly [number, number]> = {
  UNKNOWN: [0x00, 0],
  TCP4: [0x11, 12],
  UDP4: [0x12, 12],
  TCP6: [0x21, 36],
  UDP6: [0x22, 36],
  UNIX_STREAM: [0x31, 216],
  UNIX_DGRAM: [0x32, 216],
};

const UNIX_PATH_MAX = 108;
const utf8 = new TextEncoder();
const v6 = new Uint8Array(16);

function invalid(what: string): never {
  throw new ProxyProtocolError("INVALID_HEADER", what);
}

/**
 * Encodes a PROXY protocol header.
 *
 * - v1 writes `TCP4` and `TCP6` lines, and `PROXY UNKNOWN\r\n` for LOCAL or UNKNOWN
 *   headers; any other protocol, or TLVs, cannot be written as v1 and are an error.
 * - v2 writes every family and both commands. A LOCAL header of protocol `UNKNOWN` is
 *   written as the spec asks senders to, UNSPEC with no address block; a LOCAL header of
 *   another protocol keeps its family byte and writes its addresses, or zeros.
 * - IPv6 addresses are written in canonical form; IPv4 text must be strict dotted decimal.
 *
 * @param header The header; a decoded {@linkcode ProxyHeader} will do.
 * @param options `checksum: true` adds (or fills in) a CRC32C TLV.
 * @returns The header's bytes.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` when the header cannot be
 * written as asked.
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
  if (header.version === 1) return encodeV1(header);
  if (header.version === 2) return encodeV2(header, options?.checksum ?? false);
  return invalid(`unknown version ${String(header.version)}`);
}

function inet(address: ProxyAddress | null | undefined, which: string): InetAddress {
  if (address == null || typeof address.address !== "string") {
    invalid(`${which} must be an IP address and port`);
  }
  const port = address.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    invalid(`${which} port must be an integer from 0 to 65535`);
  }
  return address as InetAddress;
}

function ipv4(address: InetAddress, which: string): number {
  const value = parseIPv4String(address.address);
  if (value < 0) invalid(`${which} address is not dotted-decimal IPv4`);
  return value;
}

function ipv6(address: InetAddress, which: string, out: Uint8Array, offset: number): void {
  if (!parseIPv6String(address.address, out, offset)) {
    invalid(`${which} address is not IPv6`);
  }
}

const V1_UNKNOWN = "PROXY UNKNOWN\r\n";

function encodeV1(header: ProxyHeaderInit): Uint8Array {
  if (header.tlvs !== undefined && header.tlvs.length > 0) invalid("v1 cannot carry TLVs");
  const protocol = header.protocol;
  let line: string;
  if (header.command === "LOCAL" || protocol === "UNKNOWN") {
    line = V1_UNKNOWN;
  } else if (protocol === "TCP4" || protocol === "TCP6") {
    const src = inet(header.source, "source");
    const dst = inet(header.destination, "destination");
    let a: string, b: string;
    if (protocol === "TCP4") {
      a = formatIPv4Number(ipv4(src, "source"));
      b = formatIPv4Number(ipv4(dst, "destination"));
    } else {
      ipv6(src, "source", v6, 0);
      a = formatIPv6(v6, 0);
      ipv6(dst, "destination", v6, 0);
      b = formatIPv6(v6, 0);
    }
    line = `PROXY ${protocol} ${a} ${b} ${src.port} ${dst.port}\r\n`;
  } else {
    return invalid(`v1 carries only TCP4, TCP6 and UNKNOWN, not ${protocol}`);
  }
  const out = new Uint8Array(line.length);
  for (let i = 0; i < line.length; i++) out[i] = line.charCodeAt(i);
  return out;
}

function encodeV2(header: ProxyHeaderInit, checksum: boolean): Uint8Array {
  const local = header.command === "LOCAL";
  if (!local && header.command !== "PROXY") invalid("command must be PROXY or LOCAL");
  const family = FAMILY[header.protocol];
  if (family === undefined) invalid(`unknown protocol ${String(header.protocol)}`);
  const [familyByte, addressLength] = family;
  const tlvs: readonly Tlv[] = header.tlvs ?? [];

  // Size everything first.
  let tlvLength = 0;
  let hasCrc = false;
  for (const tlv of tlvs) {
    if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 255) {
      invalid("TLV type must be 0-255");
    }
    if (!(tlv.value instanceof Uint8Array) || tlv.value.length > 0xffff) {
      invalid("TLV value must be a Uint8Array of at most 65535 bytes");
    }
    if (tlv.type === TlvType.CRC32C) {
      if (tlv.value.length !== 4) invalid("CRC32C TLV must be 4 bytes");
      hasCrc = true;
    }
    tlvLength += 3 + tlv.value.length;
  }
  const addCrc = checksum && !hasCrc;
  const length = addressLength + (addCrc ? 7 : 0) + tlvLength;
  if (length > 0xffff) invalid(`header body of ${length} bytes exceeds 65535`);

  const out = new Uint8Array(16 + length);
  out.set(V2_SIGNATURE, 0);
  out[12] = local ? 0x20 : 0x21;
  out[13] = familyByte;
  out[14] = length >> 8;
  out[15] = length & 0xff;
  writeAddresses(header, out, addressLength, local);
  let p = 16 + addressLength;
  let crcAt = -1;
  if (addCrc) {
    out[p] = TlvType.CRC32C;
    out[p + 2] = 4;
    crcAt = p + 3;
    p += 7;
  }
  for (const tlv of tlvs) {
    const n = tlv.value.length;
    out[p] = tlv.type;
    out[p + 1] = n >> 8;
    out[p + 2] = n & 0xff;
    if (tlv.type === TlvType.CRC32C && checksum && crcAt < 0) crcAt = p + 3;
    else out.set(tlv.value, p + 3);
    p += 3 + n;
  }
  if (crcAt >= 0) {
    const crc = crc32c(out); // the field is still zero
    out[crcAt] = crc >>> 24;
    out[crcAt + 1] = (crc >>> 16) & 0xff;
    out[crcAt + 2] = (crc >>> 8) & 0xff;
    out[crcAt + 3] = crc & 0xff;
  }
  return out;
}

function writeAddresses(
  header: ProxyHeaderInit,
  out: Uint8Array,
  addressLength: number,
  local: boolean,
): void {
  if (addressLength === 0) return;
  const { source, destination } = header;
  // A LOCAL header's addresses are discarded by the receiver: zeros when none are given.
  if (local && source == null && destination == null) return;
  if (addressLength === 216) {
    writePath(source, out, 16, "source");
    writePath(destination, out, 124, "destination");
    return;
  }
  const src = inet(source, "source");
  const dst = inet(destination, "destination");
  if (addressLength === 12) {
    const a = ipv4(src, "source"), b = ipv4(dst, "destination");
    out[16] = a >>> 24;
    out[17] = (a >>> 16) & 0xff;
    out[18] = (a >>> 8) & 0xff;
    out[19] = a & 0xff;
    out[20] = b >>> 24;
    out[21] = (b >>> 16) & 0xff;
    out[22] = (b >>> 8) & 0xff;
    out[23] = b & 0xff;
  } else {
    ipv6(src, "source", out, 16);
    ipv6(dst, "destination", out, 32);
  }
  const at = 16 + addressLength - 4;
  out[at] = src.port >> 8;
  out[at + 1] = src.port & 0xff;
  out[at + 2] = dst.port >> 8;
  out[at + 3] = dst.port & 0xff;
}

function writePath(
  address: ProxyAddress | null | undefined,
  out: Uint8Array,
  offset: number,
  which: string,
): void {
  if (address == null || typeof address.path !== "string") invalid(`${which} must be a UNIX path`);
  const { written, read } = utf8.encodeInto(
    address.path,
    out.subarray(offset, offset + UNIX_PATH_MAX),
  );
  if (read !== address.path.length) invalid(`${which} path is longer than ${UNIX_PATH_MAX} bytes`);
  if (out.subarray(offset, offset + written).includes(0)) invalid(`${which} path contains NUL`);
}
