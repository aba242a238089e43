/**
 * Telling the user about refused connections: the errors the accept phase makes, and
 * `onError`, which must never throw into an accept loop.
 *
 * @module
 */

import { ProxyProtocolError } from "../error.ts";
import type { PeerInfo } from "./peer.ts";

/**
 * The error for a peer that the policy denies. Internal.
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

/** Any failure as a {@linkcode ProxyProtocolError}: others become `CONNECTION_CLOSED`. */
export function asProxyError(error: unknown): ProxyProtocolError {
  if (error instanceof ProxyProtocolError) return error;
  return new ProxyProtocolError(
    "CONNECTION_CLOSED",
    error instanceof Error ? error.message : String(error),
    { cause: error },
  );
}

/** Reports a refused connection to `onError`, never letting it throw into the caller. */
export function report(
  options: {
    onError?: ((error: ProxyProtocolError, peer: PeerInfo | undefined) => void) | undefined;
  },
  error: unknown,
  peer: PeerInfo | undefined,
): void {
  if (options.onError === undefined) return;
  try {
    options.onError(asProxyError(error), peer);
  } catch {
    // A throwing onError must not stop the accept loop.
  }
}
