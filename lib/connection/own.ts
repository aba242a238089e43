/**
 * A header a connection can keep for its life without keeping the chunk it came in.
 *
 * @module
 */

import type { ProxyHeader, Tlv } from "../types.ts";

/**
 * The header with its TLV values copied into one buffer of their own. Decoded TLVs are
 * views into the chunk the header came in, which may hold 64 KiB of payload; a
 * connection keeps `proxyHeader` for its life, so it must keep no more than the header.
 * A header without TLVs is returned as it is. Internal.
 *
 * @param header A decoded header.
 * @returns The same header, or a copy whose TLVs own their bytes.
 */
export function ownHeader(header: ProxyHeader): ProxyHeader {
  const tlvs = header.tlvs;
  if (tlvs.length === 0) return header;
  let size = 0;
  for (let i = 0; i < tlvs.length; i++) size += tlvs[i]!.value.length;
  const bytes = new Uint8Array(size);
  const owned: Tlv[] = new Array(tlvs.length);
  let at = 0;
  for (let i = 0; i < tlvs.length; i++) {
    const { type, value } = tlvs[i]!;
    bytes.set(value, at);
    owned[i] = { type, value: bytes.subarray(at, at + value.length) };
    at += value.length;
  }
  return { ...header, tlvs: owned };
}
