/**
 * A zero-dependency, runtime-neutral codec for HAProxy's PROXY protocol, text v1 and
 * binary v2 with TLVs, for Deno, Bun and Node.
 *
 * @example Read the client's address from the start of a connection
 * ```ts
 * import { decodeHeader } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const first = new TextEncoder().encode("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n");
 * const result = decodeHeader(first);
 * assert.equal(result?.header.source?.address, "2001:db8::1");
 * ```
 *
 * @module
 */

export { decodeHeader } from "./lib/decode.ts";
export { encodedLength, encodeHeader, encodeHeaderInto } from "./lib/encode.ts";
export { crc32c } from "./lib/crc32c.ts";
export { decodeTlvs, encodeTlvs } from "./lib/tlv.ts";
export type { ProxyTlvs, ProxyTlvsInit, SslTlv, SslTlvInit } from "./lib/tlv.ts";
export { ProxyProtocolError } from "./lib/error.ts";
export type { ProxyProtocolErrorCode, ProxyProtocolErrorOptions } from "./lib/error.ts";
export {
  SslClientFlag,
  TlvType,
  V1_MAX_LENGTH,
  V2_MAX_LENGTH,
  V2_SIGNATURE,
} from "./lib/constants.ts";
export { concatBytes, fromHex, toHex } from "./lib/bytes.ts";
export { readProxyHeader, readProxyHeaderFrom } from "./lib/stream.ts";
export type {
  ProxyStreamResult,
  PullReader,
  PullResult,
  ReadProxyHeaderOptions,
} from "./lib/stream.ts";
export { bytesNeeded, HeaderReader } from "./lib/header_reader.ts";
export type { HeaderReadResult } from "./lib/header_reader.ts";
export { CidrSet } from "./lib/cidr.ts";
export type { EffectiveAddresses } from "./lib/connection/addresses.ts";
export type { PeerInfo } from "./lib/connection/peer.ts";
export type { ProxyPolicy, UntrustedPolicy } from "./lib/connection/policy.ts";
export type { ProxyProtocolOptions } from "./lib/connection/options.ts";
export { HEADER_BUCKETS, ListenerMetrics } from "./lib/connection/metrics.ts";
export type { MetricsSnapshot } from "./lib/connection/metrics.ts";
export type { SessionResult } from "./lib/connection/session.ts";
export type {
  DecodeOptions,
  DecodeResult,
  EncodeOptions,
  InetAddress,
  ProxyAddress,
  ProxyCommand,
  ProxyHeader,
  ProxyHeaderInit,
  ProxyProtocolFamily,
  ProxyVersion,
  Tlv,
  UnixAddress,
} from "./lib/types.ts";
export { headerFor } from "./lib/connection/sender.ts";
export type {
  AcceptedConnection,
  AddrLike,
  HeaderForOptions,
  SendOptions,
} from "./lib/connection/sender.ts";
export { decodeDatagram, encodeDatagram } from "./lib/datagram.ts";
export type {
  DatagramFormat,
  DatagramResult,
  DecodeDatagramOptions,
  EncodeDatagramOptions,
  ProxyDatagram,
  SppDatagram,
} from "./lib/datagram.ts";
export type { SppHeader, SppHeaderInit } from "./lib/spp.ts";
