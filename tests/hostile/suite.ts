// Hostile clients at scale against a live server, written once for every entry point: the
// TCP listeners (`listen` on Deno and Bun, `createServer` on Node) and the HTTP servers
// (`serve` on each runtime). Each test file supplies a small HostileDriver that starts its
// entry point with an application that records the client address it was given.
//
// What tests/listen/cases.ts checks one client at a time (timeouts, the malformed table,
// resets, the untrusted matrix), this checks under load, with a normal client probing the
// server all along, and with the process's descriptors and timers back to where they were
// after each scenario (Deno's sanitizers check the rest when the test ends).
// Runtime-neutral: no Deno or Bun globals; the clients are node:net.
import assert from "node:assert/strict";
import process from "node:process";
import { Buffer } from "node:buffer";
import {
  decodeHeader,
  encodeHeader,
  encodeTlvs,
  type PeerInfo,
  type ProxyPolicy,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
  type ProxyProtocolOptions,
  type UntrustedPolicy,
} from "@proxy-protocol/edge";
import { concat, delay, talk, text, until } from "../listen/client.ts";
import {
  activeHandles,
  activeTimers,
  backTo,
  exchange,
  histogram,
  Hostile,
  openFds,
  percentile,
  pool,
  type Resources,
  resources,
  Rng,
  runtime,
  spread,
  type Target,
  ticker,
  within,
} from "./helpers.ts";

// ---- sizes ----

/** Multiplies the connection counts (HOSTILE_SCALE=4 for a longer run); timings stay. */
const SCALE = Math.max(0.05, Number(process.env.HOSTILE_SCALE ?? 1) || 1);
const n = (count: number) => Math.max(2, Math.round(count * SCALE));

/** Sizes, kept small enough for CI (2 busy cores) and printed at the start. */
export const SIZES = {
  /** Connections that trickle a header they never finish, a byte every `everyMs`. */
  slowloris: n(200),
  slowlorisEveryMs: 500,
  /** The header timeout the slowloris clients run into (the spec's minimum). */
  slowlorisTimeoutMs: 3000,
  /** A slowloris client must be closed by timeout + the clock's tick + this. */
  lateSlackMs: 1500,
  /** Malformed headers, of every kind the generator makes, this many at once. */
  malformed: n(500),
  concurrency: 50,
  /** Resets (RST) at a random offset into a header. */
  resets: n(200),
  /** v2 headers whose length field is over maxHeaderLength: only 16 bytes are sent. */
  oversize: n(50),
  /** v1 lines that never end, trickled a byte every `endlessEveryMs` up to byte 107. */
  endless: n(50),
  endlessEveryMs: 20,
  /** ... and lines that never end sent as 1 MiB in one write. */
  firehose: n(5),
  /** Each spoofing header sent this often to each policy x untrusted server. */
  spoofRepeat: Math.max(1, Math.round(2 * SCALE)),
  /** A normal client probes the server this often, and must be served within the bound. */
  probeEveryMs: 100,
  servedWithinMs: 1000,
  /** A header refused on its bytes is refused within this (the header timeout is 6 s). */
  refuseWithinMs: 5000,
  /**
   * The header timeout of the other scenarios: longer than any of them waits, so that no
   * refusal there is a timeout (each is checked to carry its own code, too).
   */
  longTimeoutMs: 6000,
};

const POLICIES: (ProxyPolicy | "function")[] = [
  "require",
  "optional",
  "ignore",
  "reject",
  "skip",
  "function",
];
const UNTRUSTED: UntrustedPolicy[] = ["deny", "reject", "ignore", "skip"];

/** Prints the sizes, once per test file. */
export function printSizes(file: string): void {
  const spoofs = POLICIES.length * UNTRUSTED.length * (SPOOFS.length + 1) * SIZES.spoofRepeat;
  console.log(
    `[hostile] ${file} on ${runtime} (HOSTILE_SCALE ${SCALE}): slowloris ${SIZES.slowloris} ` +
      `connections x 1 byte/${SIZES.slowlorisEveryMs} ms against a ${SIZES.slowlorisTimeoutMs} ms ` +
      `timeout; ${SIZES.malformed} malformed headers (${KINDS.length} kinds, ` +
      `${SIZES.concurrency} at once); ${SIZES.resets} resets mid-header; ${SIZES.oversize} ` +
      `oversize v2; ${SIZES.endless} endless v1 trickled (1 byte/${SIZES.endlessEveryMs} ms) + ` +
      `${SIZES.firehose} as 1 MiB; ${spoofs} untrusted connections (${POLICIES.length} policies x ` +
      `${UNTRUSTED.length} untrusted x ${SPOOFS.length} spoofing headers and none x ` +
      `${SIZES.spoofRepeat}); probes every ${SIZES.probeEveryMs} ms, served within ` +
      `${SIZES.servedWithinMs} ms`,
  );
}

