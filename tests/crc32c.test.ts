import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { crc32c } from "@proxy-protocol/edge";
import { V2 } from "./vectors.ts";

describe("crc32c", () => {
  it("gives the Castagnoli check value and chains across parts", () => {
    const data = new TextEncoder().encode("123456789");
    assert.equal(crc32c(data), 0xe3069283);
    for (let i = 0; i <= data.length; i++) {
      assert.equal(crc32c(data.subarray(i), crc32c(data.subarray(0, i))), 0xe3069283);
    }
    assert.equal(crc32c(new Uint8Array(0)), 0);
  });

  it("matches the RFC 3720 (iSCSI) test patterns on the slicing path", () => {
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
    assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
    assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
    assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  });

  it("reproduces the checksums of the AWS NLB captures", () => {
    for (const [bytes, expected] of [[V2.aws1, 0xe8d6892d], [V2.aws2, 0xb9286fa6]] as const) {
      const zeroed = bytes.slice();
      zeroed.fill(0, 31, 35);
      assert.equal(crc32c(zeroed), expected);
    }
  });
});
