// Headers no sender may write, shared by the senders' tests of every runtime: garbage
// addresses and ports, families that do not match, TLVs over 65 535 bytes in all, UNIX
// paths over 108 bytes. Each must be refused with ProxyProtocolError INVALID_HEADER.
import { type ProxyHeaderInit, ProxyProtocolError } from "@proxy-protocol/edge";

const SRC = { address: "203.0.113.7", port: 51234 };
const DST = { address: "10.0.0.5", port: 443 };
const V2 = {
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: SRC,
  destination: DST,
} as const;
const V1 = { ...V2, version: 1 } as const;

/** Whether `error` is the encoder's refusal. */
export function isInvalidHeader(error: unknown): boolean {
  return error instanceof ProxyProtocolError && error.code === "INVALID_HEADER";
}

/**
 * Named v2 headers whose TLVs the spec (and this library's decoder) refuses: a sender must
 * not write them. The encoder checks a TLV's type, its size and a CRC32C's length, not these.
 */
export function malformedTlvHeaders(): [string, ProxyHeaderInit][] {
  const at = (type: number, value: number[] | Uint8Array): ProxyHeaderInit => ({
    ...V2,
    tlvs: [{ type, value: value instanceof Uint8Array ? value : new Uint8Array(value) }],
  });
  return [
    ["a UNIQUE_ID (0x05) of 129 bytes (the spec: up to 128)", at(0x05, new Uint8Array(129))],
    ["an SSL TLV (0x20) of 1 byte (shorter than its 5 fixed bytes)", at(0x20, [1])],
    ["an SSL TLV whose sub-TLV overruns it", at(0x20, [1, 0, 0, 0, 0, 0x21, 0, 9])],
  ];
}

/** Named headers that cannot be written. */
export function hostileHeaders(): [string, ProxyHeaderInit][] {
  const bad = (h: unknown) => h as ProxyHeaderInit;
  const path = (n: number) => ({ path: "/".padEnd(n, "s") });
  return [
    [
      "v1: CRLF and a second header in the address",
      bad({
        ...V1,
        source: { address: "1.2.3.4\r\nPROXY TCP4 6.6.6.6", port: 1 },
      }),
    ],
    ["v1: a space in the address", bad({ ...V1, source: { address: "1.2.3.4 6.6.6.6", port: 1 } })],
    ["v1: an IPv6 address in TCP4", bad({ ...V1, source: { address: "::1", port: 1 } })],
    ["v1: an IPv4 address in TCP6", bad({ ...V1, protocol: "TCP6" })],
    ["v1: UDP4", bad({ ...V1, protocol: "UDP4" })],
    ["v2: an octet over 255", bad({ ...V2, source: { address: "999.1.1.1", port: 1 } })],
    ["v2: a host name", bad({ ...V2, source: { address: "localhost", port: 1 } })],
    ["v2: an empty address", bad({ ...V2, source: { address: "", port: 1 } })],
    [
      "v2: IPv6 with a zone",
      bad({
        ...V2,
        protocol: "TCP6",
        source: { address: "fe80::1%eth0", port: 1 },
        destination: { address: "::1", port: 1 },
      }),
    ],
    ["v2: port 65536", bad({ ...V2, source: { ...SRC, port: 65536 } })],
    ["v2: port -1", bad({ ...V2, source: { ...SRC, port: -1 } })],
    ["v2: port 1.5", bad({ ...V2, source: { ...SRC, port: 1.5 } })],
    ["v2: port NaN", bad({ ...V2, source: { ...SRC, port: NaN } })],
    ["v2: port as text", bad({ ...V2, source: { ...SRC, port: "443" } })],
    ["v2: no destination", bad({ ...V2, destination: undefined })],
    ["v2: an unknown protocol", bad({ ...V2, protocol: "SCTP" })],
    ["v2: an unknown command", bad({ ...V2, command: "RELAY" })],
    ["v3", bad({ ...V2, version: 3 })],
    [
      "v2: a TLV of 65 536 bytes",
      bad({ ...V2, tlvs: [{ type: 0xe0, value: new Uint8Array(65536) }] }),
    ],
    [
      "v2: TLVs over 65 535 bytes in all",
      bad({
        ...V2,
        tlvs: [0xe0, 0xe1, 0xe2].map((type) => ({ type, value: new Uint8Array(22_000) })),
      }),
    ],
    ["v2: a TLV of type 256", bad({ ...V2, tlvs: [{ type: 256, value: new Uint8Array(1) }] })],
    ["v2: a TLV of type -1", bad({ ...V2, tlvs: [{ type: -1, value: new Uint8Array(1) }] })],
    ["v2: a TLV value that is not bytes", bad({ ...V2, tlvs: [{ type: 0xe0, value: "x" }] })],
    [
      "v2: a CRC32C TLV of 3 bytes",
      bad({ ...V2, tlvs: [{ type: 0x03, value: new Uint8Array(3) }] }),
    ],
    [
      "v2: a UNIX path of 109 bytes",
      bad({
        ...V2,
        protocol: "UNIX_STREAM",
        source: path(109),
        destination: path(10),
      }),
    ],
    [
      "v2: a UNIX path of 108 bytes and a multi-byte character past it",
      bad({
        ...V2,
        protocol: "UNIX_DGRAM",
        source: { path: "/".padEnd(107, "s") + "é" },
        destination: path(10),
      }),
    ],
    [
      "v2: a UNIX path with a NUL",
      bad({
        ...V2,
        protocol: "UNIX_STREAM",
        source: { path: "/tmp/a\0b" },
        destination: path(10),
      }),
    ],
    ["v2: an IP address for a UNIX family", bad({ ...V2, protocol: "UNIX_STREAM" })],
  ];
}