// ---- what clients send ----

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
/** The normal client's header, and the address the application must see for it. */
const NORMAL = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n";
const NORMAL_SOURCE = "203.0.113.7";
const PING = "ping";
const GET = "GET /who HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n";

/** A v2 header's first 16 bytes: signature, version/command, family, length. */
function v2Prefix(verCmd: number, family: number, length: number): Uint8Array {
  return Uint8Array.from([...SIG, verCmd, family, length >> 8, length & 0xff]);
}

const V2_TCP4_CRC = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "192.0.2.1", port: 1 },
  destination: { address: "192.0.2.2", port: 2 },
  tlvs: encodeTlvs({ authority: "example.com", uniqueId: new Uint8Array(16).fill(7) }),
}, { checksum: true });

/** A malformed header and what the listener must report for it (policy `require`). */
export interface Malformed {
  kind: string;
  bytes: Uint8Array;
  code: ProxyProtocolErrorCode;
}

const v1 = (s: string) => text(s);
const octet = (r: Rng) => String(r.int(1, 254));
const ipv4 = (r: Rng) => `${octet(r)}.${octet(r)}.${octet(r)}.${octet(r)}`;
const port = (r: Rng) => String(r.int(1, 65535));

/** Each kind of malformed header: a generator of random instances, and their code. */
const KINDS: [string, ProxyProtocolErrorCode, (r: Rng) => Uint8Array][] = [
  [
    "an HTTP request",
    "HEADER_REQUIRED",
    (r) =>
      v1(`${r.pick(["GET", "POST", "PUT", "HEAD", "OPTIONS"])} /${r.int(0, 1e6)} HTTP/1.1\r\n\r\n`),
  ],
  [
    "a TLS ClientHello",
    "HEADER_REQUIRED",
    (r) => Uint8Array.from([0x16, 0x03, r.int(0, 4), 0x01, 0x00, 0x01, 0x00, 0x00]),
  ],
  ["random bytes", "HEADER_REQUIRED", (r) => {
    const bytes = Uint8Array.from({ length: r.int(1, 64) }, () => r.int(0, 255));
    bytes[0] = r.pick([0x00, 0x05, 0x16, 0x47, 0x7f, 0xff]); // neither "P" nor CR
    return bytes;
  }],
  ["a v1 signature typo", "HEADER_REQUIRED", (r) => {
    const bytes = v1(`PROXY TCP4 ${ipv4(r)} ${ipv4(r)} ${port(r)} ${port(r)}\r\n`);
    const at = r.int(1, 4); // byte 0 changed to CR would start a v2 signature
    bytes[at] = bytes[at] === 0x41 ? 0x42 : 0x41;
    return bytes;
  }],
  ["a v2 signature typo", "HEADER_REQUIRED", (r) => {
    const bytes = encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" });
    bytes[r.int(1, 11)]! ^= 1 << r.int(0, 7);
    return bytes;
  }],
  ["a v1 keyword or family typo", "V1_MALFORMED", (r) =>
    v1(
      r.pick(["PROXY_TCP4 ", "PROXY TCP5 ", "PROXY tcp4 ", "PROXY UDP4 ", "PROXY UNKNOWM "]) +
        `${ipv4(r)} ${ipv4(r)} ${port(r)} ${port(r)}\r\n`,
    )],
  ["v1 spacing or line end", "V1_MALFORMED", (r) =>
    v1(r.pick([
      `PROXY TCP4  ${ipv4(r)} ${ipv4(r)} ${port(r)} ${port(r)}\r\n`,
      `PROXY TCP4 ${ipv4(r)} ${ipv4(r)} ${port(r)} ${port(r)}\n`,
      `PROXY TCP4 ${ipv4(r)} ${ipv4(r)} ${port(r)} ${port(r)}\r\r`,
      `PROXY UNKNOWN\n`,
    ]))],
  ["a v1 address out of range", "INVALID_ADDRESS", (r) =>
    v1(r.pick([
      `PROXY TCP4 ${octet(r)}.${r.int(256, 999)}.1.1 ${ipv4(r)} ${port(r)} ${port(r)}\r\n`,
      `PROXY TCP4 ${ipv4(r)} 10.0${r.int(0, 9)}.1.1 ${port(r)} ${port(r)}\r\n`,
      `PROXY TCP4 ::${r.int(1, 9)} ${ipv4(r)} ${port(r)} ${port(r)}\r\n`,
      `PROXY TCP6 2001:db8:::${r.int(1, 9)} ::1 ${port(r)} ${port(r)}\r\n`,
    ]))],
  ["a v1 port out of range", "INVALID_PORT", (r) =>
    v1(r.pick([
      `PROXY TCP4 ${ipv4(r)} ${ipv4(r)} ${r.int(65536, 99999)} ${port(r)}\r\n`,
      `PROXY TCP4 ${ipv4(r)} ${ipv4(r)} ${port(r)} 0${r.int(1, 999)}\r\n`,
      `PROXY TCP6 ::1 ::2 ${port(r)} ${r.int(65536, 99999)}\r\n`,
    ]))],
  [
    "a v1 line without CRLF in 107 bytes",
    "V1_TOO_LONG",
    (r) => v1("PROXY UNKNOWN " + "x".repeat(r.int(94, 200))),
  ],
  [
    "a v2 version other than 2",
    "UNSUPPORTED_VERSION",
    (r) => concat(v2Prefix((r.pick([0, 1, 3, 4, 7, 15]) << 4) | 1, 0x11, 12), new Uint8Array(12)),
  ],
  [
    "a v2 command other than LOCAL or PROXY",
    "INVALID_COMMAND",
    (r) => concat(v2Prefix(0x20 | r.int(2, 15), 0x11, 12), new Uint8Array(12)),
  ],
  ["a v2 family no spec defines", "INVALID_FAMILY", (r) =>
    concat(
      v2Prefix(0x21, r.pick([0x01, 0x10, 0x13, 0x23, 0x33, 0x40, 0x41, 0xff]), 12),
      new Uint8Array(12),
    )],
  [
    "a v2 length shorter than the addresses",
    "INVALID_LENGTH",
    (r) =>
      r.next() < 0.5
        ? concat(v2Prefix(0x21, 0x11, r.int(0, 11)), new Uint8Array(12))
        : concat(v2Prefix(0x21, 0x21, r.int(0, 35)), new Uint8Array(36)),
  ],
  [
    "a v2 length over maxHeaderLength",
    "HEADER_TOO_LONG",
    (r) => v2Prefix(0x21, 0x11, r.int(4081, 65535)),
  ],
  [
    "a v2 TLV running past the header",
    "INVALID_TLV",
    (r) =>
      concat(
        v2Prefix(0x21, 0x11, 12 + 3),
        new Uint8Array(12),
        Uint8Array.of(0xe0, 0, r.int(1, 200)),
      ),
  ],
  ["a v2 CRC32c that does not match", "CHECKSUM_MISMATCH", (r) => {
    const bytes = V2_TCP4_CRC.slice();
    bytes[r.int(16, 27)]! ^= 1 << r.int(0, 7); // an address byte: covered by the CRC
    return bytes;
  }],
];

