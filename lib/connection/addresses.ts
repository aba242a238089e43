/**
 * The addresses a connection reports: the header's for PROXY over IP, else the socket's.
 *
 * @module
 */

import type { ProxyHeader } from "../types.ts";

/** The addresses a connection reports: the header's for PROXY over IP, else the socket's. */
export interface EffectiveAddresses {
  /** The client: from the header, or the socket's peer. */
  remoteAddress: string;
  /** The client's port. */
  remotePort: number;
  /** What the client connected to: from the header, or this socket's own end. */
  localAddress: string;
  /** Its port. */
  localPort: number;
  /** `IPv4` or `IPv6`, as Node names them. */
  family: "IPv4" | "IPv6";
}

/**
 * The header's addresses when it carries a client's over IP, else `undefined`: LOCAL and
 * UNKNOWN headers (health checks), UNIX families and missing headers leave the socket's.
 *
 * @param header The connection's header, if any.
 * @returns The addresses to report instead of the socket's, or `undefined`.
 */
export function headerAddresses(header: ProxyHeader | null): EffectiveAddresses | undefined {
  if (header === null || header.command !== "PROXY") return undefined;
  const { source, destination } = header;
  if (typeof source?.address !== "string" || typeof destination?.address !== "string") {
    return undefined;
  }
  return {
    remoteAddress: source.address,
    remotePort: source.port,
    localAddress: destination.address,
    localPort: destination.port,
    family: header.protocol === "TCP4" || header.protocol === "UDP4" ? "IPv4" : "IPv6",
  };
}
