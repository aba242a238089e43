/**
 * `decodeDatagram` and `encodeDatagram`: a header and its payload in one UDP datagram,
 * as PROXY protocol (spec §2.2: one header per datagram, never split, each datagram parsed
 * on its own) or as Cloudflare Spectrum's Simple Proxy Protocol (SPP).
 *
 * @module
 */

import { ProxyProtocolError } from "./error.ts";
import { decodeHeader } from "./decode.ts";
import { encodedLength, encodeHeaderInto } from "./encode.ts";
import { decodeSpp, encodeSpp, SPP_HEADER_LENGTH } from "./spp.ts";
import type { SppHeader, SppHeaderInit } from "./spp.ts";
import type { DecodeOptions, EncodeOptions, ProxyHeader, ProxyHeaderInit } from "./types.ts";

/**
 * How a datagram's header is written: `proxy` for HAProxy's PROXY protocol (v2, or v1),
 * `spp` for Cloudflare Spectrum's Simple Proxy Protocol (38 bytes, magic `0x56EC`).
 */
export type DatagramFormat = "proxy" | "spp";

/** Options for {@linkcode decodeDatagram}. */
export interface DecodeDatagramOptions extends DecodeOptions {
  /**
   * The header format the sender is configured to use; a receiver never guesses it.
   * Default: `proxy`. With `spp`, `verifyChecksum` has nothing to verify.
   */
  format?: DatagramFormat;
}

/** Options for {@linkcode encodeDatagram}. */
export interface EncodeDatagramOptions extends EncodeOptions {
  /** The header format to write. Default: `proxy`. SPP has no checksum, so no `checksum`. */
  format?: DatagramFormat;
}

/** A datagram decoded as PROXY protocol. */
export interface ProxyDatagram {
  /** `proxy`: `header` is a PROXY protocol header. */
  format: "proxy";
  /** The header; its TLVs are views into the datagram. */
  header: ProxyHeader;
  /** Everything after the header: a view into the datagram, not a copy (may be empty). */
  payload: Uint8Array;
}

/** A datagram decoded as Simple Proxy Protocol. */
export interface SppDatagram {
  /** `spp`: `header` is a {@linkcode SppHeader}, which has no `version`. */
  format: "spp";
  /** The header. */
  header: SppHeader;
  /** Everything after the 38-byte header: a view into the datagram, not a copy. */
  payload: Uint8Array;
}

/** What {@linkcode decodeDatagram} returns; `format` tells the header's kind. */
export type DatagramResult = ProxyDatagram | SppDatagram;

