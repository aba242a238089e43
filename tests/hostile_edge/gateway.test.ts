// Hostile clients against the gateway, run as the CLI on this runtime (one child process:
// tests/cli/helpers.ts), in front of an upstream that decodes the gateway's outgoing header
// and answers with the address in it: slowloris held off while others are served, a flood of
// malformed headers refused with the codes the codec gives them (and counted so in
// --metrics), resets mid-header, an oversize v2 length, an endless v1 line, untrusted peers
// under every --accept policy; and afterwards the child's file descriptors back near where
// they started and the gateway still serving. Sizes are printed at the start.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { decodeHeader, encodeHeader, fromHex, ProxyProtocolError } from "@proxy-protocol/edge";
import { type Server, start, stop } from "../cli/helpers.ts";
import { S, V2 } from "../vectors.ts";
import {
  addressUpstream,
  ask,
  delta,
  fdKinds,
  fds,
  metrics,
  noise,
  open,
  pool,
  refusedByCode,
  rss,
  runtime,
  sleep,
  text,
  until,
  type Upstream,
  v1From,
  within,
} from "./helpers.ts";

/** Bun's default is 5 s a test or hook. */
const LONG = { timeout: 60_000 };

const SIZES = {
  /** The gateway's --timeout for the header. */
  timeoutMs: 2000,
  /** Slowloris connections held at once, each writing one byte of a header every gap. */
  slowloris: 300,
  slowlorisGapMs: 250,
  /** Good requests made while they are held, and how fast each must be answered. */
  goodDuringSlowloris: 5,
  goodMaxMs: 1000,
  /** Malformed headers: each case this many times, this many connections at once. */
  floodRepeat: 16,
  floodConcurrency: 50,
  /** Connections reset mid-header, and right after connecting. */
  resetsMidHeader: 100,
  resetsAtOnce: 50,
  /**
   * File descriptors the child may keep above its baseline at the end: the metrics
   * request's own connection may still be closing.
   */
  fdSlack: 2,
};
console.log(`hostile gateway on ${runtime}: ${JSON.stringify(SIZES)}`);

const MAX_HEADER = 4096;

/** The code the gateway must refuse `bytes` with: the codec's, as the listener maps it. */
function refusalCode(bytes: Uint8Array): string {
  let result;
  try {
    result = decodeHeader(bytes, { maxLength: MAX_HEADER });
  } catch (error) {
    if (!(error instanceof ProxyProtocolError)) throw error;
    return error.code === "NOT_PROXY_PROTOCOL" ? "HEADER_REQUIRED" : error.code;
  }
  throw new Error(result === null ? "a valid prefix, not a malformed header" : "a valid header");
}

/** The malformed headers of the flood: the decoders' edge cases, v1 and v2. */
function malformed(): { name: string; bytes: Uint8Array; code: string }[] {
  const tcp4 = V2.tcp4;
  const cases: [string, Uint8Array][] = [
    ["HTTP request", text("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
    ["TLS hello", fromHex("160301020001")],
    ["v1 port 99999", text("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n")],
    ["v1 address .256", text("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n")],
    ["v1 double space", text("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n")],
    ["v1 LF only", text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")],
    ["v1 TCP6 with IPv4", text("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n")],
    ["v1 lowercase", text("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n")],
    ["v1 leading zero port", text("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n")],
    ["v1 endless", text("PROXY UNKNOWN " + "x".repeat(200))],
    ["v2 version 3", fromHex(S + "3111000c" + "7f0000017f000001" + "00500050")],
    ["v2 command 0xF", fromHex(S + "2f11000c" + "7f0000017f000001" + "00500050")],
    ["v2 family 0x41", fromHex(S + "2141000c" + "7f0000017f000001" + "00500050")],
    ["v2 length below the block", fromHex(S + "21110004" + "7f000001")],
    [
      "v2 TLV overruns",
      fromHex(S + "21110010" + "7f0000017f000001" + "00500050" + "020009" + "41"),
    ],
    ["v2 bad CRC32c", flip(V2.aws1, 31)],
    ["v2 length 65535", fromHex(S + "2111ffff")],
    [
      "v2 length one over --max-header",
      fromHex(S + "2111" + (MAX_HEADER - 15).toString(16).padStart(4, "0")),
    ],
    [
      "v2 SSL TLV broken",
      fromHex(S + "21110013" + "7f0000017f000001" + "00500050" + "200004" + "01000000"),
    ],
    ["random bytes", noise(7, 64)],
    ["mutated v2 (byte 13)", flip(tcp4, 13)],
  ];
  return cases.map(([name, bytes]) => ({ name, bytes, code: refusalCode(bytes) }));
}

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const out = bytes.slice();
  out[at] = out[at]! ^ 0xff;
  return out;
}

interface Gateway extends Server {
  port: number;
  pid: number;
  metricsUrl: string;
}

async function gateway(args: string[]): Promise<Gateway> {
  const g = await start([
    "gateway",
    "--listen",
    "127.0.0.1:0",
    "--metrics",
    "127.0.0.1:0",
    // A connection left open by a failed test would hold SIGTERM for 30 s.
    "--drain-timeout",
    "2000",
    ...args,
  ]);
  return Object.assign(g, {
    port: Number(String(g.ready.listen).split(":").pop()),
    pid: g.child.pid!,
    metricsUrl: String((await g.waitLog((l) => l.msg === "metrics")).url),
  });
}

/** The refused counts once they stop moving and match `expected` (or the last seen). */
async function refusedSettled(
  g: Gateway,
  before: Record<string, number>,
  expected: Record<string, number>,
): Promise<Record<string, number>> {
  let got: Record<string, number> = {};
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    got = delta(refusedByCode(await metrics(g.metricsUrl)), before);
    if (JSON.stringify(sorted(got)) === JSON.stringify(sorted(expected))) break;
    await sleep(50);
  }
  return got;
}

const sorted = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).sort());