/**
 * `count` malformed headers, the kinds taken in turn, each instance random (seeded).
 * Every label is checked against the codec before use (see `assertLabels`).
 */
export function malformedCases(count: number, seed = 10): Malformed[] {
  const r = new Rng(seed);
  return Array.from({ length: count }, (_, i) => {
    const [kind, code, make] = KINDS[i % KINDS.length]!;
    return { kind, code, bytes: make(r) };
  });
}

/** The code a `require` listener reports for `bytes`, by the codec alone. */
function codecVerdict(bytes: Uint8Array): string {
  try {
    const result = decodeHeader(bytes, { maxLength: 4096 });
    return result === null ? "incomplete" : "valid";
  } catch (error) {
    assert.ok(error instanceof ProxyProtocolError);
    return error.code === "NOT_PROXY_PROTOCOL" ? "HEADER_REQUIRED" : error.code;
  }
}

function assertLabels(cases: readonly Malformed[]): void {
  for (const c of cases) {
    assert.equal(codecVerdict(c.bytes), c.code, `generator: ${c.kind}: ${b64(c.bytes)}`);
  }
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

/** Splits `bytes` at up to two random offsets. */
function pieces(bytes: Uint8Array, r: Rng): Uint8Array[] {
  const cuts = [r.int(0, bytes.length), r.int(0, bytes.length)].sort((a, b) => a - b);
  return [
    bytes.subarray(0, cuts[0]),
    bytes.subarray(cuts[0], cuts[1]),
    bytes.subarray(cuts[1]),
  ].filter((p) => p.length > 0);
}

/** Headers that claim an address, each from a range the servers below trust. */
export const SPOOFS: [string, Uint8Array, string | null][] = [
  ["v1 TCP4", text("PROXY TCP4 10.0.0.66 10.0.0.5 51234 443\r\n"), "10.0.0.66"],
  ["v1 TCP4 claiming loopback", text("PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n"), "127.0.0.1"],
  ["v1 TCP6", text("PROXY TCP6 2001:db8::66 2001:db8::5 40000 443\r\n"), "2001:db8::66"],
  [
    "v2 TCP4",
    encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "TCP4",
      source: { address: "203.0.113.66", port: 1234 },
      destination: { address: "10.1.2.3", port: 80 },
    }),
    "203.0.113.66",
  ],
  [
    "v2 TCP6 with TLVs and CRC32c",
    encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "TCP6",
      source: { address: "2001:db8::7", port: 61000 },
      destination: { address: "2001:db8::5", port: 443 },
      tlvs: encodeTlvs({ authority: "example.com", awsVpceId: "vpce-08d2bf15fac5001c9" }),
    }, { checksum: true }),
    "2001:db8::7",
  ],
  ["v2 LOCAL", encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" }), null],
];
/** Every spoofed source is in one of these; loopback (the real peer) is not. */
const TRUST_ALL_BUT_LOOPBACK = ["10.0.0.0/8", "203.0.113.0/24", "2001:db8::/32", "127.0.0.2/32"];

