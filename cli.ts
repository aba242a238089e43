/**
 * `npm start`: decodes PROXY protocol headers given as hex or as text and prints them as
 * JSON, with their TLVs read by meaning. With no arguments it decodes sample headers.
 *
 * Usage: deno run cli.ts [hex-or-text ...]
 *
 * @module
 */

import { decodeHeader, decodeTlvs, fromHex, ProxyProtocolError, toHex } from "./mod.ts";

const SAMPLES = [
  "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\\r\\n",
  // An AWS NLB header: CRC32c and VPC endpoint id.
  "0d0a0d0a000d0a515549540a 2111 0054 ac1f0771 ac1f0a1f c8f2 0050 03 0004 e8d6892d " +
  "ea 0017 01 767063652d30386432626631356661633530303163 39 04 0024" + "00".repeat(36),
];

function toBytes(arg: string): Uint8Array {
  if (/^[0-9a-fA-F\s:]+$/.test(arg) && arg.replace(/[\s:]/g, "").length % 2 === 0) {
    return fromHex(arg);
  }
  return new TextEncoder().encode(arg.replaceAll("\\r", "\r").replaceAll("\\n", "\n"));
}

function json(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) => v instanceof Uint8Array ? toHex(v) : typeof v === "bigint" ? v.toString() : v,
    2,
  );
}

const args = Deno.args.length > 0 ? Deno.args : SAMPLES;
let failed = false;
for (const arg of args) {
  try {
    const result = decodeHeader(toBytes(arg));
    if (result === null) {
      console.log(json({ input: arg, incomplete: true }));
      failed = true;
      continue;
    }
    console.log(json({ ...result, fields: decodeTlvs(result.header.tlvs) }));
  } catch (error) {
    if (!(error instanceof ProxyProtocolError)) throw error;
    console.log(json({ input: arg, error: { code: error.code, message: error.message } }));
    failed = true;
  }
}
if (failed) Deno.exit(1);
