/**
 * What the commands share: flag parsing on `node:util`'s `parseArgs`, usage errors, exit
 * codes, JSON logs on stderr, and the flags that read a header (`--accept`, `--trust`,
 * `--timeout`, `--max-header`). Internal.
 *
 * @module
 */

import process from "node:process";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { fromHex, toHex } from "../lib/bytes.ts";
import type { ProxyProtocolOptions } from "../lib/connection/options.ts";
import type { ProxyPolicy } from "../lib/connection/policy.ts";
import { ProxyProtocolError } from "../lib/error.ts";
import { decodeTlvs } from "../lib/tlv.ts";
import type { ProxyHeader, Tlv } from "../lib/types.ts";

/** Exit codes of every command. */
export const EXIT = {
  /** Done: a header decoded, a server drained and stopped. */
  OK: 0,
  /** The command ran and failed: a bad header, no connection, a port in use. */
  FAILURE: 1,
  /** Bad flags or arguments; nothing was done. */
  USAGE: 2,
} as const;

/** Bad flags or arguments: printed with a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** What a command module offers {@linkcode main}. */
export interface Command {
  /** One line for the list of commands. */
  summary: string;
  /** The command's `--help` text. */
  usage: string;
  /** Runs it; resolves to the exit code. */
  run(args: string[], io: Io): Promise<number>;
}

/** Where a command writes; the tests and `main` give the process's own. */
export interface Io {
  /** Results (JSON, relayed bytes). */
  stdout: { write(chunk: string | Uint8Array): unknown };
  /** Logs and errors. */
  stderr: { write(chunk: string | Uint8Array): unknown };
}

