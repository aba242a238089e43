// The behaviour every listener adapter shares, written once: tables of what clients send
// and what must come of it, and one runner that registers them with node:test's describe
// and it (or anything shaped like them). Each runtime supplies a small Driver that starts
// its adapter with an application that reports what it saw (see client.ts `report`).
// Runtime-neutral: no Deno or Bun globals; the client is node:net.
import assert from "node:assert/strict";
import {
  decodeHeader,
  decodeTlvs,
  encodeHeader,
  encodeTlvs,
  fromHex,
  type PeerInfo,
  type ProxyPolicy,
  ProxyProtocolError,
  type ProxyProtocolOptions,
  TlvType,
  type UntrustedPolicy,
} from "@proxy-protocol/edge";
import {
  b64,
  concat,
  delay,
  seen,
  sha256,
  talk,
  type TalkOptions,
  type Target,
  text,
  tlvsOf,
  until,
} from "./client.ts";

/** A running listener, as a driver starts it. */
export interface Listening {
  /** The port it got (it listens on port 0). */
  port: number;
  /** How many connections were handed to the application so far. */
  accepted(): number;
  /** Stops it; resolves once it and every connection it handed on are closed. */
  close(): Promise<void>;
}

/** How one runtime's adapter is started for the shared cases. */
export interface Driver {
  /**
   * Starts the adapter on `host`, port 0, with `options` as given (`onError` included).
   * Its application reads each connection until the client ends, then answers with
   * client.ts `report(...)` of its addresses, header and chunks, and closes.
   */
  start(options: ProxyProtocolOptions, host: string): Promise<Listening>;
  /** Whether the application can report the address family (Deno's conns have none). */
  families: boolean;
  /**
   * Whether the adapter notices a peer that leaves while an async `validate` runs. Deno
   * reports a close only to a read, and the Deno adapter does not read while `validate`
   * runs (that is what bounds its memory): there the connection is handed over once
   * `validate` settles, and the application sees the reset on its first read.
   */
  seesCloseWhileValidating: boolean;
}

/** A refused connection as onError saw it. */
export interface Refusal {
  error: ProxyProtocolError;
  peer: PeerInfo | undefined;
}

/** A listener started by the runner, recording onError's reports. */
export interface TestServer extends Target {
  refusals: Refusal[];
  accepted(): number;
  close(): Promise<void>;
}

/** node:test's describe and it, or functions shaped like them. */
export interface Registrar {
  describe(name: string, fn: () => void): unknown;
  it(name: string, fn: () => Promise<void>): unknown;
}

const HEADER = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n";
const BODY = "POST /x HTTP/1.0\r\n\r\n";
const S = "0d0a0d0a000d0a515549540a"; // the v2 signature

const V1 = text(HEADER);
const V1_TCP6 = text("PROXY TCP6 2001:db8::1 2001:db8::2 40000 8443\r\n");
const V2 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 61000 },
  destination: { address: "2001:db8::5", port: 443 },
  tlvs: encodeTlvs({ authority: "example.com", awsVpceId: "vpce-08d2bf15fac5001c9" }),
}, { checksum: true });
const V2_TCP4 = encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "198.51.100.9", port: 1234 },
  destination: { address: "10.1.2.3", port: 80 },
});
const PAYLOAD = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

/** The headers read off every connection, and what the application must see of each. */
const HEADERS = {
  "v1 TCP4": {
    bytes: V1,
    version: 1,
    remoteAddress: "203.0.113.7",
    remotePort: 51234,
    localAddress: "10.0.0.5",
    localPort: 443,
    family: "IPv4",
  },
  "v1 TCP6": {
    bytes: V1_TCP6,
    version: 1,
    remoteAddress: "2001:db8::1",
    remotePort: 40000,
    localAddress: "2001:db8::2",
    localPort: 8443,
    family: "IPv6",
  },
  "v2 TCP6 with TLVs and CRC32c": {
    bytes: V2,
    version: 2,
    remoteAddress: "2001:db8::7",
    remotePort: 61000,
    localAddress: "2001:db8::5",
    localPort: 443,
    family: "IPv6",
  },
  "v2 TCP4": {
    bytes: V2_TCP4,
    version: 2,
    remoteAddress: "198.51.100.9",
    remotePort: 1234,
    localAddress: "10.1.2.3",
    localPort: 80,
    family: "IPv4",
  },
} as const;
type HeaderName = keyof typeof HEADERS;

/** What a connection should come to. */
export type Outcome =
  | "proxied" // served with the header's addresses, the header consumed
  | "direct" // served with the socket's addresses, the bytes as sent
  | "consumed" // served with the socket's addresses, the header read and dropped
  | "raw" // served with the socket's addresses, the header left in the payload
  | ProxyProtocolError["code"]; // refused

/** What the client sends: a header and a body, a body alone (cut after its first byte),
 * the start of a header and then its end, or nothing before its end. */