// ---- drivers ----

/** A running entry point, as a driver starts it. */
export interface HostileServer {
  /** The port it got (it listens on 127.0.0.1, port 0). */
  port: number;
  /**
   * The client address the application was given: for each connection handed over (TCP),
   * or each request (HTTP), in order.
   */
  addresses: string[];
  /** Stops it by its own handle; resolves once it and its connections are closed. */
  close(): Promise<void>;
}

/** How one entry point is started. */
export interface HostileDriver {
  /**
   * What the application speaks. `tcp`: it reads each connection to its end, then answers
   * with tests/listen/client.ts `report(...)` and closes. `http`: it answers each request
   * with JSON `{ remoteAddress, remotePort }` as the framework slot gives them.
   */
  app: "tcp" | "http";
  /** Starts it on 127.0.0.1, port 0, with `options` as given (`onError` included). */
  start(options: ProxyProtocolOptions): Promise<HostileServer>;
}

/** node:test's describe and it (with options), or functions shaped like them. */
export interface Registrar {
  describe(name: string, fn: () => void): unknown;
  it(name: string, options: { timeout: number }, fn: () => Promise<void>): unknown;
}

interface Refusal {
  code: string;
  peer: PeerInfo | undefined;
}

/** What one client got: refused (nothing back), served (and as whom), or something else. */
interface Answer {
  outcome: "refused" | "served" | "other";
  remoteAddress?: string | null;
  remotePort?: number | null;
  /** TCP: what the application read; HTTP: the status. */
  payload?: string;
  status?: number;
  localPort: number;
  ms: number;
}

const show = (r: Resources) =>
  `${r.fds} descriptors, ${r.timers} timers` + (runtime === "bun" ? "" : ` (${r.handles} ref'd)`);

