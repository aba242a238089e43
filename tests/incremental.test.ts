import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { decodeHeader } from "@proxy-protocol/edge";
import { text, V1_SPEC, V2 } from "./vectors.ts";

const valid: [string, Uint8Array][] = [
  ["v1 spec", text(V1_SPEC)],
  ["v1 TCP6", text("PROXY TCP6 ::ffff:10.1.91.14 2001:db8::2 62588 443\r\n")],
  ["v1 UNKNOWN", text("PROXY UNKNOWN\r\n")],
  ["v1 UNKNOWN with rest", text("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n")],
  ...Object.entries(V2),
];

describe("incremental decoding", () => {
  it("gives null for every prefix of a valid header, then the same result however much follows", () => {
    for (const [name, bytes] of valid) {
      const whole = decodeHeader(bytes);
      assert.ok(whole, name);
      assert.equal(whole.length, bytes.length, name);
      for (let i = 0; i < bytes.length; i++) {
        assert.equal(decodeHeader(bytes.subarray(0, i)), null, `${name}: prefix of ${i} bytes`);
      }
      // With payload after it: same header, same length.
      const withPayload = new Uint8Array(bytes.length + 300);
      withPayload.set(bytes);
      withPayload.fill(0x47, bytes.length);
      assert.deepEqual(decodeHeader(withPayload), whole, name);
    }
  });
});
