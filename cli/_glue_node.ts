/**
 * The gateway's `node:net` glue (Node; TLS termination on every runtime): the CLI's
 * listener (`_server.ts`, the library's `createServer`) and the `node:net` relay
 * (`relay.ts`). Internal.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type net from "node:net";
import type tls from "node:tls";
import { SslClientFlag } from "../lib/constants.ts";
import type { ProxySocket } from "../lib/node/listen.ts";
import { encodeTlvs } from "../lib/tlv.ts";
import type { Tlv } from "../lib/types.ts";
import type { Endpoint } from "./_common.ts";
import type { GlueConn, GlueListenOptions, Listener, RelayResult } from "./_glue.ts";
import { startListener } from "./_server.ts";
import { connectNode, relay } from "./relay.ts";

/** Listens with `node:net` (and `node:tls` after the header, with `tls`). */
export function listenNode(options: GlueListenOptions): Promise<Listener> {
  const { tls, ...rest } = options;
  return startListener({
    ...rest,
    tls: tls === undefined ? undefined : { cert: Buffer.from(tls.cert), key: Buffer.from(tls.key) },
    onConnection: (socket, info, raw) =>
      options.onConnection(new NodeConn(socket, raw, `${info.peer.address}:${info.peer.port}`)),
  });
}

class NodeConn implements GlueConn {
  readonly from: ProxySocket;
  readonly peer: string;
  readonly #client: net.Socket | tls.TLSSocket;
  #upstream: net.Socket | undefined;
  #gone = false;
  #headerLength = 0;

  constructor(client: net.Socket | tls.TLSSocket, raw: ProxySocket, peer: string) {
    this.#client = client;
    this.from = raw;
    this.peer = peer;
    client.once("close", this.#onEarlyClose);
    client.on("error", noop);
  }

  #onEarlyClose = () => this.#gone = true;

  get gone(): boolean {
    return this.#gone;
  }

  get upstream(): string {
    return `${this.#upstream?.remoteAddress}:${this.#upstream?.remotePort}`;
  }

  sslTlvs(): Tlv[] {
    const client = this.#client;
    return client === (this.from as net.Socket) ? [] : sslTlvs(client as tls.TLSSocket);
  }

  async connect(target: Endpoint, first: Uint8Array, timeoutMs: number): Promise<void> {
    this.#upstream = await connectNode(target, first, timeoutMs);
    this.#headerLength = first.length;
  }

  relay(idleMs: number): Promise<RelayResult> {
    this.#client.off("close", this.#onEarlyClose);
    this.#client.off("error", noop);
    return relay(this.#client, this.#upstream!, idleMs, this.#headerLength);
  }

  destroy(): void {
    this.#upstream?.destroy();
    this.#client.destroy();
  }
}

/** What HAProxy's `send-proxy-v2-ssl-cn` sends: SNI as AUTHORITY, then the SSL TLV. */
function sslTlvs(secure: tls.TLSSocket): Tlv[] {
  const cert = secure.getPeerCertificate?.();
  const hasCert = cert !== undefined && cert !== null && Object.keys(cert).length > 0;
  const cn = hasCert ? cert.subject?.CN : undefined;
  const version = secure.getProtocol?.() ?? undefined;
  const cipher = secure.getCipher?.()?.standardName ?? secure.getCipher?.()?.name;
  const servername = (secure as tls.TLSSocket & { servername?: string | false }).servername;
  return encodeTlvs({
    ...(typeof servername === "string" && servername !== "" ? { authority: servername } : {}),
    ssl: {
      client: SslClientFlag.SSL | (hasCert ? SslClientFlag.CERT_CONN | SslClientFlag.CERT_SESS : 0),
      verify: hasCert && secure.authorized ? 0 : hasCert ? 1 : 0,
      ...(version ? { version } : {}),
      ...(typeof cn === "string" ? { cn } : Array.isArray(cn) ? { cn: cn[0]! } : {}),
      ...(cipher ? { cipher } : {}),
    },
  });
}

function noop(): void {}
