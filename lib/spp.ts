/**
 * Cloudflare Spectrum's Simple Proxy Protocol (SPP) for UDP: a fixed 38-byte header in
 * front of every datagram's payload, in network byte order:
 *
 * | bytes | field |
 * |---|---|
 * | 0-1 | magic `0x56EC` |
 * | 2-17 | client address (IPv6; IPv4 clients as IPv4-mapped `::ffff:a.b.c.d`) |
 * | 18-33 | proxy address, the one the client sent to (same form) |
 * | 34-35 | client port |
 * | 36-37 | proxy port |
 *
 * Source: developers.cloudflare.com/spectrum/reference/simple-proxy-protocol-header.
 * Internal codec: use `decodeDatagram` and `encodeDatagram` with `{ format: "spp" }`.
 *
 * @module
 */

import { ProxyProtocolError } from "./error.ts";
import { formatIPv6, parseIPv4String, parseIPv6String } from "./ip.ts";
import type { InetAddress, ProxyAddress, ProxyHeaderInit, ProxyVersion, Tlv } from "./types.ts";

/** Length of the SPP header; the payload starts here. */
export const SPP_HEADER_LENGTH = 38;
const MAGIC_HI = 0x56, MAGIC_LO = 0xec;

/**
 * A decoded Simple Proxy Protocol header. It has the fields of a
 * {@linkcode ProxyHeader} that SPP can fill (`command`, `protocol`, `source`,
 * `destination`, `tlvs`), so code reading `header.source.address` works for both
 * formats, but no `version`: SPP is not a PROXY protocol version. Tell the two apart
 * with the datagram result's `format`.
 *
 * Addresses are always IPv6 text in RFC 5952 form, as the v2 decoder writes them; an
 * IPv4 client arrives IPv4-mapped, as `::ffff:192.0.2.1`. For dotted IPv4 use
 * `a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a` (only mapped addresses
 * are formatted with a dot).
 *
 * To pass the header on as PROXY v2, spread it and add a version:
 * `encodeDatagram({ ...header, version: 2 }, payload)` writes a v2 `UDP6` header.
 */
export interface SppHeader {
  /** Always `PROXY`: SPP has no LOCAL command. */
  command: "PROXY";
  /** Always `UDP6`: SPP carries 128-bit addresses, IPv4 ones mapped. */
  protocol: "UDP6";
  /** The client: canonical IPv6 text (`::ffff:a.b.c.d` for IPv4) and port. */
  source: InetAddress;
  /** The proxy address and port the client sent the datagram to. */
  destination: InetAddress;
  /** Always empty (and frozen): SPP carries no TLVs. Present so both formats iterate alike. */
  tlvs: readonly Tlv[];
}

/**
 * A header to write as SPP: the two IP endpoints. A decoded {@linkcode SppHeader} will do,
 * and so will a {@linkcode ProxyHeaderInit} of a UDP family (its `version` is ignored).
 */
export interface SppHeaderInit {
  /** Ignored: SPP has no version. Allowed so that a PROXY header can be written as SPP. */
  version?: ProxyVersion;
  /** Must be `PROXY` when given: SPP cannot say LOCAL. */
  command?: "PROXY";
  /** `UDP4` or `UDP6` when given; either way addresses may be IPv4 or IPv6 text. */
  protocol?: "UDP4" | "UDP6";
  /** The client: dotted IPv4 (written IPv4-mapped) or IPv6 text, and a port. */
  source: InetAddress;
  /** The proxy end: as `source`. */
  destination: InetAddress;
  /** Must be empty when given: SPP cannot carry TLVs. */
  tlvs?: readonly Tlv[];
}

const NO_TLVS: readonly Tlv[] = Object.freeze([]);

function invalid(what: string): never {
  throw new ProxyProtocolError("INVALID_HEADER", what);
}

/**
 * Decodes the SPP header at the start of the datagram `b`. Fails on the first byte that
 * is not the magic, with `HEADER_TOO_LONG` when `maxLength` is below 38, and with
 * `TRUNCATED` when the datagram is shorter than 38 bytes.
 */
export function decodeSpp(b: Uint8Array, maxLength: number): SppHeader {
  const n = b.length;
  if (n > 0 && b[0] !== MAGIC_HI) notSpp(0);
  if (n > 1 && b[1] !== MAGIC_LO) notSpp(1);
  if (SPP_HEADER_LENGTH > maxLength) {
    throw new ProxyProtocolError(
      "HEADER_TOO_LONG",
      `SPP header of ${SPP_HEADER_LENGTH} bytes exceeds ${maxLength}`,
      { offset: 0 },
    );
  }
  if (n < SPP_HEADER_LENGTH) {
    throw new ProxyProtocolError(
      "TRUNCATED",
      `SPP header of ${SPP_HEADER_LENGTH} bytes, but the datagram has only ${n}`,
      { offset: n },
    );
  }
  return {
    command: "PROXY",
    protocol: "UDP6",
    source: { address: formatIPv6(b, 2), port: b[34]! << 8 | b[35]! },
    destination: { address: formatIPv6(b, 18), port: b[36]! << 8 | b[37]! },
    tlvs: NO_TLVS,
  };
}

function notSpp(offset: number): never {
  throw new ProxyProtocolError(
    "NOT_PROXY_PROTOCOL",
    `not a Simple Proxy Protocol header (magic 0x56EC) at byte ${offset}`,
    { offset },
  );
}

/** Writes the SPP header and `payload` into one new array. */
export function encodeSpp(
  header: ProxyHeaderInit | SppHeaderInit,
  payload: Uint8Array,
): Uint8Array {
  const { command, protocol, tlvs } = header;
  if (command !== undefined && command !== "PROXY") invalid("SPP cannot carry a LOCAL header");
  if (protocol !== undefined && protocol !== "UDP4" && protocol !== "UDP6") {
    invalid(`SPP carries only UDP4 and UDP6, not ${String(protocol)}`);
  }
  if (tlvs !== undefined && tlvs.length > 0) invalid("SPP cannot carry TLVs");
  const out = new Uint8Array(SPP_HEADER_LENGTH + payload.length);
  out[0] = MAGIC_HI;
  out[1] = MAGIC_LO;
  const src = endpoint(header.source, "source", out, 2);
  const dst = endpoint(header.destination, "destination", out, 18);
  out[34] = src >> 8;
  out[35] = src & 0xff;
  out[36] = dst >> 8;
  out[37] = dst & 0xff;
  out.set(payload, SPP_HEADER_LENGTH);
  return out;
}

/** Writes an endpoint's address at `out[offset..+16)`, IPv4 mapped; returns its port. */
function endpoint(
  address: ProxyAddress | null | undefined,
  which: string,
  out: Uint8Array,
  offset: number,
): number {
  if (address == null || typeof address.address !== "string") {
    invalid(`${which} must be an IP address and port`);
  }
  const port = address.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    invalid(`${which} port must be an integer from 0 to 65535`);
  }
  const v4 = parseIPv4String(address.address);
  if (v4 >= 0) {
    // IPv4-mapped IPv6 (RFC 4291 §2.5.5.2): ten zero bytes (already zero), ffff, the address.
    out[offset + 10] = 0xff;
    out[offset + 11] = 0xff;
    out[offset + 12] = v4 >>> 24;
    out[offset + 13] = (v4 >>> 16) & 0xff;
    out[offset + 14] = (v4 >>> 8) & 0xff;
    out[offset + 15] = v4 & 0xff;
  } else if (!parseIPv6String(address.address, out, offset)) {
    invalid(`${which} address is neither dotted-decimal IPv4 nor IPv6`);
  }
  return port;
}
