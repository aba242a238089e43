/**
 * The command line: `gateway`, `inspect`, `send`, `decode` and `demo`. A module that is
 * also a program: import {@linkcode main} to run a command from code, or run this file
 * (`deno run -A jsr:@proxy-protocol/edge/cli`, `bun cli/mod.ts`, `npx proxy-protocol`).
 *
 * Exit codes: 0 done, 1 the command failed (a bad header, no connection, a port in use),
 * 2 bad flags (a usage error, nothing done). Logs are JSON lines on stderr.
 *
 * @example Decode a header from code
 * ```ts
 * import { main } from "@proxy-protocol/edge/cli";
 * import assert from "node:assert/strict";
 *
 * const code = await main(["decode", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\\r\\n"]);
 * assert.equal(code, 0);
 * ```
 *
 * @module
 */

import { realpathSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type Command, EXIT, type Io, json, processIo, UsageError } from "./_common.ts";

export type { Io };
import { decode } from "./decode.ts";
import { demo } from "./demo.ts";
import { gateway } from "./gateway.ts";
import { inspect } from "./inspect.ts";
import { send } from "./send.ts";

const COMMANDS: Record<string, Command> = { gateway, inspect, send, decode, demo };

const USAGE = `Usage: proxy-protocol COMMAND [flags]   (COMMAND --help for its flags)

PROXY protocol v1/v2 tools (HAProxy's spec) for Deno, Bun and Node.

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`).join("\n")}

Exit codes: 0 done; 1 the command failed; 2 usage error (bad flags).`;

/**
 * Runs one command, as the command line does.
 *
 * @param args The arguments after the program: the command, then its flags.
 * @param io Where results and logs go; default the process's stdout and stderr.
 * @returns The exit code: 0 done, 1 failed, 2 usage error. Servers (`gateway`,
 *   `inspect`, `demo`) resolve once they have shut down (SIGINT or SIGTERM).
 */
export async function main(args: string[], io: Io = processIo()): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    (name === undefined ? io.stderr : io.stdout).write(USAGE + "\n");
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    io.stderr.write(`proxy-protocol: unknown command ${JSON.stringify(name)}\n\n${USAGE}\n`);
    return EXIT.USAGE;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    io.stdout.write(command.usage + "\n");
    return EXIT.OK;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`proxy-protocol ${name}: ${error.message}\n(see: ${name} --help)\n`);
      return EXIT.USAGE;
    }
    const e = error as { code?: unknown; message?: unknown };
    io.stderr.write(
      json({
        level: "error",
        msg: `${name} failed`,
        ...(typeof e?.code === "string" ? { code: e.code } : {}),
        error: typeof e?.message === "string" ? e.message : String(error),
      }) + "\n",
    );
    return EXIT.FAILURE;
  }
}

/** Whether this module is the program: `import.meta.main`, or Node 20's argv[1]. */
function isMain(): boolean {
  const meta = import.meta as ImportMeta & { main?: boolean };
  if (typeof meta.main === "boolean") return meta.main;
  const script = process.argv[1];
  if (script === undefined || !import.meta.url.startsWith("file:")) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  // No top-level await: the npm build stays require()-able.
  main(process.argv.slice(2)).then((code) => {
    // Servers have closed their handles by now; stdin may still hold the loop open.
    process.exitCode = code;
    process.exit(code);
  });
}
