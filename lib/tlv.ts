/**
 * Typed access to v2 TLVs: `decodeTlvs` reads the registered and cloud-vendor types out of
 * a header's raw TLVs, `encodeTlvs` writes them.
 *
 * @module
 */

import { SslClientFlag, TlvType } from "./constants.ts";
import { latin1 } from "./bytes.ts";
import { ProxyProtocolError } from "./error.ts";
import type { Tlv } from "./types.ts";

/** The SSL TLV (0x20, spec §2.2.5). */
export interface SslTlv {
  /** The raw `client` bits; see `SslClientFlag`. */
  client: number;
  /** The raw `verify` result: 0 when a presented client certificate verified. */
  verify: number;
  /** The client connected over SSL/TLS (`client & 0x01`). */
  ssl: boolean;
  /** The client presented a certificate over this connection (`client & 0x02`). */
  certInConnection: boolean;
  /** The client presented a certificate at least once in this TLS session (`client & 0x04`). */
  certInSession: boolean;
  /**
   * A client certificate was presented and verified: a certificate bit is set and
   * `verify` is 0. (HAProxy leaves `verify` 0 when no certificate was sent, so `verify`
   * alone proves nothing.)
   */
  verified: boolean;
  /** 0x21: the protocol version, e.g. `TLSv1.3`. */
  version?: string;
  /** 0x22: the client certificate's common name. */
  cn?: string;
  /** 0x23: the cipher, e.g. `TLS_AES_256_GCM_SHA384`. */
  cipher?: string;
  /** 0x24: the certificate's signature algorithm, e.g. `SHA256`. */
  sigAlg?: string;
  /** 0x25: the certificate's key algorithm, e.g. `RSA2048`. */
  keyAlg?: string;
  /** 0x26: the key exchange group, e.g. `X25519`. */
  group?: string;
  /** 0x27: the signature scheme, e.g. `rsa_pss_rsae_sha256`. */
  sigScheme?: string;
  /** 0x28: the client certificate, DER (a view into the header). */
  clientCert?: Uint8Array;
  /** Every sub-TLV as sent, known or not. */
  tlvs: Tlv[];
}

/** A header's TLVs by meaning; fields are present only where the TLV was. */
export interface ProxyTlvs {
  /** 0x01: the negotiated application protocol, e.g. `h2`. */
  alpn?: string;
  /** 0x02: the host name the client asked for (SNI). */
  authority?: string;
  /** 0x03: the CRC32c the header carries (the decoder has verified it unless told not to). */
  crc32c?: number;
  /** 0x05: the proxy's unique id for the connection, opaque, at most 128 bytes. */
  uniqueId?: Uint8Array;
  /** 0x20: TLS details. */
  ssl?: SslTlv;
  /** 0x30: the network namespace name. */
  netns?: string;
  /** 0xEA subtype 0x01: the AWS VPC endpoint id, e.g. `vpce-08d2bf15fac5001c9`. */
  awsVpceId?: string;
  /** 0xEE subtype 0x01: the Azure Private Link LinkID (uint32, little endian on the wire). */
  azureLinkId?: number;
  /** 0xE0: the Google Cloud Private Service Connect connection id (uint64, big endian). */
  gcpPscConnectionId?: bigint;
  /**
   * Every TLV not read into a field above: unknown types, repeats of a type, and vendor
   * TLVs of another shape. NOOP padding is left out.
   */
  others: Tlv[];
}

const utf8 = new TextDecoder();

function u32be(v: Uint8Array, at: number): number {
  return (v[at]! << 24 | v[at + 1]! << 16 | v[at + 2]! << 8 | v[at + 3]!) >>> 0;
}

function decodeSsl(value: Uint8Array): SslTlv | undefined {
  if (value.length < 5) return undefined;
  const client = value[0]!;
  const verify = u32be(value, 1);
  const ssl: SslTlv = {
    client,
    verify,
    ssl: (client & SslClientFlag.SSL) !== 0,
    certInConnection: (client & SslClientFlag.CERT_CONN) !== 0,
    certInSession: (client & SslClientFlag.CERT_SESS) !== 0,
    verified: (client & (SslClientFlag.CERT_CONN | SslClientFlag.CERT_SESS)) !== 0 && verify === 0,
    tlvs: [],
  };
  let p = 5;
  while (p + 3 <= value.length) {
    const type = value[p]!;
    const end = p + 3 + (value[p + 1]! << 8 | value[p + 2]!);
    if (end > value.length) return undefined;
    const sub = value.subarray(p + 3, end);
    ssl.tlvs.push({ type, value: sub });
    switch (type) {
      case TlvType.SSL_VERSION:
        ssl.version ??= latin1(sub);
        break;
      case TlvType.SSL_CN:
        ssl.cn ??= utf8.decode(sub);
        break;
      case TlvType.SSL_CIPHER:
        ssl.cipher ??= latin1(sub);
        break;
      case TlvType.SSL_SIG_ALG:
        ssl.sigAlg ??= latin1(sub);
        break;
      case TlvType.SSL_KEY_ALG:
        ssl.keyAlg ??= latin1(sub);
        break;
      case TlvType.SSL_GROUP:
        ssl.group ??= latin1(sub);
        break;
      case TlvType.SSL_SIG_SCHEME:
        ssl.sigScheme ??= latin1(sub);
        break;
      case TlvType.SSL_CLIENT_CERT:
        ssl.clientCert ??= sub;
        break;
    }
    p = end;
  }
  return p === value.length ? ssl : undefined;
}