describe(`hostile clients: the gateway CLI on ${runtime}`, () => {
  let up: Upstream;
  let g: Gateway;
  let baseline = { fds: 0, rss: 0 };
  let baselineKinds: string[] = [];

  before(async () => {
    up = await addressUpstream();
    g = await gateway(["--upstream", up.target, "--timeout", String(SIZES.timeoutMs)]);
    for (let i = 0; i < 3; i++) {
      const r = await ask(g.port, v1From("203.0.113.9", 1000 + i));
      assert.equal(r.answer, `203.0.113.9:${1000 + i}`);
    }
    await sleep(200);
    baseline = { fds: fds(g.pid), rss: rss(g.pid) };
    baselineKinds = fdKinds(g.pid);
    console.log(`gateway on ${runtime}: baseline ${baseline.fds} fds, ${mib(baseline.rss)} RSS`);
  }, LONG);

  after(async () => {
    if (g !== undefined) await stop(g);
    await up?.close();
  }, LONG);

  it(
    "slowloris: held connections are cut at --timeout while others are served promptly",
    LONG,
    async () => {
      const before = refusedByCode(await metrics(g.metricsUrl));
      const header = text(v1From("192.168.1.1", 1234));
      const slow = await pool(Array.from({ length: SIZES.slowloris }), 100, () => open(g.port));
      let stopped = false;
      const trickles = slow.map(async (c) => {
        for (let i = 0; i < header.length && !stopped && !c.socket.destroyed; i++) {
          c.socket.write(header.subarray(i, i + 1));
          await sleep(SIZES.slowlorisGapMs);
        }
      });
      try {
        const latencies: number[] = [];
        for (let i = 0; i < SIZES.goodDuringSlowloris; i++) {
          const r = await ask(g.port, v1From(`198.51.100.${i + 1}`, 40000 + i));
          assert.equal(r.answer, `198.51.100.${i + 1}:${40000 + i}`);
          latencies.push(r.ms);
        }
        const stillHeld = slow.filter((c) => c.closedAfter === undefined).length;
        console.log(
          `  ${runtime}: ${SIZES.slowloris} slowloris held; good requests answered in ` +
            `${latencies.join(", ")} ms; ${stillHeld} still held after them`,
        );
        assert.equal(stillHeld, SIZES.slowloris, "the good requests came while all were held");
        for (const ms of latencies) assert.ok(ms < SIZES.goodMaxMs, `answered in ${ms} ms`);
        await within(
          Promise.all(slow.map((c) => c.closed)),
          SIZES.timeoutMs * 1.125 + 5000,
          "every slowloris connection cut",
        );
      } finally {
        stopped = true;
        for (const c of slow) c.socket.destroy();
        await Promise.all(trickles);
      }
      const after = slow.map((c) => c.closedAfter!);
      console.log(
        `  ${runtime}: slowloris cut after ${Math.min(...after)}-${Math.max(...after)} ms`,
      );
      for (const c of slow) {
        assert.ok(c.closedAfter! >= SIZES.timeoutMs - 100, `cut after ${c.closedAfter} ms`);
        assert.equal(c.received(), "", "nothing relayed");
      }
      assert.deepEqual(await refusedSettled(g, before, { TIMEOUT: SIZES.slowloris }), {
        TIMEOUT: SIZES.slowloris,
      });
    },
  );

  it(
    "a flood of malformed headers: each refused at once, counted by its code in --metrics",
    LONG,
    async () => {
      const cases = malformed();
      const expected: Record<string, number> = {};
      for (const c of cases) expected[c.code] = (expected[c.code] ?? 0) + SIZES.floodRepeat;
      const flood = cases.flatMap((c) => Array.from({ length: SIZES.floodRepeat }, () => c));
      const before = refusedByCode(await metrics(g.metricsUrl));
      const accepted = up.accepted;
      const t0 = Date.now();
      const results = await pool(flood, SIZES.floodConcurrency, async (c) => {
        const client = await open(g.port);
        client.socket.write(c.bytes); // and hold it open: the gateway must close it
        await within(client.closed, SIZES.timeoutMs * 2 + 3000, c.name);
        return { name: c.name, ms: client.closedAfter!, got: client.received() };
      });
      console.log(
        `  ${runtime}: ${flood.length} malformed connections (${cases.length} cases) in ` +
          `${Date.now() - t0} ms`,
      );
      for (const r of results) {
        assert.equal(r.got, "", `${r.name}: nothing relayed`);
        assert.ok(
          r.ms < SIZES.timeoutMs,
          `${r.name}: closed after ${r.ms} ms, not refused at once`,
        );
      }
      assert.equal(up.accepted, accepted, "none reached the upstream");
      assert.deepEqual(sorted(await refusedSettled(g, before, expected)), sorted(expected));
    },
  );

  it(
    "resets mid-header and right after connecting: reported CONNECTION_CLOSED, nothing kept",
    LONG,
    async () => {
      const before = refusedByCode(await metrics(g.metricsUrl));
      const partial = text("PROXY TCP4 192.168.1.1 ");
      await pool(Array.from({ length: SIZES.resetsMidHeader }), 50, async () => {
        const c = await open(g.port);
        c.socket.write(partial);
        await sleep(20);
        c.socket.resetAndDestroy();
        await c.closed;
      });
      await pool(Array.from({ length: SIZES.resetsAtOnce }), 50, async () => {
        const c = await open(g.port);
        c.socket.resetAndDestroy();
        await c.closed;
      });
      // Those reset mid-header were read from: each is a CONNECTION_CLOSED. Those reset before
      // any byte may fail in accept() itself (no peer), so count at most one each.
      const got = await refusedSettled(g, before, {
        CONNECTION_CLOSED: SIZES.resetsMidHeader + SIZES.resetsAtOnce,
      });
      console.log(`  ${runtime}: after resets, refused ${JSON.stringify(got)}`);
      assert.deepEqual(Object.keys(got), ["CONNECTION_CLOSED"]);
      assert.ok(got.CONNECTION_CLOSED! >= SIZES.resetsMidHeader);
      assert.ok(got.CONNECTION_CLOSED! <= SIZES.resetsMidHeader + SIZES.resetsAtOnce);
      const r = await ask(g.port, v1From("203.0.113.10", 10));
      assert.equal(r.answer, "203.0.113.10:10");
    },
  );

  it(
    "an oversize v2 length is refused on its 16th byte, without waiting for the body",
    LONG,
    async () => {
      for (const len of [0xffff, MAX_HEADER - 15]) {
        const before = refusedByCode(await metrics(g.metricsUrl));
        const c = await open(g.port);
        c.socket.write(fromHex(S + "2111" + len.toString(16).padStart(4, "0")));
        await within(c.closed, SIZES.timeoutMs * 2, "the oversize header refused");
        assert.ok(c.closedAfter! < SIZES.timeoutMs / 2, `refused after ${c.closedAfter} ms`);
        assert.deepEqual(await refusedSettled(g, before, { HEADER_TOO_LONG: 1 }), {
          HEADER_TOO_LONG: 1,
        });
      }
      // One byte under the cap: a valid beginning, waited for (and cut at the timeout).
      const c = await open(g.port);
      c.socket.write(fromHex(S + "2111" + (MAX_HEADER - 16).toString(16).padStart(4, "0")));
      await sleep(SIZES.timeoutMs / 2);
      assert.equal(c.closedAfter, undefined, "a header within the cap is waited for");
      c.socket.destroy();
      await c.closed;
    },
  );

  it("an endless v1 line is refused by byte 107", LONG, async () => {
    // In one write of 64 KiB.
    const before = refusedByCode(await metrics(g.metricsUrl));
    const big = await open(g.port);
    big.socket.write(text("PROXY UNKNOWN " + "x".repeat(64 * 1024)));
    await within(big.closed, SIZES.timeoutMs * 2, "the endless line refused");
    assert.ok(big.closedAfter! < SIZES.timeoutMs / 2, `refused after ${big.closedAfter} ms`);
    // Trickled 8 bytes every 20 ms: closed long before 256 bytes went out.
    const trickle = await open(g.port);
    const line = text("PROXY UNKNOWN " + "y".repeat(4096));
    let written = 0;
    while (trickle.closedAfter === undefined && written < line.length) {
      trickle.socket.write(line.subarray(written, written + 8));
      written += 8;
      await sleep(20);
    }
    await within(trickle.closed, SIZES.timeoutMs * 2, "the trickled line refused");
    console.log(`  ${runtime}: endless v1 line trickled: closed after ${written} bytes written`);
    assert.ok(written < 256, `the gateway read ${written} bytes of an endless line`);
    assert.deepEqual(await refusedSettled(g, before, { V1_TOO_LONG: 2 }), { V1_TOO_LONG: 2 });
    const lines = g.logs.filter((l) => l.msg === "refused" && l.code === "V1_TOO_LONG");
    assert.ok(lines.length >= 2);
    for (const l of lines) assert.ok(Number(l.offset) <= 107, `offset ${l.offset}`);
  });

  it(
    "afterwards: no connection open, file descriptors back near baseline, still serving",
    LONG,
    async () => {
      await until(
        async () => (await metrics(g.metricsUrl)).get("proxy_protocol_connections_open") === 0,
        5000,
        "connections_open back to 0",
      );
      let now = 0;
      await until(
        () => (now = fds(g.pid)) <= baseline.fds + SIZES.fdSlack,
        5000,
        () => `fds ${now}, baseline ${baseline.fds}`,
      );
      console.log(
        `  ${runtime}: after it all ${fds(g.pid)} fds (baseline ${baseline.fds}; ` +
          `${JSON.stringify(kindsDelta(fdKinds(g.pid), baselineKinds))}), RSS ` +
          `${mib(rss(g.pid))} (baseline ${mib(baseline.rss)})`,
      );
      const r = await ask(g.port, v1From("203.0.113.11", 11));
      assert.equal(r.answer, "203.0.113.11:11");
    },
  );
});

