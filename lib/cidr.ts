/**
 * CIDR ranges of trusted upstreams: parsing and matching, IPv4 and IPv6.
 *
 * @module
 */

import { parseIPv4String, parseIPv6String } from "./ip.ts";

/** A parsed range: 16 bytes (IPv4 as v4-mapped IPv6) and a prefix length of 0-128. */
interface Range {
  bytes: Uint8Array;
  prefix: number;
}

/** Writes an address as 16 bytes (IPv4 as `::ffff:a.b.c.d`); false when it is neither. */
function toBytes(address: string, out: Uint8Array): "v4" | "v6" | undefined {
  const v4 = parseIPv4String(address);
  if (v4 >= 0) {
    out.fill(0, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    out[12] = v4 >>> 24;
    out[13] = (v4 >>> 16) & 0xff;
    out[14] = (v4 >>> 8) & 0xff;
    out[15] = v4 & 0xff;
    return "v4";
  }
  // Zone ids (fe80::1%eth0) name an interface, not an address: match without them.
  const percent = address.indexOf("%");
  return parseIPv6String(percent < 0 ? address : address.slice(0, percent), out, 0)
    ? "v6"
    : undefined;
}

/**
 * A set of CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`, or single addresses) to test peer
 * addresses against. IPv4 ranges also match v4-mapped IPv6 peers (`::ffff:10.1.2.3`), as
 * dual-stack sockets report IPv4 clients.
 *
 * @example
 * ```ts
 * import { CidrSet } from "@proxy-protocol/edge";
 * import assert from "node:assert/strict";
 *
 * const trusted = new CidrSet(["10.0.0.0/8", "::1"]);
 * assert.ok(trusted.has("10.20.30.40"));
 * assert.ok(trusted.has("::ffff:10.0.0.1"));
 * assert.ok(trusted.has("::1"));
 * assert.ok(!trusted.has("192.168.0.1"));
 * ```
 */
export class CidrSet {
  #ranges: Range[] = [];
  #scratch = new Uint8Array(16);

  /**
   * Parses the ranges.
   *
   * @param ranges CIDR strings or single addresses.
   * @throws {TypeError} For a range that is not valid, so a typo cannot trust the world.
   */
  constructor(ranges: Iterable<string>) {
    for (const range of ranges) {
      const slash = range.indexOf("/");
      const address = slash < 0 ? range : range.slice(0, slash);
      const bytes = new Uint8Array(16);
      const kind = toBytes(address, bytes);
      if (kind === undefined) throw new TypeError(`invalid CIDR range: ${JSON.stringify(range)}`);
      const max = kind === "v4" ? 32 : 128;
      let prefix = max;
      if (slash >= 0) {
        const text = range.slice(slash + 1);
        prefix = /^(0|[1-9][0-9]{0,2})$/.test(text) ? Number(text) : -1;
        if (prefix < 0 || prefix > max) {
          throw new TypeError(`invalid CIDR prefix: ${JSON.stringify(range)}`);
        }
      }
      this.#ranges.push({ bytes, prefix: kind === "v4" ? 96 + prefix : prefix });
    }
  }

  /**
   * Whether an address lies in one of the ranges.
   *
   * @param address Dotted IPv4 or IPv6 text, as a socket reports its peer.
   * @returns `true` when a range holds it; `false` for addresses that do not parse.
   */
  has(address: string): boolean {
    const a = this.#scratch;
    if (toBytes(address, a) === undefined) return false;
    for (const { bytes, prefix } of this.#ranges) {
      const whole = prefix >> 3;
      let i = 0;
      while (i < whole && a[i] === bytes[i]) i++;
      if (i < whole) continue;
      const bits = prefix & 7;
      if (bits === 0) return true;
      const mask = (0xff << (8 - bits)) & 0xff;
      if ((a[whole]! & mask) === (bytes[whole]! & mask)) return true;
    }
    return false;
  }
}
