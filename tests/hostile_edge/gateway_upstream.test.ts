// Hostile upstreams behind the gateway, run as the CLI on this runtime: an upstream that
// accepts and resets at once, one that refuses (a closed port), one that never reads while
// a client pushes 64 MiB at it. Each gateway has the hostile upstream first and a good one
// second (round-robin): the connections that reach the good one are served, the gateway's
// RSS stays within a bound while the push is stalled, and afterwards its file descriptors
// are back near where they started. Sizes are printed at the start.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Server, start, stop } from "../cli/helpers.ts";
import {
  addressUpstream,
  ask,
  closedPort,
  fdKinds,
  fds,
  hostileUpstream,
  metrics,
  MiB,
  open,
  pool,
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
  /** Clients through the resetting and the refusing upstream's gateways, and at once. */
  clients: 100,
  concurrency: 50,
  /** Rounds of `clients`, all at once, through a gateway whose one upstream resets. */
  resetRounds: 20,
  /** What the client tries to push into the upstream that never reads. */
  push: 64 * MiB,
  pushChunk: MiB,
  /** The push counts as stalled after this long without `drain`. */
  stallMs: 1500,
  /** The most the gateway's RSS may grow while the push is stalled. */
  rssGrowthBound: 32 * MiB,
  /** Good requests made while the push is stalled, and how fast each must be answered. */
  goodDuringPush: 5,
  goodMaxMs: 1000,
  /** File descriptors the child may keep above its baseline at the end. */
  fdSlack: 2,
};
console.log(`hostile upstreams on ${runtime}: ${JSON.stringify(SIZES)}`);

interface Gateway extends Server {
  port: number;
  pid: number;
  metricsUrl: string;
  baselineFds: number;
}

async function gateway(upstreams: string[], more: string[] = []): Promise<Gateway> {
  const g = await start([
    "gateway",
    "--listen",
    "127.0.0.1:0",
    "--metrics",
    "127.0.0.1:0",
    ...upstreams.flatMap((u) => ["--upstream", u]),
    // A connection left open would hold SIGTERM for 30 s.
    "--drain-timeout",
    "2000",
    ...more,
  ]);
  const metricsUrl = String((await g.waitLog((l) => l.msg === "metrics")).url);
  await sleep(100);
  return Object.assign(g, {
    port: Number(String(g.ready.listen).split(":").pop()),
    pid: g.child.pid!,
    metricsUrl,
    baselineFds: fds(g.child.pid!),
  });
}

/** Waits for no open connection, then for the descriptors to come back near baseline. */
async function settled(g: Gateway, after = "the clients left"): Promise<void> {
  let open: number | undefined;
  await until(
    async () => (open = (await metrics(g.metricsUrl)).get("proxy_protocol_connections_open")) === 0,
    5000,
    () =>
      `${after}, the gateway still counts ${open} connection(s) open, holding ` +
      `${fds(g.pid) - g.baselineFds} descriptor(s) over its baseline`,
  );
  await until(
    () => fds(g.pid) <= g.baselineFds + SIZES.fdSlack,
    5000,
    () => `fds ${fds(g.pid)} (${fdKinds(g.pid).join(" ")}), baseline ${g.baselineFds}`,
  );
}

