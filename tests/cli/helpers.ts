// The CLI's tests run the CLI itself, in a child process of the runtime running the tests:
// Deno `deno run -A cli/mod.ts`, Bun `bun cli/mod.ts`, Node the built `dist/cli.js` (the
// package's "bin"). Servers listen on port 0 and log the bound address as JSON on stderr.
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";

const isDeno = "Deno" in globalThis;
const isBun = process.versions.bun !== undefined;

/** The command line that runs the CLI on this runtime. */
export function cliCommand(): string[] {
  if (isDeno) return [process.execPath, "run", "-A", "cli/mod.ts"];
  if (isBun) return [process.execPath, "cli/mod.ts"];
  return [process.execPath, "dist/cli.js"];
}

export const runtime: string = isDeno ? "deno" : isBun ? "bun" : "node";

/** A finished run. */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to its end, with `input` on stdin. */
export function run(args: string[], input?: string | Uint8Array): Promise<Run> {
  const [cmd, ...pre] = cliCommand();
  const child = spawn(cmd!, [...pre, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "", stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => stdout += d);
  child.stderr!.setEncoding("utf8").on("data", (d: string) => stderr += d);
  if (input !== undefined) child.stdin!.end(input);
  else child.stdin!.end();
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

/** A JSON log line. */
export type LogLine = Record<string, unknown> & { msg: string };

/** A long-running CLI process (gateway, inspect). */
export interface Server {
  child: ChildProcess;
  /** Every JSON log line so far. */
  logs: LogLine[];
  stdout: () => string;
  /** Resolves with the first log line for which `match` holds. */
  waitLog(match: (line: LogLine) => boolean, ms?: number): Promise<LogLine>;
  /** The exit code, once exited. */
  exited: Promise<number | null>;
  /** Sends a signal. */
  kill(signal?: NodeJS.Signals): void;
}

/** Starts a server command and resolves once it logged `readyMsg`. */
export async function start(args: string[], readyMsg: string | RegExp = "gateway ready"): Promise<
  Server & {
    ready: LogLine;
  }
> {
  const [cmd, ...pre] = cliCommand();
  const child = spawn(cmd!, [...pre, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const logs: LogLine[] = [];
  const waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let out = "", buffered = "", errText = "";
  let stdoutReady: ((line: LogLine) => void) | undefined;
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
    const m = readyMsg instanceof RegExp ? readyMsg.exec(out) : null;
    if (m !== null) stdoutReady?.({ msg: m[0], match: [...m] });
  });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    buffered += d;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line);
      } catch {
        errText += line + "\n";
        continue;
      }
      logs.push(parsed);
      for (const w of [...waiters]) {
        if (w.match(parsed)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(parsed);
        }
      }
    }
  });
  let killed = false;
  const exited = new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  // A child that dies on its own, after it was ready, says why (the test then fails on it).
  exited.then((code) => {
    if (!killed && ready !== undefined) {
      console.error(`[cli] ${args.join(" ")}: exited (${code}) unasked; stderr: ${errText}`);
    }
  });
  const waitLog = (match: (l: LogLine) => boolean, ms = 10_000) => {
    const found = logs.find(match);
    if (found) return Promise.resolve(found);
    return new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `no matching log within ${ms} ms; stderr: ${errText}\nlogs: ${JSON.stringify(logs)}`,
          ),
        );
      }, ms);
      exited.then(() =>
        setTimeout(() => {
          clearTimeout(timer);
          reject(new Error(`exited; stderr: ${errText}\nlogs: ${JSON.stringify(logs)}`));
        }, 50)
      );
      waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  };
  let ready: LogLine | undefined = undefined;
  ready = readyMsg instanceof RegExp
    ? await new Promise<LogLine>((resolve, reject) => {
      stdoutReady = resolve;
      exited.then(() => reject(new Error(`exited; stdout: ${out}\nstderr: ${errText}`)));
    })
    : await waitLog((l) => l.msg === readyMsg);
  return {
    child,
    logs,
    stdout: () => out,
    waitLog,
    exited,
    // process.kill, not child.kill: Deno's ChildProcess then reports the signal it sent
    // instead of the exit code the child chose (seen on Deno 2.9.5).
    kill: (signal = "SIGTERM") => {
      killed = true;
      process.kill(child.pid!, signal);
    },
    ready,
  };
}

/** The port of a `HOST:PORT` field of a log line. */
export function portOf(field: unknown): number {
  return Number(String(field).split(":").pop());
}

/** Stops a server (SIGTERM) and waits for it. */
export async function stop(server: Server): Promise<number | null> {
  try {
    server.kill("SIGTERM");
  } catch (error) {
    if ((error as { code?: string }).code !== "ESRCH") throw error; // exited already
  }
  return await server.exited;
}
