/**
 * `decode [HEX|-]`: a header given as hex (or as a v1 line), or raw bytes on stdin, printed
 * as JSON with its TLVs by meaning; a bad or incomplete header is an error with its code.
 *
 * @module
 */

import process from "node:process";
import { fromHex } from "../lib/bytes.ts";
import { decodeHeader } from "../lib/decode.ts";
import { ProxyProtocolError } from "../lib/error.ts";
import {
  type Command,
  COMMON_FLAGS,
  COMMON_USAGE,
  describeHeader,
  errorFields,
  EXIT,
  type Io,
  json,
  Logger,
  parse,
  UsageError,
} from "./_common.ts";

const FLAGS = {
  ...COMMON_FLAGS,
  "no-checksum": { type: "boolean" },
} as const;

/** The `decode` command. */
export const decode: Command = {
  summary: "print a header (hex, a v1 line, or raw bytes on stdin) as JSON",
  usage: `Usage: decode [HEX | "PROXY ..." | -] [--no-checksum]

Decodes one PROXY protocol header and prints it as JSON: version, command, addresses,
the TLVs by meaning (authority, ssl, crc32c, AWS/Azure/GCP ids, others raw), its length,
and the bytes after it. With "-" or no argument, reads raw bytes from stdin.

  HEX                  the header in hex; spaces and colons are ignored
  "PROXY TCP4 ..."     anything else is text, e.g. a v1 line (\\r\\n may be spelled out)
  --no-checksum        do not verify a CRC32C TLV
${COMMON_USAGE}

Exit codes: 0 decoded; 1 not a valid header (the error's code is printed on stderr as
JSON: NOT_PROXY_PROTOCOL, CHECKSUM_MISMATCH, ..., or INCOMPLETE); 2 usage error.

Examples:
  decode 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\\r\\n'
  printf 'PROXY UNKNOWN\\r\\n' | decode -`,
  async run(args: string[], io: Io): Promise<number> {
    const { values, positionals } = parse(args, FLAGS, true);
    new Logger(values["log-level"], io.stderr); // checks --log-level
    if (positionals.length > 1) throw new UsageError("decode takes one header");
    const input = positionals[0];
    const bytes = input === undefined || input === "-" ? await readStdin() : toBytes(input);
    try {
      const result = decodeHeader(bytes, { verifyChecksum: values["no-checksum"] !== true });
      if (result === null) {
        io.stderr.write(
          json({
            error: {
              code: "INCOMPLETE",
              message: `the ${bytes.length} bytes are the start of a header, not a whole one`,
            },
          }) + "\n",
        );
        return EXIT.FAILURE;
      }
      io.stdout.write(
        json({
          ...describeHeader(result.header),
          length: result.length,
          rest: bytes.subarray(result.length),
        }, 2) + "\n",
      );
      return EXIT.OK;
    } catch (error) {
      if (!(error instanceof ProxyProtocolError)) throw error;
      io.stderr.write(json({ error: errorFields(error) }) + "\n");
      return EXIT.FAILURE;
    }
  },
};

function toBytes(arg: string): Uint8Array {
  const hex = arg.replace(/[\s:]/g, "");
  if (/^([0-9a-fA-F]{2})+$/.test(hex)) return fromHex(hex);
  // Text, as a v1 line is written: \r and \n may be spelled out.
  return new TextEncoder().encode(arg.replaceAll("\\r", "\r").replaceAll("\\n", "\n"));
}

async function readStdin(): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Uint8Array);
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
