// The fuzzer's checks (tests/fuzz/): for one case of a target, everything that must hold.
// A check throws a FuzzFailure; `runCase` adds the time bound and the case's replay
// information (target, seed, index, params, input as hex).
//
// The accept phase is internal (lib/connection/accept.ts), so it is imported from the
// source; the codec comes through the package, as in every other test. On Node the
// package is the built dist/ and the accept phase is bundled from source: two copies of
// ProxyProtocolError, so errors from the accept phase are told by their `code`.
import {
  bytesNeeded,
  decodeDatagram,
  decodeHeader,
  type DecodeOptions,
  decodeTlvs,
  encodeDatagram,
  encodedLength,
  encodeHeader,
  encodeHeaderInto,
  encodeTlvs,
  type ProxyHeader,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
  type ProxyTlvs,
  type ProxyTlvsInit,
  type SslTlvInit,
  type Tlv,
} from "@proxy-protocol/edge";
import { AcceptPhase, type AcceptStep } from "../../lib/connection/accept.ts";
import { Deadlines, type Expiring } from "../../lib/connection/deadlines.ts";
import { ListenerMetrics } from "../../lib/connection/metrics.ts";
import { type ProxyProtocolOptions, resolveOptions } from "../../lib/connection/options.ts";
import type { PeerInfo } from "../../lib/connection/peer.ts";
import {
  acceptCase,
  type AcceptParams,
  addressLength,
  type CaseKind,
  caseRng,
  concat,
  crc32cOf,
  datagramCase,
  headerCase,
  hex,
  parseTlvList,
  type PolicyName,
  Rng,
  serializeTlvs,
  tlvList,
  toHexString,
} from "./generate.ts";

/** What is fuzzed. */
export type Target = "header" | "tlv" | "datagram" | "accept";
/** Every target, in the order of their PRNG streams (header is stream 0, as headerCorpus). */
export const TARGETS: readonly Target[] = ["header", "tlv", "datagram", "accept"];

/** One case: its input, and the choices (options, chunking) its check runs with; JSON. */
export interface Case {
  target: Target;
  kind: CaseKind;
  bytes: Uint8Array;
  params: Record<string, unknown>;
  /** Where it came from, for replay: absent for fixtures written by hand. */
  seed?: number;
  index?: number;
}

/** A property that does not hold. */
export class FuzzFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FuzzFailure";
  }
}

function fail(message: string): never {
  throw new FuzzFailure(message);
}

/** Case `index` of run `seed` for `target`. */
export function makeCase(target: Target, seed: number, index: number): Case {
  const rng = caseRng(seed, index, TARGETS.indexOf(target));
  switch (target) {
    case "header": {
      const c = headerCase(rng);
      return { target, seed, index, kind: c.kind, bytes: c.bytes, params: decodeOptions(rng) };
    }
    case "tlv":
      return { target, seed, index, kind: "v2", bytes: serializeTlvs(tlvList(rng)), params: {} };
    case "datagram": {
      const { kind, bytes, ...params } = datagramCase(rng);
      return { target, seed, index, kind, bytes, params };
    }
    case "accept": {
      const c = acceptCase(rng);
      return { target, seed, index, kind: c.kind, bytes: c.bytes, params: { ...c.params } };
    }
  }
}

/** Options for decodeHeader: mostly none, else a size cap and/or no checksum check. */
function decodeOptions(rng: Rng): Record<string, unknown> {
  const r = rng.int(10);
  if (r < 7) return {};
  const maxLength = rng.pick([0, 1, 15, 16, 28, 50, 107, 108, 232, 4096, rng.int(300)]);
  if (r < 8) return { maxLength };
  if (r < 9) return { verifyChecksum: false };
  return { maxLength, verifyChecksum: rng.chance(0.5) };
}

/** Runs the checks of one case (async only for the accept phase). */
export function checkCase(c: Case): void | Promise<void> {
  switch (c.target) {
    case "header":
      return checkHeader(c.bytes, toDecodeOptions(c.params));
    case "tlv":
      return checkTlvTarget(parseTlvList(c.bytes));
    case "datagram":
      return checkDatagram(c.bytes, c.params);
    case "accept":
      return checkAccept(c.bytes, c.params as unknown as AcceptParams);
  }
}

/** What `runCase` reports for a case that fails. */
export interface FailureReport {
  target: Target;
  seed: number | undefined;
  index: number | undefined;
  kind: CaseKind;
  params: Record<string, unknown>;
  hex: string;
  message: string;
  /** The fixture file's text: comment lines, then the input's hex. */
  fixture: string;
}

/** A case's description for people, with what it takes to replay it. */
export function describeCase(c: Case): string {
  const where = c.seed === undefined ? "fixture" : `seed ${c.seed}, index ${c.index}`;
  return `${c.target} case (${c.kind}; ${where}; params ${JSON.stringify(c.params)})\n` +
    `input (${c.bytes.length} bytes): ${toHexString(c.bytes)}`;
}

function report(c: Case, message: string): FailureReport {
  const fixture = [
    `# ${message.split("\n")[0]}`,
    `# target: ${c.target}`,
    `# kind: ${c.kind}`,
    `# params: ${JSON.stringify(c.params)}`,
    ...(c.seed === undefined ? [] : [`# found: seed ${c.seed} index ${c.index}`]),
    toHexString(c.bytes),
    "",
  ].join("\n");
  return {
    target: c.target,
    seed: c.seed,
    index: c.index,
    kind: c.kind,
    params: c.params,
    hex: toHexString(c.bytes),
    message: `${message}\n${describeCase(c)}`,
    fixture,
  };
}

/**
 * Runs one case's checks within a time bound: a case that takes longer than `boundMs`
 * is run again (a GC pause or a busy machine may have slowed it) and fails only if it is
 * over the bound both times.
 */
export async function runCase(c: Case, boundMs = 250): Promise<FailureReport | null> {
  for (let attempt = 1;; attempt++) {
    const start = performance.now();
    try {
      const pending = checkCase(c);
      if (pending !== undefined) await pending;
    } catch (error) {
      const message = error instanceof FuzzFailure
        ? error.message
        : `the check itself threw ${String((error as Error)?.stack ?? error)}`;
      return report(c, message);
    }
    const ms = performance.now() - start;
    if (ms <= boundMs) return null;
    if (attempt === 2) {
      return report(c, `too slow: ${ms.toFixed(1)} ms, twice over the bound of ${boundMs} ms`);
    }
  }
}

/** Parses a fixture file (see {@linkcode FailureReport.fixture}). */
export function parseFixture(text: string): Case {
  let target: Target | undefined, kind: CaseKind = "mutation", params = {};
  let data = "";
  for (const line of text.split("\n")) {
    const m = /^#\s*(target|kind|params):\s*(.*)$/.exec(line);
    if (m !== null) {
      if (m[1] === "target") target = m[2]!.trim() as Target;
      else if (m[1] === "kind") kind = m[2]!.trim() as CaseKind;
      else params = JSON.parse(m[2]!);
    } else if (!line.startsWith("#")) {
      data += line;
    }
  }
  if (target === undefined || !TARGETS.includes(target)) throw new Error("fixture without target");
  return { target, kind, params, bytes: hex(data) };
}

