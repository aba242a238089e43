/**
 * What every runtime's entry point re-exports besides its own functions, so that one
 * import gives a server everything it needs. Internal: each `lib/<runtime>/mod.ts` has
 * `export * from "../common.ts"`.
 *
 * @module
 */

export { ProxyProtocolError } from "./error.ts";
export type { ProxyProtocolErrorCode } from "./error.ts";
export type { PeerInfo } from "./connection/peer.ts";
export type { ProxyPolicy, UntrustedPolicy } from "./connection/policy.ts";
export type { ProxyProtocolOptions } from "./connection/options.ts";
export { HEADER_BUCKETS, ListenerMetrics } from "./connection/metrics.ts";
export type { MetricsSnapshot } from "./connection/metrics.ts";
export { headerFor } from "./connection/sender.ts";
export type {
  AcceptedConnection,
  AddrLike,
  HeaderForOptions,
  SendOptions,
} from "./connection/sender.ts";
export { DatagramMessage } from "./connection/datagram_socket.ts";
export type { DatagramEndpoint, DatagramOptions } from "./connection/datagram_socket.ts";
export type { DatagramFormat } from "./datagram.ts";
export type { SppHeader } from "./spp.ts";
export type {
  InetAddress,
  ProxyAddress,
  ProxyCommand,
  ProxyHeader,
  ProxyHeaderInit,
  ProxyProtocolFamily,
  ProxyVersion,
  Tlv,
  UnixAddress,
} from "./types.ts";
