/**
 * What every runtime's datagram socket shares: the decision for each datagram (trust,
 * policy, decode, report) and the header put on a reply. Runtime-neutral; the adapters in
 * `lib/<runtime>/udp.ts` only move bytes.
 *
 * Not supported: Cloudflare Spectrum's PROXY v2 mode for UDP, which puts a header on the
 * first datagram of a flow only (CoreDNS tracks sessions for it); use Spectrum's SPP mode,
 * which heads every datagram.
 *
 * UDP keeps no state per client, and neither does this: the spec has every datagram carry
 * its own header and be parsed on its own (a datagram may come from a new client, or take
 * another path through the proxy, at any time), so a table of clients would only go stale,
 * grow without bound under spoofed sources, and let one datagram's header speak for
 * another. A reply is built from the message it answers, which carries all it needs.
 *
 * @module
 */

import { decodeDatagram, encodeDatagram } from "../datagram.ts";
import type { DatagramFormat, DatagramResult, DecodeDatagramOptions } from "../datagram.ts";
import { ProxyProtocolError } from "../error.ts";
import type { SppHeader } from "../spp.ts";
import type { ProxyHeader, ProxyHeaderInit } from "../types.ts";
import { headerAddresses } from "./addresses.ts";
import { type ProxyProtocolOptions, type ResolvedOptions, resolveOptions } from "./options.ts";
import type { PeerInfo } from "./peer.ts";
import { policyFor } from "./policy.ts";
import { report, untrustedError } from "./report.ts";

/**
 * The PROXY protocol options of every `listenDatagram`, besides the runtime's own bind
 * options. `policy`, `trust`, `untrusted`, `maxHeaderLength`, `verifyChecksum` and
 * `onError` mean what they mean for streams, applied to each datagram on its own.
 * `timeout` does not apply (a datagram is whole or refused, never waited for) and neither
 * does `validate`: check `message.header` where you handle the message.
 */
export interface DatagramOptions extends
  Pick<
    ProxyProtocolOptions,
    "policy" | "trust" | "untrusted" | "maxHeaderLength" | "verifyChecksum" | "onError"
  > {
  /**
   * The header format the proxy sends: `proxy` (PROXY protocol, v2 `UDP4`/`UDP6` headers;
   * the default) or `spp` (Cloudflare Spectrum's Simple Proxy Protocol). A receiver never
   * guesses it.
   */
  format?: DatagramFormat;
  /**
   * Whether `send` puts a header in front of a reply to a datagram that carried one
   * (used or ignored; under `skip` none is read, and a reply goes bare). Default: `true`
   * for `spp`, `false` for `proxy`.
   *
   * - SPP: Cloudflare's Spectrum documentation says the origin "must also prepend packets
   *   meant for the client with the same header, including original client source
   *   information" (developers.cloudflare.com/spectrum/how-to/enable-proxy-protocol, "Enable
   *   Simple Proxy Protocol for UDP"); Tencent EdgeOne, which also speaks SPP, cuts a
   *   reply's payload short when the header is missing (cloud.tencent.com/document/product/1552/104412).
   *   So the reply carries the request's header unchanged: client in the client field,
   *   proxy in the proxy field (not swapped: SPP's fields name roles, not directions).
   * - PROXY v2: the spec defines the header only from the proxy to the server, and
   *   dnsdist, which sends it to its backends over UDP, takes replies bare: its own test
   *   backend answers with the DNS message alone (PowerDNS/pdns
   *   `regression-tests.dnsdist/proxyprotocolutils.py`). A header on a reply to such a
   *   proxy would reach the client as payload. With `replyHeader: true`, a
   *   reply carries the request's header with source and destination swapped (the client
   *   becomes the destination), same version and family, no TLVs; a `LOCAL` request gets
   *   a `LOCAL` reply.
   */
  replyHeader?: boolean;
}