// ---------------------------------------------------------------------------------------
// Helpers

const CODEC_CODES: ReadonlySet<string> = new Set<ProxyProtocolErrorCode>([
  "NOT_PROXY_PROTOCOL",
  "V1_MALFORMED",
  "V1_TOO_LONG",
  "INVALID_ADDRESS",
  "INVALID_PORT",
  "UNSUPPORTED_VERSION",
  "INVALID_COMMAND",
  "INVALID_FAMILY",
  "INVALID_LENGTH",
  "HEADER_TOO_LONG",
  "INVALID_TLV",
  "CHECKSUM_MISMATCH",
]);

function show(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

function toDecodeOptions(params: Record<string, unknown>): DecodeOptions | undefined {
  const opts: DecodeOptions = {};
  if (typeof params.maxLength === "number") opts.maxLength = params.maxLength;
  if (typeof params.verifyChecksum === "boolean") opts.verifyChecksum = params.verifyChecksum;
  return Object.keys(opts).length === 0 ? undefined : opts;
}

/** What decodeHeader answered. */
type Answer =
  | { kind: "null" }
  | { kind: "result"; length: number; header: ProxyHeader }
  | { kind: "error"; code: string; offset: number | undefined; message: string };

const NULL: Answer = { kind: "null" };

/** decodeHeader's answer; anything but a result, `null` or a codec error is a failure. */
function answer(bytes: Uint8Array, opts: DecodeOptions | undefined): Answer {
  let thrown: unknown;
  try {
    const r = decodeHeader(bytes, opts);
    return r === null ? NULL : { kind: "result", length: r.length, header: r.header };
  } catch (error) {
    thrown = error;
  }
  if (!(thrown instanceof ProxyProtocolError)) {
    fail(`decodeHeader threw ${show(thrown)} on ${bytes.length} bytes, opts ${j(opts)}`);
  }
  if (!CODEC_CODES.has(thrown.code)) {
    fail(`decodeHeader threw unexpected code ${thrown.code} on ${bytes.length} bytes`);
  }
  return { kind: "error", code: thrown.code, offset: thrown.offset, message: thrown.message };
}

function j(x: unknown): string {
  return JSON.stringify(
    x,
    (_k, v) => v instanceof Uint8Array ? toHexString(v) : typeof v === "bigint" ? `${v}n` : v,
  );
}

function showAnswer(a: Answer): string {
  if (a.kind === "null") return "null";
  if (a.kind === "error") return `${a.code} at ${a.offset} (${a.message})`;
  return `a header of ${a.length} bytes ${j(a.header)}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameTlvs(a: readonly Tlv[], b: readonly Tlv[]): string | undefined {
  if (a.length !== b.length) return `${a.length} TLVs vs ${b.length}`;
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.type !== b[i]!.type || !sameBytes(a[i]!.value, b[i]!.value)) {
      return `TLV ${i}: ${j(a[i])} vs ${j(b[i])}`;
    }
  }
  return undefined;
}

function endpoint(e: ProxyHeader["source"]): string {
  return e === null ? "null" : `${e.address ?? ""}|${e.port ?? ""}|${e.path ?? ""}`;
}

/** The first difference between two headers, or undefined. */
function headerDiff(a: ProxyHeader, b: ProxyHeader): string | undefined {
  for (const k of ["version", "command", "protocol"] as const) {
    if (a[k] !== b[k]) return `${k}: ${a[k]} vs ${b[k]}`;
  }
  if (endpoint(a.source) !== endpoint(b.source)) return `source ${j(a.source)} vs ${j(b.source)}`;
  if (endpoint(a.destination) !== endpoint(b.destination)) {
    return `destination ${j(a.destination)} vs ${j(b.destination)}`;
  }
  return sameTlvs(a.tlvs, b.tlvs);
}

function sameAnswer(a: Answer, b: Answer): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === "error" && b.kind === "error") return a.code === b.code && a.offset === b.offset;
  if (a.kind === "result" && b.kind === "result") {
    return a.length === b.length && headerDiff(a.header, b.header) === undefined;
  }
  return true;
}

/** RFC 5952 text of 16 bytes, written independently of the library (join, then squeeze). */
function canonicalIPv6(b: Uint8Array, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) {
    groups.push(((b[at + 2 * i]! << 8) | b[at + 2 * i + 1]!).toString(16));
  }
  if (groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff") {
    return `::ffff:${b[at + 12]}.${b[at + 13]}.${b[at + 14]}.${b[at + 15]}`;
  }
  let best = -1, bestLength = 1;
  for (let i = 0; i < 8; i++) {
    let k = i;
    while (k < 8 && groups[k] === "0") k++;
    if (k - i > bestLength) (best = i, bestLength = k - i);
  }
  if (best < 0) return groups.join(":");
  return groups.slice(0, best).join(":") + "::" + groups.slice(best + bestLength).join(":");
}

const PROTOCOL_OF: Record<number, string> = {
  0x00: "UNKNOWN",
  0x11: "TCP4",
  0x12: "UDP4",
  0x21: "TCP6",
  0x22: "UDP6",
  0x31: "UNIX_STREAM",
  0x32: "UNIX_DGRAM",
};
const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();

function isPort(p: unknown): boolean {
  return typeof p === "number" && Number.isInteger(p) && p >= 0 && p <= 65535;
}

// ---------------------------------------------------------------------------------------
// decodeHeader

/** An answer must be well formed and agree with the bytes it came from. */
function checkShape(a: Answer, b: Uint8Array, opts: DecodeOptions | undefined): void {
  const n = b.length;
  if (a.kind === "error") {
    const o = a.offset;
    if (typeof o !== "number" || !Number.isInteger(o) || o < 0) {
      fail(`error without offset: ${showAnswer(a)}`);
    }
    // An offset may lie beyond the bytes in (a TLV that will overrun, a line that cannot
    // end in time), but never beyond the header they announce.
    const bound = b[0] === 0x0d && n >= 16 ? 16 + (b[14]! << 8 | b[15]!) : 107;
    if (o > Math.max(n, bound)) fail(`error offset ${o} past the ${n} bytes`);
    if (typeof a.message !== "string" || a.message.length === 0) fail("error without message");
    return;
  }
  if (a.kind === "null") return;
  const { length: L, header: h } = a;
  if (!Number.isInteger(L) || L > n || L > (opts?.maxLength ?? 65551)) {
    fail(`result length ${L} for ${n} bytes, opts ${j(opts)}`);
  }
  if (h.command !== "PROXY" && h.command !== "LOCAL") fail(`command ${h.command}`);
  if (h.command === "LOCAL" && (h.source !== null || h.destination !== null)) {
    fail("LOCAL header with addresses");
  }
  if (h.version === 1) {
    if (b[0] !== 0x50 || L < 15 || L > 107 || b[L - 2] !== 0x0d || b[L - 1] !== 0x0a) {
      fail(`v1 result of length ${L}`);
    }
    if (h.tlvs.length !== 0) fail("v1 header with TLVs");
    const line = utf8.decode(b.subarray(0, L - 2));
    if (h.protocol === "UNKNOWN") {
      if (h.command !== "LOCAL" || !/^PROXY UNKNOWN( [^\n]*)?$/.test(line)) fail("v1 UNKNOWN");
      return;
    }
    const m = /^PROXY (TCP[46]) (\S+) (\S+) (\d+) (\d+)$/.exec(line);
    if (m === null || m[1] !== h.protocol || h.command !== "PROXY") fail(`v1 line ${j(line)}`);
    for (
      const [e, text, port] of [[h.source, m[2]!, m[4]!], [h.destination, m[3]!, m[5]!]] as const
    ) {
      if (e === null || typeof e.address !== "string" || !isPort(e.port)) fail("v1 endpoint");
      if (String(e.port) !== port) fail(`v1 port ${e.port} from ${port}`);
      if (h.protocol === "TCP4" && e.address !== text) fail(`v1 address ${e.address} from ${text}`);
      if (h.protocol === "TCP6" && e.address.includes(":") !== true) fail(`v1 IPv6 ${e.address}`);
    }
    return;
  }
  if (h.version !== 2 || b[0] !== 0x0d) fail(`version ${h.version} for first byte ${b[0]}`);
  if (L !== 16 + (b[14]! << 8 | b[15]!)) fail(`v2 length ${L} vs the length field`);
  if ((b[12]! & 0x0f) !== (h.command === "LOCAL" ? 0 : 1) || b[12]! >> 4 !== 2) fail("v2 command");
  if (PROTOCOL_OF[b[13]!] !== h.protocol) fail(`v2 protocol ${h.protocol} for ${b[13]}`);
  const block = addressLength(b[13]!);
  if (h.command === "PROXY") {
    const s = h.source, d = h.destination;
    if (block === 0) {
      if (s !== null || d !== null) fail("UNSPEC with addresses");
    } else if (block === 12) {
      const v4 = (at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
      if (s?.address !== v4(16) || d?.address !== v4(20)) fail("v2 IPv4 addresses");
      if (s.port !== (b[24]! << 8 | b[25]!) || d.port !== (b[26]! << 8 | b[27]!)) fail("v2 ports");
    } else if (block === 36) {
      if (s?.address !== canonicalIPv6(b, 16) || d?.address !== canonicalIPv6(b, 32)) {
        fail(`v2 IPv6 addresses ${j(s)} ${j(d)}`);
      }
      if (s.port !== (b[48]! << 8 | b[49]!) || d.port !== (b[50]! << 8 | b[51]!)) fail("v2 ports");
    } else {
      const path = (at: number) => {
        let e = at;
        while (e < at + 108 && b[e] !== 0) e++;
        return utf8.decode(b.subarray(at, e));
      };
      if (s?.path !== path(16) || d?.path !== path(124)) fail("v2 UNIX paths");
    }
  }
  // TLVs: views into the input that exactly fill the rest of the header (or, for LOCAL,
  // none at all when they don't).
  let p = 16 + block;
  for (const t of h.tlvs) {
    const at = t.value.byteOffset - b.byteOffset - 3;
    if (t.value.buffer !== b.buffer || at !== p || b[p] !== t.type) fail(`TLV at ${at}, not ${p}`);
    if ((b[p + 1]! << 8 | b[p + 2]!) !== t.value.length) fail(`TLV length at ${p}`);
    p += 3 + t.value.length;
  }
  if (p !== L && !(h.command === "LOCAL" && h.tlvs.length === 0)) {
    fail(`TLVs end at ${p}, the header at ${L}`);
  }
}

/** The prefix lengths to check: all of a short input, a sample of a long one. */
function prefixLengths(b: Uint8Array, full: Answer, rng: Rng): number[] {
  const n = b.length;
  const set = new Set<number>();
  const all = n <= 96 ? n : 48;
  for (let i = 0; i <= all; i++) set.add(i);
  if (n > 96) {
    for (let k = 0; k < 40; k++) set.add(rng.int(n + 1));
    for (const i of [n - 1, n, 15, 16, 17]) set.add(i);
    if (b[0] === 0x0d && n >= 16) {
      const end = 16 + Math.max(0, addressLength(b[13]!));
      for (const i of [end - 1, end, end + 1, end + 3, 16 + (b[14]! << 8 | b[15]!) - 1]) set.add(i);
    }
  }
  if (full.kind === "result") {
    for (const i of [full.length - 1, full.length, full.length + 1]) set.add(i);
  }
  return [...set].filter((i) => i >= 0 && i <= n).sort((x, y) => x - y);
}

/**
 * decodeHeader on `b`: a result, null or a codec error; well formed; the prefix property
 * (over the prefixes, null... then one answer for good); options that agree (the checksum
 * switch, the size cap); and, for a header, the round trip.
 */
export function checkHeader(b: Uint8Array, opts: DecodeOptions | undefined): void {
  const full = answer(b, opts);
  checkShape(full, b, opts);

  // Prefixes: null..., then the same answer (same code and offset) for good. And where a
  // prefix needs more, bytesNeeded asks for at least one byte and never past the header.
  const rng = new Rng(crc32cOf(b) ^ b.length);
  const L = full.kind === "result" ? full.length : -1;
  let settled: Answer | undefined, settledAt = -1;
  for (const i of prefixLengths(b, full, rng)) {
    const a = i === b.length ? full : answer(b.subarray(0, i), opts);
    if (a.kind === "null" && opts?.maxLength === undefined) {
      const need = bytesNeeded(b.subarray(0, i));
      if (!(need >= 1) || (L >= 0 && i + need > L)) {
        fail(`bytesNeeded(${i} bytes) = ${need}, for a header of ${L >= 0 ? L : "unknown"} bytes`);
      }
    }
    if (settled === undefined) {
      if (i === 0 && a.kind !== "null") fail(`the empty input answers ${showAnswer(a)}`);
      if (a.kind !== "null") (settled = a, settledAt = i);
    } else if (!sameAnswer(a, settled)) {
      fail(
        `prefix property: ${i} bytes answer ${showAnswer(a)}, ` +
          `but ${settledAt} bytes answered ${showAnswer(settled)}`,
      );
    }
  }

  // The checksum switch: without verification the answer is the same, except that a
  // mismatch becomes the header.
  const verify = opts?.verifyChecksum ?? true;
  if (verify) {
    const off = answer(b, { ...opts, verifyChecksum: false });
    if (full.kind === "error" && full.code === "CHECKSUM_MISMATCH") {
      if (off.kind !== "result") fail(`CHECKSUM_MISMATCH, but unverified: ${showAnswer(off)}`);
    } else if (!sameAnswer(off, full)) {
      fail(`verifyChecksum false answers ${showAnswer(off)}, true ${showAnswer(full)}`);
    }
  } else if (full.kind === "error" && full.code === "CHECKSUM_MISMATCH") {
    fail("CHECKSUM_MISMATCH with verifyChecksum false");
  }

  if (full.kind !== "result") return;
  if (bytesNeeded(b.subarray(0, L)) !== 0) fail("bytesNeeded of a whole header is not 0");
  // The size cap: exactly the header's length lets it through, one byte less does not.
  const exact = answer(b, { ...opts, maxLength: L });
  if (!sameAnswer(exact, full)) fail(`maxLength ${L} answers ${showAnswer(exact)}`);
  const less = answer(b, { ...opts, maxLength: L - 1 });
  if (less.kind !== "error" || less.code !== "HEADER_TOO_LONG") {
    fail(`maxLength ${L - 1} answers ${showAnswer(less)} for a header of ${L}`);
  }
  checkRoundTrip(full.header);
  checkTlvList(full.header.tlvs);
}

/** A UNIX path that decoding made longer than 108 bytes (invalid UTF-8 became U+FFFD). */
function lossyPath(h: ProxyHeader): boolean {
  for (const e of [h.source, h.destination]) {
    if (typeof e?.path === "string" && utf8Encoder.encode(e.path).length > 108) return true;
  }
  return false;
}

function encodeOrFail(h: ProxyHeader, what: string, checksum = false): Uint8Array {
  try {
    return encodeHeader(h, { checksum });
  } catch (error) {
    fail(`${what}: encodeHeader threw ${show(error)} for ${j(h)}`);
  }
}

/**
 * encode(h) decodes to h again and re-encodes to the same bytes (h's own bytes may differ:
 * canonical text, LOCAL addresses dropped); with a checksum it verifies; across versions
 * where both can carry it.
 */
function checkRoundTrip(h: ProxyHeader): void {
  if (lossyPath(h)) {
    let thrown: unknown;
    try {
      encodeHeader(h);
    } catch (error) {
      thrown = error;
    }
    if (!(thrown instanceof ProxyProtocolError) || thrown.code !== "INVALID_HEADER") {
      fail(`a path over 108 bytes: encodeHeader gave ${show(thrown)}`);
    }
    return;
  }
  const e1 = encodeOrFail(h, "round trip");
  // encodedLength and encodeHeaderInto agree with it, and write nothing else.
  if (encodedLength(h) !== e1.length) {
    fail(`encodedLength ${encodedLength(h)} for ${e1.length} bytes`);
  }
  const into = new Uint8Array(e1.length + 10).fill(0xa5);
  if (encodeHeaderInto(h, into, 5) !== e1.length) fail("encodeHeaderInto's count");
  if (!sameBytes(into.subarray(5, 5 + e1.length), e1)) fail("encodeHeaderInto's bytes");
  for (const i of [0, 4, 5 + e1.length, into.length - 1]) {
    if (into[i] !== 0xa5) fail(`encodeHeaderInto wrote outside the header, at ${i}`);
  }
  // The decoded header may carry a CRC32C of other bytes (LOCAL addresses, UNIX padding).
  const a2 = answer(e1, { verifyChecksum: false });
  if (a2.kind !== "result" || a2.length !== e1.length) {
    fail(`encodeHeader(decoded) = ${toHexString(e1)} decodes as ${showAnswer(a2)}`);
  }
  const diff = headerDiff(a2.header, h);
  if (diff !== undefined) fail(`round trip changed the header: ${diff}`);
  const e2 = encodeOrFail(a2.header, "second round trip");
  if (!sameBytes(e1, e2)) {
    fail(`re-encoding is not stable: ${toHexString(e1)} then ${toHexString(e2)}`);
  }

  if (h.version === 2) {
    const hasCrc = h.tlvs.some((t) => t.type === 0x03);
    let c: Uint8Array | undefined;
    try {
      c = encodeHeader(h, { checksum: true });
    } catch (error) {
      const full = !hasCrc && e1.length - 16 + 7 > 0xffff;
      if (!full || !(error instanceof ProxyProtocolError) || error.code !== "INVALID_HEADER") {
        fail(`encodeHeader with checksum threw ${show(error)}`);
      }
    }
    if (c !== undefined) {
      const a3 = answer(c, undefined);
      if (a3.kind !== "result" || a3.length !== c.length) {
        fail(`with checksum: ${toHexString(c)} decodes as ${showAnswer(a3)}`);
      }
      if (a3.header.tlvs.length !== h.tlvs.length + (hasCrc ? 0 : 1)) fail("checksum TLV count");
    }
    // The same addresses as a v1 line, where v1 can carry them.
    if (
      h.command === "PROXY" && h.tlvs.length === 0 &&
      (h.protocol === "TCP4" || h.protocol === "TCP6")
    ) {
      const v1 = encodeOrFail({ ...h, version: 1 }, "as v1");
      const a4 = answer(v1, undefined);
      if (a4.kind !== "result") fail(`as v1: ${showAnswer(a4)}`);
      const d = headerDiff(a4.header, { ...h, version: 1 });
      if (d !== undefined) fail(`as v1: ${d}`);
    }
  } else {
    const v2 = encodeOrFail({ ...h, version: 2 }, "as v2");
    const a4 = answer(v2, undefined);
    if (a4.kind !== "result") fail(`as v2: ${showAnswer(a4)}`);
    const d = headerDiff(a4.header, { ...h, version: 2 });
    if (d !== undefined) fail(`as v2: ${d}`);
  }
}

// ---------------------------------------------------------------------------------------
// TLVs

function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

function u32be(v: Uint8Array, at: number): number {
  return (v[at]! << 24 | v[at + 1]! << 16 | v[at + 2]! << 8 | v[at + 3]!) >>> 0;
}

/** An SSL TLV value: 5 fixed bytes, then sub-TLVs that exactly fill it. */
function sslWellFormed(v: Uint8Array): boolean {
  if (v.length < 5) return false;
  let p = 5;
  while (p + 3 <= v.length) p += 3 + (v[p + 1]! << 8 | v[p + 2]!);
  return p === v.length;
}

const FIELDS = [
  "alpn",
  "authority",
  "crc32c",
  "uniqueId",
  "ssl",
  "netns",
  "awsVpceId",
  "azureLinkId",
  "gcpPscConnectionId",
] as const;

function decodeTlvsOrFail(tlvs: readonly Tlv[]): ProxyTlvs {
  try {
    return decodeTlvs(tlvs);
  } catch (error) {
    fail(`decodeTlvs threw ${show(error)} for ${j(tlvs)}`);
  }
}

/** The fields of `f` that `encodeTlvs` writes back, and the rest as raw TLVs. */
function toInit(f: ProxyTlvs): ProxyTlvsInit {
  const init: ProxyTlvsInit = {};
  if (f.alpn !== undefined) init.alpn = f.alpn;
  if (f.authority !== undefined) init.authority = f.authority;
  if (f.uniqueId !== undefined) init.uniqueId = f.uniqueId;
  if (f.netns !== undefined) init.netns = f.netns;
  if (f.awsVpceId !== undefined) init.awsVpceId = f.awsVpceId;
  if (f.azureLinkId !== undefined) init.azureLinkId = f.azureLinkId;
  if (f.gcpPscConnectionId !== undefined) init.gcpPscConnectionId = f.gcpPscConnectionId;
  if (f.ssl !== undefined) {
    const s = f.ssl;
    const ssl: SslTlvInit = { client: s.client, verify: s.verify };
    for (
      const k of ["version", "cn", "cipher", "sigAlg", "keyAlg", "group", "sigScheme"] as const
    ) {
      if (s[k] !== undefined) ssl[k] = s[k];
    }
    if (s.clientCert !== undefined) ssl.clientCert = s.clientCert;
    init.ssl = ssl;
  }
  // encodeTlvs leaves the CRC32C to encodeHeader: carry it first among the raw TLVs.
  const crc = f.crc32c === undefined ? [] : [{
    type: 0x03,
    value: new Uint8Array([
      f.crc32c >>> 24,
      (f.crc32c >>> 16) & 0xff,
      (f.crc32c >>> 8) & 0xff,
      f.crc32c & 0xff,
    ]),
  }];
  init.others = [...crc, ...f.others];
  return init;
}

/** JSON with the keys sorted (decodeTlvs adds SSL fields in wire order). */
function sorted(o: object): string {
  return j(Object.fromEntries(Object.entries(o).sort(([a], [b]) => a < b ? -1 : 1)));
}

/** The first difference between two decodeTlvs results (the SSL sub-TLV list aside). */
function fieldsDiff(a: ProxyTlvs, b: ProxyTlvs): string | undefined {
  for (const k of FIELDS) {
    const x = a[k], y = b[k];
    if (k === "ssl") {
      const { tlvs: _a, ...sa } = a.ssl ?? { tlvs: [] };
      const { tlvs: _b, ...sb } = b.ssl ?? { tlvs: [] };
      if ((a.ssl === undefined) !== (b.ssl === undefined) || sorted(sa) !== sorted(sb)) {
        return `ssl ${sorted(sa)} vs ${sorted(sb)}`;
      }
    } else if (j(x) !== j(y)) {
      return `${k} ${j(x)} vs ${j(y)}`;
    }
  }
  return sameTlvs(a.others, b.others);
}

/**
 * decodeTlvs on a header's or a generated TLV list: never throws; every TLV is read into
 * a field or kept in `others` (NOOP aside); each field is what the first well-shaped TLV
 * of its type says (an oracle written here); and the fields survive encodeTlvs and a
 * second decode, with a byte-stable second encoding.
 */
export function checkTlvList(tlvs: readonly Tlv[]): void {
  const f = decodeTlvsOrFail(tlvs);
  let set = 0;
  for (const k of FIELDS) if (f[k] !== undefined) set++;
  const noops = tlvs.filter((t) => t.type === 0x04).length;
  if (f.others.length + set + noops !== tlvs.length) {
    fail(`decodeTlvs: ${f.others.length} others + ${set} fields + ${noops} NOOP != ${tlvs.length}`);
  }
  let at = 0;
  for (const o of f.others) {
    while (at < tlvs.length && tlvs[at] !== o) at++;
    if (at++ === tlvs.length) fail("decodeTlvs: others are not the input's TLVs in order");
    if (o.type === 0x04) fail("decodeTlvs: NOOP in others");
  }
  // The oracle: the first TLV of each type that has the type's shape.
  const first = (type: number, ok: (v: Uint8Array) => boolean = () => true) =>
    tlvs.find((t) => t.type === type && ok(t.value))?.value;
  const expect = (k: string, got: unknown, want: unknown) => {
    if (j(got) !== j(want)) fail(`decodeTlvs: ${k} is ${j(got)}, expected ${j(want)}`);
  };
  const alpn = first(0x01), authority = first(0x02), netns = first(0x30);
  expect("alpn", f.alpn, alpn && latin1(alpn));
  expect("authority", f.authority, authority && utf8.decode(authority));
  const crc = first(0x03, (v) => v.length === 4);
  expect("crc32c", f.crc32c, crc && u32be(crc, 0));
  expect("uniqueId", f.uniqueId, first(0x05, (v) => v.length <= 128));
  expect("netns", f.netns, netns && latin1(netns));
  const aws = first(0xea, (v) => v.length > 1 && v[0] === 1);
  expect("awsVpceId", f.awsVpceId, aws && latin1(aws.subarray(1)));
  const azure = first(0xee, (v) => v.length === 5 && v[0] === 1);
  expect(
    "azureLinkId",
    f.azureLinkId,
    azure && (azure[1]! | azure[2]! << 8 | azure[3]! << 16 | azure[4]! << 24) >>> 0,
  );
  const gcp = first(0xe0, (v) => v.length === 8);
  expect(
    "gcpPscConnectionId",
    f.gcpPscConnectionId,
    gcp && (BigInt(u32be(gcp, 0)) << 32n | BigInt(u32be(gcp, 4))),
  );
  const ssl = first(0x20, sslWellFormed);
  if ((ssl === undefined) !== (f.ssl === undefined)) fail(`decodeTlvs: ssl ${j(f.ssl)}`);
  if (ssl !== undefined && f.ssl !== undefined) {
    const client = ssl[0]!, verify = u32be(ssl, 1);
    const s = f.ssl;
    if (s.client !== client || s.verify !== verify) fail("decodeTlvs: ssl client/verify");
    if (s.ssl !== ((client & 1) !== 0) || s.certInConnection !== ((client & 2) !== 0)) {
      fail("ssl bits");
    }
    if (s.certInSession !== ((client & 4) !== 0)) fail("ssl bits");
    if (s.verified !== ((client & 6) !== 0 && verify === 0)) fail("decodeTlvs: ssl.verified");
    const subs: Tlv[] = [];
    for (let p = 5; p < ssl.length; p += 3 + (ssl[p + 1]! << 8 | ssl[p + 2]!)) {
      subs.push({
        type: ssl[p]!,
        value: ssl.subarray(p + 3, p + 3 + (ssl[p + 1]! << 8 | ssl[p + 2]!)),
      });
    }
    const d = sameTlvs(s.tlvs, subs);
    if (d !== undefined) fail(`decodeTlvs: ssl sub-TLVs ${d}`);
    const v = subs.find((t) => t.type === 0x21)?.value,
      cn = subs.find((t) => t.type === 0x22)?.value;
    expect("ssl.version", s.version, v && latin1(v));
    expect("ssl.cn", s.cn, cn && utf8.decode(cn));
    expect("ssl.clientCert", s.clientCert, subs.find((t) => t.type === 0x28)?.value);
  }

  // Round trip through encodeTlvs.
  let t2: Tlv[];
  try {
    t2 = encodeTlvs(toInit(f));
  } catch (error) {
    const grew = f.ssl?.cn !== undefined && error instanceof ProxyProtocolError &&
      /SSL TLV exceeds/.test(error.message);
    if (grew) return; // invalid UTF-8 in the CN came back as U+FFFD, 3 bytes each
    fail(`encodeTlvs(decodeTlvs(x)) threw ${show(error)}`);
  }
  const f2 = decodeTlvsOrFail(t2);
  const diff = fieldsDiff(f, f2);
  if (diff !== undefined) fail(`decodeTlvs(encodeTlvs(fields)) differs: ${diff}`);
  const t3 = encodeTlvs(toInit(f2));
  const d3 = sameTlvs(t2, t3);
  if (d3 !== undefined) fail(`encodeTlvs is not stable: ${d3}`);
}

/**
 * A generated TLV list: the decodeTlvs checks, and the list inside a v2 header: the
 * encoder refuses exactly what it must, and the decoder takes back exactly the lists that
 * keep the spec's rules (checked here independently), in PROXY and LOCAL headers.
 */
function checkTlvTarget(tlvs: Tlv[]): void {
  checkTlvList(tlvs);
  let size = 0, badCrc = false, ok = true;
  for (const t of tlvs) {
    size += 3 + t.value.length;
    if (t.type === 0x03 && t.value.length !== 4) badCrc = true;
    if (t.type === 0x05 && t.value.length > 128) ok = false;
    if (t.type === 0x20 && !sslWellFormed(t.value)) ok = false;
  }
  ok &&= !badCrc;
  for (const command of ["PROXY", "LOCAL"] as const) {
    const h: ProxyHeader = {
      version: 2,
      command,
      protocol: "UNKNOWN",
      source: null,
      destination: null,
      tlvs,
    };
    let bytes: Uint8Array;
    try {
      bytes = encodeHeader(h);
    } catch (error) {
      // The encoder writes nothing its decoder would refuse.
      const must = !ok || size > 0xffff;
      if (!must || !(error instanceof ProxyProtocolError) || error.code !== "INVALID_HEADER") {
        fail(`encodeHeader of ${tlvs.length} TLVs threw ${show(error)}`);
      }
      continue;
    }
    if (!ok || size > 0xffff) {
      fail("encodeHeader wrote TLVs that break the spec's rules, or over 64 KiB");
    }
    const a = answer(bytes, { verifyChecksum: false });
    if (a.kind !== "result") fail(`valid TLVs refused (${command}): ${showAnswer(a)}`);
    const d = sameTlvs(a.header.tlvs, tlvs);
    if (d !== undefined) fail(`TLVs (${command}): ${d}`);
  }
}

// ---------------------------------------------------------------------------------------
// Datagrams

function datagramOrError(
  b: Uint8Array,
  opts: Record<string, unknown>,
): { r: ReturnType<typeof decodeDatagram> } | { code: string; offset: number | undefined } {
  let thrown: unknown;
  try {
    return { r: decodeDatagram(b, opts as Parameters<typeof decodeDatagram>[1]) };
  } catch (error) {
    thrown = error;
  }
  if (!(thrown instanceof ProxyProtocolError)) fail(`decodeDatagram threw ${show(thrown)}`);
  if (!CODEC_CODES.has(thrown.code) && thrown.code !== "TRUNCATED") {
    fail(`decodeDatagram threw unexpected code ${thrown.code}`);
  }
  return { code: thrown.code, offset: thrown.offset };
}

/**
 * decodeDatagram: a result or a ProxyProtocolError; for PROXY, what decodeHeader says of
 * the same bytes (`null` becoming TRUNCATED), the payload the rest, and a round trip
 * through encodeDatagram; for SPP, an oracle of its fixed layout and a byte-exact round
 * trip, and the relay as PROXY v2.
 */
function checkDatagram(b: Uint8Array, params: Record<string, unknown>): void {
  const opts: Record<string, unknown> = { format: params.format };
  if (typeof params.maxLength === "number") opts.maxLength = params.maxLength;
  if (typeof params.verifyChecksum === "boolean") opts.verifyChecksum = params.verifyChecksum;
  const got = datagramOrError(b, opts);
  const n = b.length;
  if (params.format === "spp") {
    const max = typeof params.maxLength === "number" ? params.maxLength : 38;
    const want = n > 0 && b[0] !== 0x56
      ? { code: "NOT_PROXY_PROTOCOL", offset: 0 }
      : n > 1 && b[1] !== 0xec
      ? { code: "NOT_PROXY_PROTOCOL", offset: 1 }
      : max < 38
      ? { code: "HEADER_TOO_LONG", offset: 0 }
      : n < 38
      ? { code: "TRUNCATED", offset: n }
      : undefined;
    if (want !== undefined) {
      if (!("code" in got) || got.code !== want.code || got.offset !== want.offset) {
        fail(`SPP: expected ${j(want)}, got ${j(got)}`);
      }
      return;
    }
    if (!("r" in got) || got.r.format !== "spp") fail(`SPP: expected a header, got ${j(got)}`);
    const { header: h, payload } = got.r;
    if (
      h.command !== "PROXY" || h.protocol !== "UDP6" || h.tlvs.length !== 0 ||
      h.source.address !== canonicalIPv6(b, 2) || h.destination.address !== canonicalIPv6(b, 18) ||
      h.source.port !== (b[34]! << 8 | b[35]!) || h.destination.port !== (b[36]! << 8 | b[37]!)
    ) {
      fail(`SPP header ${j(h)}`);
    }
    if (payload.buffer !== b.buffer || payload.byteOffset !== b.byteOffset + 38) {
      fail("SPP payload");
    }
    let again: Uint8Array;
    try {
      again = encodeDatagram(h, payload, { format: "spp" });
    } catch (error) {
      fail(`SPP: encodeDatagram threw ${show(error)}`);
    }
    if (!sameBytes(again, b)) fail(`SPP round trip: ${toHexString(again)}`);
    const relayed = datagramOrError(encodeDatagram({ ...h, version: 2 }, payload), {});
    if (!("r" in relayed) || relayed.r.format !== "proxy") fail(`SPP relayed: ${j(relayed)}`);
    const r = relayed.r;
    if (
      r.header.protocol !== "UDP6" || endpoint(r.header.source) !== endpoint(h.source) ||
      endpoint(r.header.destination) !== endpoint(h.destination) || !sameBytes(r.payload, payload)
    ) {
      fail(`SPP relayed as v2: ${j(r.header)}`);
    }
    return;
  }

  const want = answer(b, toDecodeOptions(params));
  if (want.kind === "result") {
    if (!("r" in got) || got.r.format !== "proxy") {
      fail(`datagram: expected a header, got ${j(got)}`);
    }
    const d = headerDiff(got.r.header, want.header);
    if (d !== undefined) fail(`datagram header differs from decodeHeader's: ${d}`);
    const payload = got.r.payload;
    if (payload.buffer !== b.buffer || payload.byteOffset !== b.byteOffset + want.length) {
      fail("datagram payload is not the rest of the datagram");
    }
    if (lossyPath(want.header)) return;
    let again: Uint8Array;
    try {
      again = encodeDatagram(want.header, payload);
    } catch (error) {
      fail(`encodeDatagram threw ${show(error)}`);
    }
    const back = datagramOrError(again, { verifyChecksum: false });
    if (!("r" in back) || back.r.format !== "proxy") fail(`encodeDatagram's bytes: ${j(back)}`);
    const d2 = headerDiff(back.r.header, want.header);
    if (d2 !== undefined || !sameBytes(back.r.payload, payload)) {
      fail(`datagram round trip: ${d2 ?? "payload"}`);
    }
    return;
  }
  const code = want.kind === "null" ? "TRUNCATED" : want.code;
  const offset = want.kind === "null" ? n : want.offset;
  if (!("code" in got) || got.code !== code || got.offset !== offset) {
    fail(`datagram: expected ${code} at ${offset}, got ${j(got)}`);
  }
}