/** `n` clients, each from its own address, `limit` at once: their answers, in order. */
function clients(port: number, n: number, limit: number, from: string): Promise<string[]> {
  return pool(Array.from({ length: n }), limit, async (_, i) => {
    const r = await ask(port, v1From(from, 10_000 + i) + "hello", { ms: 10_000 });
    return r.answer;
  });
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

describe(`hostile upstreams: the gateway CLI on ${runtime}`, () => {
  let good: Upstream, reset: Upstream, black: Upstream;
  let gReset: Gateway, gRefused: Gateway, gBlack: Gateway;
  let dead = 0;

  before(async () => {
    [good, reset, black, dead] = await Promise.all([
      addressUpstream(),
      hostileUpstream("reset"),
      hostileUpstream("blackhole"),
      closedPort(),
    ]);
    [gReset, gRefused, gBlack] = await Promise.all([
      gateway([reset.target, good.target]),
      gateway([`127.0.0.1:${dead}`, good.target], ["--connect-timeout", "2000"]),
      gateway([black.target, good.target]),
    ]);
  }, LONG);

  after(async () => {
    await Promise.all([gReset, gRefused, gBlack].filter((g) => g !== undefined).map(stop));
    await Promise.all([good, reset, black].filter((u) => u !== undefined).map((u) => u.close()));
  }, LONG);

  it(
    "an upstream that accepts and resets: its clients are closed, the others served",
    LONG,
    async () => {
      const before = good.conns.length;
      const answers = await clients(gReset.port, SIZES.clients, SIZES.concurrency, "198.51.100.1");
      const served = answers.filter((a, i) => a === `198.51.100.1:${10_000 + i}`).length;
      const closed = answers.filter((a) => a === "").length;
      const failures = (await metrics(gReset.metricsUrl)).get(
        `proxy_protocol_upstream_connect_failures_total{upstream="${reset.target}"}`,
      ) ?? 0;
      console.log(
        `  ${runtime}: reset upstream: ${served} served, ${closed} closed; ${failures} resets ` +
          `came before the connect completed (failed over)`,
      );
      assert.equal(served + closed, SIZES.clients, `unexpected answers: ${answers.join(" ")}`);
      // Round-robin: half start at the good one; of the other half, those reset before the
      // connect completed fail over to it, the rest are closed.
      assert.equal(served, SIZES.clients / 2 + failures);
      assert.equal(good.conns.length - before, served);
      await settled(gReset);
      const r = await ask(gReset.port, v1From("203.0.113.20", 20));
      assert.ok(r.answer === "203.0.113.20:20" || r.answer === "");
    },
  );

  it(
    "an upstream that resets every connection at once: the gateway lives on",
    LONG,
    async () => {
      // The reset can fail the header's write just after the connect (Node reports it on a
      // nextTick): once, that ended the whole gateway process. Only the resetting upstream
      // here, every client at once, round after round.
      const g = await gateway([reset.target]);
      try {
        for (let round = 0; round < SIZES.resetRounds; round++) {
          await clients(g.port, SIZES.clients, SIZES.clients, "198.51.100.2");
          assert.equal(g.child.exitCode, null, `the gateway exited in round ${round}`);
        }
        await settled(g);
      } finally {
        await stop(g);
      }
    },
  );

  it(
    "an upstream that refuses: every client fails over to the next one, failures counted",
    LONG,
    async () => {
      const answers = await clients(
        gRefused.port,
        SIZES.clients,
        SIZES.concurrency,
        "198.51.100.2",
      );
      answers.forEach((a, i) => assert.equal(a, `198.51.100.2:${10_000 + i}`));
      const m = await metrics(gRefused.metricsUrl);
      assert.equal(
        m.get(`proxy_protocol_upstream_connect_failures_total{upstream="127.0.0.1:${dead}"}`),
        SIZES.clients / 2,
      );
      await settled(gRefused);
    },
  );

  it(
    "an upstream that never reads: the push stalls, RSS stays bounded, others are served",
    LONG,
    async () => {
      const baseline = rss(gBlack.pid);
      let peak = baseline;
      const sampler = setInterval(() => peak = Math.max(peak, rss(gBlack.pid)), 50);
      // The first connection of this gateway goes to the first upstream: the black hole.
      const pusher = await open(gBlack.port);
      let pushed = 0;
      try {
        pusher.socket.write(text(v1From("198.51.100.3", 3333)));
        const chunk = new Uint8Array(SIZES.pushChunk).fill(0x61);
        const t0 = Date.now();
        while (pushed < SIZES.push && pusher.closedAfter === undefined) {
          pushed += chunk.length;
          if (!pusher.socket.write(chunk)) {
            const drained = await new Promise<boolean>((resolve) => {
              const timer = setTimeout(() => resolve(false), SIZES.stallMs);
              pusher.socket.once("drain", () => {
                clearTimeout(timer);
                resolve(true);
              });
            });
            if (!drained) break;
          }
        }
        const buffered = pusher.socket.writableLength;
        console.log(
          `  ${runtime}: never-reading upstream: the client got ${mib(pushed - buffered)} into ` +
            `the socket (of ${mib(SIZES.push)}) in ${Date.now() - t0} ms before it stalled`,
        );
        assert.ok(pushed < SIZES.push, "the push never stalled: nothing held it back");
        assert.equal(pusher.closedAfter, undefined, "the pushing client was cut");
        // Stalled: the gateway serves others meanwhile. Every other connection goes to the
        // black hole: a short one (header, then close) takes its turn.
        const latencies: number[] = [];
        for (let i = 0; i < SIZES.goodDuringPush; i++) {
          const r = await ask(gBlack.port, v1From("198.51.100.4", 4000 + i));
          assert.equal(r.answer, `198.51.100.4:${4000 + i}`);
          latencies.push(r.ms);
          const turn = await open(gBlack.port);
          turn.socket.end(v1From("198.51.100.5", 5000 + i));
          await sleep(50);
          turn.socket.destroy();
        }
        console.log(`  ${runtime}: good requests meanwhile: ${latencies.join(", ")} ms`);
        for (const ms of latencies) assert.ok(ms < SIZES.goodMaxMs, `answered in ${ms} ms`);
        await sleep(300);
        peak = Math.max(peak, rss(gBlack.pid));
      } finally {
        clearInterval(sampler);
        pusher.socket.destroy();
      }
      console.log(
        `  ${runtime}: gateway RSS ${mib(baseline)} before, ${mib(peak)} at peak ` +
          `(+${mib(peak - baseline)}, bound +${mib(SIZES.rssGrowthBound)})`,
      );
      assert.ok(
        peak - baseline < SIZES.rssGrowthBound,
        `RSS grew by ${mib(peak - baseline)} behind a never-reading upstream`,
      );
      // The black hole lets go: the gateway closes its side of each connection.
      await black.close();
      await settled(gBlack, "both the stalled client and the never-reading upstream are gone, yet");
      const r = await within(
        ask(gBlack.port, v1From("203.0.113.21", 21)),
        5000,
        "served after the black hole left",
      );
      assert.equal(r.answer, "203.0.113.21:21", "failed over from the closed black hole");
      console.log(`  ${runtime}: after it: RSS ${mib(rss(gBlack.pid))}, ${fds(gBlack.pid)} fds`);
    },
  );
});
