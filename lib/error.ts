/**
 * The error type of this library.
 *
 * @module
 */

/**
 * Stable, machine-readable reasons for a {@linkcode ProxyProtocolError}.
 *
 * Codec errors:
 * - `NOT_PROXY_PROTOCOL`: the bytes start neither a v1 nor a v2 header.
 * - `V1_MALFORMED`: a v1 line breaks the grammar of spec §2.1 (spacing, keyword, line end).
 * - `V1_TOO_LONG`: no CRLF within the 107 bytes a v1 line may take.
 * - `INVALID_ADDRESS`: an address is not valid for its family.
 * - `INVALID_PORT`: a port is not a decimal number from 0 to 65535 without leading zeros.
 * - `UNSUPPORTED_VERSION`: the v2 version nibble is not 2.
 * - `INVALID_COMMAND`: the v2 command nibble is neither LOCAL (0) nor PROXY (1).
 * - `INVALID_FAMILY`: the v2 family/transport byte is not one the spec defines.
 * - `INVALID_LENGTH`: the v2 length is shorter than the address block of its family.
 * - `HEADER_TOO_LONG`: the header is longer than the configured maximum.
 * - `INVALID_TLV`: the TLVs do not exactly fill the header, or one breaks its type's rules.
 * - `CHECKSUM_MISMATCH`: a CRC32C TLV does not match the header.
 * - `INVALID_HEADER`: an object handed to the encoder cannot be written as asked.
 * - `TRUNCATED`: a datagram ends before the header it starts is complete (`decodeDatagram`;
 *   a datagram is never continued by the next one).
 *
 * Connection errors (adapters):
 * - `TIMEOUT`: the header did not arrive in time.
 * - `UNTRUSTED_SOURCE`: a peer outside the trusted ranges was refused.
 * - `HEADER_REQUIRED`: the connection ended, or started speaking, without a header.
 * - `HEADER_FORBIDDEN`: a header arrived where the policy rejects one.
 * - `VALIDATION_FAILED`: the user's `validate` hook refused the header, or a `policy`
 *   function threw or returned no policy.
 * - `CONNECTION_CLOSED`: the peer closed the connection before the header was complete.
 * - `ACCEPT_FAILED`: the listener's `accept()` failed (e.g. out of file descriptors); it
 *   waits, 5 ms doubling to 1 s, and tries again. Reported once a burst, with no peer.
 */
export type ProxyProtocolErrorCode =
  | "NOT_PROXY_PROTOCOL"
  | "V1_MALFORMED"
  | "V1_TOO_LONG"
  | "INVALID_ADDRESS"
  | "INVALID_PORT"
  | "UNSUPPORTED_VERSION"
  | "INVALID_COMMAND"
  | "INVALID_FAMILY"
  | "INVALID_LENGTH"
  | "HEADER_TOO_LONG"
  | "INVALID_TLV"
  | "CHECKSUM_MISMATCH"
  | "INVALID_HEADER"
  | "TRUNCATED"
  | "TIMEOUT"
  | "UNTRUSTED_SOURCE"
  | "HEADER_REQUIRED"
  | "HEADER_FORBIDDEN"
  | "VALIDATION_FAILED"
  | "CONNECTION_CLOSED"
  | "ACCEPT_FAILED";

/** Options for constructing a {@linkcode ProxyProtocolError}. */
export interface ProxyProtocolErrorOptions extends ErrorOptions {
  /** Byte offset in the input at which the problem was found. */
  offset?: number;
}

/**
 * Thrown (or reported) for every header that is not valid PROXY protocol, and for every
 * connection an adapter refuses. `code` is stable and meant for programs; `message` is
 * meant for people and may change.
 *
 * @example Telling a bad header from other failures
 * ```ts
 * import { decodeHeader, ProxyProtocolError } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * try {
 *   decodeHeader(new TextEncoder().encode("GET / HTTP/1.1\r\n"));
 *   assert.fail("expected an error");
 * } catch (error) {
 *   assert.ok(error instanceof ProxyProtocolError);
 *   assert.equal(error.code, "NOT_PROXY_PROTOCOL");
 *   assert.equal(error.offset, 0);
 * }
 * ```
 */
export class ProxyProtocolError extends Error {
  /** The stable reason; see {@linkcode ProxyProtocolErrorCode}. */
  readonly code: ProxyProtocolErrorCode;
  /** Byte offset in the input at which the problem was found, where that helps. */
  readonly offset: number | undefined;

  /**
   * Creates an error.
   *
   * @param code The stable reason.
   * @param message A description for people.
   * @param options The byte offset and the cause, if any.
   */
  constructor(
    code: ProxyProtocolErrorCode,
    message: string,
    options?: ProxyProtocolErrorOptions,
  ) {
    super(message, options);
    this.name = "ProxyProtocolError";
    this.code = code;
    this.offset = options?.offset;
  }
}
