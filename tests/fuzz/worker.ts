// One fuzzing process: runs cases [from, from + count) of one target and seed, and writes
// one JSON object a line to stdout: `progress` about once a second, `case` before each
// case with --trace (to find a case that hangs), `failure` for each case that fails, and
// `done` at the end. Run by tests/fuzz/run.mjs; by hand:
//   deno run -A tests/fuzz/worker.ts --target header --seed 1 --from 0 --count 1000
//   bun tests/fuzz/worker.ts --target accept --seed 1 --from 4242 --count 1 --trace
import process from "node:process";
import { writeSync } from "node:fs";
import { describeCase, makeCase, runCase, type Target, TARGETS } from "./properties.ts";
import { toHexString } from "./generate.ts";

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

/** Writes a line to stdout synchronously, so that it is out even if the next case hangs. */
function emit(message: Record<string, unknown>): void {
  const bytes = new TextEncoder().encode(JSON.stringify(message) + "\n");
  for (let at = 0; at < bytes.length;) {
    try {
      at += writeSync(1, bytes.subarray(at));
    } catch (error) {
      if ((error as { code?: string }).code !== "EAGAIN") throw error;
    }
  }
}

/** The runtime and its version. */
export function runtime(): string {
  const g = globalThis as {
    Deno?: { version: { deno: string } };
    Bun?: { version: string };
  };
  if (g.Deno !== undefined) return `deno ${g.Deno.version.deno}`;
  if (g.Bun !== undefined) return `bun ${g.Bun.version}`;
  return `node ${process.versions.node}`;
}

async function main(): Promise<number> {
  const target = option("target", "header") as Target;
  if (!TARGETS.includes(target)) throw new Error(`unknown target ${target}`);
  const seed = Number(option("seed", "1")) >>> 0;
  const from = Number(option("from", "0"));
  const count = Number(option("count", "1000"));
  const bound = Number(option("bound", "250"));
  const most = Number(option("max-failures", "10"));
  const trace = process.argv.includes("--trace");
  const start = performance.now();
  let last = start, failures = 0, done = 0;
  // For testing run.mjs's watchdog: case `--simulate-hang I` never ends.
  const hang = Number(option("simulate-hang", "-1"));
  for (let i = from; i < from + count; i++) {
    if (trace) emit({ type: "case", index: i });
    if (i === hang) { for (;;) performance.now(); }
    let failure;
    try {
      failure = await runCase(makeCase(target, seed, i), bound);
    } catch (error) {
      failure = { message: `making the case threw ${String((error as Error)?.stack ?? error)}` };
    }
    done++;
    if (failure !== null) {
      emit({ type: "failure", target, seed, index: i, runtime: runtime(), ...failure });
      if (++failures >= most) break;
    }
    if ((done & 63) === 0) {
      const now = performance.now();
      if (now - last >= 1000) {
        emit({ type: "progress", done, index: i });
        last = now;
      }
    }
  }
  emit({
    type: "done",
    target,
    seed,
    from,
    cases: done,
    failures,
    ms: Math.round(performance.now() - start),
    runtime: runtime(),
  });
  return failures > 0 ? 1 : 0;
}

if (process.argv.includes("--dump")) {
  // The case's input and params, for a fixture or a look: --dump --target T --seed S --from I
  const c = makeCase(
    option("target", "header") as Target,
    Number(option("seed", "1")) >>> 0,
    Number(option("from", "0")),
  );
  emit({ type: "case", ...c, bytes: undefined, hex: toHexString(c.bytes), text: describeCase(c) });
} else {
  process.exitCode = await main();
}