export const SENDS = {
  header: { parts: [HEADER + "he", "llo"], payload: "hello" },
  none: { parts: ["P", BODY.slice(1)], payload: BODY },
  partial: { parts: ["PRO"], payload: "PRO" },
  empty: { parts: [], payload: "" },
} as const;
export type Send = keyof typeof SENDS;

/** policy x send. */
export const MATRIX: Record<ProxyPolicy, Record<Send, Outcome>> = {
  require: {
    header: "proxied",
    none: "HEADER_REQUIRED",
    partial: "CONNECTION_CLOSED",
    empty: "CONNECTION_CLOSED",
  },
  optional: { header: "proxied", none: "direct", partial: "direct", empty: "direct" },
  ignore: { header: "consumed", none: "direct", partial: "direct", empty: "direct" },
  reject: { header: "HEADER_FORBIDDEN", none: "direct", partial: "direct", empty: "direct" },
  skip: { header: "raw", none: "direct", partial: "direct", empty: "direct" },
};

/** untrusted x send, for a peer outside `trust` (the policy being `require`). */
export const UNTRUSTED: Record<UntrustedPolicy, Record<Send, Outcome>> = {
  deny: {
    header: "UNTRUSTED_SOURCE",
    none: "UNTRUSTED_SOURCE",
    partial: "UNTRUSTED_SOURCE",
    empty: "UNTRUSTED_SOURCE",
  },
  reject: { header: "HEADER_FORBIDDEN", none: "direct", partial: "direct", empty: "direct" },
  ignore: { header: "consumed", none: "direct", partial: "direct", empty: "direct" },
  skip: { header: "raw", none: "direct", partial: "direct", empty: "direct" },
};

const HOSTS = ["127.0.0.1", "::1"] as const;

/** A v2 header whose CRC32c does not match: the last letter of the authority flipped. */
function badCrcHeader(): Uint8Array {
  const bytes = encodeHeader({
    version: 2,
    command: "PROXY",
    protocol: "TCP4",
    source: { address: "192.0.2.1", port: 1 },
    destination: { address: "192.0.2.2", port: 2 },
    tlvs: encodeTlvs({ authority: "example.com" }),
  }, { checksum: true });
  bytes[bytes.length - 1]! ^= 0x20;
  return bytes;
}

/** A v2 LOCAL header with its version nibble changed. */
function versioned(nibble: number): Uint8Array {
  const bytes = encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" });
  bytes[12] = (nibble << 4) | (bytes[12]! & 0x0f);
  return bytes;
}

/** A CRC32c-protected header with one address byte flipped. */
function corruptV2(): Uint8Array {
  const bytes = V2.slice();
  bytes[20]! ^= 1;
  return bytes;
}

