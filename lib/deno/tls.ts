/**
 * `startTls`: server-side TLS on a connection whose PROXY header has been read, for
 * protocols other than HTTP (`serve` takes `cert` and `key` itself).
 *
 * `Deno.startTls` is client-only, so this relays the connection into a `Deno.listenTls`
 * listener of its own on `127.0.0.1`, opened for this one connection and closed as soon as
 * the relay's connection is accepted (any other connection to it is closed). The TLS is
 * Deno's (rustls), ALPN included.
 *
 * @module
 */

import type { ProxyHeader } from "../types.ts";
import type { PeerInfo } from "../connection/peer.ts";
import type { ProxyConn } from "./listen.ts";
import { relayConns } from "./serve.ts";

/** Options for {@linkcode startTls}. */
export interface StartTlsOptions {
  /** PEM certificate chain. */
  cert: string;
  /** PEM private key for `cert`. */
  key: string;
  /** Protocols to offer by ALPN, most preferred first (e.g. `["h2", "http/1.1"]`). */
  alpnProtocols?: string[];
}

/**
 * A server-side TLS connection over a {@linkcode ProxyConn}: shaped like `Deno.TlsConn`,
 * with the client's addresses and the header. `read`, `write` and the streams carry the
 * plaintext. Closing it is the application's job; that also closes the `ProxyConn` once
 * the last bytes have been passed on.
 */
export class ProxyTlsConn implements Deno.TlsConn {
  /** The client, as the `ProxyConn` reported it. */
  readonly remoteAddr: Deno.NetAddr;
  /** What the client connected to, as the `ProxyConn` reported it. */
  readonly localAddr: Deno.NetAddr;
  /** The decoded header, or `null`. */
  readonly proxyHeader: ProxyHeader | null;
  #tls: Deno.TlsConn;
  #conn: ProxyConn;
  #relay: Promise<void>;

  /** Use {@linkcode startTls}. */
  constructor(tls: Deno.TlsConn, conn: ProxyConn, relay: Promise<void>) {
    this.#tls = tls;
    this.#conn = conn;
    this.#relay = relay;
    this.remoteAddr = conn.remoteAddr;
    this.localAddr = conn.localAddr;
    this.proxyHeader = conn.proxyHeader;
  }

  /** The socket's own endpoints (the load balancer's and this host's). */
  get peer(): PeerInfo {
    return this.#conn.peer;
  }

  /**
   * Runs the handshake if it has not run, as `Deno.TlsConn.handshake`.
   *
   * @returns The protocol ALPN chose, or `null`.
   */
  handshake(): Promise<Deno.TlsHandshakeInfo> {
    return this.#tls.handshake();
  }

  /**
   * Reads plaintext into `p`, as `Deno.Conn.read`.
   *
   * @param p Where to put the bytes.
   * @returns How many bytes were read, or `null` at the end.
   */
  read(p: Uint8Array): Promise<number | null> {
    return this.#tls.read(p);
  }

  /**
   * Writes plaintext, as `Deno.Conn.write`.
   *
   * @param p The bytes.
   * @returns How many were written.
   */
  write(p: Uint8Array): Promise<number> {
    return this.#tls.write(p);
  }

  /** The plaintext received. */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return this.#tls.readable;
  }

  /** Where to write plaintext. */
  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.#tls.writable;
  }

  /**
   * Sends TLS close_notify and ends the write side, as `Deno.TlsConn.closeWrite`.
   *
   * @returns When done.
   */
  closeWrite(): Promise<void> {
    return this.#tls.closeWrite();
  }

  /**
   * Closes the TLS connection; the relay passes what is still buffered on to the client,
   * then closes the `ProxyConn`.
   */
  close(): void {
    this.#tls.close();
  }

  /**
   * Waits until the relay has closed the `ProxyConn` (after {@linkcode ProxyTlsConn.close}
   * and the client's end).
   *
   * @returns When both sockets of the relay are closed.
   */
  closed(): Promise<void> {
    return this.#relay;
  }

  /** Lets the event loop exit while this connection is open. */
  unref(): void {
    this.#tls.unref();
    this.#conn.unref();
  }

  /** Undoes {@linkcode ProxyTlsConn.unref}. */
  ref(): void {
    this.#tls.ref();
    this.#conn.ref();
  }

  /** Closes the connection when used with `using`. */
  [Symbol.dispose](): void {
    try {
      this.#tls.close();
    } catch {
      // already closed
    }
  }
}

/**
 * Starts server-side TLS on a connection after its PROXY header, as `Deno.startTls` does
 * client-side. The handshake runs on the first read or write, or on `handshake()`.
 *
 * @param conn A connection from `listen()`; the returned connection takes it over.
 * @param options `cert`, `key`, and `alpnProtocols` to offer.
 * @returns The TLS connection, with the client's addresses and the header.
 * @throws {Error} When `cert` or `key` is not valid PEM (the `ProxyConn` is left open).
 * @throws {ProxyProtocolError} When a `lazy` connection's header phase refuses it (the
 *   listener has closed it).
 *
 * @example A TLS greeting behind a load balancer
 * ```ts
 * import { listen, startTls } from "@proxy-protocol/edge/deno";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const openssl = new Deno.Command("openssl", {
 *   args: ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
 *     "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
 *     "subjectAltName=DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE",
 *     "-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`],
 *   stderr: "null",
 * });
 * assert.ok((await openssl.output()).success);
 * const cert = await Deno.readTextFile(`${dir}/cert.pem`);
 * const key = await Deno.readTextFile(`${dir}/key.pem`);
 * await Deno.remove(dir, { recursive: true });
 *
 * await using listener = listen({ hostname: "127.0.0.1", port: 0 });
 * const raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await raw.write(new TextEncoder().encode("PROXY TCP4 203.0.113.7 10.0.0.5 51234 993\r\n"));
 * const serving = (async () => {
 *   using tls = await startTls(await listener.accept(), { cert, key, alpnProtocols: ["imap"] });
 *   assert.equal((await tls.handshake()).alpnProtocol, "imap");
 *   await tls.write(new TextEncoder().encode(`* OK ${tls.remoteAddr.hostname}\r\n`));
 *   await tls.closeWrite();
 *   await tls.read(new Uint8Array(1)); // the client's close
 * })();
 * using client = await Deno.startTls(raw, {
 *   hostname: "localhost",
 *   caCerts: [cert],
 *   alpnProtocols: ["imap"],
 * });
 * assert.equal(await new Response(client.readable).text(), "* OK 203.0.113.7\r\n");
 * await serving;
 * ```
 */
export async function startTls(conn: ProxyConn, options: StartTlsOptions): Promise<ProxyTlsConn> {
  // A lazy connection: the header first, so that the TLS connection reports its addresses.
  await conn.proxyHeaderSettled;
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: options.cert,
    key: options.key,
    ...(options.alpnProtocols !== undefined ? { alpnProtocols: options.alpnProtocols } : {}),
  });
  let out: Deno.TcpConn | undefined;
  let tls: Deno.TlsConn | undefined;
  try {
    out = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const port = out.localAddr.port;
    while (tls === undefined) {
      const accepted = await listener.accept();
      const from = accepted.remoteAddr;
      if (from.hostname === "127.0.0.1" && from.port === port) tls = accepted;
      else accepted.close(); // not ours
    }
  } catch (error) {
    try {
      out?.close();
    } catch {
      // already closed
    }
    throw error;
  } finally {
    listener.close();
  }
  conn.setNoDelay(true);
  out.setNoDelay(true);
  return new ProxyTlsConn(tls, conn, relayConns(conn, out));
}