/**
 * Reads a header's TLVs by meaning: the spec's registered types, the SSL sub-TLVs, and the
 * AWS, Azure and GCP vendor TLVs. Never throws; a TLV it cannot read stays in `others`.
 *
 * @param tlvs A header's raw TLVs.
 * @returns The fields found, and the TLVs left over.
 *
 * @example The AWS NLB header
 * ```ts
 * import { decodeHeader, decodeTlvs, fromHex } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const bytes = fromHex(
 *   "0d0a0d0a000d0a515549540a 2111 0054 ac1f0771 ac1f0a1f c8f2 0050" +
 *     "03 0004 e8d6892d" +
 *     "ea 0017 01 767063652d303864326266313566616335303031633" + "9" +
 *     "04 0024" + "00".repeat(36),
 * );
 * const result = decodeHeader(bytes);
 * assert.ok(result);
 * const tlvs = decodeTlvs(result.header.tlvs);
 * assert.equal(tlvs.awsVpceId, "vpce-08d2bf15fac5001c9");
 * assert.equal(tlvs.crc32c, 0xe8d6892d);
 * ```
 */
export function decodeTlvs(tlvs: readonly Tlv[]): ProxyTlvs {
  const out: ProxyTlvs = { others: [] };
  for (const tlv of tlvs) {
    const v = tlv.value;
    let used = false;
    switch (tlv.type) {
      case TlvType.ALPN:
        if (out.alpn === undefined) (out.alpn = latin1(v), used = true);
        break;
      case TlvType.AUTHORITY:
        if (out.authority === undefined) (out.authority = utf8.decode(v), used = true);
        break;
      case TlvType.CRC32C:
        if (out.crc32c === undefined && v.length === 4) (out.crc32c = u32be(v, 0), used = true);
        break;
      case TlvType.NOOP:
        used = true;
        break;
      case TlvType.UNIQUE_ID:
        if (out.uniqueId === undefined && v.length <= 128) (out.uniqueId = v, used = true);
        break;
      case TlvType.SSL:
        if (out.ssl === undefined) {
          const ssl = decodeSsl(v);
          if (ssl !== undefined) (out.ssl = ssl, used = true);
        }
        break;
      case TlvType.NETNS:
        if (out.netns === undefined) (out.netns = latin1(v), used = true);
        break;
      case TlvType.AWS:
        if (out.awsVpceId === undefined && v.length > 1 && v[0] === 0x01) {
          out.awsVpceId = latin1(v.subarray(1));
          used = true;
        }
        break;
      case TlvType.AZURE:
        if (out.azureLinkId === undefined && v.length === 5 && v[0] === 0x01) {
          out.azureLinkId = (v[1]! | v[2]! << 8 | v[3]! << 16 | v[4]! << 24) >>> 0;
          used = true;
        }
        break;
      case TlvType.GCP:
        if (out.gcpPscConnectionId === undefined && v.length === 8) {
          out.gcpPscConnectionId = BigInt(u32be(v, 0)) << 32n | BigInt(u32be(v, 4));
          used = true;
        }
        break;
    }
    if (!used) out.others.push(tlv);
  }
  return out;
}

/** The SSL fields {@linkcode encodeTlvs} writes. */
export interface SslTlvInit {
  /** The `client` bits; see `SslClientFlag`. */
  client: number;
  /** The verify result; 0 when a client certificate verified. Default 0. */
  verify?: number;
  /** 0x21 */
  version?: string;
  /** 0x22 */
  cn?: string;
  /** 0x23 */
  cipher?: string;
  /** 0x24 */
  sigAlg?: string;
  /** 0x25 */
  keyAlg?: string;
  /** 0x26 */
  group?: string;
  /** 0x27 */
  sigScheme?: string;
  /** 0x28 */
  clientCert?: Uint8Array;
}

/** The fields {@linkcode encodeTlvs} writes (the CRC32C is `encodeHeader`'s job). */
export interface ProxyTlvsInit {
  /** 0x01 */
  alpn?: string;
  /** 0x02 */
  authority?: string;
  /** 0x05 */
  uniqueId?: Uint8Array;
  /** 0x20 */
  ssl?: SslTlvInit;
  /** 0x30 */
  netns?: string;
  /** 0xEA subtype 0x01 */
  awsVpceId?: string;
  /** 0xEE subtype 0x01 */
  azureLinkId?: number;
  /** 0xE0 */
  gcpPscConnectionId?: bigint;
  /** Raw TLVs to write after the fields above. */
  others?: readonly Tlv[];
}

const encoder = new TextEncoder();

