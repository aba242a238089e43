/**
 * A connection's header bytes under a policy: the reader plus what the policy makes of a
 * header, or of its absence.
 *
 * @module
 */

import { ProxyProtocolError } from "../error.ts";
import { HeaderReader } from "../header_reader.ts";
import type { ProxyHeader } from "../types.ts";
import type { ProxyPolicy } from "./policy.ts";

/** The outcome of a connection's header phase. */
export interface SessionResult {
  /** The header, or `null` when none came, or the policy ignores it. */
  header: ProxyHeader | null;
  /** The bytes to hand on: a subarray of the chunk the header ended in, or all bytes read. */
  rest: Uint8Array;
}

/**
 * One connection's header bytes under a policy other than `skip`: feed it chunks with
 * `push` and the end of input with `end`. Internal to the accept phase.
 */
export class HeaderSession {
  readonly policy: Exclude<ProxyPolicy, "skip">;
  #reader: HeaderReader;

  constructor(
    policy: Exclude<ProxyPolicy, "skip">,
    options: { maxHeaderLength: number; verifyChecksum: boolean },
  ) {
    this.policy = policy;
    this.#reader = new HeaderReader({
      maxLength: options.maxHeaderLength,
      verifyChecksum: options.verifyChecksum,
    });
  }

  /**
   * Adds the next chunk.
   *
   * @returns The outcome once it is known, else `null`.
   * @throws {ProxyProtocolError} When the policy refuses the connection.
   */
  push(chunk: Uint8Array): SessionResult | null {
    const policy = this.policy;
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
    if (this.policy === "require") throw closedError();
    return { header: null, rest: this.#reader.pending() };
  }
}

/**
 * The error for a connection that closed during its header phase. Internal.
 *
 * @param cause What closed it, if known.
 * @returns A `CONNECTION_CLOSED` error.
 */
export function closedError(cause?: unknown): ProxyProtocolError {
  return new ProxyProtocolError(
    "CONNECTION_CLOSED",
    "the connection closed before the PROXY header was complete",
    cause === undefined ? undefined : { cause },
  );
}
