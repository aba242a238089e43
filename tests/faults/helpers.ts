// Shared harness of the fault tests: a server in a child process of the same runtime
// (tests/faults/fixtures/server.mjs), measured from outside through /proc, and loopback
// clients. Linux only (/proc), like the faults it guards against.
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import process from "node:process";
import { Buffer } from "node:buffer";

export type Runtime = "node" | "deno" | "bun";
export type Adapter = "node" | "bun" | "deno" | "plain:node" | "plain:bun" | "plain:deno";

/** The runtime running the tests; each child runs on the same one. */
export const runtime: Runtime = "Deno" in globalThis
  ? "deno"
  : "Bun" in globalThis
  ? "bun"
  : "node";

export const MiB = 1024 * 1024;
export const KiB = 1024;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The fixture, from the repository root (the Node runner bundles tests elsewhere). */
export const FIXTURE = path.resolve("tests/faults/fixtures/server.mjs");

/** How a fixture is started on this runtime, with a GC the fixture can call. */
function command(fixture: string, args: string[]): string[] {
  switch (runtime) {
    case "node":
      return [process.execPath, "--expose-gc", fixture, ...args];
    case "deno":
      return [process.execPath, "run", "-A", "--v8-flags=--expose-gc", fixture, ...args];
    case "bun":
      return [process.execPath, fixture, ...args];
  }
}

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout) || 100;

// deno-lint-ignore no-explicit-any
export type Line = Record<string, any>;

/**
 * One fixture server process: JSON lines on its stdout (`{"event": "listening", "port",
 * "pid"}` first), commands a line on its stdin (`stats`).
 */
export class Child {
  readonly process: ChildProcess;
  readonly lines: Line[] = [];
  stderr = "";
  port = 0;
  pid = 0;
  #taken = 0;
  #waiters: (() => void)[] = [];
  #exited: Promise<number | null>;
  exitCode: number | null | undefined = undefined;

  private constructor(argv: string[], nofile?: number) {
    const [file, ...args] = nofile === undefined
      ? argv
      : ["bash", "-c", `ulimit -n ${nofile} && exec "$0" "$@"`, ...argv];
    this.process = spawn(file!, args, { stdio: ["pipe", "pipe", "pipe"], cwd: process.cwd() });
    let buffered = "";
    this.process.stdout!.setEncoding("utf8");
    this.process.stdout!.on("data", (s: string) => {
      buffered += s;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          this.stderr += `stdout: ${line}\n`;
        }
        for (const wake of this.#waiters.splice(0)) wake();
      }
    });
    this.process.stderr!.setEncoding("utf8");
    this.process.stderr!.on("data", (s: string) => this.stderr += s);
    this.#exited = new Promise((resolve) => {
      this.process.on("exit", (code, signal) => {
        this.exitCode = code ?? (signal === null ? null : -1);
        for (const wake of this.#waiters.splice(0)) wake();
        resolve(code);
      });
    });
  }

  /** Starts `server.mjs <adapter> <mode> <options>`; `nofile` sets `ulimit -n` first. */
  static async start(
    adapter: Adapter,
    mode: "stream" | "idle" | "greet",
    options: Record<string, unknown> = {},
    nofile?: number,
  ): Promise<Child> {
    return await Child.spawn(FIXTURE, [adapter, mode, JSON.stringify(options)], nofile);
  }

  /** Starts `fixture` with `args` on this runtime; `nofile` sets `ulimit -n` first. */
  static async spawn(fixture: string, args: string[], nofile?: number): Promise<Child> {
    const child = new Child(command(fixture, args), nofile);
    const ready = await child.next("listening", 20_000);
    child.port = ready.port;
    child.pid = ready.pid;
    return child;
  }

  /** The next line with this `event`, waiting up to `ms`. */
  async next(event: string, ms = 10_000): Promise<Line> {
    const deadline = Date.now() + ms;
    while (true) {
      while (this.#taken < this.lines.length) {
        const line = this.lines[this.#taken++]!;
        if (line.event === event) return line;
      }
      if (this.exitCode !== undefined) {
        throw new Error(`the server exited (${this.exitCode}) before "${event}":\n${this.stderr}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${event}" within ${ms} ms:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The server's figures, after it ran its GC. */
  stats(): Promise<Line> {
    this.process.stdin!.write("stats\n");
    return this.next("stats");
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  /** The process's CPU time (user + system) so far, in seconds, from /proc (NaN once gone). */
  cpuSeconds(): number {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    } catch {
      return NaN; // gone
    }
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After the name: state is field 3, utime 14, stime 15.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  }

  /** How many file descriptors the process has open (-1 once it is gone). */
  fds(): number {
    try {
      return readdirSync(`/proc/${this.pid}/fd`).length;
    } catch {
      return -1;
    }
  }

  /** Its resident set, from /proc (VmRSS), in bytes. */
  vmRss(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
  }

  /** Ends the process (ours, by its pid) and waits for it. */
  async stop(): Promise<void> {
    if (this.alive) this.process.kill("SIGKILL");
    await this.#exited;
  }
}

/** Connects to the loopback port; resolves once connected. */
export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/** Deterministic bytes that differ everywhere (xorshift32), `size` a multiple of 4. */
export function noise(seed: number, size: number): Buffer {
  const words = new Uint32Array(size / 4);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer);
}

export interface Streamed {
  sent: number;
  sha256: string;
  ms: number;
}

/**
 * Sends `header`, then `total` bytes of noise in `chunk`-sized writes as fast as the
 * socket takes them (waiting for `drain` only when a write backs up), then ends and
 * waits for the server to close.
 */
export async function stream(
  port: number,
  header: Uint8Array,
  total: number,
  chunk = MiB,
): Promise<Streamed> {
  const socket = await connect(port);
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  socket.resume(); // whatever the server answers
  const hash = createHash("sha256");
  const started = Date.now();
  socket.write(header);
  let sent = 0;
  for (let i = 0; sent < total && !socket.destroyed; i++) {
    const bytes = noise(i + 1, Math.min(chunk, total - sent));
    hash.update(bytes);
    sent += bytes.length;
    if (!socket.write(bytes)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off("drain", done);
          socket.off("close", done);
          resolve();
        };
        socket.on("drain", done);
        socket.on("close", done);
      });
    }
  }
  socket.end();
  await closed;
  return { sent, sha256: hash.digest("hex"), ms: Date.now() - started };
}

export const fmtMiB = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;
export const fmtKiB = (bytes: number): string => `${(bytes / KiB).toFixed(1)} KiB`;
