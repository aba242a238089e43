/**
 * The options every listener and stream helper shares, and how they are checked once.
 *
 * @module
 */

import { CidrSet } from "../cidr.ts";
import type { ProxyProtocolError } from "../error.ts";
import type { ProxyHeader } from "../types.ts";
import { Deadlines } from "./deadlines.ts";
import type { ListenerMetrics } from "./metrics.ts";
import type { PeerInfo } from "./peer.ts";
import { POLICIES, type ProxyPolicy, UNTRUSTED, type UntrustedPolicy } from "./policy.ts";

/** Options shared by `readProxyHeader` and every adapter. */
export interface ProxyProtocolOptions {
  /**
   * The policy for trusted peers, or a function of the peer choosing one. Default
   * `"require"`.
   */
  policy?: ProxyPolicy | ((peer: PeerInfo) => ProxyPolicy);
  /**
   * CIDR ranges (IPv4 and IPv6) of the proxies allowed to send headers. Default: every peer
   * is trusted, which is right only where nothing but your proxies can reach the port.
   */
  trust?: readonly string[];
  /** What to do with peers outside `trust`. Default `"deny"`. */
  untrusted?: UntrustedPolicy;
  /**
   * Milliseconds to wait for the header; default 10 000. The spec forbids less than 3 s:
   * shorter values throw unless `allowShortTimeout` is set. Checked by one coarse clock per
   * listener, so a connection is closed up to an eighth of the timeout (at most 1 s) late.
   */
  timeout?: number;
  /** Allow a `timeout` below 3000 ms (tests, or a user who insists). */
  allowShortTimeout?: boolean;
  /** The longest header accepted, in bytes; default 4096. */
  maxHeaderLength?: number;
  /** Verify a CRC32C TLV when one is present; default `true`. */
  verifyChecksum?: boolean;
  /**
   * Called with each decoded header; return `false` (or throw) to refuse the connection
   * with `VALIDATION_FAILED`, e.g. to require an AWS VPC endpoint id. May be async: the
   * connection stops reading until it settles, and the header timeout still applies.
   */
  validate?: (header: ProxyHeader, peer: PeerInfo) => boolean | void | Promise<boolean | void>;
  /**
   * Called for every refused connection, which is then closed, and for failures of
   * `accept()` itself (`ACCEPT_FAILED`, once a burst, with no peer); the listener keeps
   * accepting. Errors it throws are ignored.
   */
  onError?: (error: ProxyProtocolError, peer: PeerInfo | undefined) => void;
  /**
   * Hand each connection to the application at once, before its header is in, for
   * protocols where the server speaks first (SMTP, FTP, POP3, IMAP, MySQL): behind an AWS
   * NLB the header only comes with the client's first bytes, so a server that waits for it
   * before greeting waits for ever. Default `false`.
   *
   * Writes go through at once. The header is read on the application's first read (on
   * Node and Bun, as soon as bytes arrive), and `await conn.proxyHeaderSettled` waits for
   * it; reads see payload only. Until it settles, `proxyHeader` is `null` and the
   * addresses are the socket's own; after, they are final. The same `policy`, `trust`,
   * `validate` and `timeout` apply, the timeout counted from the accept: a client that
   * sends nothing within it is closed with `TIMEOUT` even while the application writes.
   * A refused connection is reported to `onError` and closed by the library, as without
   * `lazy`, and `proxyHeaderSettled` (and reads) reject with the error; refusals that need
   * no bytes (`untrusted: "deny"`, a throwing policy function) happen before the hand-over.
   * A connection that closes before its header, whoever closes it, is `CONNECTION_CLOSED`.
   *
   * For the listeners only (`listen` on Deno and Bun, `createServer` on Node); `serve` and
   * Bun's `listenTls` refuse it (HTTP and TLS clients speak first), the stream helpers
   * ignore it.
   */
  lazy?: boolean;
  /**
   * Counters to keep for this listener: connections accepted (with the time from accept to
   * hand-over) and refused (by error code, `ACCEPT_FAILED` included), connections open, and
   * payload bytes of closed connections. One object may serve several listeners; read its
   * fields, or {@linkcode ListenerMetrics.prometheus} for Prometheus' text format. Unset
   * (the default), nothing is timed or counted.
   *
   * A connection counts as open from its hand-over until it closes: on Node the socket's
   * `close` event, on Bun the `close` handler, on Deno the first `close()` of the
   * `ProxyConn` (close what you accept). Bytes are the socket's, less the header, on Node
   * and Bun; Deno's `listen` does not count bytes (they stay 0). For the listeners (`listen`
   * on Deno and Bun, `createServer` on Node, and `serve` and `listenTls`, built on them);
   * the stream helpers and the datagram sockets ignore it.
   */
  metrics?: ListenerMetrics;
}

