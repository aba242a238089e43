/**
 * A connection's header phase, written once for every adapter and stream helper: a state
 * machine fed the connection's events that answers with what to do next.
 *
 * @module
 */

import { ProxyProtocolError } from "../error.ts";
import { concatBytes } from "../bytes.ts";
import type { ProxyHeader } from "../types.ts";
import type { Expiring } from "./deadlines.ts";
import type { ResolvedOptions } from "./options.ts";
import { ownHeader } from "./own.ts";
import { NO_PEER, type PeerInfo } from "./peer.ts";
import { policyFor } from "./policy.ts";
import { asProxyError, report, timeoutError, untrustedError } from "./report.ts";
import { closedError, HeaderSession, type SessionResult } from "./session.ts";

/**
 * What the adapter does after an event:
 * - `wait`: keep reading (or nothing to do: the phase is already over).
 * - `pause`: stop reading, then act on the step that `settled` resolves to (an async
 *   `validate` is running; bytes that still arrive are kept, and the timeout still runs).
 * - `open`: hand the connection to the application with `header`, `rest` and `ended`.
 * - `refuse`: close the connection; `error` says why and was reported to `onError`.
 */
export type AcceptStep = "wait" | "pause" | "open" | "refuse";

const START = 0, HEADER = 1, VALIDATING = 2, OPEN = 3, REFUSED = 4;
type State = typeof START | typeof HEADER | typeof VALIDATING | typeof OPEN | typeof REFUSED;

const EMPTY = new Uint8Array(0);

interface Outcome {
  promise: Promise<ProxyHeader | null>;
  resolve: (header: ProxyHeader | null) => void;
  reject: (error: unknown) => void;
}

function ignore(): void {}

/**
 * One connection's header phase: policy, trust, the header (across any chunking), the
 * timeout, `validate`, and the report of a refusal. Runtime-neutral: an adapter feeds it
 * `start()`, then `data(chunk)`, `end()` and `closed()` as they happen, and does what each
 * returns; the timeout is kept by the options' shared clock, which calls `timedOut()`.
 * Adapters subclass it to say how to read the socket's endpoints (`readPeer`) and how to
 * close it on timeout (`timedOut`), so a connection costs one object. Internal.
 */
export class AcceptPhase implements Expiring {
  /** After `open`: the header (owning its TLV bytes), or `null` (none, or ignored). */
  header: ProxyHeader | null = null;
  /** After `open`: bytes read that belong to the application (a view, possibly empty). */
  rest: Uint8Array = EMPTY;
  /** After `open`: the peer finished sending during the header phase. */
  ended = false;
  /** After `refuse`: why. */
  error: ProxyProtocolError | undefined = undefined;
  /** After `pause`: the step to take once `validate` has settled. */
  settled: Promise<AcceptStep> | undefined = undefined;
  /** The shared clock's deadline for this phase. */
  deadline = 0;
  /** The shared clock's list: its business. */
  clockPrev: Expiring | undefined = undefined;
  /** The shared clock's list: its business. */
  clockNext: Expiring | undefined = undefined;
  /** The resolved options. */
  readonly options: ResolvedOptions;
  #state: State = START;
  #session: HeaderSession | undefined = undefined;
  #peer: PeerInfo | undefined = undefined;
  #held: Uint8Array[] | undefined = undefined;
  /** Lazy hand-over: the outcome's promise and how to settle it, made when first asked. */
  #outcome: Outcome | undefined = undefined;
  #announced = false;
  /**
   * With `metrics`: `performance.now()` at `start()`. Declared only, so that a listener
   * without metrics neither sets nor allocates it.
   */
  declare startedAt: number;

  /**
   * @param options The listener's resolved options.
   * @param peer The socket's endpoints, when the caller already has them; else they are
   *   read with `readPeer()` only when needed (trust, a policy function, `validate`, a
   *   report, or a header that does not come whole in the first chunk).
   */
  constructor(options: ResolvedOptions, peer?: PeerInfo) {
    this.options = options;
    if (peer !== undefined) this.#peer = peer;
  }