/** Parses an HTTP/1.1 response (Content-Length or chunked) read to the connection's end. */
function parseHttp(reply: Buffer): { status: number; body: string } {
  const raw = reply.toString("latin1");
  const end = raw.indexOf("\r\n\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1] ?? 0);
  if (end < 0) return { status, body: "" };
  const head = raw.slice(0, end).toLowerCase();
  let body = raw.slice(end + 4);
  if (/\r\ntransfer-encoding: chunked/.test(head)) {
    let out = "";
    for (let at = 0;;) {
      const nl = body.indexOf("\r\n", at);
      const size = parseInt(body.slice(at, nl), 16);
      if (!(size > 0)) break;
      out += body.slice(nl + 2, nl + 2 + size);
      at = nl + 2 + size + 2;
    }
    body = out;
  }
  return { status, body: Buffer.from(body, "latin1").toString("utf8") };
}

/** One client of the application: `header` (or none), then a request; what came back. */
async function ask(
  target: Target,
  app: HostileDriver["app"],
  header: Uint8Array | string | null,
): Promise<Answer> {
  const request = app === "tcp" ? PING : GET;
  const bytes = header === null ? text(request) : concat(header, request);
  const got = await exchange(target, bytes, { end: app === "tcp" });
  const base = { localPort: got.localPort, ms: got.ms };
  if (got.reply.length === 0) return { outcome: "refused", ...base };
  if (app === "tcp") {
    const seen = JSON.parse(got.reply.toString("utf8"));
    return {
      outcome: "served",
      remoteAddress: seen.remoteAddress,
      remotePort: seen.remotePort,
      payload: Buffer.from(seen.payload, "base64").toString("latin1"),
      ...base,
    };
  }
  const { status, body } = parseHttp(got.reply);
  if (status !== 200) return { outcome: "other", status, ...base };
  const who = JSON.parse(body);
  return {
    outcome: "served",
    remoteAddress: who.remoteAddress,
    remotePort: who.remotePort,
    status,
    ...base,
  };
}

/**
 * A normal client asking again and again (one at a time, `everyMs` apart) until stopped;
 * each must be served as the header's client within the bound. `stop()` resolves with the
 * latencies, or throws the first failure.
 */
function probing(target: Target, app: HostileDriver["app"]): { stop(): Promise<number[]> } {
  const latencies: number[] = [];
  let stopped = false;
  let failure: unknown;
  const loop = (async () => {
    try {
      while (!stopped) {
        const got = await ask(target, app, NORMAL);
        assert.equal(got.outcome, "served", "a normal client was not served");
        assert.equal(got.remoteAddress, NORMAL_SOURCE);
        latencies.push(got.ms);
        if (!stopped) await delay(SIZES.probeEveryMs);
      }
    } catch (error) {
      failure = error; // thrown by stop(), not left unhandled meanwhile
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      if (failure !== undefined) throw failure;
      return latencies;
    },
  };
}

/**
 * Registers the hostile scenarios for one entry point.
 *
 * @param name The entry point, as test names show it ("deno serve").
 * @param driver How to start it.
 * @param registrar node:test's `describe` and `it`, or functions shaped like them.
 */
export function defineHostileSuite(
  name: string,
  driver: HostileDriver,
  registrar: Registrar,
): void {
  const { describe } = registrar;
  const it = (title: string, fn: () => Promise<void>): void => {
    registrar.it(title, { timeout: 120_000 }, fn);
  };
  const log = (what: string) => console.log(`[hostile] ${name} on ${runtime}: ${what}`);

  interface Live extends Target {
    server: HostileServer;
    refusals: Refusal[];
    /** Pending timers before the first connection. */
    idleTimers: number;
    /** Waits for `count` refusals (they are reported as the server closes each). */
    refused(count: number, ms?: number): Promise<void>;
  }

  /**
   * Starts the entry point, serves one normal client (so that what a runtime sets up on
   * first use is in the baseline), runs `fn`, then checks that the process is back to its
   * descriptors and timers with the server still running, and stops it.
   */
  async function scenario(options: ProxyProtocolOptions, fn: (s: Live) => Promise<void>) {
    const refusals: Refusal[] = [];
    const server = await driver.start({
      ...options,
      onError: (error, peer) => void refusals.push({ code: error.code, peer }),
    });
    const live: Live = {
      host: "127.0.0.1",
      port: server.port,
      server,
      refusals,
      idleTimers: activeTimers(),
      refused: (count, ms = SIZES.refuseWithinMs) =>
        until(() => refusals.length >= count, ms).catch(() => {
          throw new Error(`${refusals.length} of ${count} refusals reported within ${ms} ms`);
        }),
    };
    // Timers before any connection (the header clock runs only while headers are read),
    // descriptors after a first one.
    const handles = activeHandles();
    let ok = false;
    try {
      const warm = await ask(live, driver.app, NORMAL);
      assert.equal(warm.remoteAddress, NORMAL_SOURCE);
      server.addresses.length = 0;
      const baseline: Resources = { fds: openFds(), timers: live.idleTimers, handles };
      await fn(live);
      const ms = await backTo(baseline);
      log(`back to ${show(baseline)} in ${ms} ms`);
      ok = true;
    } finally {
      const closing = server.close();
      if (ok) await closing;
      else await within(closing, 5000); // after a failure, clients may still hold it open
    }
  }

  /** The refusals by the client port they came from; each port must be refused once. */
  function byPort(refusals: readonly Refusal[]): Map<number, string> {
    const out = new Map<number, string>();
    for (const r of refusals) {
      const port = r.peer?.remotePort;
      assert.ok(port !== undefined, `a ${r.code} refusal without the peer's port`);
      assert.ok(!out.has(port), `port ${port} refused twice`);
      out.set(port, r.code);
    }
    return out;
  }

  /** Every address the application saw was the normal client's. */
  function onlyProbes(s: Live, probes: number): void {
    assert.equal(s.server.addresses.length, probes, "connections handed to the application");
    assert.ok(s.server.addresses.every((a) => a === NORMAL_SOURCE), "an unexpected address");
  }

  describe(`${name}: hostile clients`, () => {
    it(`slowloris: ${SIZES.slowloris} connections trickling a header are closed at the timeout while a normal client is served`, () =>
      scenario({ timeout: SIZES.slowlorisTimeoutMs, allowShortTimeout: true }, async (s) => {
        const T = SIZES.slowlorisTimeoutMs;
        const tick = Math.max(5, Math.min(1000, Math.ceil(T / 8))); // lib/connection/deadlines.ts
        const v1Line = text(NORMAL.slice(0, -2)); // never the CRLF
        const v2Body = concat(v2Prefix(0x21, 0x11, 3000), new Uint8Array(3000)); // never whole
        const r = new Rng(1);
        const clients = await pool(SIZES.slowloris, SIZES.concurrency, async (i) => {
          const client = await Hostile.open(s);
          const bytes = i % 2 === 0 ? v1Line : v2Body;
          const at = r.int(1, 30);
          client.write(bytes.subarray(0, at));
          return { client, bytes, at };
        });
        // The leak check sees the listener's header clock (none of this test's timers runs).
        const clock = activeTimers() - s.idleTimers;
        const probes = probing(s, driver.app);
        const trickle = ticker(SIZES.slowlorisEveryMs, () => {
          for (const c of clients) {
            if (c.at < c.bytes.length - 1) c.client.write(c.bytes.subarray(c.at, ++c.at));
          }
        });
        try {
          await Promise.all(clients.map(({ client }) => client.closedWithin(T * 3, "slowloris")));
        } finally {
          trickle.stop();
        }
        const latencies = await probes.stop();
        await s.refused(SIZES.slowloris);
        // From before the connect (the server accepts later) and from the connect as the
        // client saw it (the server may accept later still, on a loaded event loop).
        const lifetimes = clients.map(({ client }) => client.closedAt - client.openedAt);
        const afterConnect = clients.map(({ client }) => client.closedAt - client.connectedAt);
        const sent = clients.map(({ client }) => client.sentAtClose);
        log(
          `slowloris: closed ${Math.min(...lifetimes)} ms or more after the connect call, ` +
            `${percentile(afterConnect, 50)} (p50) to ${Math.max(...afterConnect)} ms after ` +
            `connecting (timeout ${T}, tick ${tick}), having sent ` +
            `${Math.min(...sent)}..${Math.max(...sent)} bytes; normal client ${
              spread(latencies)
            }; ${clock} timer(s) of the server's while held`,
        );
        assert.ok(clock >= 1, `${clock} timers seen while the header clock runs`);
        assert.deepEqual(histogram(s.refusals.map((x) => x.code)), { TIMEOUT: SIZES.slowloris });
        for (const ms of lifetimes) {
          assert.ok(ms >= T, `a slowloris connection closed after ${ms} ms, before ${T}`);
        }
        for (const ms of afterConnect) {
          assert.ok(
            ms <= T + tick + SIZES.lateSlackMs,
            `a slowloris connection closed after ${ms} ms (timeout ${T} + tick ${tick} + ${SIZES.lateSlackMs})`,
          );
        }
        assert.ok(clients.every(({ client }) => client.received === 0));
        assert.ok(latencies.length >= 5, `only ${latencies.length} probes`);
        assert.ok(
          Math.max(...latencies) < SIZES.servedWithinMs,
          `a normal client waited ${Math.max(...latencies)} ms`,
        );
        onlyProbes(s, latencies.length);
      }));

    it(`malformed flood: ${SIZES.malformed} bad headers of ${KINDS.length} kinds, each refused with its code; the server keeps serving`, () =>
      scenario({ timeout: SIZES.longTimeoutMs }, async (s) => {
        const cases = malformedCases(SIZES.malformed);
        assertLabels(cases);
        const r = new Rng(2);
        const probes = probing(s, driver.app);
        const clients = await pool(cases.length, SIZES.concurrency, async (i) => {
          const c = cases[i]!;
          const client = await Hostile.open(s);
          for (const [k, piece] of pieces(c.bytes, r).entries()) {
            if (k > 0) await delay(1);
            client.write(piece);
          }
          await client.closedWithin(SIZES.refuseWithinMs, c.kind);
          return { client, c };
        });
        const latencies = await probes.stop();
        await s.refused(cases.length);
        const codes = byPort(s.refusals);
        for (const { client, c } of clients) {
          assert.equal(codes.get(client.localPort), c.code, `${c.kind}: ${b64(c.bytes)}`);
          assert.equal(client.received, 0);
        }
        assert.equal(s.refusals.length, cases.length);
        const after = await ask(s, driver.app, NORMAL);
        assert.equal(after.remoteAddress, NORMAL_SOURCE);
        log(
          `malformed: ${JSON.stringify(histogram(s.refusals.map((x) => x.code)))}; ` +
            `normal client ${spread(latencies)}, then ${after.ms} ms`,
        );
        assert.ok(Math.max(...latencies) < SIZES.servedWithinMs);
        onlyProbes(s, latencies.length + 1);
      }));

    it(`resets: ${SIZES.resets} clients reset (RST) at a random offset into a header; each is CONNECTION_CLOSED`, () =>
      scenario({ timeout: SIZES.longTimeoutMs }, async (s) => {
        const headers = [text(NORMAL), ...SPOOFS.map(([, bytes]) => bytes), V2_TCP4_CRC];
        const r = new Rng(3);
        const probes = probing(s, driver.app);
        const offsets = await pool(SIZES.resets, SIZES.concurrency, async () => {
          const header = r.pick(headers);
          const at = r.int(0, header.length - 1);
          await talk(s, pieces(header.subarray(0, at), r), { gap: 1, reset: true });
          return at;
        });
        await s.refused(SIZES.resets);
        const latencies = await probes.stop();
        const after = await ask(s, driver.app, NORMAL);
        assert.equal(after.remoteAddress, NORMAL_SOURCE);
        log(
          `resets at bytes ${Math.min(...offsets)}..${Math.max(...offsets)}: ${
            JSON.stringify(histogram(s.refusals.map((x) => x.code)))
          }; normal client ${spread(latencies)}`,
        );
        assert.deepEqual(histogram(s.refusals.map((x) => x.code)), {
          CONNECTION_CLOSED: SIZES.resets,
        });
        assert.ok(Math.max(...latencies) < SIZES.servedWithinMs);
        onlyProbes(s, latencies.length + 1);
      }));

    it(`oversize v2: ${SIZES.oversize} length fields over maxHeaderLength are refused on the first 16 bytes`, () =>
      scenario({ timeout: SIZES.longTimeoutMs }, async (s) => {
        const r = new Rng(4);
        const clients = await pool(SIZES.oversize, SIZES.oversize, async (i) => {
          const length = i % 3 === 0 ? 65535 : i % 3 === 1 ? 4096 - 16 + 1 : r.int(4081, 65535);
          const prefix = v2Prefix(
            r.pick([0x20, 0x21]),
            r.pick([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]),
            length,
          );
          const client = await Hostile.open(s);
          client.write(prefix);
          // Nothing more is sent: a server that waited for the rest would time out (6 s).
          await client.closedWithin(SIZES.refuseWithinMs, `length ${length}`);
          return { client, length };
        });
        await s.refused(SIZES.oversize);
        const codes = byPort(s.refusals);
        const ms = clients.map(({ client }) => client.closedAt - client.lastWriteAt);
        log(`oversize: lengths up to 65535 refused ${spread(ms)} after the 16th byte`);
        for (const { client, length } of clients) {
          assert.equal(client.sentAtClose, 16, `length ${length}`);
          assert.equal(codes.get(client.localPort), "HEADER_TOO_LONG", `length ${length}`);
          assert.equal(client.received, 0);
        }
        onlyProbes(s, 0);
      }));

    it(`endless v1: ${SIZES.endless} lines without CRLF, trickled, are refused by byte 107 (and ${SIZES.firehose} sent as 1 MiB)`, () =>
      scenario({ timeout: SIZES.longTimeoutMs }, async (s) => {
        const r = new Rng(5);
        const start = text("PROXY UNKNOWN ");
        const line = (length: number) => {
          const bytes = Uint8Array.from({ length }, () => r.pick([0x20, 0x41, 0x7a, 0x80, 0xff]));
          bytes.set(start);
          return bytes;
        };
        // The first prefix the codec rules out (no CRLF can come by byte 107).
        const probe = line(107);
        let threshold = start.length;
        while (codecVerdict(probe.subarray(0, threshold)) === "incomplete") threshold++;
        assert.equal(codecVerdict(probe.subarray(0, threshold)), "V1_TOO_LONG");
        assert.ok(threshold <= 107);

        const probes = probing(s, driver.app);
        const clients = await pool(SIZES.endless, SIZES.endless, async () => {
          const client = await Hostile.open(s);
          const bytes = line(107);
          const at = r.int(start.length, 100);
          client.write(bytes.subarray(0, at));
          return { client, bytes, at };
        });
        // One byte at a time, never past byte 107: only a refusal on at most 107 bytes can
        // close these, with V1_TOO_LONG rather than the timeout's TIMEOUT.
        const trickle = ticker(SIZES.endlessEveryMs, () => {
          for (const c of clients) {
            if (c.at < 107) c.client.write(c.bytes.subarray(c.at, ++c.at));
          }
        });
        const firehose = pool(SIZES.firehose, SIZES.firehose, async () => {
          const client = await Hostile.open(s);
          client.write(concat(start, new Uint8Array(1 << 20).fill(0x78)));
          await client.closedWithin(SIZES.refuseWithinMs, "1 MiB without CRLF");
          return client;
        });
        try {
          await Promise.all(
            clients.map(({ client }) =>
              client.closedWithin(107 * SIZES.endlessEveryMs + SIZES.refuseWithinMs, "endless v1")
            ),
          );
        } finally {
          trickle.stop();
        }
        const hoses = await firehose;
        const latencies = await probes.stop();
        await s.refused(SIZES.endless + SIZES.firehose);
        const codes = byPort(s.refusals);
        const sent = clients.map(({ client }) => client.sentAtClose);
        log(
          `endless v1: refused once ${JSON.stringify(histogram(sent))} bytes were sent ` +
            `(the codec rules the line out at ${threshold}); normal client ${spread(latencies)}`,
        );
        for (const { client } of clients) {
          assert.ok(client.sentAtClose <= 107, `closed after ${client.sentAtClose} bytes`);
          assert.ok(client.sentAtClose >= threshold, `closed after ${client.sentAtClose} bytes`);
          assert.equal(codes.get(client.localPort), "V1_TOO_LONG");
          assert.equal(client.received, 0);
        }
        for (const client of hoses) assert.equal(codes.get(client.localPort), "V1_TOO_LONG");
        assert.ok(Math.max(...latencies) < SIZES.servedWithinMs);
        onlyProbes(s, latencies.length);
      }));

    it(`untrusted peers: ${POLICIES.length} policies x ${UNTRUSTED.length} untrusted x ${SPOOFS.length} spoofing headers never set an address`, async () => {
      // Servers come and go here: the baseline is taken with none running.
      await scenario({ timeout: SIZES.longTimeoutMs }, () => Promise.resolve());
      const baseline = resources();
      const counts: Record<string, number> = {};
      for (const policy of POLICIES) {
        for (const untrusted of UNTRUSTED) {
          const refusals: Refusal[] = [];
          const server = await driver.start({
            policy: policy === "function" ? () => "optional" : policy,
            trust: TRUST_ALL_BUT_LOOPBACK,
            untrusted,
            timeout: SIZES.longTimeoutMs,
            onError: (error, peer) => void refusals.push({ code: error.code, peer }),
          });
          const target = { host: "127.0.0.1", port: server.port };
          const label = (what: string) => `${policy}/${untrusted}: ${what}`;
          try {
            const sends = [...SPOOFS, ["no header", null, null] as const];
            /** What must come of a send: a refusal's code, served, or not served by HTTP. */
            const expect = (header: Uint8Array | null) =>
              untrusted === "deny"
                ? "UNTRUSTED_SOURCE"
                : header === null
                ? "served"
                : untrusted === "reject"
                ? "HEADER_FORBIDDEN"
                : untrusted === "ignore" || driver.app === "tcp"
                ? "served"
                : "not served"; // skip: the header reaches the HTTP server as a bad request
            const total = sends.length * SIZES.spoofRepeat;
            const answers = await pool(total, SIZES.concurrency, async (i) => {
              const [what, header] = sends[i % sends.length]!;
              const expected = expect(header);
              return { what, header, expected, got: await ask(target, driver.app, header) };
            });
            await until(() =>
              refusals.length >= answers.filter((a) => /^[A-Z_]+$/.test(a.expected)).length
            );
            const codes = byPort(refusals);
            for (const { what, header, expected, got } of answers) {
              const outcome = got.outcome === "served"
                ? "served"
                : codes.get(got.localPort) ?? `${got.outcome} ${got.status ?? ""}`;
              counts[outcome] = (counts[outcome] ?? 0) + 1;
              // Whatever happens, the application never sees an address but the socket's.
              if (got.outcome === "served") {
                assert.equal(got.remoteAddress, "127.0.0.1", label(what));
                assert.equal(got.remotePort, got.localPort, label(what));
              }
              if (expected === "not served") {
                assert.notEqual(got.outcome, "served", label(what));
                assert.ok(!codes.has(got.localPort), label(`${what} refused by the listener`));
              } else {
                assert.equal(outcome, expected, label(what));
              }
              if (expected === "served" && driver.app === "tcp") {
                const raw = header === null ? "" : Buffer.from(header).toString("latin1");
                assert.equal(got.payload, untrusted === "skip" ? raw + PING : PING, label(what));
              }
            }
            assert.ok(server.addresses.every((a) => a === "127.0.0.1"), label("addresses"));
          } finally {
            await server.close();
          }
        }
      }
      // The control: with loopback trusted, the same headers do set the address.
      const control = await driver.start({ trust: ["127.0.0.1/32"], timeout: SIZES.longTimeoutMs });
      try {
        for (const [what, header, source] of SPOOFS) {
          const got = await ask({ host: "127.0.0.1", port: control.port }, driver.app, header);
          assert.equal(got.outcome, "served", what);
          assert.equal(got.remoteAddress, source ?? "127.0.0.1", `control: ${what}`);
        }
      } finally {
        await control.close();
      }
      const ms = await backTo(baseline);
      log(
        `untrusted: ${JSON.stringify(counts)}; control with loopback trusted honours them; ` +
          `back to ${show(baseline)} in ${ms} ms`,
      );
    });
  });
}
