/**
 * The registry a relay keeps so that an inner server on loopback can tell which client each
 * of its connections carries. Runtime-neutral: Deno's and Bun's `serve` relay a connection
 * whose PROXY header was read into the runtime's own HTTP server on `127.0.0.1`, and the
 * inner handler looks up the port of the relay's outbound connection (its remote port, as
 * the inner server sees it) to find the client's addresses and header. Internal.
 *
 * Who closes what: the registry holds values only; the relay that `add`s an entry deletes
 * it after both of its sockets are closed, so a port reused later by a connection the relay
 * did not make finds nothing and is refused.
 *
 * @module
 */

/**
 * Outbound loopback port → what the relay knows about the client (for Deno a
 * `{ remoteAddr, localAddr, proxyHeader }` object; any value will do). One per server.
 * Internal.
 */
export class RelayRegistry<T> {
  #entries = new Map<number, T>();

  /** How many relayed connections are registered. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Registers a relay's connection to the inner server, before any byte is sent on it.
   *
   * @param port The relay's outbound local port.
   * @param value What the inner handler should see.
   */
  add(port: number, value: T): void {
    this.#entries.set(port, value);
  }

  /**
   * The entry for a connection the inner server accepted, or `undefined` when the relay did
   * not make it (refuse it: {@linkcode misdirected}).
   *
   * @param address The inner connection's remote address, as the inner server reports it.
   * @param port Its remote port.
   * @returns The registered value, or `undefined`.
   */
  lookup(address: string, port: number): T | undefined {
    if (address !== "127.0.0.1") return undefined;
    return this.#entries.get(port);
  }

  /** The registered values, e.g. to close every relayed connection. */
  values(): IterableIterator<T> {
    return this.#entries.values();
  }

  /** Forgets every connection. */
  clear(): void {
    this.#entries.clear();
  }

  /**
   * Forgets a connection, after the relay's socket to the inner server is closed.
   *
   * @param port The relay's outbound local port.
   */
  delete(port: number): void {
    this.#entries.delete(port);
  }
}

/**
 * The answer an inner server gives to a connection the relay did not make: 421 Misdirected
 * Request, asking to close the connection. Uses the web `Response`, present in every runtime.
 *
 * @returns A new 421 response.
 */
export function misdirected(): Response {
  return new Response("misdirected: this port only serves connections relayed by the server\n", {
    status: 421,
    headers: { "content-type": "text/plain", connection: "close" },
  });
}
