// The accept loop's retry schedule and its burst reports, without sockets.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AcceptBackoff } from "../lib/connection/backoff.ts";

describe("AcceptBackoff", () => {
  it("waits 5 ms, doubling to 1 s, and reports the first failure of a burst only", () => {
    const b = new AcceptBackoff();
    const waits = [], reports = [];
    for (let i = 0; i < 10; i++) {
      const { wait, report } = b.failed(1000 + i);
      waits.push(wait);
      reports.push(report);
    }
    assert.deepEqual(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    assert.deepEqual(reports, [
      true,
      false,
      false,
      false,
      false,
      false,
      false,
      false,
      false,
      false,
    ]);
  });

  it("a success resets the wait but not the burst; a second without failures ends it", () => {
    const b = new AcceptBackoff();
    assert.equal(b.failed(0).report, true);
    b.failed(10);
    b.succeeded();
    const again = b.failed(50);
    assert.deepEqual(again, { wait: 5, report: false }); // same burst, refilled descriptors
    b.succeeded();
    assert.equal(b.failed(50 + 1001).report, true); // a new burst
  });
});
