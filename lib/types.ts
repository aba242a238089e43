/**
 * The shapes the codec reads and writes.
 *
 * @module
 */

/** The header's version: 1 is the text line, 2 the binary form. */
export type ProxyVersion = 1 | 2;

/**
 * `PROXY`: the connection was relayed for a client and the addresses are the client's.
 * `LOCAL`: the proxy opened the connection itself (e.g. a health check); use the socket's
 * own addresses. A v1 `PROXY UNKNOWN` line decodes as `LOCAL`.
 */
export type ProxyCommand = "PROXY" | "LOCAL";

/**
 * Address family and transport. `UNKNOWN` is v1's `UNKNOWN` and v2's `UNSPEC` (0x00).
 */
export type ProxyProtocolFamily =
  | "TCP4"
  | "TCP6"
  | "UDP4"
  | "UDP6"
  | "UNIX_STREAM"
  | "UNIX_DGRAM"
  | "UNKNOWN";

/** An IP endpoint. IPv6 addresses are in RFC 5952 canonical form. */
export interface InetAddress {
  /** Dotted decimal IPv4, or canonical IPv6 (`::1`, `::ffff:10.1.91.14`). */
  address: string;
  /** The port, 0-65535. */
  port: number;
  /** Absent: lets `source?.path` type-check on a {@linkcode ProxyAddress}. */
  path?: never;
}

/** A UNIX socket endpoint. */
export interface UnixAddress {
  /** The socket path (v2 carries up to 108 bytes, NUL padded; decoding stops at the first NUL). */
  path: string;
  /** Absent: lets `source?.address` type-check on a {@linkcode ProxyAddress}. */
  address?: never;
  /** Absent: lets `source?.port` type-check on a {@linkcode ProxyAddress}. */
  port?: never;
}

/**
 * One end of the relayed connection: `{ address, port }` for IP families, `{ path }` for
 * UNIX ones. Tell them apart with `typeof end.address === "string"`.
 */
export type ProxyAddress = InetAddress | UnixAddress;

/** A raw Type-Length-Value field of a v2 header. */
export interface Tlv {
  /** The type byte, 0-255 (see `TlvType`). */
  type: number;
  /** The value. Decoded TLVs hold a view into the input, not a copy. */
  value: Uint8Array;
}

/** A decoded PROXY protocol header. */
export interface ProxyHeader {
  /** 1 for the text form, 2 for the binary form. */
  version: ProxyVersion;
  /** Whether the addresses are a client's (`PROXY`) or the proxy's own connection (`LOCAL`). */
  command: ProxyCommand;
  /** The family and transport as sent (for v2 LOCAL too, though its addresses are discarded). */
  protocol: ProxyProtocolFamily;
  /** The client's end, or `null` for LOCAL and UNKNOWN headers. */
  source: ProxyAddress | null;
  /** The end the client connected to, or `null` for LOCAL and UNKNOWN headers. */
  destination: ProxyAddress | null;
  /** The v2 TLVs in wire order; always empty for v1. */
  tlvs: Tlv[];
}

/** What {@linkcode decodeHeader} returns for a complete header. */
export interface DecodeResult {
  /** The header. */
  header: ProxyHeader;
  /** How many bytes the header takes: `bytes.subarray(length)` is the payload. */
  length: number;
}

/** Options for {@linkcode decodeHeader}. */
export interface DecodeOptions {
  /**
   * Longest header accepted, in bytes; longer ones fail with `HEADER_TOO_LONG` as soon as
   * the v2 length field is known. Default: no limit beyond the protocol's own (107 bytes
   * for v1, 65551 for v2).
   */
  maxLength?: number;
  /** Verify a `PP2_TYPE_CRC32C` TLV when one is present. Default: `true`. */
  verifyChecksum?: boolean;
}

/** A header to encode: a {@linkcode ProxyHeader}, with `tlvs` optional. */
export interface ProxyHeaderInit {
  /** 1 for the text form, 2 for the binary form. */
  version: ProxyVersion;
  /** `PROXY` for a relayed client, `LOCAL` for the proxy's own connection. */
  command: ProxyCommand;
  /** The family and transport. */
  protocol: ProxyProtocolFamily;
  /** The client's end; required for PROXY headers of a known family. */
  source?: ProxyAddress | null;
  /** The end the client connected to; required with `source`. */
  destination?: ProxyAddress | null;
  /** v2 only: TLVs, written in this order. */
  tlvs?: readonly Tlv[];
}

/** Options for {@linkcode encodeHeader}. */
export interface EncodeOptions {
  /**
   * v2 only: add a `PP2_TYPE_CRC32C` TLV (or fill in the one `tlvs` already has) with the
   * checksum of the whole header. Default: `false`.
   */
  checksum?: boolean;
}