/** Options with defaults applied and ranges parsed. Internal. */
export interface ResolvedOptions {
  policy: ProxyPolicy | ((peer: PeerInfo) => ProxyPolicy);
  trust: CidrSet | undefined;
  untrusted: UntrustedPolicy;
  timeout: number;
  maxHeaderLength: number;
  verifyChecksum: boolean;
  validate: ProxyProtocolOptions["validate"];
  onError: ProxyProtocolOptions["onError"];
  /** Hand connections over before their header is in. */
  lazy: boolean;
  /** The coarse clock that times out header phases under these options. */
  deadlines: Deadlines;
  /** Counters to keep, if any. */
  metrics: ListenerMetrics | undefined;
}

/**
 * Applies defaults and checks the options once, when a listener is created.
 *
 * @param options The user's options.
 * @returns The resolved options.
 * @throws {TypeError} For an unknown policy or a bad CIDR range.
 * @throws {RangeError} For a timeout below 3 s without `allowShortTimeout`, or bad sizes.
 */
export function resolveOptions(options: ProxyProtocolOptions = {}): ResolvedOptions {
  const policy = options.policy ?? "require";
  if (typeof policy !== "function" && !POLICIES.has(policy)) {
    throw new TypeError(`unknown policy ${JSON.stringify(policy)}`);
  }
  const untrusted = options.untrusted ?? "deny";
  if (!UNTRUSTED.has(untrusted)) {
    throw new TypeError(`unknown untrusted policy ${JSON.stringify(untrusted)}`);
  }
  const timeout = options.timeout ?? 10_000;
  if (!(timeout > 0) || !Number.isFinite(timeout)) {
    throw new RangeError("timeout must be a positive number of ms");
  }
  if (timeout < 3000 && !options.allowShortTimeout) {
    throw new RangeError(
      "the spec forbids a header timeout below 3 s; set allowShortTimeout to insist",
    );
  }
  const maxHeaderLength = options.maxHeaderLength ?? 4096;
  if (!Number.isInteger(maxHeaderLength) || maxHeaderLength < 16) {
    throw new RangeError("maxHeaderLength must be an integer of at least 16");
  }
  return {
    policy,
    trust: options.trust === undefined ? undefined : new CidrSet(options.trust),
    untrusted,
    timeout,
    maxHeaderLength,
    verifyChecksum: options.verifyChecksum ?? true,
    validate: options.validate,
    onError: options.onError,
    lazy: options.lazy === true,
    deadlines: new Deadlines(timeout),
    metrics: options.metrics,
  };
}

/** The keys of {@linkcode ProxyProtocolOptions}, to tell them from a runtime's own. */
export const OPTION_KEYS: ReadonlySet<string> = new Set([
  "policy",
  "trust",
  "untrusted",
  "timeout",
  "allowShortTimeout",
  "maxHeaderLength",
  "verifyChecksum",
  "validate",
  "onError",
  "lazy",
  "metrics",
]);

/**
 * Throws for `lazy` where it cannot apply: servers whose clients speak first. Internal.
 *
 * @param options The user's options.
 * @param what The function, for the message.
 * @throws {TypeError} When `lazy` is set.
 */
export function refuseLazy(options: { lazy?: boolean } | undefined, what: string): void {
  if (options?.lazy === true) {
    throw new TypeError(`${what} does not take lazy: its clients speak first`);
  }
}

/**
 * The entries of `options` that are not PROXY protocol options: what goes on to the
 * runtime's own listen call. Internal.
 */
export function runtimeOptions<T extends object>(
  options: T,
  own: ReadonlySet<string> = OPTION_KEYS,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (!OPTION_KEYS.has(key) && !own.has(key)) out[key] = value;
  }
  return out;
}