describe(`untrusted peers never set the address (gateway CLI on ${runtime}, --trust 127.0.0.2/32)`, () => {
  const policies = ["require", "optional", "ignore", "reject", "skip"] as const;
  let up: Upstream;
  const gateways = new Map<string, Gateway>();
  before(async () => {
    up = await addressUpstream();
    await Promise.all(policies.map(async (p) => {
      gateways.set(
        p,
        await gateway([
          "--upstream",
          up.target,
          "--trust",
          "127.0.0.2/32",
          "--accept",
          p,
          "--timeout",
          String(SIZES.timeoutMs),
        ]),
      );
    }));
  }, LONG);
  after(async () => {
    await Promise.all([...gateways.values()].map((g) => stop(g)));
    await up?.close();
  }, LONG);

  const spoofV1 = v1From("6.6.6.6", 6666);
  const spoofV2 = encodeHeader({
    version: 2,
    command: "PROXY",
    protocol: "TCP4",
    source: { address: "6.6.6.6", port: 6666 },
    destination: { address: "10.0.0.5", port: 443 },
  });

  for (const policy of policies) {
    it(`--accept ${policy}`, LONG, async () => {
      const g = gateways.get(policy)!;
      const before = refusedByCode(await metrics(g.metricsUrl));
      // From 127.0.0.1 (untrusted): a v1 spoof, a v2 spoof, no header at all.
      const untrusted = [
        await ask(g.port, spoofV1 + "hello"),
        await ask(g.port, new Uint8Array([...spoofV2, ...text("hello")])),
        await ask(g.port, "hello"),
      ];
      for (const r of untrusted) {
        assert.ok(
          r.answer === "" || r.answer.startsWith("127.0.0.1:"),
          `the upstream was told ${JSON.stringify(r.answer)}`,
        );
      }
      assert.ok(!up.conns.some((c) => c.seen.startsWith("6.6.6.6")), "a spoof got through");
      // The CLI has no --untrusted flag: untrusted peers are denied under every policy.
      assert.deepEqual(
        untrusted.map((r) => r.answer),
        ["", "", ""],
      );
      assert.deepEqual(await refusedSettled(g, before, { UNTRUSTED_SOURCE: 3 }), {
        UNTRUSTED_SOURCE: 3,
      });
      // From 127.0.0.2 (trusted): the header counts by the policy.
      const trusted = await ask(g.port, v1From("203.0.113.7", 51234) + "hello", {
        localAddress: "127.0.0.2",
      });
      if (policy === "require" || policy === "optional") {
        assert.equal(trusted.answer, "203.0.113.7:51234");
      } else if (policy === "reject") {
        assert.equal(trusted.answer, "");
      } else {
        assert.match(trusted.answer, /^127\.0\.0\.2:\d+$/);
      }
    });
  }
});

/** What `now` has more or less of than `before`, by kind. */
function kindsDelta(now: string[], before: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of now) out[k] = (out[k] ?? 0) + 1;
  for (const k of before) out[k] = (out[k] ?? 0) - 1;
  return Object.fromEntries(Object.entries(out).filter(([, n]) => n !== 0));
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
