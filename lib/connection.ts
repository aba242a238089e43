/**
 * The connection contract every adapter shares: one options type, how policy and trust
 * pick what to do with a peer, and the per-connection session that reads the header.
 * Runtime-neutral: adapters feed it bytes; it decides.
 *
 * @module
 */

import { ProxyProtocolError } from "./error.ts";
import { CidrSet } from "./cidr.ts";
import { HeaderReader } from "./header_reader.ts";
import type { ProxyHeader } from "./types.ts";

/**
 * What to do about a header on a connection:
 * - `require`: a header must come first; anything else is refused (the spec's rule: a
 *   receiver must not guess).
 * - `optional`: use a header if one comes, else serve the connection as it is. A migration
 *   aid: on a port that clients reach directly, anyone may claim any address.
 * - `ignore`: read and check a header if one comes, then serve with the socket's own
 *   addresses.
 * - `reject`: a header is refused; other connections are served as they are.
 * - `skip`: read nothing; the bytes go to the application untouched.
 */
export type ProxyPolicy = "require" | "optional" | "ignore" | "reject" | "skip";

/**
 * What to do with peers outside `trust`: `deny` closes the connection at once; the others
 * are the {@linkcode ProxyPolicy} values that never take an address from a header.
 */
export type UntrustedPolicy = "deny" | "reject" | "ignore" | "skip";

/** The real endpoints of an accepted socket. */
export interface PeerInfo {
  /** The peer's address as the socket reports it (the load balancer, when one is used). */
  remoteAddress: string;
  /** The peer's port. */
  remotePort: number;
  /** This end's address. */
  localAddress: string;
  /** This end's port. */
  localPort: number;
}

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
   * shorter values throw unless `allowShortTimeout` is set.
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
   * with `VALIDATION_FAILED`, e.g. to require an AWS VPC endpoint id. May be async.
   */
  validate?: (header: ProxyHeader, peer: PeerInfo) => boolean | void | Promise<boolean | void>;
  /**
   * Called for every refused connection, which is then closed; the listener keeps
   * accepting. Errors it throws are ignored.
   */
  onError?: (error: ProxyProtocolError, peer: PeerInfo | undefined) => void;
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
}

const POLICIES = new Set(["require", "optional", "ignore", "reject", "skip"]);
const UNTRUSTED = new Set(["deny", "reject", "ignore", "skip"]);

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
  };
}

/**
 * The policy for one peer: `untrusted` for peers outside `trust`, else `policy`.
 * Internal.
 */
export function policyFor(options: ResolvedOptions, peer: PeerInfo): ProxyPolicy | "deny" {
  if (options.trust !== undefined && !options.trust.has(peer.remoteAddress)) {
    return options.untrusted;
  }
  if (typeof options.policy !== "function") return options.policy;
  let policy: ProxyPolicy;
  try {
    policy = options.policy(peer);
  } catch (cause) {
    throw new ProxyProtocolError("VALIDATION_FAILED", "the policy function threw", { cause });
  }
  if (!POLICIES.has(policy)) {
    throw new ProxyProtocolError(
      "VALIDATION_FAILED",
      `the policy function returned ${JSON.stringify(policy)}`,
    );
  }
  return policy;
}

/**
 * The error for a peer that {@linkcode policyFor} denies. Internal.
 *
 * @param peer The peer, where known.
 * @returns An `UNTRUSTED_SOURCE` error.
 */
export function untrustedError(peer: PeerInfo | undefined): ProxyProtocolError {
  return new ProxyProtocolError(
    "UNTRUSTED_SOURCE",
    `${peer?.remoteAddress ?? "peer"} is not a trusted proxy`,
  );
}

/**
 * The error for a header that did not arrive in time. Internal.
 *
 * @param ms The timeout that ran out.
 * @returns A `TIMEOUT` error.
 */
export function timeoutError(ms: number): ProxyProtocolError {
  return new ProxyProtocolError("TIMEOUT", `no complete PROXY header within ${ms} ms`);
}

/** The outcome of a connection's header phase. */
export interface SessionResult {
  /** The header, or `null` when none came, or the policy ignores it. */
  header: ProxyHeader | null;
  /** The bytes to hand on: a subarray of the chunk the header ended in, or all bytes read. */
  rest: Uint8Array;
}

/**
 * One connection's header phase under a policy: feed it chunks with `push` and the end of
 * input with `end`. Internal to the adapters and the stream helpers.
 */
export class HeaderSession {
  readonly policy: ProxyPolicy;
  #reader: HeaderReader;