function ascii(s: string, what: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) {
      throw new ProxyProtocolError("INVALID_HEADER", `${what} must be single-byte text`);
    }
    out[i] = c;
  }
  return out;
}

/**
 * Builds raw TLVs from fields, in the order of {@linkcode ProxyTlvsInit}; pass them to
 * `encodeHeader` as `tlvs`. Strings of ASCII types are written a byte a character;
 * `authority` and the SSL `cn` as UTF-8.
 *
 * @param fields The fields to write.
 * @returns The TLVs.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` for a value that cannot be written.
 *
 * @example
 * ```ts
 * import { decodeTlvs, encodeTlvs } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const tlvs = encodeTlvs({ alpn: "h2", authority: "example.com", azureLinkId: 0x210045c1 });
 * const fields = decodeTlvs(tlvs);
 * assert.equal(fields.authority, "example.com");
 * assert.equal(fields.azureLinkId, 0x210045c1);
 * ```
 */
export function encodeTlvs(fields: ProxyTlvsInit): Tlv[] {
  const out: Tlv[] = [];
  if (fields.alpn !== undefined) {
    out.push({ type: TlvType.ALPN, value: ascii(fields.alpn, "alpn") });
  }
  if (fields.authority !== undefined) {
    out.push({ type: TlvType.AUTHORITY, value: encoder.encode(fields.authority) });
  }
  if (fields.uniqueId !== undefined) {
    if (fields.uniqueId.length > 128) {
      throw new ProxyProtocolError("INVALID_HEADER", "uniqueId must be at most 128 bytes");
    }
    out.push({ type: TlvType.UNIQUE_ID, value: fields.uniqueId });
  }
  if (fields.ssl !== undefined) out.push({ type: TlvType.SSL, value: encodeSsl(fields.ssl) });
  if (fields.netns !== undefined) {
    out.push({ type: TlvType.NETNS, value: ascii(fields.netns, "netns") });
  }
  if (fields.awsVpceId !== undefined) {
    const id = ascii(fields.awsVpceId, "awsVpceId");
    const value = new Uint8Array(1 + id.length);
    value[0] = 0x01;
    value.set(id, 1);
    out.push({ type: TlvType.AWS, value });
  }
  if (fields.azureLinkId !== undefined) {
    const id = fields.azureLinkId;
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
      throw new ProxyProtocolError("INVALID_HEADER", "azureLinkId must be a uint32");
    }
    out.push({
      type: TlvType.AZURE,
      value: new Uint8Array([0x01, id & 0xff, (id >>> 8) & 0xff, (id >>> 16) & 0xff, id >>> 24]),
    });
  }
  if (fields.gcpPscConnectionId !== undefined) {
    const id = fields.gcpPscConnectionId;
    if (id < 0n || id > 0xffffffffffffffffn) {
      throw new ProxyProtocolError("INVALID_HEADER", "gcpPscConnectionId must be a uint64");
    }
    const value = new Uint8Array(8);
    for (let i = 7, v = id; i >= 0; i--, v >>= 8n) value[i] = Number(v & 0xffn);
    out.push({ type: TlvType.GCP, value });
  }
  if (fields.others !== undefined) out.push(...fields.others);
  return out;
}

function encodeSsl(ssl: SslTlvInit): Uint8Array {
  const subs: Tlv[] = [];
  const text = (type: number, s: string | undefined, what: string) => {
    if (s !== undefined) subs.push({ type, value: ascii(s, what) });
  };
  text(TlvType.SSL_VERSION, ssl.version, "ssl.version");
  if (ssl.cn !== undefined) subs.push({ type: TlvType.SSL_CN, value: encoder.encode(ssl.cn) });
  text(TlvType.SSL_CIPHER, ssl.cipher, "ssl.cipher");
  text(TlvType.SSL_SIG_ALG, ssl.sigAlg, "ssl.sigAlg");
  text(TlvType.SSL_KEY_ALG, ssl.keyAlg, "ssl.keyAlg");
  text(TlvType.SSL_GROUP, ssl.group, "ssl.group");
  text(TlvType.SSL_SIG_SCHEME, ssl.sigScheme, "ssl.sigScheme");
  if (ssl.clientCert !== undefined) {
    subs.push({ type: TlvType.SSL_CLIENT_CERT, value: ssl.clientCert });
  }
  let length = 5;
  for (const s of subs) length += 3 + s.value.length;
  if (length > 0xffff) {
    throw new ProxyProtocolError("INVALID_HEADER", "SSL TLV exceeds 65535 bytes");
  }
  const out = new Uint8Array(length);
  const verify = ssl.verify ?? 0;
  out[0] = ssl.client & 0xff;
  out[1] = verify >>> 24;
  out[2] = (verify >>> 16) & 0xff;
  out[3] = (verify >>> 8) & 0xff;
  out[4] = verify & 0xff;
  let p = 5;
  for (const s of subs) {
    out[p] = s.type;
    out[p + 1] = s.value.length >> 8;
    out[p + 2] = s.value.length & 0xff;
    out.set(s.value, p + 3);
    p += 3 + s.value.length;
  }
  return out;
}
