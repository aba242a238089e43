// The fault tests that measure a server process from outside, written once and run for
// each adapter: memory while `validate` runs, memory kept per idle connection, and accept
// failures for want of file descriptors. Each test file calls `faultSuite` for the
// adapters its runtime runs.
import { it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { connect as netConnect, type Socket } from "node:net";
import { decodeHeader, encodeHeader, encodeTlvs, type ProxyHeader } from "@proxy-protocol/edge";
import {
  type Adapter,
  Child,
  connect,
  fmtKiB,
  fmtMiB,
  KiB,
  MiB,
  runtime,
  sleep,
  stream,
} from "./helpers.ts";

/** Sizes, kept small enough for CI (2 busy cores) and printed at the start. */
export const SIZES = {
  /** Fault 1: how long `validate` takes, and how much the client tries to send. */
  validateMs: 500,
  streamTotal: 128 * MiB,
  /** Fault 1: the most the server's RSS may grow while `validate` runs. */
  validateGrowthBound: 64 * MiB,
  /** Fault 2: idle connections, and the payload each sends with its header. */
  idleConnections: 1000,
  idlePayload: 32 * KiB,
  /** Fault 2: the most a connection may keep beyond the plain listener's (heap + external). */
  perConnectionBound: 8 * KiB,
  /** Fault 3: the child's `ulimit -n`, the connections that exhaust it, how long. */
  nofile: 64,
  holdConnections: 200,
  holdMs: 1500,
  /**
   * Fault 3: CPU the child may use while out of descriptors (half a core; Deno spun a whole
   * one). On Bun no accept error reaches JavaScript: Bun.listen itself, with nothing of
   * this library, polls at 0.5-0.7 s a 1.8 s hold, and up to 1.2 s was seen under load, so
   * there the bound is what Bun does, not what this library does.
   */
  holdCpuBound: runtime === "bun" ? 1.5 : 0.75,
  /** Once while held; draining the backlog after the release refills the descriptors a few
   * times (200 connections, ~40 free descriptors), and each refill may start a burst. */
  acceptFailedBound: 8,
};

/**
 * Asserts that a connection's header is the AWS-style one with each TLV owning its bytes,
 * not a view into the chunk it came in.
 */
export function assertOwnedTlvs(header: ProxyHeader | null): void {
  const expected = decodeHeader(AWS_HEADER)!.header!;
  assert.ok(header !== null);
  assert.equal(header.tlvs.length, 2, "the VPC endpoint id and the CRC32c");
  assert.deepEqual(
    header.tlvs.map((t) => [t.type, [...t.value]]),
    expected.tlvs.map((t) => [t.type, [...t.value]]),
  );
  for (const tlv of header.tlvs) {
    assert.ok(
      tlv.value.buffer.byteLength <= AWS_HEADER.length,
      `TLV 0x${tlv.type.toString(16)} is a view into ${tlv.value.buffer.byteLength} bytes`,
    );
  }
}

/**
 * Registers the two one-write cases (with and without `validate`): the header and 32 KiB
 * in one write; the TLVs own their bytes and the payload arrives whole.
 */
export function ownershipCases(
  oneWrite: (validate: boolean) => Promise<{ header: ProxyHeader | null; payload: Buffer }>,
  payload: Uint8Array,
): void {
  for (const validate of [false, true]) {
    it(`TLV values own their bytes, not the first chunk's (${validate ? "with" : "no"} validate)`, async () => {
      const seen = await oneWrite(validate);
      assertOwnedTlvs(seen.header);
      assert.ok(Buffer.from(payload).equals(seen.payload), "the payload arrives whole");
    });
  }
}

/** An AWS-style v2 header: the VPC endpoint TLV (0xEA) and a CRC32c. */
export const AWS_HEADER: Uint8Array = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "203.0.113.7", port: 51234 },
  destination: { address: "10.0.0.5", port: 443 },
  tlvs: encodeTlvs({ awsVpceId: "vpce-08d2bf15fac5001c9" }),
}, { checksum: true });

export const V1_HEADER: Uint8Array = new TextEncoder().encode(
  "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n",
);

export function printSizes(file: string): void {
  console.log(
    `[faults] ${file} on ${runtime}: validate ${SIZES.validateMs} ms, stream ` +
      `${fmtMiB(SIZES.streamTotal)} (RSS growth bound ${fmtMiB(SIZES.validateGrowthBound)}); ` +
      `${SIZES.idleConnections} idle connections x (${AWS_HEADER.length} B header + ` +
      `${fmtKiB(SIZES.idlePayload)}), bound ${fmtKiB(SIZES.perConnectionBound)}/connection; ` +
      `ulimit -n ${SIZES.nofile}, ${SIZES.holdConnections} connections held ` +
      `${SIZES.holdMs} ms, CPU bound ${SIZES.holdCpuBound} s, ACCEPT_FAILED <= 1 while ` +
      `held and <= ${SIZES.acceptFailedBound} in all`,
  );
}

