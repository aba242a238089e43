/**
 * `send --to HOST:PORT`: like `nc`, with a PROXY header first. Stdin goes to the server
 * after the header, the server's reply to stdout; stdin's end half-closes the connection.
 *
 * @module
 */

import net from "node:net";
import process from "node:process";
import { encodeHeader } from "../lib/encode.ts";
import { headerFor } from "../lib/connection/sender.ts";
import type { InetAddress, ProxyHeaderInit } from "../lib/types.ts";
import { parseIPv4String } from "../lib/ip.ts";
import {
  type Command,
  COMMON_FLAGS,
  COMMON_USAGE,
  endpoint,
  EXIT,
  type Io,
  Logger,
  parse,
  tlvs,
  UsageError,
} from "./_common.ts";

const FLAGS = {
  ...COMMON_FLAGS,
  to: { type: "string" },
  v1: { type: "boolean" },
  v2: { type: "boolean" },
  local: { type: "boolean" },
  source: { type: "string" },
  destination: { type: "string" },
  tlv: { type: "string", multiple: true },
  crc32c: { type: "boolean" },
} as const;

/** The `send` command. */
export const send: Command = {
  summary: "connect like nc, sending a PROXY header first (stdin to the server, reply to stdout)",
  usage: `Usage: send --to HOST:PORT [--v1 | --v2] [--source IP:PORT] [--destination IP:PORT]
            [--local] [--tlv TYPE=HEX ...] [--crc32c]

Connects, writes a PROXY header, then copies stdin to the server and the server's reply to
stdout. The end of stdin half-closes the connection; the command ends when the server closes.

  --to HOST:PORT           the server
  --v1, --v2               the header's version (default v2)
  --source IP:PORT         the client the header names (default: this connection's own end)
  --destination IP:PORT    what the client connected to (default: the server's address)
  --local                  a LOCAL header (a health check) instead of PROXY
  --tlv TYPE=HEX           add a TLV (v2; repeat), e.g. --tlv 0x02=6578616d706c652e636f6d
  --crc32c                 add a CRC32C TLV (v2)
${COMMON_USAGE}

Exit codes: 0 the server closed the connection; 1 no connection or it failed; 2 usage error.

Example:
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | send --to 127.0.0.1:8080 --source 203.0.113.7:51234`,
  async run(args: string[], io: Io): Promise<number> {
    const { values } = parse(args, FLAGS);
    const log = new Logger(values["log-level"], io.stderr, { command: "send" });
    if (values.to === undefined) throw new UsageError("--to HOST:PORT is required");
    if (values.v1 && values.v2) throw new UsageError("give --v1 or --v2, not both");
    const to = endpoint(values.to, "--to");
    const version = values.v1 ? 1 : 2;
    const extra = tlvs(values.tlv);
    if (version === 1 && (extra.length > 0 || values.crc32c)) {
      throw new UsageError("v1 headers carry no TLVs (--tlv, --crc32c): use --v2");
    }
    const source = values.source === undefined ? undefined : address(values.source, "--source");
    const destination = values.destination === undefined
      ? undefined
      : address(values.destination, "--destination");

    const socket = net.connect({ host: to.host, port: to.port, allowHalfOpen: true });
    return await new Promise<number>((resolve) => {
      let connected = false;
      socket.once("connect", () => {
        connected = true;
        let header: ProxyHeaderInit;
        try {
          header = buildHeader(socket, version, values.local === true, source, destination);
          if (extra.length > 0) header.tlvs = [...(header.tlvs ?? []), ...extra];
          socket.write(encodeHeader(header, { checksum: values.crc32c === true }));
        } catch (error) {
          log.log("error", "bad header", { error: (error as Error).message });
          socket.destroy();
          resolve(EXIT.FAILURE);
          return;
        }
        log.log("debug", "connected", { to: values.to, header });
        process.stdin.pipe(socket);
      });
      socket.on("data", (chunk: Uint8Array) => io.stdout.write(chunk));
      socket.on("error", (error: Error) => {
        log.log("error", connected ? "connection failed" : "cannot connect", {
          to: values.to,
          error: error.message,
        });
        process.stdin.unpipe(socket);
        process.stdin.pause();
        resolve(EXIT.FAILURE);
      });
      socket.on("end", () => {
        // The server is done: stop reading stdin so the process can end.
        process.stdin.unpipe(socket);
        process.stdin.pause();
        socket.end();
      });
      socket.on("close", (hadError: boolean) => {
        if (!hadError) resolve(EXIT.OK);
      });
    });
  },
};

function address(text: string, flag: string): InetAddress {
  const e = endpoint(text, flag);
  if (!net.isIP(e.host)) throw new UsageError(`${flag}: expected an IP address, got ${e.host}`);
  return { address: e.host, port: e.port };
}

function buildHeader(
  socket: net.Socket,
  version: 1 | 2,
  local: boolean,
  source: InetAddress | undefined,
  destination: InetAddress | undefined,
): ProxyHeaderInit {
  if (local) return headerFor(null, { version, command: "LOCAL" });
  // This connection seen from the server: we are its source.
  const own = headerFor({
    remoteAddress: socket.localAddress,
    remotePort: socket.localPort,
    localAddress: socket.remoteAddress,
    localPort: socket.remotePort,
  }, { version });
  const s = source ?? own.source as InetAddress | undefined;
  const d = destination ?? own.destination as InetAddress | undefined;
  if (s === undefined || d === undefined) return own;
  const v4 = parseIPv4String(s.address) >= 0 && parseIPv4String(d.address) >= 0;
  const mapped = (a: InetAddress) =>
    parseIPv4String(a.address) >= 0 ? { address: `::ffff:${a.address}`, port: a.port } : a;
  return v4
    ? { version, command: "PROXY", protocol: "TCP4", source: s, destination: d }
    : { version, command: "PROXY", protocol: "TCP6", source: mapped(s), destination: mapped(d) };
}
