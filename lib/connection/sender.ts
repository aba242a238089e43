/**
 * The sending side, runtime-neutral: {@linkcode headerFor} builds the header that says
 * what an accepted connection says (HAProxy's `send-proxy`, go-proxyproto's
 * `HeaderProxyFromAddrs`), and forwards chosen TLVs of its incoming header (Envoy's
 * `pass_through_tlvs`). Each runtime's `connect()` writes the result.
 *
 * @module
 */

import { TlvType } from "../constants.ts";
import { encodeHeader } from "../encode.ts";
import { ProxyProtocolError } from "../error.ts";
import { formatIPv4, formatIPv6, parseIPv4String, parseIPv6String } from "../ip.ts";
import type { InetAddress, ProxyHeader, ProxyHeaderInit, ProxyVersion, Tlv } from "../types.ts";

/** An address as Deno reports it: `Deno.NetAddr` (or a `Deno.UnixAddr`, which has none). */
export interface AddrLike {
  /** `tcp`, `udp`, `unix`, ... */
  readonly transport?: string | undefined;
  /** The IP address. */
  readonly hostname?: string | undefined;
  /** The port. */
  readonly port?: number | undefined;
}

/**
 * A connection whose addresses the header should carry: anything with Deno's
 * `remoteAddr`/`localAddr` (a `ProxyConn` of `listen()`, or a plain `Deno.Conn`), or with
 * Node's and Bun's `remoteAddress`/`remotePort`/`localAddress`/`localPort` (their sockets,
 * plain or from this library's listeners). Our listeners' connections report the
 * addresses of the header they received (the client's), so a header built from one passes
 * the client on; a plain socket gives its own peer. `proxyHeader`, when present, is where
 * forwarded TLVs come from.
 */
export interface AcceptedConnection {
  /** Deno: the client (the header's source). */
  readonly remoteAddr?: AddrLike | undefined;
  /** Deno: what the client connected to (the header's destination). */
  readonly localAddr?: AddrLike | undefined;
  /** Node, Bun: the client's address. */
  readonly remoteAddress?: string | undefined;
  /** Node, Bun: the client's port. */
  readonly remotePort?: number | undefined;
  /** Node, Bun: the address the client connected to. */
  readonly localAddress?: string | undefined;
  /** Node, Bun: its port. */
  readonly localPort?: number | undefined;
  /** The header the connection arrived with, if any: the source of forwarded TLVs. */
  readonly proxyHeader?: ProxyHeader | null | undefined;
}

/** Options of {@linkcode headerFor}. */
export interface HeaderForOptions {
  /** 1 (text) or 2 (binary). Default 2. v1 carries no TLVs. */
  version?: ProxyVersion;
  /**
   * `PROXY` (default when a connection is given) or `LOCAL` (the default without one: a
   * health check or the sender's own connection; the receiver keeps the socket's addresses).
   */
  command?: "PROXY" | "LOCAL";
  /**
   * Types of the incoming header's TLVs to forward, in the order they came (Envoy's
   * `pass_through_tlvs`). A CRC32C TLV (0x03) is never forwarded: it covered the old
   * header; ask the sender for `checksum: true` to add a fresh one.
   */
  passTlvs?: readonly number[];
  /** TLVs to add after the forwarded ones: authority, unique id, vendor TLVs (`encodeTlvs`). */
  tlvs?: readonly Tlv[];
}

/** The header options every runtime's `connect()` takes besides its own. */
export interface SendOptions {
  /** The header to send, as written; give this or `from`, not both. */
  header?: ProxyHeaderInit;
  /**
   * Send what this accepted connection says: `headerFor(from)` (v2 PROXY, its effective
   * addresses, no TLVs). Give `header: headerFor(from, { ... })` for more. With neither
   * `header` nor `from`, a v2 LOCAL header is sent (a health check).
   */
  from?: AcceptedConnection | null;
  /** v2: add a CRC32C TLV (or fill in the one `header.tlvs` has). Default `false`. */
  checksum?: boolean;
}

function invalid(what: string): never {
  throw new ProxyProtocolError("INVALID_HEADER", what);
}