/** An IP endpoint of a datagram. */
export interface DatagramEndpoint {
  /** The address: dotted IPv4 or IPv6 text (SPP's IPv4 clients as `::ffff:a.b.c.d`). */
  address: string;
  /** The UDP port. */
  port: number;
}

/** The datagram's header as the receiver decoded it; kept for the reply. Internal. */
type Carried = DatagramResult["header"];

/** What {@linkcode DatagramReceiver.receive} makes of a datagram it serves. Internal. */
export interface ReceivedDatagram {
  /** The payload: a view into the datagram. */
  data: Uint8Array;
  /** The client: the header's source, else the peer. */
  client: DatagramEndpoint;
  /** The datagram's real sender. */
  proxy: DatagramEndpoint;
  /** The header the application sees: `null` when none came or the policy ignores it. */
  header: ProxyHeader | SppHeader | null;
  /** The header the datagram carried, used or not: what a reply is built from. */
  carried: Carried | null;
}

let carriedOf: (message: DatagramMessage) => Carried | null;

/**
 * One datagram as the application gets it: the payload, who sent it (`client`, from the
 * header) and through whom (`proxy`, the datagram's real peer). Pass it to the socket's
 * `send` to answer: the reply goes to `proxy`, with the header the proxy expects.
 *
 * Messages are made by the sockets; the constructor is internal.
 */
export class DatagramMessage {
  /** The payload after the header: a view into the datagram as received, not a copy. */
  readonly data: Uint8Array;
  /**
   * The client: the header's source for a PROXY header over IP (SPP: always), else the
   * datagram's peer (a `LOCAL` header, no header, an ignored or skipped one, a UNIX
   * family). A peer outside `trust` never sets it.
   */
  readonly client: DatagramEndpoint;
  /** The datagram's real sender: the proxy, where one is used. Replies go here. */
  readonly proxy: DatagramEndpoint;
  /**
   * The decoded header (an `SppHeader` for format `spp`), or `null` when none came or the
   * policy (`ignore`, `skip`) does not use it. Its TLVs are views into the datagram.
   */
  readonly header: ProxyHeader | SppHeader | null;
  readonly #carried: Carried | null;

  /**
   * Internal: sockets make messages.
   *
   * @param received What the receiver made of a datagram.
   */
  constructor(received: ReceivedDatagram) {
    this.data = received.data;
    this.client = received.client;
    this.proxy = received.proxy;
    this.header = received.header;
    this.#carried = received.carried;
  }

  static {
    carriedOf = (message) => {
      if (!(#carried in message)) {
        throw new TypeError("send() answers a message the socket received");
      }
      return message.#carried;
    };
  }
}

/**
 * The per-datagram logic of a datagram socket: options checked once, then `receive` for
 * every datagram and `reply` for every answer. Internal.
 */
export class DatagramReceiver {
  /** The header format. */
  readonly format: DatagramFormat;
  /** Whether replies carry a header. */
  readonly replyHeader: boolean;
  /** The resolved PROXY protocol options. */
  readonly options: ResolvedOptions;
  readonly #decode: DecodeDatagramOptions;

  /**
   * @param options The socket's options.
   * @throws {TypeError} For an unknown format, policy or CIDR range.
   * @throws {RangeError} For a bad `maxHeaderLength`.
   */
  constructor(options: DatagramOptions) {
    const format = options.format ?? "proxy";
    if (format !== "proxy" && format !== "spp") {
      throw new TypeError(`format must be "proxy" or "spp", not ${String(format)}`);
    }
    this.format = format;
    this.replyHeader = options.replyHeader ?? format === "spp";
    const own: ProxyProtocolOptions = {};
    if (options.policy !== undefined) own.policy = options.policy;
    if (options.trust !== undefined) own.trust = options.trust;
    if (options.untrusted !== undefined) own.untrusted = options.untrusted;
    if (options.maxHeaderLength !== undefined) own.maxHeaderLength = options.maxHeaderLength;
    if (options.verifyChecksum !== undefined) own.verifyChecksum = options.verifyChecksum;
    if (options.onError !== undefined) own.onError = options.onError;
    this.options = resolveOptions(own);
    this.#decode = {
      format,
      maxLength: this.options.maxHeaderLength,
      verifyChecksum: this.options.verifyChecksum,
    };
  }