/**
 * Decodes the header at the start of a datagram and returns it with the rest of the
 * datagram as `payload`.
 *
 * A datagram is complete: where {@linkcode decodeHeader} would wait for more bytes, this
 * fails with `TRUNCATED` (an empty datagram too). Every other failure is what
 * `decodeHeader` reports, or for SPP `NOT_PROXY_PROTOCOL` on a wrong magic. With
 * `maxLength`, a longer header fails with `HEADER_TOO_LONG` (SPP's is always 38 bytes).
 *
 * Format `proxy` accepts every header `decodeHeader` accepts: a v2 `UDP4`/`UDP6` header is
 * the datagram case, v2 `LOCAL` (health checks) and `UNIX_DGRAM` are too, and a v2 stream
 * family or a v1 line (v1 only knows TCP) is returned as sent rather than refused: the
 * addresses are still the client's. Check `header.protocol` if your policy wants UDP only.
 *
 * `payload` and any TLVs are views into `bytes`: no copy is made, so keep `bytes`
 * unchanged (don't reuse a receive buffer) while you use them.
 *
 * @param bytes One whole datagram.
 * @param options `format` (`proxy` by default, or `spp`), `maxLength`, `verifyChecksum`.
 * @returns The format, the header and the payload.
 * @throws {ProxyProtocolError} When the datagram does not start with a complete, valid
 * header of the format; never anything else, whatever the bytes.
 * @throws {TypeError} When `format` is not `proxy` or `spp`.
 *
 * @example A PROXY v2 UDP4 datagram
 * ```ts
 * import { decodeDatagram, fromHex } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const datagram = fromHex(
 *   "0d0a0d0a000d0a515549540a 2112 000c c0000201 c6336401 d431 0035 cafe",
 * );
 * const { header, payload } = decodeDatagram(datagram);
 * assert.equal(header.protocol, "UDP4");
 * assert.deepEqual(header.source, { address: "192.0.2.1", port: 54321 });
 * assert.deepEqual(header.destination, { address: "198.51.100.1", port: 53 });
 * assert.deepEqual(payload, new Uint8Array([0xca, 0xfe]));
 * assert.equal(payload.buffer, datagram.buffer); // a view, not a copy
 * ```
 *
 * @example An SPP datagram from an IPv4 client
 * ```ts
 * import { decodeDatagram, fromHex } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const datagram = fromHex(
 *   "56ec 00000000000000000000ffffc0000201 00000000000000000000ffffc6336401 d431 0035 cafe",
 * );
 * const result = decodeDatagram(datagram, { format: "spp" });
 * assert.equal(result.format, "spp");
 * const client = result.header.source;
 * assert.deepEqual(client, { address: "::ffff:192.0.2.1", port: 54321 });
 * // Dotted IPv4 from an IPv4-mapped address:
 * const a = client.address;
 * assert.equal(a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a, "192.0.2.1");
 * assert.equal(result.payload.length, 2);
 * ```
 *
 * @example A datagram cut short is an error, not "wait for more"
 * ```ts
 * import { decodeDatagram, ProxyProtocolError } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * assert.throws(
 *   () => decodeDatagram(new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a])),
 *   (error) => error instanceof ProxyProtocolError && error.code === "TRUNCATED",
 * );
 * ```
 */
export function decodeDatagram(
  bytes: Uint8Array,
  options: DecodeDatagramOptions & { format: "spp" },
): SppDatagram;
/**
 * Decodes a PROXY protocol datagram (the default format).
 *
 * @param bytes One whole datagram.
 * @param options `maxLength`, `verifyChecksum`; `format` `proxy` or absent.
 * @returns The header and the payload, with `format: "proxy"`.
 */
export function decodeDatagram(
  bytes: Uint8Array,
  options?: DecodeDatagramOptions & { format?: "proxy" },
): ProxyDatagram;
/**
 * Decodes a datagram of the format `options.format` names.
 *
 * @param bytes One whole datagram.
 * @param options `format`, `maxLength`, `verifyChecksum`.
 * @returns The format, the header and the payload.
 */
export function decodeDatagram(
  bytes: Uint8Array,
  options?: DecodeDatagramOptions,
): DatagramResult;
export function decodeDatagram(
  bytes: Uint8Array,
  options?: DecodeDatagramOptions,
): DatagramResult {
  const format = options?.format;
  if (format === "spp") {
    const header = decodeSpp(bytes, options?.maxLength ?? SPP_HEADER_LENGTH);
    return { format: "spp", header, payload: bytes.subarray(SPP_HEADER_LENGTH) };
  }
  if (format !== undefined && format !== "proxy") badFormat(format);
  const result = decodeHeader(bytes, options);
  if (result === null) truncated(bytes);
  return { format: "proxy", header: result.header, payload: bytes.subarray(result.length) };
}

/** `decodeHeader` wanted more bytes: say how many the header needed, where known. */
function truncated(b: Uint8Array): never {
  const n = b.length;
  let what: string;
  if (n === 0) {
    what = "empty datagram: no header";
  } else if (b[0] === 0x0d && n >= 16) {
    const length = 16 + (b[14]! << 8 | b[15]!);
    what = `PROXY v2 header of ${length} bytes, but the datagram has only ${n}`;
  } else if (b[0] === 0x0d) {
    what = `datagram of ${n} bytes ends inside the 16-byte PROXY v2 header`;
  } else {
    what = `PROXY v1 line has no CRLF in the datagram's ${n} bytes`;
  }
  throw new ProxyProtocolError("TRUNCATED", what, { offset: n });
}

