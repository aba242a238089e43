/**
 * What an accept loop does when `accept()` itself fails (out of file descriptors, out of
 * memory): wait before the next try, doubling, and report a burst of failures once.
 *
 * @module
 */

/** First wait after a failed `accept()`, in ms (Go's `net/http`). */
export const BACKOFF_MIN = 5;
/** Longest wait between tries, in ms. */
export const BACKOFF_MAX = 1000;

/**
 * The state of an accept loop's retries. `failed()` gives the wait before the next try
 * (5 ms, doubling to 1 s) and says whether to report this failure: only the first of a
 * burst is, and a burst ends only after a second without failures (a server at its
 * descriptor limit accepts one connection now and then, and would otherwise report on
 * nearly every one). `succeeded()` resets the wait. Internal.
 */
export class AcceptBackoff {
  #delay = 0;
  #last = -Infinity;
  /** Failures since the last successful `accept()`. */
  failures = 0;

  /**
   * Records a failed `accept()`.
   *
   * @param now The time, in ms (for tests).
   * @returns How long to wait before the next try, and whether to report this failure.
   */
  failed(now: number = Date.now()): { wait: number; report: boolean } {
    this.failures++;
    this.#delay = this.#delay === 0 ? BACKOFF_MIN : Math.min(BACKOFF_MAX, this.#delay * 2);
    const report = now - this.#last > BACKOFF_MAX;
    this.#last = now;
    return { wait: this.#delay, report };
  }

  /** Records a successful `accept()`: the next failure waits 5 ms again. */
  succeeded(): void {
    this.#delay = 0;
    this.failures = 0;
  }
}