// ---------------------------------------------------------------------------------------
// The accept phase

/** The options' clock, without a timer: it records what is pending. */
class Clock extends Deadlines {
  readonly live: Set<Expiring> = new Set();
  constructor() {
    super(10_000);
  }
  override add(entry: Expiring): void {
    entry.deadline = 0;
    this.live.add(entry);
  }
  override delete(entry: Expiring): void {
    this.live.delete(entry);
  }
}

/** An adapter that counts what the phase asks of it. */
class Phase extends AcceptPhase {
  peerReads = 0;
  timeouts = 0;
  readonly #peer: PeerInfo;
  constructor(
    options: ConstructorParameters<typeof AcceptPhase>[0],
    peer: PeerInfo,
    given: boolean,
  ) {
    super(options, given ? peer : undefined);
    this.#peer = peer;
  }
  protected override readPeer(): PeerInfo | undefined {
    this.peerReads++;
    return this.#peer;
  }
  protected override timedOut(): void {
    this.timeouts++;
  }
}

const TRUST = ["10.0.0.0/8", "2001:db8::/32"];

type Model =
  | { state: "header" }
  | { state: "validating"; header: ProxyHeader; rest: Uint8Array[] }
  | { state: "open"; header: ProxyHeader | null }
  | { state: "refused"; code: string };

