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
 * burst is reported. `succeeded()` ends the burst. Internal.
 */
export class AcceptBackoff {
  #delay = 0;
  /** Failures in the current burst. */
  failures = 0;

  /**
   * Records a failed `accept()`.
   *
   * @returns How long to wait before the next try, and whether to report this failure.
   */
  failed(): { wait: number; report: boolean } {
    this.failures++;
    this.#delay = this.#delay === 0 ? BACKOFF_MIN : Math.min(BACKOFF_MAX, this.#delay * 2);
    return { wait: this.#delay, report: this.failures === 1 };
  }

  /** Records a successful `accept()`: the burst, if any, is over. */
  succeeded(): void {
    this.#delay = 0;
    this.failures = 0;
  }
}
