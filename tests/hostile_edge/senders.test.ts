// Hostile inputs to the sending side, on every runtime: headerFor with garbage connections
// and options, encodeHeader with headers it cannot write (addresses, ports, TLVs over 65 535
// bytes, UNIX paths over 108 bytes), a property over arbitrary headers (a ProxyProtocolError
// with a code, or bytes that decode back whole: never a malformed header), and the node:net
// connect() against servers that reset at once, never read, or are not there (Node, and
// Deno's and Bun's node:net). The runtime's own connect(): deno_connect.test.ts,
// bun_connect.test.ts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import process from "node:process";
import fc from "fast-check";
import {
  decodeHeader,
  encodeHeader,
  encodeHeaderInto,
  type ProxyHeaderInit,
  ProxyProtocolError,
  type Tlv,
} from "@proxy-protocol/edge";
import { connect, headerFor } from "@proxy-protocol/edge/node";
import type net from "node:net";
import { closedPort, fds, hostileUpstream, MiB, runtime, sleep, until, within } from "./helpers.ts";
import { hostileHeaders, isInvalidHeader, malformedTlvHeaders } from "./sender_cases.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? "1000");
const SIZES = { propertyRuns: RUNS, pushChunk: MiB, pushMax: 64 * MiB, stallMs: 500 };
console.log(`hostile senders (node:net connect on ${runtime}): ${JSON.stringify(SIZES)}`);

const LONG = { timeout: 60_000 };

const CONN = {
  remoteAddress: "203.0.113.7",
  remotePort: 51234,
  localAddress: "10.0.0.5",
  localPort: 443,
};