  /** The socket's endpoints (read from the socket the first time they are needed). */
  get peer(): PeerInfo {
    return this.#peer ??= this.readPeer() ?? NO_PEER;
  }

  /** Whether an async `validate` runs: the adapter reads nothing meanwhile. */
  get validating(): boolean {
    return this.#state === VALIDATING;
  }

  /** Whether the phase is over (handed on or refused). */
  get done(): boolean {
    return this.#state >= OPEN;
  }

  /**
   * Lazy hand-over: the phase's outcome as the application awaits it (a connection's
   * `proxyHeaderSettled`): the header (or `null`) once the adapter has put it in effect,
   * or the error once the connection is refused and closed. Made when first asked for; a
   * rejection nobody awaits is not reported as unhandled.
   */
  get outcome(): Promise<ProxyHeader | null> {
    let outcome = this.#outcome;
    if (outcome === undefined) {
      let resolve!: Outcome["resolve"], reject!: Outcome["reject"];
      const promise = new Promise<ProxyHeader | null>((yes, no) => {
        resolve = yes;
        reject = no;
      });
      promise.catch(ignore);
      outcome = this.#outcome = { promise, resolve, reject };
      if (this.#announced) this.#tell(outcome);
    }
    return outcome.promise;
  }

  /**
   * Adapters, lazy hand-over: the phase is over and its result in effect (the header's
   * addresses set, or the socket closed), so settle {@linkcode AcceptPhase.outcome}.
   */
  announce(): void {
    if (this.#announced || this.#state < OPEN) return;
    this.#announced = true;
    if (this.#outcome !== undefined) this.#tell(this.#outcome);
  }

  #tell(outcome: Outcome): void {
    if (this.#state === OPEN) outcome.resolve(this.header);
    else outcome.reject(this.error);
  }

  /** Adapters: the socket's endpoints, or `undefined` once it is closed. */
  protected readPeer(): PeerInfo | undefined {
    return undefined;
  }

  /** Adapters: the header timed out and the phase was refused; close the socket. */
  protected timedOut(): void {}

  /**
   * The connection was accepted: choose the policy.
   *
   * @returns `wait` to read the header, `open` (policy `skip`) or `refuse`.
   */
  start(): AcceptStep {
    const options = this.options;
    if (options.metrics !== undefined) this.startedAt = performance.now();
    let policy;
    try {
      policy = policyFor(options, this);
    } catch (error) {
      return this.#refuse(error);
    }
    if (policy === "deny") return this.#refuse(untrustedError(this.peer));
    if (policy === "skip") return this.#open(null, EMPTY, false);
    this.#session = new HeaderSession(policy, options);
    this.#state = HEADER;
    options.deadlines.add(this);
    return "wait";
  }

  /**
   * Bytes arrived. The chunk is only read during the call, except for the view `rest`
   * after `open`: a runtime that reuses its read buffer must copy `rest` before reading
   * again.
   *
   * @param chunk The bytes.
   * @returns What to do.
   */
  data(chunk: Uint8Array): AcceptStep {
    if (this.#state === HEADER) {
      let result: SessionResult | null;
      try {
        result = this.#session!.push(chunk);
      } catch (error) {
        return this.#refuse(error);
      }
      if (result !== null) return this.#settle(result, false);
      // A header that takes more than one chunk: note the endpoints while the socket is
      // surely open, for a report.
      this.#peer ??= this.readPeer();
      return "wait";
    }
    if (this.#state === VALIDATING) {
      (this.#held ??= []).push(new Uint8Array(chunk));
    }
    return "wait";
  }

  /**
   * The peer finished sending (TCP FIN, end of stream).
   *
   * @returns What to do.
   */
  end(): AcceptStep {
    if (this.#state === HEADER) {
      let result: SessionResult;
      try {
        result = this.#session!.end();
      } catch (error) {
        return this.#refuse(error);
      }
      return this.#settle(result, true);
    }
    if (this.#state === VALIDATING) this.ended = true;
    return "wait";
  }

  /**
   * The connection closed or failed before the phase was over.
   *
   * @param cause The socket's error, if any.
   * @returns `refuse` if the phase was still running, else `wait`.
   */
  closed(cause?: unknown): AcceptStep {
    if (this.#state >= OPEN) return "wait";
    const error = cause instanceof ProxyProtocolError ? cause : closedError(cause);
    return this.#refuse(error);
  }

  /**
   * The adapter cannot hand the connection over after all (e.g. bytes it cannot put
   * back): refuse it, unless it was refused already.
   *
   * @param error Why.
   * @returns `refuse`.
   */
  fail(error: ProxyProtocolError): AcceptStep {
    if (this.#state === REFUSED) return "refuse";
    return this.#refuse(error);
  }

  /** The shared clock: the deadline passed. */
  expire(): void {
    if (this.#state !== HEADER && this.#state !== VALIDATING) return;
    this.#refuse(timeoutError(this.options.timeout));
    this.timedOut();
  }

  #settle(result: SessionResult, ended: boolean): AcceptStep {
    const header = result.header;
    const validate = this.options.validate;
    if (header === null || validate === undefined) {
      return this.#open(header === null ? null : ownHeader(header), result.rest, ended);
    }
    this.#state = VALIDATING;
    this.#session = undefined;
    this.ended = ended;
    // The runtime may reuse the chunk's memory while `validate` runs: keep copies.
    this.header = ownHeader(header);
    this.rest = result.rest.length > 0 ? new Uint8Array(result.rest) : EMPTY;
    this.settled = this.#validate(this.header, validate);
    return "pause";
  }

  async #validate(
    header: ProxyHeader,
    validate: NonNullable<ResolvedOptions["validate"]>,
  ): Promise<AcceptStep> {
    let ok: boolean | void;
    try {
      ok = await validate(header, this.peer);
    } catch (cause) {
      return this.#refuseValidation("the validate hook threw", cause);
    }
    if (ok === false) return this.#refuseValidation("the validate hook refused the header");
    if (this.#state !== VALIDATING) return "wait"; // timed out or closed meanwhile
    const held = this.#held;
    this.#held = undefined;
    const rest = held === undefined ? this.rest : concatBytes([this.rest, ...held]);
    return this.#open(header, rest, this.ended);
  }

  #refuseValidation(message: string, cause?: unknown): AcceptStep {
    if (this.#state !== VALIDATING) return "wait";
    return this.#refuse(
      new ProxyProtocolError(
        "VALIDATION_FAILED",
        message,
        cause === undefined ? undefined : { cause },
      ),
    );
  }

  /** Hands over; `header` already owns its bytes. */
  #open(header: ProxyHeader | null, rest: Uint8Array, ended: boolean): AcceptStep {
    if (this.#state !== START) this.options.deadlines.delete(this);
    this.#state = OPEN;
    this.#session = undefined;
    this.header = header;
    // An empty view would still keep the whole chunk (on Deno, a 4 KiB read buffer) alive.
    this.rest = rest.length === 0 ? EMPTY : rest;
    this.ended = ended;
    const metrics = this.options.metrics;
    if (metrics !== undefined) metrics.onAccepted(performance.now() - this.startedAt);
    return "open";
  }

  #refuse(error: unknown): AcceptStep {
    if (this.#state === HEADER || this.#state === VALIDATING) {
      this.options.deadlines.delete(this);
    }
    this.#state = REFUSED;
    this.#session = undefined;
    this.#held = undefined;
    this.header = null;
    this.rest = EMPTY;
    const e = asProxyError(error);
    this.error = e;
    this.options.metrics?.onRefused(e.code);
    report(this.options, e, this.#peer ?? this.readPeer());
    return "refuse";
  }
}
