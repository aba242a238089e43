/**
 * One coarse clock per listener for header timeouts, instead of a timer per connection.
 *
 * @module
 */

/** Something with a deadline: a connection in its header phase. */
export interface Expiring {
  /** When it expires, in `Date.now()` ms; set by {@linkcode Deadlines.add}. */
  deadline: number;
  /** Called once when the deadline has passed. */
  expire(): void;
}

/**
 * Times out entries that all share one timeout. Entries are kept in a `Set` in the order
 * they were added, which is also the order of their deadlines, so a tick looks only at
 * those that expired and the first that did not. One timer runs while any entry is
 * pending. Internal.
 */
export class Deadlines {
  readonly timeout: number;
  /**
   * Whether the clock lets the process exit while entries are pending (Node and Bun): set
   * by listeners, whose own handle decides. Stream helpers keep it off, so that a pending
   * header read is not abandoned by an event loop with nothing else to do.
   */
  unref = false;
  readonly #tick: number;
  readonly #entries = new Set<Expiring>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param timeout Each entry's time to live, in ms.
   */
  constructor(timeout: number) {
    this.timeout = timeout;
    // Late by at most an eighth of the timeout: 1 s for the 10 s default.
    this.#tick = Math.max(5, Math.min(1000, Math.ceil(timeout / 8)));
  }

  /** Starts an entry's clock. */
  add(entry: Expiring): void {
    entry.deadline = Date.now() + this.timeout;
    this.#entries.add(entry);
    if (this.#timer === undefined) this.#arm();
  }

  /** Stops an entry's clock (it finished in time). */
  delete(entry: Expiring): void {
    this.#entries.delete(entry);
  }

  #arm(): void {
    const timer = setTimeout(this.#fire, this.#tick);
    if (this.unref) (timer as { unref?: () => void }).unref?.();
    this.#timer = timer;
  }

  /**
   * Stops the clock and forgets every entry without expiring it (the listener closed and
   * closes its connections itself).
   */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#entries.clear();
  }

  #fire = (): void => {
    this.#timer = undefined;
    const now = Date.now();
    for (const entry of this.#entries) {
      if (entry.deadline > now) break;
      this.#entries.delete(entry);
      try {
        entry.expire();
      } catch {
        // An entry's failure must not stop the others' clocks.
      }
    }
    if (this.#entries.size > 0) this.#arm();
  };
}