  /**
   * Decides one datagram: the policy for its peer, then its header.
   *
   * @param bytes The whole datagram.
   * @param peer Its sender and this socket's own address.
   * @returns What to hand the application, or `undefined` when the datagram was dropped
   *   (and reported to `onError`).
   */
  receive(bytes: Uint8Array, peer: PeerInfo): ReceivedDatagram | undefined {
    const options = this.options;
    const proxy = { address: peer.remoteAddress, port: peer.remotePort };
    let policy;
    try {
      policy = policyFor(options, { peer });
    } catch (error) {
      return this.#drop(error, peer);
    }
    if (policy === "deny") return this.#drop(untrustedError(peer), peer);
    if (policy === "skip") {
      return { data: bytes, client: proxy, proxy, header: null, carried: null };
    }
    let result: DatagramResult;
    try {
      result = decodeDatagram(bytes, this.#decode);
    } catch (error) {
      if (!(error instanceof ProxyProtocolError)) throw error;
      // No header where the policy allows none: the whole datagram is the application's.
      // Under `reject` that is any datagram that is not a valid header; under `optional`
      // and `ignore` one that does not start a header at all. A header cut short or broken
      // is refused under every policy but `reject`.
      const none = error.code === "NOT_PROXY_PROTOCOL" || bytes.length === 0;
      if (policy === "reject" || (none && policy !== "require")) {
        return { data: bytes, client: proxy, proxy, header: null, carried: null };
      }
      if (error.code === "NOT_PROXY_PROTOCOL") {
        return this.#drop(
          new ProxyProtocolError("HEADER_REQUIRED", "the datagram does not start with a header", {
            cause: error,
            ...(error.offset !== undefined ? { offset: error.offset } : {}),
          }),
          peer,
        );
      }
      return this.#drop(error, peer);
    }
    if (policy === "reject") {
      return this.#drop(
        new ProxyProtocolError("HEADER_FORBIDDEN", "a header came where the policy rejects one"),
        peer,
      );
    }
    const carried = result.header;
    if (policy === "ignore") {
      return { data: result.payload, client: proxy, proxy, header: null, carried };
    }
    const addresses = headerAddresses(carried as ProxyHeader);
    const client = addresses === undefined
      ? proxy
      : { address: addresses.remoteAddress, port: addresses.remotePort };
    return { data: result.payload, client, proxy, header: carried, carried };
  }

  /**
   * The datagram that answers `message` with `payload`: the payload alone, or behind the
   * header the proxy expects (see {@linkcode DatagramOptions.replyHeader}).
   *
   * @param message A message this socket received.
   * @param payload The reply's payload.
   * @returns The datagram to send to `message.proxy`.
   * @throws {TypeError} When `message` is not a {@linkcode DatagramMessage}.
   */
  reply(message: DatagramMessage, payload: Uint8Array): Uint8Array {
    const carried = carriedOf(message);
    if (carried === null || !this.replyHeader) return payload;
    if (this.format === "spp") return encodeDatagram(carried, payload, { format: "spp" });
    return encodeDatagram(swapped(carried as ProxyHeader), payload);
  }

  #drop(error: unknown, peer: PeerInfo): undefined {
    report(this.options, error, peer);
    return undefined;
  }
}

/** The request's header turned around for its reply: the client becomes the destination. */
function swapped(header: ProxyHeader): ProxyHeaderInit {
  const { version, command, protocol } = header;
  if (command === "LOCAL") return { version, command, protocol: "UNKNOWN" };
  return { version, command, protocol, source: header.destination, destination: header.source };
}