const LONG = { timeout: 60_000 };

/** Registers the three measured tests for `adapter`, run in a child of this runtime. */
export function faultSuite(adapter: "node" | "bun" | "deno"): void {
  const name = `${adapter} adapter on ${runtime}`;

  for (const lazy of [false, true]) {
    it(
      `${name}${
        lazy ? ", lazy" : ""
      }: memory stays bounded while an async validate runs, and every byte arrives`,
      LONG,
      async () => {
        const child = await Child.start(adapter, "stream", { validateMs: SIZES.validateMs, lazy });
        try {
          const sent = await stream(child.port, AWS_HEADER, SIZES.streamTotal);
          const done = await child.next("done", 30_000);
          const v = done.validation;
          const growth = v.rssPeak - v.rssStart;
          console.log(
            `[faults] ${name}${lazy ? ", lazy" : ""}: fault 1: sent ${
              fmtMiB(sent.sent)
            } in ${sent.ms} ms; RSS during ` +
              `validate ${fmtMiB(v.rssStart)} -> peak ${fmtMiB(v.rssPeak)} (+${fmtMiB(growth)}); ` +
              `first payload ${done.firstDataAfterValidate} ms after validate; received ` +
              `${fmtMiB(done.bytes)}, sha256 ${
                done.sha256 === sent.sha256 ? "matches" : "DIFFERS"
              }`,
          );
          assert.equal(v.runs, 1, "validate ran once");
          assert.ok(
            growth < SIZES.validateGrowthBound,
            `RSS grew ${fmtMiB(growth)} while validate ran (bound ${
              fmtMiB(SIZES.validateGrowthBound)
            })`,
          );
          assert.ok(
            done.firstDataAfterValidate === null || done.firstDataAfterValidate >= 0,
            "the application got payload before validate settled",
          );
          assert.equal(done.bytes, sent.sent, "the application got every byte");
          assert.equal(done.sha256, sent.sha256, "the application got the bytes in order");
        } finally {
          await child.stop();
        }
      },
    );
  }

  it(
    `${name}: an idle connection keeps no more than its header (RSS, ${SIZES.idleConnections} connections)`,
    LONG,
    async () => {
      const base = await retained(`plain:${adapter}`, false);
      const ours = await retained(adapter, true);
      const extra = ours.heap - base.heap;
      console.log(
        `[faults] ${name}: fault 2: per idle connection after GC: heap+external ` +
          `${fmtKiB(ours.heap)} vs ${fmtKiB(base.heap)} for the plain listener ` +
          `(+${fmtKiB(extra)}); RSS ${fmtKiB(ours.rss)} vs ${fmtKiB(base.rss)} ` +
          `(+${fmtKiB(ours.rss - base.rss)})`,
      );
      assert.ok(
        extra < SIZES.perConnectionBound,
        `each connection keeps ${fmtKiB(extra)} more than without the header (bound ${
          fmtKiB(SIZES.perConnectionBound)
        })`,
      );
    },
  );

  // Deno's node:net stops accepting for good after EMFILE, with no error to JavaScript, even
  // for a plain net.createServer without this library (Deno 2.9.5): nothing a library on
  // top of it can change; use the Deno adapter there (tests/faults/deno_listen.test.ts).
  if (adapter === "node" && runtime === "deno") return;
  it(
    `${name}: accept() out of file descriptors backs off, reports once and recovers`,
    LONG,
    async () => {
      // On Deno the child sets up signal handling first: see `presetSignals` in the fixture.
      const child = await Child.start(adapter, "greet", { presetSignals: true }, SIZES.nofile);
      const sockets: Socket[] = [];
      try {
        const fdsIdle = child.fds();
        let refused = 0;
        const connected = await Promise.allSettled(
          Array.from({ length: SIZES.holdConnections }, async () => {
            const socket = await connect(child.port);
            sockets.push(socket);
            socket.on("error", () => {});
            socket.on("close", () => refused++);
          }),
        );
        await sleep(300); // the child accepts until it runs out
        const fdsHeld = child.fds();
        const cpu0 = child.cpuSeconds();
        await sleep(SIZES.holdMs);
        const cpu = child.cpuSeconds() - cpu0;
        const closedByServer = refused;
        const held = await child.stats();
        const failedHeld = held.errors.codes.ACCEPT_FAILED ?? 0;
        for (const socket of sockets) socket.destroy();
        // A fresh client once descriptors are back: served within the longest backoff.
        const reply = await greet(child.port, 5000).catch((error: Error) => error.message);
        const stats = await child.stats();
        const failed = stats.errors.codes.ACCEPT_FAILED ?? 0;
        const t0 = stats.errors.acceptFailedAt[0] ?? 0;
        console.log(
          `[faults] ${name}: fault 3: fds ${fdsIdle} idle, ${fdsHeld} held (limit ` +
            `${SIZES.nofile}); ${connected.filter((c) => c.status === "fulfilled").length}/` +
            `${SIZES.holdConnections} clients connected, ${closedByServer} closed by the server ` +
            `while held; CPU ${
              cpu.toFixed(2)
            } s in ${SIZES.holdMs} ms; ACCEPT_FAILED ${failedHeld} ` +
            `while held, ${failed} in all, at +${
              JSON.stringify(stats.errors.acceptFailedAt.map((t: number) => t - t0))
            } ms; onError ` +
            `${JSON.stringify(stats.errors.codes)}; first reports ${
              JSON.stringify(stats.errors.samples.slice(0, 2))
            }; fresh client got ${JSON.stringify(reply)}`,
        );
        assert.ok(child.alive, "the server is alive");
        assert.ok(fdsHeld >= SIZES.nofile - 2, `the server ran out of descriptors (${fdsHeld})`);
        // Bun's own accept loop polls at EMFILE with no error reaching JavaScript (1.5 s of
        // CPU in a 1.5 s hold was seen in CI): no library code runs, so only the others are held
        // to the bound; Bun's figure is printed above.
        if (runtime !== "bun") {
          assert.ok(cpu < SIZES.holdCpuBound, `the server used ${cpu.toFixed(2)} s of CPU`);
        }
        assert.ok(failedHeld <= 1, `ACCEPT_FAILED reported ${failedHeld} times in one burst`);
        assert.ok(
          failed <= SIZES.acceptFailedBound,
          `ACCEPT_FAILED reported ${failed} times in all (bound ${SIZES.acceptFailedBound})`,
        );
        for (const code of Object.keys(stats.errors.codes)) {
          assert.ok(
            code === "ACCEPT_FAILED" || code === "CONNECTION_CLOSED",
            `unexpected onError code ${code}`,
          );
        }
        assert.equal(reply, "hello 203.0.113.7\n", "a fresh connection is served");
      } finally {
        for (const socket of sockets) socket.destroy();
        await child.stop();
      }
    },
  );
}