/** The process's own streams. */
export function processIo(): Io {
  return { stdout: process.stdout, stderr: process.stderr };
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** The flags every command takes. */
export const COMMON_FLAGS = {
  help: { type: "boolean", short: "h" },
  "log-level": { type: "string" },
} as const satisfies Options;

/** The flags that read an incoming header (gateway, inspect). */
export const ACCEPT_FLAGS = {
  accept: { type: "string" },
  trust: { type: "string", multiple: true },
  timeout: { type: "string" },
  "max-header": { type: "string" },
} as const satisfies Options;

/** Their help text. */
export const ACCEPT_USAGE = `
Reading the incoming header:
  --accept POLICY      require (default) | optional | ignore | reject | skip
  --trust CIDR         a balancer allowed to send headers (repeat); others are refused
  --timeout MS         wait this long for the header (default 10000; the spec's minimum
                       is 3000, a smaller value is taken as asked)
  --max-header BYTES   the longest header accepted (default 4096)`;

/** Their help text. */
export const COMMON_USAGE = `
  --log-level LEVEL    error | warn | info (default) | debug: JSON lines on stderr
  -h, --help           this text`;

/**
 * `parseArgs`, strict, with its errors as {@linkcode UsageError}s.
 *
 * @param args The command's arguments.
 * @param options The flags.
 * @param positionals Whether positional arguments are allowed.
 * @returns The parsed values and positionals.
 */
export function parse<T extends Options>(
  args: string[],
  options: T,
  positionals = false,
): ReturnType<typeof parseArgs<{ options: T; args: string[]; allowPositionals: boolean }>> {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

/** An endpoint given as `HOST:PORT` (`[::1]:80` for IPv6). */
export interface Endpoint {
  /** The host name or address, without brackets. */
  host: string;
  /** The port. */
  port: number;
}

/**
 * Parses `HOST:PORT`, `[IPV6]:PORT` or `:PORT` (all interfaces).
 *
 * @param text The flag's value.
 * @param flag The flag, for the error.
 * @returns The endpoint.
 * @throws {UsageError} When it is not one.
 */
export function endpoint(text: string, flag: string): Endpoint {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) {
    throw new UsageError(`${flag}: expected HOST:PORT, got ${JSON.stringify(text)}`);
  }
  const host = m[1] ?? m[2] ?? "";
  return { host: host === "" ? "0.0.0.0" : host, port };
}

/** `HOST:PORT` for logs. */
export function formatEndpoint(e: { host: string; port: number }): string {
  return e.host.includes(":") ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/**
 * Parses a whole number flag.
 *
 * @throws {UsageError} When it is not one in range.
 */
export function integer(
  text: string | undefined,
  flag: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (text === undefined) return fallback;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) {
    throw new UsageError(
      `${flag}: expected a whole number from ${min}, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

/** A TLV type: decimal or 0x hex, 0-255. */
export function tlvType(text: string, flag: string): number {
  const n = /^0x[0-9a-f]{1,2}$/i.test(text)
    ? parseInt(text, 16)
    : /^\d{1,3}$/.test(text)
    ? Number(text)
    : NaN;
  if (!(n >= 0 && n <= 255)) {
    throw new UsageError(`${flag}: expected a TLV type 0-255 (or 0x00-0xff), got ${text}`);
  }
  return n;
}

/** `TYPE=HEX` TLVs, in the order given. */
export function tlvs(values: readonly string[] | undefined, flag = "--tlv"): Tlv[] {
  return (values ?? []).map((text) => {
    const eq = text.indexOf("=");
    if (eq < 0) throw new UsageError(`${flag}: expected TYPE=HEX, got ${JSON.stringify(text)}`);
    const type = tlvType(text.slice(0, eq), flag);
    const hex = text.slice(eq + 1);
    if (!/^([0-9a-f]{2})*$/i.test(hex)) {
      throw new UsageError(`${flag}: the value must be hex bytes, got ${JSON.stringify(hex)}`);
    }
    return { type, value: fromHex(hex) };
  });
}

const POLICY_NAMES = new Set(["require", "optional", "ignore", "reject", "skip"]);

/** The accept flags as the library's listener options. */
export function acceptOptions(values: {
  accept?: string | undefined;
  trust?: string[] | undefined;
  timeout?: string | undefined;
  "max-header"?: string | undefined;
}): ProxyProtocolOptions {
  const policy = values.accept ?? "require";
  if (!POLICY_NAMES.has(policy)) {
    throw new UsageError(
      `--accept: expected require, optional, ignore, reject or skip, got ${policy}`,
    );
  }
  const options: ProxyProtocolOptions = {
    policy: policy as ProxyPolicy,
    timeout: integer(values.timeout, "--timeout", 10_000, 1),
    allowShortTimeout: true,
    maxHeaderLength: integer(values["max-header"], "--max-header", 4096, 16, 65551),
  };
  if (values.trust !== undefined) options.trust = values.trust;
  return options;
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
/** A log level. */
export type Level = keyof typeof LEVELS;

/** JSON lines on stderr, one an event. */
export class Logger {
  readonly #min: number;
  readonly #out: Io["stderr"];
  readonly #base: Record<string, unknown>;

  constructor(level: string | undefined, out: Io["stderr"], base: Record<string, unknown> = {}) {
    const min = LEVELS[(level ?? "info") as Level];
    if (min === undefined) {
      throw new UsageError(`--log-level: expected error, warn, info or debug, got ${level}`);
    }
    this.#min = min;
    this.#out = out;
    this.#base = base;
  }

  /** Whether events of `level` are written. */
  enabled(level: Level): boolean {
    return LEVELS[level] >= this.#min;
  }

  /** Writes one event. */
  log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
    if (LEVELS[level] < this.#min) return;
    this.#out.write(
      json({ time: new Date().toISOString(), level, msg, ...this.#base, ...fields }) + "\n",
    );
  }
}

/** JSON with bytes as hex and bigints as text. */
export function json(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_key, v) => v instanceof Uint8Array ? toHex(v) : typeof v === "bigint" ? v.toString() : v,
    indent,
  );
}

/** A header as the commands print it: its fields, and its TLVs by meaning. */
export function describeHeader(header: ProxyHeader): Record<string, unknown> {
  let tlvs: unknown;
  try {
    tlvs = decodeTlvs(header.tlvs);
  } catch (error) {
    tlvs = { raw: header.tlvs, error: errorFields(error) };
  }
  return {
    version: header.version,
    command: header.command,
    protocol: header.protocol,
    source: header.source,
    destination: header.destination,
    tlvs,
  };
}

/** An error as log fields: its code where it has one. */
export function errorFields(error: unknown): Record<string, unknown> {
  if (error instanceof ProxyProtocolError) {
    return error.offset === undefined
      ? { code: error.code, message: error.message }
      : { code: error.code, message: error.message, offset: error.offset };
  }
  const e = error as { code?: unknown; message?: unknown };
  return {
    ...(typeof e?.code === "string" ? { code: e.code } : {}),
    message: typeof e?.message === "string" ? e.message : String(error),
  };
}

/** Resolves on the first of the given signals; a second one exits at once. */
export function onShutdown(handler: (signal: string) => void): () => void {
  let count = 0;
  const listener = (signal: string) => {
    if (++count > 1) process.exit(EXIT.FAILURE);
    handler(signal);
  };
  process.on("SIGINT", listener);
  process.on("SIGTERM", listener);
  return () => {
    process.off("SIGINT", listener);
    process.off("SIGTERM", listener);
  };
}
