/**
 * Wire constants of the PROXY protocol (HAProxy's `doc/proxy-protocol.txt`).
 *
 * @module
 */

/**
 * The 12-byte signature that starts every v2 header (spec §2.2).
 *
 * @example
 * ```ts
 * import { V2_SIGNATURE } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * assert.equal(V2_SIGNATURE.length, 12);
 * assert.equal(V2_SIGNATURE[4], 0x00);
 * ```
 */
export const V2_SIGNATURE: Uint8Array = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);

/**
 * The longest v1 line the spec allows, CRLF included (spec §2.1).
 *
 * @example
 * ```ts
 * import { decodeHeader, ProxyProtocolError, V1_MAX_LENGTH } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const endless = new TextEncoder().encode("PROXY UNKNOWN " + "x".repeat(V1_MAX_LENGTH));
 * assert.throws(() => decodeHeader(endless), ProxyProtocolError);
 * ```
 */
export const V1_MAX_LENGTH = 107;

/**
 * The longest v2 header the length field can describe: 16 + 65535 bytes.
 *
 * @example
 * ```ts
 * import { decodeHeader, encodeHeader, V2_MAX_LENGTH } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const largest = encodeHeader({
 *   version: 2,
 *   command: "LOCAL",
 *   protocol: "UNKNOWN",
 *   tlvs: [{ type: 0x04, value: new Uint8Array(V2_MAX_LENGTH - 16 - 3) }],
 * });
 * assert.equal(decodeHeader(largest)?.length, V2_MAX_LENGTH);
 * ```
 */
export const V2_MAX_LENGTH = 65551;

/**
 * TLV types registered by the spec (§2.2.1-2.2.8) and by cloud vendors.
 *
 * @example
 * ```ts
 * import { TlvType } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * assert.equal(TlvType.CRC32C, 0x03);
 * assert.equal(TlvType.AWS, 0xea);
 * ```
 */
export const TlvType = {
  /** Application-Layer Protocol Negotiation, e.g. `h2`. */
  ALPN: 0x01,
  /** The host name the client asked for (SNI), UTF-8. */
  AUTHORITY: 0x02,
  /** CRC32c of the whole header, 4 bytes big endian. */
  CRC32C: 0x03,
  /** Padding; ignored. */
  NOOP: 0x04,
  /** An opaque connection id of at most 128 bytes. */
  UNIQUE_ID: 0x05,
  /** TLS details: client flags, verify result, sub-TLVs. */
  SSL: 0x20,
  /** SSL sub-TLV: protocol version, e.g. `TLSv1.3`. */
  SSL_VERSION: 0x21,
  /** SSL sub-TLV: the client certificate's common name. */
  SSL_CN: 0x22,
  /** SSL sub-TLV: the cipher, e.g. `ECDHE-RSA-AES128-GCM-SHA256`. */
  SSL_CIPHER: 0x23,
  /** SSL sub-TLV: the certificate's signature algorithm. */
  SSL_SIG_ALG: 0x24,
  /** SSL sub-TLV: the certificate's key algorithm. */
  SSL_KEY_ALG: 0x25,
  /** SSL sub-TLV: the key exchange group. */
  SSL_GROUP: 0x26,
  /** SSL sub-TLV: the signature scheme. */
  SSL_SIG_SCHEME: 0x27,
  /** SSL sub-TLV: the client certificate, DER. */
  SSL_CLIENT_CERT: 0x28,
  /** The network namespace name, US-ASCII. */
  NETNS: 0x30,
  /** Google Cloud Private Service Connect: the PSC connection id, uint64 big endian. */
  GCP: 0xe0,
  /** AWS: subtype 0x01 then the VPC endpoint id. */
  AWS: 0xea,
  /** Azure Private Link: subtype 0x01 then the LinkID, uint32 little endian. */
  AZURE: 0xee,
} as const;

/**
 * Bits of the `client` field of the SSL TLV (spec §2.2.5).
 *
 * @example
 * ```ts
 * import { SslClientFlag } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * assert.equal(SslClientFlag.SSL | SslClientFlag.CERT_CONN, 0x03);
 * ```
 */
export const SslClientFlag = {
  /** The client connected over SSL/TLS. */
  SSL: 0x01,
  /** The client presented a certificate over this connection. */
  CERT_CONN: 0x02,
  /** The client presented a certificate at least once in this TLS session. */
  CERT_SESS: 0x04,
} as const;
