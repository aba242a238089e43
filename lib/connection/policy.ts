/**
 * Policies: what to do about a header on a connection, and how `trust` picks one for a
 * peer.
 *
 * @module
 */

import { ProxyProtocolError } from "../error.ts";
import type { CidrSet } from "../cidr.ts";
import type { PeerInfo } from "./peer.ts";

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

/** The valid {@linkcode ProxyPolicy} values. Internal. */
export const POLICIES: ReadonlySet<string> = new Set([
  "require",
  "optional",
  "ignore",
  "reject",
  "skip",
]);

/** The valid {@linkcode UntrustedPolicy} values. Internal. */
export const UNTRUSTED: ReadonlySet<string> = new Set(["deny", "reject", "ignore", "skip"]);

/** What {@linkcode policyFor} needs of the options. Internal. */
export interface PolicyOptions {
  policy: ProxyPolicy | ((peer: PeerInfo) => ProxyPolicy);
  trust: CidrSet | undefined;
  untrusted: UntrustedPolicy;
}

/** Whether choosing a policy needs the peer's addresses (trust, or a policy function). */
export function needsPeer(options: PolicyOptions): boolean {
  return options.trust !== undefined || typeof options.policy === "function";
}

/**
 * The policy for one peer: `untrusted` for peers outside `trust`, else `policy`. The
 * peer's addresses are read from `source` only when trust or a policy function needs them.
 * Internal.
 *
 * @throws {ProxyProtocolError} `VALIDATION_FAILED` when a policy function throws or
 *   returns no policy.
 */
export function policyFor(
  options: PolicyOptions,
  source: { readonly peer: PeerInfo },
): ProxyPolicy | "deny" {
  if (options.trust !== undefined && !options.trust.has(source.peer.remoteAddress)) {
    return options.untrusted;
  }
  if (typeof options.policy !== "function") return options.policy;
  let policy: ProxyPolicy;
  try {
    policy = options.policy(source.peer);
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