/**
 * The accept phase, fed the input in chunks under random options, checked step by step
 * against a model built on decodeHeader's answers for the bytes so far: the same header
 * or refusal code, at the same chunk; the bytes handed on exactly the rest of the input;
 * one report for a refusal; the clock left with nothing pending; metrics and the lazy
 * outcome agreeing.
 */
async function checkAccept(bytes: Uint8Array, p: AcceptParams): Promise<void> {
  const peer: PeerInfo = {
    remoteAddress: p.trusted ? "10.1.2.3" : "192.0.2.9",
    remotePort: 40000,
    localAddress: "10.0.0.1",
    localPort: 443,
  };
  const reports: { code: string; error: unknown; peer: PeerInfo | undefined }[] = [];
  const validated: ProxyHeader[] = [];
  const validateResult = p.validate.replace("async-", "");
  const options: ProxyProtocolOptions = {
    policy: p.policyFn === "plain"
      ? p.policy
      : p.policyFn === "fn"
      ? () => p.policy
      : p.policyFn === "throws"
      ? () => {
        throw new Error("policy function fails");
      }
      : () => "bogus" as PolicyName,
    verifyChecksum: p.verifyChecksum,
    onError: (error, where) => void reports.push({ code: error.code, error, peer: where }),
  };
  if (p.trust) (options.trust = TRUST, options.untrusted = p.untrusted);
  if (p.maxHeaderLength !== null) options.maxHeaderLength = p.maxHeaderLength;
  if (p.validate !== "none") {
    options.validate = (header) => {
      validated.push(header);
      const r = validateResult === "throws"
        ? (() => {
          throw new Error("validate fails");
        })()
        : validateResult === "false"
        ? false
        : validateResult === "true"
        ? true
        : undefined;
      return p.validate.startsWith("async-") ? Promise.resolve(r) : r;
    };
  }
  const metrics = p.metrics ? new ListenerMetrics() : undefined;
  if (metrics !== undefined) {
    options.metrics = metrics as NonNullable<ProxyProtocolOptions["metrics"]>;
  }
  const resolved = resolveOptions(options);
  const clock = new Clock();
  resolved.deadlines = clock;
  const dopts: DecodeOptions = {
    maxLength: p.maxHeaderLength ?? 4096,
    verifyChecksum: p.verifyChecksum,
  };

  const effective = p.trust && !p.trusted
    ? p.untrusted
    : p.policyFn === "throws" || p.policyFn === "bogus"
    ? "invalid"
    : p.policy;

  // The chunks, as the params cut them (the rest in one last chunk).
  const chunks: Uint8Array[] = [];
  let cut = 0;
  for (const size of p.chunks) {
    if (cut > bytes.length) break;
    chunks.push(bytes.subarray(cut, Math.min(bytes.length, cut + size)));
    cut += size;
  }
  if (cut < bytes.length) chunks.push(bytes.subarray(cut));

  const phase = new Phase(resolved, peer, p.peerGiven);
  const handed: Uint8Array[] = [];
  let model = { state: "header" } as Model;
  /** The model's state, read through a call so that the compiler does not narrow it. */
  const now = (): Model => model;
  let fed = 0;
  let endedWhileOpen = false;
  let awaited = false, refusedInValidate = false;
  let headerLength = -1;
  let event = "start";

  const expectStep = (got: AcceptStep, want: AcceptStep) => {
    if (got !== want) {
      fail(`accept: ${event} returned ${got}, expected ${want} (model ${j(model)})`);
    }
  };
  const opened = (header: ProxyHeader | null) => {
    model = { state: "open", header };
    handed.push(phase.rest.slice()); // the adapter copies the view before reading again
  };

  // start()
  const first = phase.start();
  if (effective === "invalid") {
    expectStep(first, "refuse");
    model = { state: "refused", code: "VALIDATION_FAILED" };
  } else if (effective === "deny") {
    expectStep(first, "refuse");
    model = { state: "refused", code: "UNTRUSTED_SOURCE" };
  } else if (effective === "skip") {
    expectStep(first, "open");
    if (phase.rest.length !== 0) fail("accept: skip opened with bytes");
    opened(null);
  } else {
    expectStep(first, "wait");
  }

  /** What the phase must do once decodeHeader answers `a` for the bytes so far. */
  const settle = (a: Answer, got: AcceptStep) => {
    if (a.kind === "result") {
      headerLength = a.length;
      if (effective === "reject") {
        expectStep(got, "refuse");
        model = { state: "refused", code: "HEADER_FORBIDDEN" };
      } else if (effective === "ignore") {
        expectStep(got, "open");
        opened(null);
      } else if (p.validate === "none") {
        expectStep(got, "open");
        opened(a.header);
      } else if (p.validate === "throws") {
        // A hook that throws at once refuses at once: the step is still `pause`, and
        // `settled` says `refuse`.
        expectStep(got, "pause");
        model = { state: "refused", code: "VALIDATION_FAILED" };
        refusedInValidate = true;
      } else {
        expectStep(got, "pause");
        model = { state: "validating", header: a.header, rest: [phase.rest.slice()] };
      }
    } else if (a.kind === "error") {
      if (effective === "reject" || (a.code === "NOT_PROXY_PROTOCOL" && effective !== "require")) {
        expectStep(got, "open");
        opened(null);
      } else {
        expectStep(got, "refuse");
        model = {
          state: "refused",
          code: a.code === "NOT_PROXY_PROTOCOL" ? "HEADER_REQUIRED" : a.code,
        };
      }
    } else {
      expectStep(got, "wait");
    }
  };

  const expire = () => {
    event = "expire";
    const before = phase.timeouts;
    phase.expire();
    if (model.state === "header" || model.state === "validating") {
      model = { state: "refused", code: "TIMEOUT" };
      if (phase.timeouts !== before + 1) fail("accept: timedOut() not called once");
    } else if (phase.timeouts !== before) {
      fail("accept: timedOut() called after the phase was over");
    }
  };

  /** Awaits an async `validate`, as the adapter does on `pause`. */
  const awaitValidation = async () => {
    const settled = phase.settled;
    if (settled === undefined) fail("accept: pause without settled");
    awaited = true;
    const got = await settled;
    event = "settled";
    if (model.state !== "validating") return expectStep(got, refusedInValidate ? "refuse" : "wait");
    if (validated.length !== 1) fail(`accept: validate called ${validated.length} times`);
    const d = headerDiff(validated[0]!, model.header);
    if (d !== undefined) fail(`accept: validate saw another header: ${d}`);
    if (validateResult === "false" || validateResult === "throws") {
      expectStep(got, "refuse");
      model = { state: "refused", code: "VALIDATION_FAILED" };
    } else {
      expectStep(got, "open");
      const rest = model.rest;
      model = { state: "open", header: model.header };
      handed.push(phase.rest.slice());
      if (!sameBytes(phase.rest, concat(...rest))) fail("accept: held bytes lost");
    }
  };

  for (let k = 0; k < chunks.length; k++) {
    if (p.expireAt === k) expire();
    const chunk = new Uint8Array(chunks[k]!); // the runtime's read buffer
    event = `data(chunk ${k}, ${chunk.length} bytes at ${fed})`;
    const wasOpen = now().state === "open";
    const got = phase.data(chunk);
    fed += chunk.length;
    const m = now();
    if (m.state === "header") {
      settle(answer(bytes.subarray(0, fed), dopts), got);
    } else {
      expectStep(got, "wait");
      if (m.state === "validating") m.rest.push(chunks[k]!);
      if (wasOpen) handed.push(chunks[k]!.slice());
    }
    if (p.scribble) chunk.fill(0xee);
    if (phase.settled !== undefined && !awaited && p.awaitEarly) await awaitValidation();
  }
  if (p.expireAt === chunks.length) expire();
  // The end of input.
  if (p.finish === "end") {
    event = "end()";
    const got = phase.end();
    if (now().state === "header") {
      if (effective === "require") {
        expectStep(got, "refuse");
        model = { state: "refused", code: "CONNECTION_CLOSED" };
      } else {
        expectStep(got, "open");
        opened(null);
        endedWhileOpen = true;
      }
    } else {
      expectStep(got, "wait");
      if (now().state === "validating") endedWhileOpen = true;
    }
  } else if (p.finish === "closed") {
    event = "closed()";
    const got = phase.closed();
    if (now().state === "header" || now().state === "validating") {
      expectStep(got, "refuse");
      model = { state: "refused", code: "CONNECTION_CLOSED" };
    } else {
      expectStep(got, "wait");
    }
  }
  if (p.expireAt === chunks.length + 1) expire();
  if (phase.settled !== undefined && !awaited) await awaitValidation();
  if (now().state === "header") {
    // No answer yet and nothing more to come: still waiting. Close it, as an adapter would.
    if (phase.done) fail("accept: done while the header is incomplete");
    event = "closed() at the end";
    expectStep(phase.closed(), "refuse");
    model = { state: "refused", code: "CONNECTION_CLOSED" };
  }

  // The outcome.
  if (clock.live.size !== 0) fail("accept: the phase is still on the clock");
  if (!phase.done) fail("accept: not done");
  const final = now() as Exclude<Model, { state: "header" | "validating" }>;
  if (final.state === "refused") {
    if (phase.error?.code !== final.code) {
      fail(`accept: refused with ${phase.error?.code}, expected ${final.code}`);
    }
    if (reports.length !== 1 || reports[0]!.error !== phase.error) {
      fail(`accept: ${reports.length} reports for one refusal`);
    }
    if (reports[0]!.peer !== undefined && reports[0]!.peer.remoteAddress !== peer.remoteAddress) {
      fail("accept: reported with another peer");
    }
    if (phase.header !== null || phase.rest.length !== 0) fail("accept: refused with a header");
  } else {
    if (reports.length !== 0) fail(`accept: opened, but reported ${reports[0]!.code}`);
    const want = final.header;
    const got = phase.header;
    if ((want === null) !== (got === null)) fail(`accept: header ${j(got)}, expected ${j(want)}`);
    if (want !== null && got !== null) {
      const d = headerDiff(got, want);
      if (d !== undefined) fail(`accept: header differs from decodeHeader's: ${d}`);
    }
    const rest = headerLength >= 0 && effective !== "reject" ? bytes.subarray(headerLength) : bytes;
    const all = concat(...handed);
    if (!sameBytes(all, rest)) {
      fail(`accept: handed on ${toHexString(all)}, expected ${toHexString(rest)}`);
    }
    if (phase.ended !== endedWhileOpen) fail(`accept: ended is ${phase.ended}`);
  }
  if (metrics !== undefined) {
    let refused = 0;
    for (const v of metrics.refused.values()) refused += v;
    const ok = final.state === "open"
      ? metrics.accepted === 1 && refused === 0
      : metrics.accepted === 0 && refused === 1 && metrics.refused.get(final.code) === 1;
    if (!ok) fail(`accept: metrics ${metrics.accepted} accepted, ${j([...metrics.refused])}`);
  }
  // The lazy hand-over's promise.
  phase.announce();
  try {
    const header = await phase.outcome;
    if (final.state !== "open" || header !== phase.header) fail("accept: outcome resolved");
  } catch (error) {
    if (error instanceof FuzzFailure) throw error;
    if (final.state !== "refused" || error !== phase.error) {
      fail(`accept: outcome rejected ${show(error)}`);
    }
  }
}
