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
  /** The entries before and after it on its clock: {@linkcode Deadlines}' own. */
  clockPrev: Expiring | undefined;
  /** See `clockPrev`. */
  clockNext: Expiring | undefined;
}

/**
 * Times out entries that all share one timeout. Entries are kept in the order they were
 * added, which is also the order of their deadlines, so a tick looks only at those that
 * expired and the first that did not. One timer runs while any entry is pending. Internal.
 *
 * The order is a list through the entries themselves (`clockPrev`, `clockNext`), not a
 * `Set`: a `Set` that every connection joins and leaves made Deno's young-generation
 * collections several times slower under a high connection rate (benches/RESULTS.md).
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
  #first: Expiring | undefined = undefined;
  #last: Expiring | undefined = undefined;
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
    entry.clockPrev = this.#last;
    entry.clockNext = undefined;
    if (this.#last === undefined) this.#first = entry;
    else this.#last.clockNext = entry;
    this.#last = entry;
    if (this.#timer === undefined) this.#arm();
  }

  /** Stops an entry's clock (it finished in time). */
  delete(entry: Expiring): void {
    const prev = entry.clockPrev, next = entry.clockNext;
    if (prev === undefined && next === undefined && this.#first !== entry) return; // not on it
    if (prev === undefined) this.#first = next;
    else prev.clockNext = next;
    if (next === undefined) this.#last = prev;
    else next.clockPrev = prev;
    entry.clockPrev = entry.clockNext = undefined;
  }

  #arm(): void {
    const timer = setTimeout(this.#fire, this.#tick);
    if (this.unref) (timer as { unref?: () => void }).unref?.();
    this.#timer = timer;
  }

  /**
   * Stops the clock and forgets every entry without expiring it (the listener closed and
   * closes its connections itself).
   *
   * @param each Called with each entry still pending, once it is off the clock.
   */
  stop(each?: (entry: Expiring) => void): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending: Expiring[] = [];
    for (let entry = this.#first; entry !== undefined;) {
      const next = entry.clockNext;
      entry.clockPrev = entry.clockNext = undefined;
      if (each !== undefined) pending.push(entry);
      entry = next;
    }
    this.#first = this.#last = undefined;
    for (const entry of pending) each!(entry);
  }

  #fire = (): void => {
    this.#timer = undefined;
    const now = Date.now();
    for (let entry = this.#first; entry !== undefined; entry = this.#first) {
      if (entry.deadline > now) break;
      this.delete(entry);
      try {
        entry.expire();
      } catch {
        // An entry's failure must not stop the others' clocks.
      }
    }
    if (this.#first !== undefined) this.#arm();
  };
}