describe(`headerFor with hostile connections (${runtime})`, () => {
  // Documented: an end that is not an IP endpoint makes the header PROXY UNKNOWN (the
  // receiver keeps its socket's addresses); never an address taken from the garbage.
  const garbage: [string, Parameters<typeof headerFor>[0]][] = [
    ["CRLF and a second header in the address", {
      ...CONN,
      remoteAddress: "1.2.3.4\r\nPROXY TCP4 6.6.6.6 6.6.6.6 1 1",
    }],
    ["spaces in the address", { ...CONN, remoteAddress: "1.2.3.4 6.6.6.6" }],
    ["an octet over 255", { ...CONN, remoteAddress: "999.1.1.1" }],
    ["leading zeros", { ...CONN, remoteAddress: "001.002.003.004" }],
    ["an empty address", { ...CONN, remoteAddress: "" }],
    ["a host name", { ...CONN, remoteAddress: "localhost" }],
    ["IPv6 with two ::", { ...CONN, remoteAddress: "1::2::3" }],
    ["IPv6 with 9 groups", { ...CONN, remoteAddress: "1:2:3:4:5:6:7:8:9" }],
    ["a zone and no address", { ...CONN, remoteAddress: "%eth0" }],
    ["a number for an address", { ...CONN, remoteAddress: 1234 as unknown as string }],
    ["port -1", { ...CONN, remotePort: -1 }],
    ["port 65536", { ...CONN, remotePort: 65536 }],
    ["port 1.5", { ...CONN, remotePort: 1.5 }],
    ["port NaN", { ...CONN, remotePort: NaN }],
    ["port as text", { ...CONN, remotePort: "80" as unknown as number }],
    ["no local end", { remoteAddress: "203.0.113.7", remotePort: 1 }],
    ["a Deno address with CRLF", {
      remoteAddr: { transport: "tcp", hostname: "1.2.3.4\r\n", port: 1 },
      localAddr: { transport: "tcp", hostname: "10.0.0.5", port: 2 },
    }],
    ["a Deno UNIX address", {
      remoteAddr: { transport: "unix" },
      localAddr: { transport: "unix" },
    }],
  ];
  for (const [name, from] of garbage) {
    it(name, () => {
      const header = headerFor(from);
      assert.equal(header.protocol, "UNKNOWN");
      assert.equal(header.source, undefined);
      for (const version of [1, 2] as const) {
        const bytes = encodeHeader(headerFor(from, { version }));
        const decoded = decodeHeader(bytes)!;
        assert.equal(decoded.length, bytes.length, "one whole header, nothing after it");
        assert.equal(decoded.header.source, null);
        assert.ok(!new TextDecoder().decode(bytes).includes("6.6.6.6"));
      }
    });
  }

  it("bad options: ProxyProtocolError INVALID_HEADER", () => {
    const bad: Parameters<typeof headerFor>[1][] = [
      { version: 3 as 2 },
      { version: 0 as 2 },
      { command: "BOGUS" as "PROXY" },
      { version: 1, tlvs: [{ type: 0xe0, value: new Uint8Array(1) }] },
    ];
    for (const options of bad) {
      assert.throws(() => headerFor(CONN, options), isInvalidHeader, JSON.stringify(options));
    }
  });

  it("TLVs over 65 535 bytes in all, passed on and added: refused when encoded", () => {
    const big = new Uint8Array(40_000);
    const from = {
      ...CONN,
      proxyHeader: decodeHeader(encodeHeader({
        version: 2,
        command: "PROXY",
        protocol: "TCP4",
        source: { address: "203.0.113.7", port: 51234 },
        destination: { address: "10.0.0.5", port: 443 },
        tlvs: [{ type: 0xe0, value: big }],
      }))!.header,
    };
    const header = headerFor(from, { passTlvs: [0xe0], tlvs: [{ type: 0xe1, value: big }] });
    assert.throws(() => encodeHeader(header), isInvalidHeader);
    // The largest that fits: 12 bytes of addresses, 3 of TLV head, the rest value.
    const fits = headerFor(CONN, { tlvs: [{ type: 0xe1, value: new Uint8Array(65535 - 15) }] });
    const bytes = encodeHeader(fits);
    assert.equal(decodeHeader(bytes)!.length, bytes.length);
    const over = headerFor(CONN, { tlvs: [{ type: 0xe1, value: new Uint8Array(65535 - 14) }] });
    assert.throws(() => encodeHeader(over), isInvalidHeader);
    // With a CRC32c asked for, 7 bytes more.
    assert.throws(() => encodeHeader(fits, { checksum: true }), isInvalidHeader);
  });
});

describe(`encodeHeader refuses what it cannot write (${runtime})`, () => {
  for (const [name, header] of hostileHeaders()) {
    it(name, () => {
      assert.throws(() => encodeHeader(header), isInvalidHeader);
      // Into a caller's buffer: nothing written.
      const target = new Uint8Array(70_000).fill(0xaa);
      assert.throws(() => encodeHeaderInto(header, target), isInvalidHeader);
      assert.ok(target.every((b) => b === 0xaa), "bytes written for a refused header");
    });
  }
});

describe(`encodeHeader never writes a TLV its own decoder refuses (${runtime})`, () => {
  for (const [name, header] of malformedTlvHeaders()) {
    it(name, () => {
      let bytes: Uint8Array | undefined;
      try {
        bytes = encodeHeader(header);
      } catch (error) {
        assert.ok(isInvalidHeader(error), String(error));
        return;
      }
      // Written: then it must decode.
      assert.doesNotThrow(() => decodeHeader(bytes), "written, then refused by decodeHeader");
    });
  }
});

