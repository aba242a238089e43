// Published PROXY protocol vectors, as hex. S is the 12-byte v2 signature.
// Sources: HAProxy's doc/proxy-protocol.txt, AWS NLB captures, HAProxy's reg-tests and the
// examples published with go-proxyproto (collected in ../shared/proxy-protocol-notes.md).
import { fromHex } from "@proxy-protocol/edge";

export const S = "0d0a0d0a000d0a515549540a";

/** ASCII text as hex. */
export function ascii(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) out += text.charCodeAt(i).toString(16).padStart(2, "0");
  return out;
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);

export interface Vector {
  name: string;
  bytes: Uint8Array;
}

/** Valid v2 headers. */
export const V2 = {
  /** AWS NLB, 100 bytes: CRC32c E8D6892D and a VPC endpoint id. */
  aws1: fromHex(
    S + "2111 0054 ac1f0771 ac1f0a1f c8f2 0050 03 0004 e8d6892d" +
      "ea 0017 01" + ascii("vpce-08d2bf15fac5001c9") + "04 0024" + "00".repeat(36),
  ),
  /** AWS NLB, second capture. */
  aws2: fromHex(
    S + "2111 0054 c0a82c0a c0a82c07 cc3e 241b 03 0004 b9286fa6" +
      "ea 0017 01" + ascii("vpce-00eafc458ec97b833") + "04 0024" + "00".repeat(36),
  ),
  /** HAProxy send-proxy-v2-ssl with a client certificate. */
  clientCert: fromHex(
    S + "2111 0040 7f000001 7f000001 cc8a 232e 20 0031 07 00000000" +
      "21 0007" + ascii("TLSv1.3") + "22 001f" + ascii("Example Common Name Client Cert"),
  ),
  /** HAProxy TLS over v4-mapped IPv6. */
  tlsV6: fromHex(
    S + "2121 004f" + "00000000000000000000ffff0a015b0e" + "00000000000000000000ffff0a01019f" +
      "f47c 01bb 20 0028 01 00000000 21 0007" + ascii("TLSv1.3") + "23 0016" +
      ascii("TLS_AES_256_GCM_SHA384"),
  ),
  /** HAProxy reg-test base: 127.0.0.1:42 -> 127.0.0.1:1337, AUTHORITY "12345". */
  authority: fromHex(S + "2111 0014 7f000001 7f000001 002a 0539 02 0005 3132333435"),
  /** Plain TCP4, no TLVs. */
  tcp4: fromHex(S + "2111 000c ac1f0771 ac1f0a1f c8f2 0050"),
  /** LOCAL, UNSPEC, len 0: what senders should send for health checks. */
  local: fromHex(S + "2000 0000"),
};

/** The spec's v1 example. */
export const V1_SPEC = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