function badFormat(format: unknown): never {
  throw new TypeError(`format must be "proxy" or "spp", not ${String(format)}`);
}

/**
 * Writes a header and a payload as one datagram, in one new array.
 *
 * - Format `proxy` (default) writes what {@linkcode encodeHeader} writes, `checksum`
 *   included; a v2 `UDP4` or `UDP6` header is what UDP receivers expect.
 * - Format `spp` writes the 38-byte SPP header from `source` and `destination`, each
 *   dotted IPv4 (written IPv4-mapped) or IPv6 text; `command` must be `PROXY`, `protocol`
 *   (when given) `UDP4` or `UDP6`, TLVs and `checksum` are refused, `version` is ignored.
 *
 * @param header The header; a decoded {@linkcode ProxyHeader} or {@linkcode SppHeader}
 * will do (relay an SPP header as PROXY v2 with `{ ...header, version: 2 }`).
 * @param payload The datagram's payload, copied after the header.
 * @param options `format` (`proxy` or `spp`), `checksum` (v2 only).
 * @returns The datagram's bytes.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` when the header cannot be
 * written in the format.
 * @throws {TypeError} When `format` is not `proxy` or `spp`.
 *
 * @example A PROXY v2 UDP6 datagram
 * ```ts
 * import { decodeDatagram, encodeDatagram } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const payload = new TextEncoder().encode("ping");
 * const datagram = encodeDatagram({
 *   version: 2,
 *   command: "PROXY",
 *   protocol: "UDP6",
 *   source: { address: "2001:db8::1", port: 40000 },
 *   destination: { address: "2001:db8::53", port: 53 },
 * }, payload);
 * assert.equal(datagram.length, 16 + 36 + 4);
 * const { header, payload: out } = decodeDatagram(datagram);
 * assert.equal(header.source?.address, "2001:db8::1");
 * assert.deepEqual(out, payload);
 * ```
 *
 * @example SPP with an IPv4 client, and relaying it as PROXY v2
 * ```ts
 * import { decodeDatagram, encodeDatagram, toHex } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const datagram = encodeDatagram({
 *   source: { address: "192.0.2.1", port: 54321 },
 *   destination: { address: "2001:db8::2", port: 53 },
 * }, new Uint8Array([0xca, 0xfe]), { format: "spp" });
 * assert.equal(datagram.length, 38 + 2);
 * assert.equal(toHex(datagram.subarray(0, 18)), "56ec00000000000000000000ffffc0000201");
 *
 * const { header, payload } = decodeDatagram(datagram, { format: "spp" });
 * const v2 = encodeDatagram({ ...header, version: 2 }, payload);
 * assert.equal(decodeDatagram(v2).header.protocol, "UDP6");
 * assert.equal(decodeDatagram(v2).header.source?.address, "::ffff:192.0.2.1");
 * ```
 */
export function encodeDatagram(
  header: ProxyHeaderInit | SppHeaderInit,
  payload: Uint8Array,
  options?: EncodeDatagramOptions,
): Uint8Array {
  const format = options?.format;
  if (format === "spp") {
    if (options?.checksum === true) {
      throw new ProxyProtocolError("INVALID_HEADER", "SPP has no checksum");
    }
    return encodeSpp(header, payload);
  }
  if (format !== undefined && format !== "proxy") badFormat(format);
  const version = (header as { version?: unknown }).version;
  if (version !== 1 && version !== 2) {
    throw new ProxyProtocolError(
      "INVALID_HEADER",
      `format "proxy" needs version 1 or 2, not ${String(version)}` +
        " (to relay an SPP header as PROXY v2, pass { ...header, version: 2 })",
    );
  }
  const h = header as ProxyHeaderInit;
  // One allocation: the header is written in place, then the payload after it.
  const n = encodedLength(h, options);
  const out = new Uint8Array(n + payload.length);
  encodeHeaderInto(h, out, 0, options);
  out.set(payload, n);
  return out;
}