  constructor(
    policy: ProxyPolicy,
    options: Pick<ResolvedOptions, "maxHeaderLength" | "verifyChecksum">,
  ) {
    this.policy = policy;
    this.#reader = new HeaderReader({
      maxLength: options.maxHeaderLength,
      verifyChecksum: options.verifyChecksum,
    });
  }

  /** Everything pushed and not yet handed on. */
  pending(): Uint8Array {
    return this.#reader.pending();
  }

  /**
   * Adds the next chunk.
   *
   * @returns The outcome once it is known, else `null`.
   * @throws {ProxyProtocolError} When the policy refuses the connection.
   */
  push(chunk: Uint8Array): SessionResult | null {
    const policy = this.policy;
    if (policy === "skip") return { header: null, rest: chunk };
    let done;
    try {
      done = this.#reader.push(chunk);
    } catch (error) {
      if (!(error instanceof ProxyProtocolError)) throw error;
      if (policy === "reject" || (error.code === "NOT_PROXY_PROTOCOL" && policy !== "require")) {
        // No header: everything read so far is the application's.
        return { header: null, rest: this.#restAfterError(chunk) };
      }
      if (error.code === "NOT_PROXY_PROTOCOL") {
        throw new ProxyProtocolError(
          "HEADER_REQUIRED",
          "the connection did not start with a PROXY header",
          {
            cause: error,
            ...(error.offset !== undefined ? { offset: error.offset } : {}),
          },
        );
      }
      throw error;
    }
    if (done === null) return null;
    if (policy === "reject") {
      throw new ProxyProtocolError(
        "HEADER_FORBIDDEN",
        "a PROXY header came where the policy rejects one",
      );
    }
    return { header: policy === "ignore" ? null : done.result.header, rest: done.rest };
  }

  #restAfterError(chunk: Uint8Array): Uint8Array {
    // A first chunk fails before the reader keeps it: hand it on as it is. A later one has
    // already been appended to the reader's copy, which then holds everything.
    return this.#reader.buffered === 0 ? chunk : this.#reader.pending();
  }

  /**
   * The peer finished sending before the header was complete.
   *
   * @returns The outcome, where the policy allows a connection without a header.
   * @throws {ProxyProtocolError} `CONNECTION_CLOSED` under `require`.
   */
  end(): SessionResult {
    if (this.policy === "require") {
      throw new ProxyProtocolError(
        "CONNECTION_CLOSED",
        "the connection closed before the PROXY header was complete",
      );
    }
    return { header: null, rest: this.#reader.pending() };
  }
}

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
 * The addresses a connection should report. LOCAL and UNKNOWN headers (health checks),
 * UNIX families and missing headers give the socket's own addresses.
 *
 * @param header The session's header, if any.
 * @param peer The socket's endpoints.
 * @returns The addresses to report.
 */
export function effectiveAddresses(header: ProxyHeader | null, peer: PeerInfo): EffectiveAddresses {
  if (header !== null && header.command === "PROXY") {
    const { source, destination } = header;
    if (typeof source?.address === "string" && typeof destination?.address === "string") {
      return {
        remoteAddress: source.address,
        remotePort: source.port,
        localAddress: destination.address,
        localPort: destination.port,
        family: header.protocol === "TCP4" || header.protocol === "UDP4" ? "IPv4" : "IPv6",
      };
    }
  }
  return {
    remoteAddress: peer.remoteAddress,
    remotePort: peer.remotePort,
    localAddress: peer.localAddress,
    localPort: peer.localPort,
    family: peer.remoteAddress.includes(":") ? "IPv6" : "IPv4",
  };
}

/**
 * Runs the user's `validate` hook: `false` or a throw refuses the header.
 *
 * @throws {ProxyProtocolError} `VALIDATION_FAILED`.
 */
export async function validateHeader(
  options: ResolvedOptions,
  header: ProxyHeader | null,
  peer: PeerInfo,
): Promise<void> {
  if (header === null || options.validate === undefined) return;
  let ok: boolean | void;
  try {
    ok = await options.validate(header, peer);
  } catch (cause) {
    throw new ProxyProtocolError("VALIDATION_FAILED", "the validate hook threw", { cause });
  }
  if (ok === false) {
    throw new ProxyProtocolError("VALIDATION_FAILED", "the validate hook refused the header");
  }
}

/** Reports a refused connection to `onError`, never letting it throw into the caller. */
export function report(options: ResolvedOptions, error: unknown, peer: PeerInfo | undefined): void {
  if (options.onError === undefined) return;
  const e = error instanceof ProxyProtocolError ? error : new ProxyProtocolError(
    "CONNECTION_CLOSED",
    error instanceof Error ? error.message : String(error),
    {
      cause: error,
    },
  );
  try {
    options.onError(e, peer);
  } catch {
    // A throwing onError must not stop the accept loop.
  }
}