/** [name, bytes, code reported, code of its cause]. */
export const MALFORMED: [string, Uint8Array | string, string, string?][] = [
  ["an IPv4 octet of 256", "PROXY TCP4 1.2.3.256 10.0.0.5 1 2\r\nx", "INVALID_ADDRESS"],
  ["an IPv4 octet of 400", "PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", "INVALID_ADDRESS"],
  ["a port of 65536", "PROXY TCP4 1.2.3.4 10.0.0.5 65536 2\r\nx", "INVALID_PORT"],
  ["a port of 99999", "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "INVALID_PORT"],
  ["two spaces", "PROXY TCP4  1.2.3.4 10.0.0.5 1 2\r\nx", "V1_MALFORMED"],
  ["LF without CR", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "V1_MALFORMED"],
  ["no CRLF in 107 bytes", "PROXY UNKNOWN " + "x".repeat(120), "V1_TOO_LONG"],
  ["HTTP instead of a header", "GET / HTTP/1.1\r\n\r\n", "HEADER_REQUIRED", "NOT_PROXY_PROTOCOL"],
  ["a CRC32c that does not match", badCrcHeader(), "CHECKSUM_MISMATCH"],
  ["a CRC32c-covered address byte flipped", corruptV2(), "CHECKSUM_MISMATCH"],
  ["v2 version 3", versioned(3), "UNSUPPORTED_VERSION"],
  ["v2 version 1", versioned(1), "UNSUPPORTED_VERSION"],
];

/** Health checks: [name, bytes, protocol, version]; all keep the socket's addresses. */
export const LOCAL_CHECKS: [string, Uint8Array | string, string, number][] = [
  ["v2 LOCAL", encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" }), "UNKNOWN", 2],
  ["v1 UNKNOWN", "PROXY UNKNOWN\r\n", "UNKNOWN", 1],
  ["v1 UNKNOWN with addresses", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", "UNKNOWN", 1],
  // AWS NLB: LOCAL with a TCP4 address block of 12 bytes, which the receiver discards.
  ["v2 LOCAL with a 12-byte block", fromHex(S + "2011000c ac1f0771 ac1f0a1f c8f2 0050"), "TCP4", 2],
  [
    "v2 LOCAL with encoded TCP4 addresses",
    encodeHeader({
      version: 2,
      command: "LOCAL",
      protocol: "TCP4",
      source: { address: "10.0.0.1", port: 1 },
      destination: { address: "10.0.0.2", port: 2 },
    }),
    "TCP4",
    2,
  ],
];

/** A v2 header of about `size` bytes of TLVs. */
function bigHeader(size: number): Uint8Array {
  return encodeHeader({
    version: 2,
    command: "PROXY",
    protocol: "TCP4",
    source: { address: "192.0.2.1", port: 4000 },
    destination: { address: "192.0.2.2", port: 443 },
    tlvs: encodeTlvs({
      others: [
        { type: 0xe5, value: new Uint8Array(size / 2).fill(0x61) },
        { type: TlvType.NOOP, value: new Uint8Array(size / 2) },
      ],
    }),
  }, { checksum: true });
}

/** 1 MiB of pseudo-random bytes (xorshift32), the same every run. */
function megabyte(): Uint8Array {
  const out = new Uint8Array(1 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * Registers every shared case for one adapter.
 *
 * @param name The adapter, as test names show it ("node createServer").
 * @param driver How to start it.
 * @param registrar node:test's `describe` and `it`, or functions shaped like them.
 */
export function defineListenerSuite(name: string, driver: Driver, registrar: Registrar): void {
  const { describe } = registrar;
  const it = (title: string, fn: () => Promise<void>): void => {
    registrar.it(title, fn);
  };

  /** Starts the adapter with `onError` recording refusals (unless `record` is false). */
  async function serve(
    options: ProxyProtocolOptions = {},
    host = "127.0.0.1",
    record = true,
  ): Promise<TestServer> {
    const refusals: Refusal[] = [];
    const userOnError = options.onError;
    const listening = await driver.start(
      record
        ? {
          ...options,
          onError(error, peer) {
            refusals.push({ error, peer });
            userOnError?.(error, peer);
          },
        }
        : options,
      host,
    );
    return {
      port: listening.port,
      host,
      refusals,
      accepted: () => listening.accepted(),
      close: () => listening.close(),
    };
  }

  /** Runs `fn` with a server, closing it after. */
  async function using(
    options: ProxyProtocolOptions,
    fn: (s: TestServer) => Promise<void>,
    host?: string,
  ): Promise<void> {
    const s = await serve(options, host);
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  }

  const family = (address: string) => address.includes(":") ? "IPv6" : "IPv4";

  async function expectOutcome(
    s: TestServer,
    send: Send,
    outcome: Outcome,
    options: TalkOptions = {},
  ): Promise<void> {
    const { parts, payload } = SENDS[send];
    const label = `${send} -> ${outcome}`;
    const before = s.refusals.length;
    const client = await talk(s, parts, { gap: 2, ...options });
    const body = client.reply.toString("utf8");
    if (
      outcome !== "proxied" && outcome !== "direct" && outcome !== "consumed" && outcome !== "raw"
    ) {
      assert.equal(body, "", label);
      await until(() => s.refusals.length > before);
      assert.equal(s.refusals.length, before + 1, label);
      const refusal = s.refusals[before]!;
      assert.ok(refusal.error instanceof ProxyProtocolError, label);
      assert.equal(refusal.error.code, outcome, label);
      assert.equal(refusal.peer?.remoteAddress, client.localAddress, label);
      assert.equal(refusal.peer?.remotePort, client.localPort, label);
      return;
    }
    assert.notEqual(body, "", `${label}: no reply, refused with ${s.refusals[before]?.error.code}`);
    const got = JSON.parse(body);
    assert.equal(s.refusals.length, before, label);
    if (outcome === "proxied") {
      assert.equal(got.remoteAddress, "203.0.113.7", label);
      assert.equal(got.remotePort, 51234, label);
      assert.equal(got.localAddress, "10.0.0.5", label);
      assert.equal(got.localPort, 443, label);
      if (driver.families) assert.equal(got.remoteFamily, "IPv4", label);
      assert.equal(got.command, "PROXY", label);
      assert.equal(got.payload, b64(payload), label);
      return;
    }
    assert.equal(got.remoteAddress, client.localAddress, label);
    assert.equal(got.remotePort, client.localPort, label);
    if (driver.families) assert.equal(got.remoteFamily, family(client.localAddress), label);
    assert.equal(got.localPort, s.port, label);
    assert.equal(got.command, null, label);
    const expected = outcome === "raw" ? SENDS.header.parts.join("") : payload;
    assert.equal(got.payload, b64(expected), label);
  }

  async function stillServes(s: TestServer): Promise<void> {
    const got = await seen(s, [HEADER + "next"]);
    assert.equal(got.remoteAddress, "203.0.113.7");
    assert.equal(got.payload, b64("next"));
  }

  describe(`${name}: policy`, () => {
    for (const [policy, row] of Object.entries(MATRIX) as [ProxyPolicy, Record<Send, Outcome>][]) {
      it(`policy ${policy}: ${JSON.stringify(row)}`, () =>
        using({ policy }, async (s) => {
          for (const [send, outcome] of Object.entries(row) as [Send, Outcome][]) {
            await expectOutcome(s, send, outcome);
          }
        }));
    }

    it("a policy function is asked with the peer's real endpoints", async () => {
      const asked: string[] = [];
      await using({
        policy: (peer) => {
          asked.push(`${peer.remoteAddress} ${peer.localAddress}:${peer.localPort}`);
          return peer.remoteAddress === "127.0.0.1" ? "optional" : "require";
        },
      }, async (s) => {
        await expectOutcome(s, "header", "proxied");
        await expectOutcome(s, "none", "direct");
        assert.deepEqual(asked, Array(2).fill(`127.0.0.1 127.0.0.1:${s.port}`));
      });
    });

    it("a policy function that throws or returns nonsense refuses the connection", async () => {
      const boom = new Error("boom");
      let calls = 0;
      await using({
        policy: () => {
          calls++;
          if (calls === 1) throw boom;
          if (calls === 2) return "nonsense" as ProxyPolicy;
          return "require";
        },
      }, async (s) => {
        const first = await talk(s, [HEADER, "x"]);
        const second = await talk(s, [HEADER, "x"]);
        assert.equal(first.reply.length + second.reply.length, 0);
        await until(() => s.refusals.length === 2);
        assert.deepEqual(s.refusals.map((r) => r.error.code), [
          "VALIDATION_FAILED",
          "VALIDATION_FAILED",
        ]);
        assert.equal(s.refusals[0]?.error.cause, boom);
        assert.match(s.refusals[1]?.error.message ?? "", /nonsense/);
        assert.equal(s.accepted(), 0);
        await expectOutcome(s, "header", "proxied");
      });
    });
  });

  describe(`${name}: trust`, () => {
    for (const host of HOSTS) {
      it(`a trusted peer (${host}) gets the policy: ${JSON.stringify(MATRIX.require)}`, () =>
        using({ trust: ["10.0.0.0/8", "127.0.0.1", "::1"], untrusted: "deny" }, async (s) => {
          for (const [send, outcome] of Object.entries(MATRIX.require) as [Send, Outcome][]) {
            await expectOutcome(s, send, outcome);
          }
        }, host));
    }

    for (const host of HOSTS) {
      for (
        const [untrusted, row] of Object.entries(UNTRUSTED) as [
          UntrustedPolicy,
          Record<Send, Outcome>,
        ][]
      ) {
        it(
          `an untrusted peer (${host}, trust 10.0.0.0/8) under untrusted ${untrusted}: ${
            JSON.stringify(row)
          }`,
          () =>
            using({ policy: "require", trust: ["10.0.0.0/8"], untrusted }, async (s) => {
              for (const [send, outcome] of Object.entries(row) as [Send, Outcome][]) {
                await expectOutcome(s, send, outcome);
              }
            }, host),
        );
      }
    }

    it("untrusted defaults to deny", () =>
      using({ trust: ["10.0.0.0/8"] }, async (s) => {
        await expectOutcome(s, "header", "UNTRUSTED_SOURCE");
        await expectOutcome(s, "none", "UNTRUSTED_SOURCE");
      }));

    it("IPv6: a trusted ::1 peer, its header's TCP6 addresses, and itself without one", () =>
      using({ trust: ["::1/128"], policy: "optional" }, async (s) => {
        const proxied = await seen(s, [concat(V1_TCP6, "v6")]);
        assert.equal(proxied.remoteAddress, "2001:db8::1");
        assert.equal(proxied.remotePort, 40000);
        if (driver.families) assert.equal(proxied.remoteFamily, "IPv6");
        assert.equal(proxied.payload, b64("v6"));
        const direct = await seen(s, ["hi"]);
        assert.equal(direct.remoteAddress, "::1");
        if (driver.families) assert.equal(direct.remoteFamily, "IPv6");
        assert.equal(direct.localAddress, "::1");
        assert.deepEqual(s.refusals, []);
      }, "::1"));

    it("an IPv4 range trusts IPv4 clients of a dual-stack listener", () =>
      using({ trust: ["127.0.0.0/8"] }, async (s) => {
        const got = await seen({ port: s.port, host: "127.0.0.1" }, [HEADER, "x"]);
        assert.equal(got.remoteAddress, "203.0.113.7");
        assert.deepEqual(s.refusals, []);
      }, "::"));
  });

  describe(`${name}: header reading`, () => {
    const shared = (fn: (s: TestServer) => Promise<void>) => using({ policy: "require" }, fn);

    for (const name of ["v1 TCP4", "v2 TCP6 with TLVs and CRC32c"] as HeaderName[]) {
      const expected = HEADERS[name];
      const header = expected.bytes;
      const decoded = decodeHeader(header)!.header;
      it(`${name} header split at every byte offset (and a few into the payload)`, () =>
        shared(async (s) => {
          const whole = concat(header, PAYLOAD);
          for (let k = 1; k <= header.length + 3; k++) {
            const got = await seen(s, [whole.subarray(0, k), whole.subarray(k)], { gap: 2 });
            const at = `split at ${k}`;
            assert.equal(got.remoteAddress, expected.remoteAddress, at);
            assert.equal(got.remotePort, expected.remotePort, at);
            assert.equal(got.localAddress, expected.localAddress, at);
            assert.equal(got.localPort, expected.localPort, at);
            if (driver.families) assert.equal(got.remoteFamily, expected.family, at);
            assert.equal(got.command, "PROXY", at);
            assert.equal(got.version, expected.version, at);
            assert.equal(got.payload, b64(PAYLOAD), at);
            assert.deepEqual(got.source, decoded.source, at);
            assert.deepEqual(got.destination, decoded.destination, at);
            assert.deepEqual(got.tlvs, tlvsOf(decoded), at);
          }
          assert.deepEqual(s.refusals, []);
        }));
    }

    for (const [name, expected] of Object.entries(HEADERS)) {
      it(`${name} header trickled a byte at a time`, () =>
        shared(async (s) => {
          const parts = [...expected.bytes].map((byte) => Uint8Array.of(byte));
          const got = await seen(s, [...parts, "after"], { gap: 2 });
          assert.equal(got.remoteAddress, expected.remoteAddress);
          assert.equal(got.remotePort, expected.remotePort);
          if (driver.families) assert.equal(got.remoteFamily, expected.family);
          assert.equal(got.version, expected.version);
          assert.deepEqual(got.tlvs, tlvsOf(decodeHeader(expected.bytes)!.header));
          assert.equal(got.payload, b64("after"));
          assert.deepEqual(s.refusals, []);
        }));
    }

    it("header and payload in one write: the first chunk is byte-exact", () =>
      shared(async (s) => {
        const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
        for (const header of [V1, V2, V2_TCP4]) {
          const got = await seen(s, [concat(header, binary)]);
          assert.equal(got.first, b64(binary));
          assert.equal(got.payload, b64(binary));
        }
        const tlvs = await seen(s, [concat(V2, PAYLOAD)]);
        // CRC32c (encoded first), authority, VPC endpoint
        assert.deepEqual(tlvs.tlvs.map((t) => t.type), [0x03, 0x02, 0xea]);
        assert.deepEqual(tlvs.tlvs, tlvsOf(decodeHeader(V2)!.header));
      }));

    it("a header with nothing after it gives an empty payload", () =>
      shared(async (s) => {
        const got = await seen(s, [V2]);
        assert.equal(got.remoteAddress, "2001:db8::7");
        assert.equal(got.payload, "");
        const later = await seen(s, [V1, "later"], { gap: 20 });
        assert.equal(later.remoteAddress, "203.0.113.7");
        assert.equal(later.payload, b64("later"));
      }));
  });

  describe(`${name}: header sizes`, () => {
    // ~3000 bytes of TLVs: under the default maxHeaderLength of 4096.
    const big = bigHeader(3000);

    it("a ~3000-byte v2 header is read with the default maxHeaderLength", () =>
      using({}, async (s) => {
        assert.ok(big.length > 3000 && big.length < 4096, String(big.length));
        const whole = await seen(s, [concat(big, "tail")]);
        assert.equal(whole.remoteAddress, "192.0.2.1");
        assert.equal(whole.payload, b64("tail"));
        assert.deepEqual(whole.tlvs, tlvsOf(decodeHeader(big)!.header));
        assert.deepEqual(whole.tlvs.map((t) => t.type), [0x03, 0xe5, TlvType.NOOP]);
        const split = await seen(s, [
          big.subarray(0, 1000),
          big.subarray(1000, 2000),
          concat(big.subarray(2000), "tail"),
        ], { gap: 2 });
        assert.equal(split.remoteAddress, "192.0.2.1");
        assert.equal(split.payload, b64("tail"));
        assert.deepEqual(split.tlvs, whole.tlvs);
        assert.deepEqual(s.refusals, []);
      }));

    it("a header over maxHeaderLength is refused with HEADER_TOO_LONG", () =>
      using({ maxHeaderLength: 2048 }, async (s) => {
        const got = await talk(s, [concat(big, "tail")]);
        assert.equal(got.reply.length, 0);
        await until(() => s.refusals.length === 1);
        assert.deepEqual(s.refusals.map((r) => r.error.code), ["HEADER_TOO_LONG"]);
        assert.equal(s.refusals[0]?.peer?.remoteAddress, "127.0.0.1");
        assert.equal(s.refusals[0]?.peer?.remotePort, got.localPort);
        assert.equal(s.accepted(), 0);
        // Refused from the first 16 bytes, before the rest of the header arrives.
        const early = await talk(s, [big.subarray(0, 16)], { end: false });
        assert.equal(early.reply.length, 0);
        await until(() => s.refusals.length === 2);
        assert.equal(s.refusals[1]?.error.code, "HEADER_TOO_LONG");
        assert.equal(s.refusals[1]?.peer?.remotePort, early.localPort);
      }));

    it("a header over the default maxHeaderLength, in two writes, is refused", () =>
      using({}, async (s) => {
        const tooLong = bigHeader(5000);
        const got = await talk(s, [tooLong.subarray(0, 100), tooLong.subarray(100)], {
          gap: 2,
          end: false,
        });
        assert.equal(got.reply.length, 0);
        await until(() => s.refusals.length === 1);
        assert.deepEqual(s.refusals.map((r) => r.error.code), ["HEADER_TOO_LONG"]);
        assert.equal(s.refusals[0]?.peer?.remotePort, got.localPort);
        await stillServes(s);
      }));
  });

  describe(`${name}: health checks`, () => {
    for (const [check, header, protocol, version] of LOCAL_CHECKS) {
      it(`${check} keeps the socket's addresses (IPv4 and IPv6)`, async () => {
        for (const host of HOSTS) {
          await using({ policy: "require" }, async (s) => {
            const got = await seen(s, [header, "ping"]);
            assert.equal(got.command, "LOCAL");
            assert.equal(got.protocol, protocol);
            assert.equal(got.version, version);
            assert.equal(got.remoteAddress, got.client.localAddress);
            assert.equal(got.remotePort, got.client.localPort);
            if (driver.families) assert.equal(got.remoteFamily, family(host));
            assert.equal(got.localAddress, host);
            assert.equal(got.localPort, s.port);
            assert.equal(got.payload, b64("ping"));
            assert.equal(got.source, null);
            assert.equal(got.destination, null);
            // A health check that sends nothing after the header and hangs up.
            const bare = await seen(s, [header]);
            assert.equal(bare.command, "LOCAL");
            assert.equal(bare.payload, "");
            assert.deepEqual(s.refusals, []);
          }, host);
        }
      });
    }

    it("v2 PROXY with UNSPEC keeps the socket's addresses", () =>
      using({ policy: "require" }, async (s) => {
        const got = await seen(s, [fromHex(S + "21000000"), "x"]);
        assert.equal(got.command, "PROXY");
        assert.equal(got.protocol, "UNKNOWN");
        assert.equal(got.remoteAddress, "127.0.0.1");
        assert.equal(got.remotePort, got.client.localPort);
        assert.equal(got.payload, b64("x"));
      }));
  });

  describe(`${name}: timeouts`, () => {
    it("silent and stalled clients are closed with TIMEOUT while another is served", () =>
      using({ timeout: 300, allowShortTimeout: true }, async (s) => {
        const start = Date.now();
        const silent = talk(s, [], { end: false });
        const stalled = talk(s, ["PROXY TCP4 203.0.113.7 "], { end: false });
        await delay(30);
        await stillServes(s);
        assert.equal(s.refusals.length, 0);
        const [a, b] = await Promise.all([silent, stalled]);
        const elapsed = Date.now() - start;
        assert.ok(elapsed >= 250 && elapsed < 2000, `closed after ${elapsed} ms`);
        assert.equal(a.reply.length + b.reply.length, 0);
        await until(() => s.refusals.length === 2);
        assert.deepEqual(s.refusals.map((r) => r.error.code), ["TIMEOUT", "TIMEOUT"]);
        assert.deepEqual(
          s.refusals.map((r) => r.peer?.remotePort).sort(),
          [a.localPort, b.localPort].sort(),
        );
        await stillServes(s);
      }));

    it("the timeout covers a validate hook that does not answer", async () => {
      let answer!: (ok: boolean) => void;
      const pending = new Promise<boolean>((resolve) => (answer = resolve));
      await using({ timeout: 200, allowShortTimeout: true, validate: () => pending }, async (s) => {
        const got = await talk(s, [HEADER + "x"], { end: false });
        assert.equal(got.reply.length, 0);
        await until(() => s.refusals.length === 1);
        assert.deepEqual(s.refusals.map((r) => r.error.code), ["TIMEOUT"]);
        answer(true);
        await delay(5);
        assert.equal(s.accepted(), 0);
      });
    });

    it("a validate slower than the timeout refuses with TIMEOUT, and nothing opens after", () =>
      using({
        timeout: 100,
        allowShortTimeout: true,
        validate: () => delay(300).then(() => true),
      }, async (s) => {
        const got = await talk(s, [HEADER], { end: false });
        assert.equal(got.reply.length, 0);
        await until(() => s.refusals.length === 1);
        assert.deepEqual(s.refusals.map((r) => r.error.code), ["TIMEOUT"]);
        await delay(300);
        assert.equal(s.accepted(), 0);
      }));
  });

  describe(`${name}: malformed headers`, () => {
    for (const [what, bytes, code, cause] of MALFORMED) {
      it(`${what}: ${code}, and the next client is served`, () =>
        using({ policy: "require" }, async (s) => {
          const got = await talk(s, [bytes]);
          assert.equal(got.reply.length, 0);
          await until(() => s.refusals.length === 1);
          assert.deepEqual(s.refusals.map((r) => r.error.code), [code]);
          assert.ok(s.refusals[0]?.error instanceof ProxyProtocolError);
          if (cause !== undefined) {
            assert.equal((s.refusals[0]?.error.cause as { code?: string }).code, cause);
          }
          assert.equal(s.refusals[0]?.peer?.remotePort, got.localPort);
          assert.equal(s.accepted(), 0);
          await stillServes(s);
        }));
    }

    it("verifyChecksum: false accepts the header with the bad CRC32c", () =>
      using({ verifyChecksum: false }, async (s) => {
        const got = await seen(s, [badCrcHeader(), "ok"]);
        assert.equal(got.remoteAddress, "192.0.2.1");
        assert.equal(got.payload, b64("ok"));
      }));
  });

  describe(`${name}: abrupt clients`, () => {
    for (
      const [what, parts] of [
        ["v1", ["PROXY TCP4 ", "203.0.113.7 10.0"]],
        ["v2", [text("\r\n\r\n\0\r\nQUIT\n!"), text("\x11\0\x0c\x01\x02")]],
      ] as const
    ) {
      it(`a reset (RST) mid-${what}-header is reported as CONNECTION_CLOSED`, () =>
        using({ policy: "require" }, async (s) => {
          await talk(s, parts, { gap: 5, reset: true });
          await until(() => s.refusals.length === 1);
          // The peer may be undefined: the socket can be gone before it is read.
          assert.deepEqual(s.refusals.map((r) => r.error.code), ["CONNECTION_CLOSED"]);
          await stillServes(s);
        }));
    }

    it("a client that closes mid-header, or resets before sending, is CONNECTION_CLOSED", () =>
      using({ policy: "require" }, async (s) => {
        await talk(s, ["PROXY TCP4 ", "203.0.113.7 10.0"], { gap: 5 });
        await until(() => s.refusals.length === 1);
        assert.deepEqual(s.refusals.map((r) => r.error.code), ["CONNECTION_CLOSED"]);
        await talk(s, [], { reset: true });
        await until(() => s.refusals.length === 2);
        assert.deepEqual(s.refusals.map((r) => r.error.code), [
          "CONNECTION_CLOSED",
          "CONNECTION_CLOSED",
        ]);
        assert.equal(s.accepted(), 0);
        await stillServes(s);
      }));

    it("resets before and during the header never stop the listener", () =>
      using({ policy: "require" }, async (s) => {
        for (let i = 0; i < 10; i++) {
          await talk(s, i % 2 === 0 ? [] : [V1.subarray(0, 10)], { reset: true });
        }
        await until(() => s.refusals.length === 10);
        assert.ok(s.refusals.every((r) => r.error.code === "CONNECTION_CLOSED"));
        await stillServes(s);
      }));

    it("an onError that throws does not stop the listener", async () => {
      let calls = 0;
      await using({
        onError: () => {
          calls++;
          throw new Error("a broken onError");
        },
      }, async (s) => {
        await talk(s, ["GET / HTTP/1.1\r\n\r\n"]);
        await talk(s, ["PROXY TCP4 "], { gap: 5, reset: true });
        await until(() => calls === 2);
        await stillServes(s);
      });
    });

    it("without onError, refused connections are closed quietly", async () => {
      const s = await serve({}, "127.0.0.1", false);
      try {
        assert.equal((await talk(s, ["garbage"])).reply.length, 0);
        await talk(s, ["PROX"], { gap: 5, reset: true });
        await stillServes(s);
      } finally {
        await s.close();
      }
    });
  });

  describe(`${name}: validate`, () => {
    it("validate returning false or throwing refuses with VALIDATION_FAILED", async () => {
      const peers: PeerInfo[] = [];
      const boom = new Error("no");
      await using({
        validate: (header, peer) => {
          peers.push(peer);
          if (header.source?.address === "203.0.113.66") throw boom;
          return header.source?.address === "203.0.113.7";
        },
      }, async (s) => {
        const refused = await talk(s, ["PROXY TCP4 203.0.113.8 10.0.0.5 1 2\r\nx"]);
        assert.equal(refused.reply.length, 0);
        await talk(s, ["PROXY TCP4 203.0.113.66 10.0.0.5 1 2\r\nx"]);
        await until(() => s.refusals.length === 2);
        assert.deepEqual(s.refusals.map((r) => r.error.code), [
          "VALIDATION_FAILED",
          "VALIDATION_FAILED",
        ]);
        assert.equal(s.refusals[1]?.error.cause, boom);
        assert.deepEqual(peers[0], {
          remoteAddress: "127.0.0.1",
          remotePort: refused.localPort,
          localAddress: "127.0.0.1",
          localPort: s.port,
        });
        assert.equal(s.accepted(), 0);
        await stillServes(s);
      });
    });

    it("an async validate that accepts: every byte sent meanwhile arrives in order", async () => {
      const vpce = encodeHeader({
        version: 2,
        command: "PROXY",
        protocol: "TCP4",
        source: { address: "172.31.7.113", port: 51442 },
        destination: { address: "172.31.10.31", port: 80 },
        tlvs: encodeTlvs({ awsVpceId: "vpce-08d2bf15fac5001c9" }),
      }, { checksum: true });
      const calls: unknown[] = [];
      await using({
        validate: async (header, peer) => {
          calls.push(header.source?.address, peer.remoteAddress);
          await delay(25);
          return decodeTlvs(header.tlvs).awsVpceId === "vpce-08d2bf15fac5001c9";
        },
      }, async (s) => {
        const start = Date.now();
        const got = await seen(s, [vpce, "one ", "two ", "three"], { gap: 5 });
        assert.ok(Date.now() - start >= 20);
        assert.equal(got.remoteAddress, "172.31.7.113");
        assert.equal(got.payload, b64("one two three"));
        assert.deepEqual(calls, ["172.31.7.113", "127.0.0.1"]);
        assert.deepEqual(s.refusals, []);
      });
    });

    it("an async validate that refuses", () =>
      using({
        policy: "optional",
        validate: async (header) => {
          await delay(20);
          return header.source?.address !== "203.0.113.8";
        },
      }, async (s) => {
        await talk(s, ["PROXY TCP4 203.0.113.8 10.0.0.5 1 2\r\nx"]);
        await until(() => s.refusals.length === 1);
        assert.deepEqual(s.refusals.map((r) => r.error.code), ["VALIDATION_FAILED"]);
        assert.equal(s.accepted(), 0);
        // No header, nothing to validate.
        const direct = await seen(s, ["plain"]);
        assert.equal(direct.command, null);
        assert.equal(direct.payload, b64("plain"));
        await stillServes(s);
      }));

    it("an async validate resolving false, or rejecting, refuses", async () => {
      for (const validate of [() => Promise.resolve(false), () => Promise.reject(new Error("x"))]) {
        await using({ validate }, async (s) => {
          const got = await talk(s, [concat(HEADER, "x")], { end: false });
          assert.equal(got.reply.length, 0);
          await until(() => s.refusals.length === 1);
          assert.deepEqual(s.refusals.map((r) => r.error.code), ["VALIDATION_FAILED"]);
          assert.equal(s.accepted(), 0);
        });
      }
    });

    it("a reset while validate runs is reported as CONNECTION_CLOSED (Deno: seen by the app)", async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      await using({
        validate: async () => {
          await gate;
          return true;
        },
      }, async (s) => {
        try {
          await talk(s, [HEADER, "x"], { gap: 5, reset: true });
          if (driver.seesCloseWhileValidating) {
            await until(() => s.refusals.length === 1);
            assert.deepEqual(s.refusals.map((r) => r.error.code), ["CONNECTION_CLOSED"]);
            release();
            await stillServes(s);
            assert.equal(s.accepted(), 1); // only stillServes' client
          } else {
            release();
            await until(() => s.accepted() === 1); // handed over; its first read fails
            assert.deepEqual(s.refusals, []);
            await stillServes(s);
            assert.equal(s.accepted(), 2);
          }
        } finally {
          release();
        }
      });
    });
  });

  describe(`${name}: payload`, () => {
    const MB = megabyte();
    it("1 MiB after the header arrives byte-exact, in one write and in pieces", () =>
      using({}, async (s) => {
        for (
          const [header, parts] of [[V1, 1], [V2, 1], [V1, 16], [V2_TCP4, 2]] as const
        ) {
          const bytes = concat(header, MB);
          const pieces = parts === 2
            ? [bytes.subarray(0, header.length + 1000), bytes.subarray(header.length + 1000)]
            : Array.from(
              { length: parts },
              (_, i) =>
                bytes.subarray((i * bytes.length) / parts, ((i + 1) * bytes.length) / parts),
            );
          const got = await seen(s, pieces);
          assert.equal(got.length, MB.length);
          assert.equal(got.sha256, sha256(MB));
        }
        assert.deepEqual(s.refusals, []);
      }));
  });
}
