// The bounded slice of `npm run fuzz` that `npm test` runs on each runtime: the same
// generators and checks (tests/fuzz/generate.ts, properties.ts) over a few thousand cases
// per target, with a fixed seed so that CI is deterministic; and every fixture in
// tests/fuzz/fixtures/ replayed. FUZZ_CASES and FUZZ_SEED change the slice.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { readdirSync, readFileSync } from "node:fs";
import { decodeHeader, ProxyProtocolError } from "@proxy-protocol/edge";
import {
  type Case,
  type FailureReport,
  makeCase,
  parseFixture,
  runCase,
  TARGETS,
} from "./properties.ts";

const CASES = Number(process.env.FUZZ_CASES ?? "20000");
const SEED = Number(process.env.FUZZ_SEED ?? "20261130") >>> 0;
// Run from the repository's root, as npm test does (the Node run bundles this file
// elsewhere, so the fixtures are not found from import.meta.url).
const FIXTURES = "tests/fuzz/fixtures";

console.log(
  `fuzz: ${CASES} cases per target (${TARGETS.join(", ")}), seed ${SEED}` +
    " (set FUZZ_CASES and FUZZ_SEED to change)",
);

function failures(list: FailureReport[]): string[] {
  return list.map((f) => f.message.length > 4000 ? f.message.slice(0, 4000) + "…" : f.message);
}

/** What decodeHeader answers, in a fixture's `# expect:` words. */
function expectation(c: Case): string {
  const opts: { maxLength?: number; verifyChecksum?: boolean } = {};
  if (typeof c.params.maxLength === "number") opts.maxLength = c.params.maxLength;
  if (typeof c.params.verifyChecksum === "boolean") opts.verifyChecksum = c.params.verifyChecksum;
  try {
    const r = decodeHeader(c.bytes, opts);
    return r === null ? "null" : `result ${r.length}`;
  } catch (error) {
    if (!(error instanceof ProxyProtocolError)) throw error;
    return `error ${error.code} ${error.offset}`;
  }
}

describe("fuzz: a bounded slice of npm run fuzz", () => {
  for (const target of TARGETS) {
    it(`${target}: ${CASES} cases, seed ${SEED}`, async () => {
      const found: FailureReport[] = [];
      for (let i = 0; i < CASES && found.length < 3; i++) {
        const failure = await runCase(makeCase(target, SEED, i));
        if (failure !== null) found.push(failure);
      }
      assert.deepEqual(failures(found), []);
    });
  }

  it("replays every fixture in tests/fuzz/fixtures/ (past failures and chosen cases)", async () => {
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".hex")).sort();
    assert.ok(files.length > 0, `no fixtures in ${FIXTURES}`);
    console.log(`fuzz: replaying ${files.length} fixtures`);
    for (const file of files) {
      const text = readFileSync(`${FIXTURES}/${file}`, "utf8");
      const c = parseFixture(text);
      const failure = await runCase(c);
      assert.deepEqual(failures(failure === null ? [] : [failure]), [], file);
      // A fixture may say what decodeHeader answers for its bytes since the fix.
      const expect = /^#\s*expect:\s*(.+)$/m.exec(text)?.[1]?.trim();
      if (expect !== undefined) assert.equal(expectation(c), expect, file);
    }
  });
});