/** Per connection, after GC: heap + external, and RSS, of `n` idle connections. */
async function retained(adapter: Adapter, header: boolean): Promise<{ heap: number; rss: number }> {
  const n = SIZES.idleConnections;
  const child = await Child.start(adapter, "idle", { payload: SIZES.idlePayload });
  const sockets: Socket[] = [];
  try {
    const before = await child.stats();
    const payload = Buffer.alloc(SIZES.idlePayload, 0x61);
    const first = header ? Buffer.concat([AWS_HEADER, payload]) : payload;
    for (let i = 0; i < n; i += 100) {
      await Promise.all(Array.from({ length: Math.min(100, n - i) }, async () => {
        const socket = await connect(child.port);
        socket.on("error", () => {});
        socket.write(first); // one write: the header and the payload in the same chunk
        sockets.push(socket);
      }));
    }
    let after = await child.stats();
    for (const deadline = Date.now() + 20_000; after.drained < n && Date.now() < deadline;) {
      await sleep(100);
      after = await child.stats();
    }
    assert.equal(after.drained, n, "every connection's payload was read");
    assert.deepEqual(after.errors.codes, {}, "no connection was refused");
    const heap = (m: typeof before) => m.heapUsed + m.external;
    return { heap: (heap(after) - heap(before)) / n, rss: (after.rss - before.rss) / n };
  } finally {
    for (const socket of sockets) socket.destroy();
    await child.stop();
  }
}

/** Connects, sends a v1 header, and returns what the server says before it closes. */
function greet(port: number, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let reply = "";
    const socket = netConnect(port, "127.0.0.1");
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no greeting within ${ms} ms (got ${JSON.stringify(reply)})`));
    }, ms);
    socket.setEncoding("utf8");
    socket.on("data", (s: string) => reply += s);
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(reply);
    });
    socket.write(V1_HEADER);
  });
}