describe(`encodeHeader over arbitrary headers (${runtime}, ${RUNS} runs)`, () => {
  const anyText = fc.oneof(
    fc.string({ maxLength: 60 }),
    fc.constantFrom(
      "1.2.3.4",
      "::1",
      "1.2.3.4\r\n",
      "1.2.3.4 5.6.7.8",
      "999.0.0.1",
      "::ffff:1.2.3.4",
    ),
  );
  const anyPort = fc.oneof(
    fc.integer({ min: -2, max: 65537 }),
    fc.constantFrom(1.5, NaN, Infinity),
  );
  const anyAddress = fc.oneof(
    fc.record({ address: anyText, port: anyPort }),
    fc.record({ path: fc.string({ maxLength: 130 }) }),
    fc.constant(null),
  );
  // Half of them of the types the spec gives a structure or a bound (ALPN, AUTHORITY,
  // CRC32C, NOOP, UNIQUE_ID, SSL, NETNS, and cloud vendors'), sized around the bounds.
  const anyTlv: fc.Arbitrary<Tlv> = fc.record({
    type: fc.oneof(
      fc.nat(255),
      fc.integer({ min: -1, max: 300 }),
      fc.constantFrom(0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30, 0xe0, 0xea, 0xee),
    ),
    value: fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      fc.integer({ min: 120, max: 136 }).map((n) => new Uint8Array(n)),
      fc.integer({ min: 0, max: 70_000 }).map((n) => new Uint8Array(n)),
    ),
  });
  const anyHeader = fc.record({
    version: fc.constantFrom(1, 2, 3),
    command: fc.constantFrom("PROXY", "LOCAL", "proxy"),
    protocol: fc.constantFrom(
      "TCP4",
      "TCP6",
      "UDP4",
      "UDP6",
      "UNIX_STREAM",
      "UNIX_DGRAM",
      "UNKNOWN",
      "SCTP",
    ),
    source: anyAddress,
    destination: anyAddress,
    tlvs: fc.array(anyTlv, { maxLength: 3 }),
  }, { requiredKeys: ["version", "command", "protocol"] }) as unknown as fc.Arbitrary<
    ProxyHeaderInit
  >;

  it("throws INVALID_HEADER, or writes one header that decodes back whole", () => {
    fc.assert(
      fc.property(anyHeader, fc.boolean(), (header, checksum) => {
        let bytes: Uint8Array;
        try {
          bytes = encodeHeader(header, { checksum });
        } catch (error) {
          assert.ok(isInvalidHeader(error), `threw ${String(error)}`);
          return;
        }
        // A CRC32C TLV given without `checksum: true` is written as given (documented).
        const tlvs = header.tlvs ?? [];
        const rawCrc = !checksum && tlvs.some((t) => t.type === 0x03);
        // Known, and failed on by name above: UNIQUE_ID over 128 bytes, malformed SSL.
        const known = tlvs.some((t) =>
          (t.type === 0x05 && t.value.length > 128) || t.type === 0x20
        );
        let decoded;
        try {
          decoded = decodeHeader(bytes);
        } catch (error) {
          const code = (error as ProxyProtocolError).code;
          if (rawCrc && code === "CHECKSUM_MISMATCH") return;
          if (known && code === "INVALID_TLV") return;
          throw error;
        }
        assert.ok(decoded !== null, "a header cut short");
        assert.equal(decoded.length, bytes.length, "bytes past the header");
        if (header.command === "PROXY" && decoded.header.source !== null) {
          const s = decoded.header.source;
          const given = header.source as { port?: number } | undefined;
          if ("port" in s) assert.equal(s.port, given?.port);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

/** The Timeout handles this process holds (Node and Deno; Bun reports none). */
function timers(): number {
  const info = (process as { getActiveResourcesInfo?: () => string[] }).getActiveResourcesInfo;
  return info?.call(process).filter((r) => r === "Timeout").length ?? 0;
}

function closedOf(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.closed) resolve();
    else socket.once("close", () => resolve());
  });
}

describe(`node:net connect() against hostile servers (${runtime})`, () => {
  const HEADER: ProxyHeaderInit = {
    version: 2,
    command: "PROXY",
    protocol: "TCP4",
    source: { address: "203.0.113.7", port: 51234 },
    destination: { address: "10.0.0.5", port: 443 },
  };

  it(
    "a server that resets at once: the runtime's socket error, closed, nothing left",
    LONG,
    async () => {
      const server = await hostileUpstream("reset");
      const before = { fds: fds(), timers: timers() };
      try {
        const errors: string[] = [];
        for (let i = 0; i < 20; i++) {
          const socket = connect({ host: "127.0.0.1", port: server.port, header: HEADER });
          socket.on("error", (e: Error & { code?: string }) => {
            assert.ok(!(e instanceof ProxyProtocolError), "not the header's fault");
            errors.push(e.code ?? e.message);
          });
          socket.write("hello");
          await within(closedOf(socket), 5000, "the reset socket closed");
        }
        console.log(`  ${runtime}: reset at once: ${JSON.stringify(tally(errors))}`);
        for (const code of errors) assert.ok(["ECONNRESET", "EPIPE"].includes(code), code);
      } finally {
        await server.close();
      }
      await until(() => fds() <= before.fds, 3000, () => `fds ${fds()}, before ${before.fds}`);
      assert.ok(timers() <= before.timers, "a timer left behind");
    },
  );

  it(
    "a server that never reads: backpressure shows (write() false), destroy releases all",
    LONG,
    async () => {
      const server = await hostileUpstream("blackhole");
      const before = { fds: fds(), timers: timers() };
      try {
        const socket = connect({ host: "127.0.0.1", port: server.port, header: HEADER });
        socket.on("error", () => {});
        await new Promise((resolve) => socket.once("connect", resolve));
        const chunk = new Uint8Array(SIZES.pushChunk);
        let pushed = 0;
        while (pushed < SIZES.pushMax) {
          pushed += chunk.length;
          if (!socket.write(chunk)) {
            const drained = await new Promise<boolean>((resolve) => {
              const timer = setTimeout(() => resolve(false), SIZES.stallMs);
              socket.once("drain", () => (clearTimeout(timer), resolve(true)));
            });
            if (!drained) break;
          }
        }
        console.log(
          `  ${runtime}: never-reading server: stalled after ${(pushed / MiB).toFixed(0)} MiB ` +
            `(${(socket.writableLength / MiB).toFixed(1)} MiB buffered in the socket)`,
        );
        assert.ok(pushed < SIZES.pushMax, "never stalled");
        assert.ok(socket.writableLength > 0);
        socket.destroy();
        await within(closedOf(socket), 3000, "closed");
      } finally {
        await server.close();
      }
      await until(() => fds() <= before.fds, 3000, () => `fds ${fds()}, before ${before.fds}`);
      await sleep(SIZES.stallMs);
      assert.ok(timers() <= before.timers, "a timer left behind");
    },
  );

  it("a closed port: ECONNREFUSED on the socket, nothing left", LONG, async () => {
    const port = await closedPort();
    const before = { fds: fds(), timers: timers() };
    const socket = connect({ host: "127.0.0.1", port, header: HEADER });
    const error = await new Promise<Error & { code?: string }>((resolve) =>
      socket.once("error", resolve)
    );
    assert.equal(error.code, "ECONNREFUSED");
    assert.ok(!(error instanceof ProxyProtocolError));
    await within(closedOf(socket), 3000, "closed");
    await until(() => fds() <= before.fds, 3000, () => `fds ${fds()}, before ${before.fds}`);
    assert.ok(timers() <= before.timers, "a timer left behind");
  });

  it("a header it cannot write: INVALID_HEADER thrown before any connection", async () => {
    const server = await hostileUpstream("blackhole");
    const before = fds();
    try {
      for (const [name, header] of hostileHeaders()) {
        assert.throws(
          () => connect({ host: "127.0.0.1", port: server.port, header }),
          isInvalidHeader,
          name,
        );
      }
      await sleep(100);
      assert.equal(server.accepted, 0, "a connection was made");
      assert.equal(fds(), before);
    } finally {
      await server.close();
    }
  });
});

function tally(items: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of items) out[k] = (out[k] ?? 0) + 1;
  return out;
}