/** An endpoint read from a connection: IPv4 text, or 16 IPv6 bytes. */
interface End {
  port: number;
  /** Dotted decimal, for IPv4 and v4-mapped IPv6. */
  v4: string | undefined;
  /** Canonical IPv6 text otherwise. */
  v6: string | undefined;
}

const scratch = new Uint8Array(16);

function end(address: unknown, port: unknown): End | undefined {
  if (typeof address !== "string" || typeof port !== "number") return undefined;
  if (!Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  if (parseIPv4String(address) >= 0) return { port, v4: address, v6: undefined };
  const zone = address.indexOf("%"); // fe80::1%eth0: the zone is local to this host
  const text = zone < 0 ? address : address.slice(0, zone);
  if (!parseIPv6String(text, scratch, 0)) return undefined;
  let mapped = scratch[10] === 0xff && scratch[11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) mapped = scratch[i] === 0;
  return mapped
    ? { port, v4: formatIPv4(scratch, 12), v6: undefined }
    : { port, v4: undefined, v6: formatIPv6(scratch, 0) };
}

function endsOf(from: AcceptedConnection): [End, End] | undefined {
  const r = from.remoteAddr, l = from.localAddr;
  const source = r != null ? end(r.hostname, r.port) : end(from.remoteAddress, from.remotePort);
  const destination = l != null ? end(l.hostname, l.port) : end(from.localAddress, from.localPort);
  return source === undefined || destination === undefined ? undefined : [source, destination];
}

function inet6(e: End): InetAddress {
  return { address: e.v6 ?? `::ffff:${e.v4}`, port: e.port };
}

/**
 * The header that says what `from` says: its effective addresses (for a connection of
 * this library's listeners, the client's from the header it came with), as HAProxy's
 * `send-proxy` writes them, with chosen TLVs of its incoming header forwarded and others
 * added. The result goes to `encodeHeader` or to a runtime's `connect({ header })`.
 *
 * Families: two IPv4 ends give `TCP4`. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what
 * a dual-stack Node or Bun listener on `::` reports for IPv4 clients) count as IPv4 and are
 * written dotted. Two IPv6 ends give `TCP6`; one IPv4 and one IPv6 end give `TCP6` with the
 * IPv4 one written `::ffff:a.b.c.d` (as HAProxy does), so a header never mixes families. A
 * zone (`%eth0`) is dropped. When an end is not an IP endpoint (a UNIX socket, a closed
 * socket), the header is PROXY `UNKNOWN`: the receiver keeps its socket's addresses.
 *
 * @param from The accepted connection, or `null`/`undefined` for none (a LOCAL header).
 * @param options `version` (default 2), `command`, `passTlvs`, `tlvs`.
 * @returns The header, for `encodeHeader` or `connect({ header })`.
 * @throws {ProxyProtocolError} With code `INVALID_HEADER` for a bad version or command, or
 *   TLVs asked of a v1 header.
 *
 * @example Pass a client on, forwarding its authority TLV and adding a unique id
 * ```ts
 * import { decodeHeader, decodeTlvs, encodeHeader, encodeTlvs } from "@proxy-protocol/edge";
 * import { headerFor } from "@proxy-protocol/edge/deno";
 * import assert from "node:assert/strict";
 *
 * // What a ProxyConn of listen() reports for a client relayed by a load balancer.
 * const accepted = {
 *   remoteAddr: { transport: "tcp", hostname: "203.0.113.7", port: 51234 },
 *   localAddr: { transport: "tcp", hostname: "10.0.0.5", port: 443 },
 *   proxyHeader: decodeHeader(encodeHeader({
 *     version: 2,
 *     command: "PROXY",
 *     protocol: "TCP4",
 *     source: { address: "203.0.113.7", port: 51234 },
 *     destination: { address: "10.0.0.5", port: 443 },
 *     tlvs: encodeTlvs({ authority: "example.com", awsVpceId: "vpce-1" }),
 *   }))!.header,
 * } as const;
 * const header = headerFor(accepted, {
 *   passTlvs: [0x02], // PP2_TYPE_AUTHORITY
 *   tlvs: encodeTlvs({ uniqueId: new TextEncoder().encode("req-42") }),
 * });
 * assert.equal(header.protocol, "TCP4");
 * assert.deepEqual(header.source, { address: "203.0.113.7", port: 51234 });
 * const sent = decodeTlvs(decodeHeader(encodeHeader(header))!.header.tlvs);
 * assert.equal(sent.authority, "example.com");
 * assert.equal(sent.awsVpceId, undefined);
 * assert.equal(new TextDecoder().decode(sent.uniqueId), "req-42");
 * ```
 *
 * @example Node's dual-stack addresses, mixed families, and no connection
 * ```ts
 * import { headerFor } from "@proxy-protocol/edge/deno";
 * import assert from "node:assert/strict";
 *
 * const mapped = headerFor({
 *   remoteAddress: "::ffff:203.0.113.7",
 *   remotePort: 51234,
 *   localAddress: "::ffff:10.0.0.5",
 *   localPort: 80,
 * });
 * assert.equal(mapped.protocol, "TCP4");
 * assert.deepEqual(mapped.source, { address: "203.0.113.7", port: 51234 });
 *
 * const mixed = headerFor({
 *   remoteAddress: "203.0.113.7",
 *   remotePort: 51234,
 *   localAddress: "2001:db8::1",
 *   localPort: 80,
 * });
 * assert.equal(mixed.protocol, "TCP6");
 * assert.deepEqual(mixed.source, { address: "::ffff:203.0.113.7", port: 51234 });
 *
 * assert.deepEqual(headerFor(null), { version: 2, command: "LOCAL", protocol: "UNKNOWN" });
 * ```
 */
export function headerFor(
  from: AcceptedConnection | null | undefined,
  options: HeaderForOptions = {},
): ProxyHeaderInit {
  const version = options.version ?? 2;
  if (version !== 1 && version !== 2) invalid(`unknown version ${String(version)}`);
  const command = options.command ?? (from == null ? "LOCAL" : "PROXY");
  if (command !== "PROXY" && command !== "LOCAL") invalid("command must be PROXY or LOCAL");

  const tlvs: Tlv[] = [];
  const pass = options.passTlvs;
  const incoming = from?.proxyHeader?.tlvs;
  if (pass !== undefined && pass.length > 0 && incoming !== undefined) {
    const types = new Set(pass);
    for (const tlv of incoming) {
      if (tlv.type !== TlvType.CRC32C && types.has(tlv.type)) tlvs.push(tlv);
    }
  }
  if (options.tlvs !== undefined) tlvs.push(...options.tlvs);
  if (version === 1 && tlvs.length > 0) invalid("v1 cannot carry TLVs");

  const header: ProxyHeaderInit = { version, command, protocol: "UNKNOWN" };
  if (tlvs.length > 0) header.tlvs = tlvs;
  if (command === "LOCAL" || from == null) return header;
  const ends = endsOf(from);
  if (ends === undefined) return header;
  const [s, d] = ends;
  if (s.v4 !== undefined && d.v4 !== undefined) {
    header.protocol = "TCP4";
    header.source = { address: s.v4, port: s.port };
    header.destination = { address: d.v4, port: d.port };
  } else {
    header.protocol = "TCP6";
    header.source = inet6(s);
    header.destination = inet6(d);
  }
  return header;
}

/**
 * The header a `connect()` sends, checked and encoded before anything connects. Internal.
 *
 * @throws {TypeError} When both `header` and `from` are given.
 * @throws {ProxyProtocolError} `INVALID_HEADER` when the header cannot be written.
 */
export function headerBytes(options: SendOptions): {
  header: ProxyHeaderInit;
  bytes: Uint8Array;
} {
  if (options.header != null && options.from != null) {
    throw new TypeError("give either header or from, not both");
  }
  const header = options.header ?? headerFor(options.from);
  const bytes = encodeHeader(header, { checksum: options.checksum === true });
  return { header, bytes };
}

/** The keys of {@linkcode SendOptions}, which a runtime's own connect must not get. */
export const SEND_KEYS: ReadonlySet<string> = new Set(["header", "from", "checksum"]);

/** `options` without the {@linkcode SendOptions} keys. Internal. */
export function runtimeConnectOptions<T extends object>(options: T): Omit<T, keyof SendOptions> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (!SEND_KEYS.has(key)) out[key] = value;
  }
  return out as Omit<T, keyof SendOptions>;
}
