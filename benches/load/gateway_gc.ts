/**
 * The gateway of the load test: the CLI's own `main` (cli/mod.ts) run with this process's
 * arguments, exactly as `proxy-protocol gateway ...` runs, plus one hook for the test: on
 * SIGUSR2 a full garbage collection (`--expose-gc` on Node and Deno, `Bun.gc` on Bun), then
 * one JSON line on stderr with the heap's figures. `--workers` fork this same file, so
 * every worker has the hook. run.mjs runs it (bundled by esbuild on Node).
 *
 * @module
 */

import process from "node:process";

const bun = (globalThis as unknown as { Bun?: { gc(force: boolean): void } }).Bun;
const v8gc = (globalThis as { gc?: () => void }).gc;
const gc = v8gc ?? (bun === undefined ? undefined : () => bun.gc(true));

process.on("SIGUSR2", () => {
  if (gc !== undefined) {
    gc();
    gc();
  }
  const { heapUsed, external, rss } = process.memoryUsage();
  process.stderr.write(
    JSON.stringify({
      msg: "load-gc",
      pid: process.pid,
      gc: gc !== undefined,
      heapUsed,
      external,
      rss,
    }) +
      "\n",
  );
});

// The Node bundle inlines cli/mod.ts, whose "am I the program?" test compares argv[1] with
// its own file: hide argv[1] while it loads so that only this file calls main.
const script = process.argv[1];
process.argv[1] = "[load]";
const { main } = await import("../../cli/mod.ts");
process.argv[1] = script!;
process.exit(await main(process.argv.slice(2)));
