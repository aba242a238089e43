import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  bytesNeeded,
  CidrSet,
  concatBytes,
  encodeHeader,
  encodeTlvs,
  HeaderReader,
  type PeerInfo,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
  readProxyHeader,
  readProxyHeaderFrom,
  type ReadProxyHeaderOptions,
} from "@proxy-protocol/edge";
import { text, V1_SPEC, V2 } from "./vectors.ts";

const RUNS = Number(
  (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env
    .FUZZ_RUNS ??
    "1000",
);

/** A default (not byte) stream that gives these chunks, and records whether it was cancelled. */
function chunked(chunks: Uint8Array[]) {
  const state = { cancelled: false as unknown, pulls: 0 };
  let i = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      state.pulls++;
      if (i < chunks.length) controller.enqueue(chunks[i++]!);
      else controller.close();
    },
    cancel(reason) {
      state.cancelled = reason ?? true;
    },
  }, { highWaterMark: 0 });
  return { stream, state };
}

/** A byte stream over `bytes` that records how many bytes were taken from it. */
function byteStream(bytes: Uint8Array) {
  const state = { taken: 0 };
  const stream = new ReadableStream({
    type: "bytes",
    pull(controller) {
      const request = controller.byobRequest;
      if (state.taken >= bytes.length) {
        controller.close();
        request?.respond(0);
        return;
      }
      if (request?.view) {
        const view = new Uint8Array(
          request.view.buffer,
          request.view.byteOffset,
          request.view.byteLength,
        );
        const n = Math.min(view.length, bytes.length - state.taken);
        view.set(bytes.subarray(state.taken, state.taken + n));
        state.taken += n;
        request.respond(n);
      } else {
        controller.enqueue(bytes.slice(state.taken));
        state.taken = bytes.length;
      }
    },
  });
  return { stream, state };
}

async function collect(
  stream: ReadableStream<Uint8Array>,
): Promise<{ bytes: Uint8Array; chunks: Uint8Array[] }> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return { bytes: concatBytes(chunks), chunks };
}

async function rejectsWith(promise: Promise<unknown>, code: ProxyProtocolErrorCode) {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof ProxyProtocolError, String(e));
    assert.equal(e.code, code, e.message);
    return true;
  });
}

const payload = text("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
const peer: PeerInfo = {
  remoteAddress: "127.0.0.1",
  remotePort: 40000,
  localAddress: "127.0.0.1",
  localPort: 8080,
};

describe("readProxyHeader", () => {
  it("reads a header split at every offset and hands on the payload byte-exact", async () => {
    for (const header of [text(V1_SPEC), V2.aws1, V2.tlsV6]) {
      const whole = concatBytes([header, payload]);
      for (let k = 0; k <= whole.length; k++) {
        const { stream } = chunked([whole.subarray(0, k), whole.subarray(k)]);
        const result = await readProxyHeader(stream);
        assert.ok(result.header, `split at ${k}`);
        assert.deepEqual((await collect(result.readable)).bytes, payload, `split at ${k}`);
      }
    }
  });

  it("reads a header trickled a byte at a time", async () => {
    const whole = concatBytes([V2.clientCert, payload]);
    const { stream } = chunked([...whole].map((b) => Uint8Array.of(b)));
    const result = await readProxyHeader(stream);
    assert.equal(result.header?.source?.address, "127.0.0.1");
    assert.deepEqual((await collect(result.readable)).bytes, payload);
  });

  it("hands on the first payload chunk as a subarray of the chunk the header ended in", async () => {
    const first = concatBytes([text(V1_SPEC), payload]);
    const second = text("more");
    const { stream } = chunked([first, second]);
    const result = await readProxyHeader(stream);
    const { chunks } = await collect(result.readable);
    assert.equal(chunks.length, 2);
    assert.equal(chunks[0]!.buffer, first.buffer);
    assert.equal(chunks[0]!.byteOffset, V1_SPEC.length);
    assert.equal(chunks[1], second, "later chunks pass through as they are");
  });

  it("reads a byte stream with BYOB, takes nothing past the header, and returns the source", async () => {
    for (const header of [text(V1_SPEC), text("PROXY UNKNOWN\r\n"), V2.aws1, V2.local]) {
      const { stream, state } = byteStream(concatBytes([header, payload]));
      const result = await readProxyHeader(stream);
      assert.equal(state.taken, header.length, "nothing past the header was taken");
      assert.equal(result.readable, stream, "the source itself is handed back");
      assert.deepEqual((await collect(result.readable)).bytes, payload);
    }
  });

  it("applies the policies", async () => {
    const cases: [
      ReadProxyHeaderOptions["policy"],
      boolean,
      "header" | "none" | ProxyProtocolErrorCode,
    ][] = [
      ["require", true, "header"],
      ["require", false, "HEADER_REQUIRED"],
      ["optional", true, "header"],
      ["optional", false, "none"],
      ["ignore", true, "none"],
      ["ignore", false, "none"],
      ["reject", true, "HEADER_FORBIDDEN"],
      ["reject", false, "none"],
      ["skip", true, "none"],
      ["skip", false, "none"],
    ];
    for (const [policy, withHeader, expected] of cases) {
      const bytes = withHeader ? concatBytes([text(V1_SPEC), payload]) : payload;
      for (const split of [1, bytes.length]) {
        const { stream, state } = chunked([bytes.subarray(0, split), bytes.subarray(split)]);
        const promise = readProxyHeader(stream, { policy: policy! });
        const label = `${policy} ${withHeader ? "with" : "without"} header, split ${split}`;
        if (expected === "header" || expected === "none") {
          const result = await promise;
          assert.equal(result.header === null, expected === "none", label);
          const rest = (await collect(result.readable)).bytes;
          // skip hands on everything; ignore consumes the header; the others keep the payload.
          const wanted = policy === "skip" || (!withHeader) ? bytes : payload;
          assert.deepEqual(rest, wanted, label);
        } else {
          await rejectsWith(promise, expected);
          assert.ok(state.cancelled, `${label}: the source is cancelled`);
        }
      }
    }
  });

  it("hands on every byte exactly once when a later chunk shows there is no header", async () => {
    // "P" could start a v1 header; "OST" proves it does not.
    for (const policy of ["optional", "ignore", "reject"] as const) {
      for (
        const parts of [["P", "OST / HTTP/1.0\r\n"], ["PRO", "X", "Z"], [
          "PROXY TCP4 ",
          "1.2.3.4 x\r\n",
        ]]
      ) {
        if (policy !== "reject" && parts[0] === "PROXY TCP4 ") continue; // a malformed header is an error there
        const { stream } = chunked(parts.map(text));
        const result = await readProxyHeader(stream, { policy });
        assert.equal(result.header, null);
        const rest = new TextDecoder().decode((await collect(result.readable)).bytes);
        assert.equal(rest, parts.join(""), `${policy}: ${JSON.stringify(parts)}`);
      }
    }
  });

  it("applies trust with the peer, and requires the peer for it", async () => {
    const bytes = concatBytes([text(V1_SPEC), payload]);
    const trusted = await readProxyHeader(chunked([bytes]).stream, {
      trust: ["127.0.0.0/8"],
      peer,
    });
    assert.equal(trusted.header?.source?.address, "192.168.0.1");
    await rejectsWith(
      readProxyHeader(chunked([bytes]).stream, { trust: ["10.0.0.0/8"], peer }),
      "UNTRUSTED_SOURCE",
    );
    const skipped = await readProxyHeader(chunked([bytes]).stream, {
      trust: ["10.0.0.0/8"],
      untrusted: "skip",
      peer,
    });
    assert.equal(skipped.header, null);
    assert.deepEqual(
      (await collect(skipped.readable)).bytes,
      bytes,
      "an untrusted header is never read",
    );
    await assert.rejects(
      readProxyHeader(chunked([bytes]).stream, { trust: ["10.0.0.0/8"] }),
      TypeError,
    );
    const fn = await readProxyHeader(chunked([payload]).stream, {
      policy: (p) => p.remotePort === 40000 ? "optional" : "require",
      peer,
    });
    assert.equal(fn.header, null);
  });

  it("times out, refuses oversized headers, runs validate, and reports an early end", async () => {
    const silent = new ReadableStream<Uint8Array>({ pull() {} });
    const t0 = Date.now();
    await rejectsWith(readProxyHeader(silent, { timeout: 50, allowShortTimeout: true }), "TIMEOUT");
    assert.ok(Date.now() - t0 < 2000);
    await assert.rejects(readProxyHeader(chunked([]).stream, { timeout: 50 }), RangeError);

    const big = encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "UNKNOWN",
      tlvs: encodeTlvs({ others: [{ type: 0xf0, value: new Uint8Array(5000) }] }),
    });
    await rejectsWith(readProxyHeader(chunked([big]).stream), "HEADER_TOO_LONG");
    assert.ok((await readProxyHeader(chunked([big]).stream, { maxHeaderLength: 6000 })).header);

    await rejectsWith(
      readProxyHeader(chunked([V2.aws1]).stream, { validate: () => false }),
      "VALIDATION_FAILED",
    );
    const seen: string[] = [];
    await readProxyHeader(chunked([V2.aws1]).stream, {
      validate: (h) => Promise.resolve(void seen.push(h.protocol)),
    });
    assert.deepEqual(seen, ["TCP4"]);

    await rejectsWith(
      readProxyHeader(chunked([text("PROXY TCP4 1.2")]).stream),
      "CONNECTION_CLOSED",
    );
    const partial = await readProxyHeader(chunked([text("PROX")]).stream, { policy: "optional" });
    assert.deepEqual((await collect(partial.readable)).bytes, text("PROX"));
  });
});

describe("readProxyHeaderFrom", () => {
  function pull(bytes: Uint8Array, maxChunk = Infinity) {
    const state = { at: 0, reads: 0 };
    return {
      state,
      reader: {
        read(p: Uint8Array): Promise<number | null> {
          state.reads++;
          const n = Math.min(p.length, bytes.length - state.at, maxChunk);
          if (n === 0) return Promise.resolve(null);
          p.set(bytes.subarray(state.at, state.at + n));
          state.at += n;
          return Promise.resolve(n);
        },
      },
    };
  }

  it("reads exactly the header, whatever the reader's chunk size", async () => {
    for (
      const header of [
        text(V1_SPEC),
        text("PROXY TCP6 ::1 ::2 1 2\r\n"),
        text("PROXY UNKNOWN x\r\n"),
        V2.tlsV6,
      ]
    ) {
      for (const max of [1, 3, 7, 4096]) {
        const { reader, state } = pull(concatBytes([header, payload]), max);
        const result = await readProxyHeaderFrom(reader);
        assert.ok(result.header, `${max}`);
        assert.equal(state.at, header.length, `read exactly the header with chunks of ${max}`);
        assert.equal(result.rest.length, 0);
      }
    }
    const { reader, state } = pull(concatBytes([text(V1_SPEC), payload]));
    await readProxyHeaderFrom(reader);
    assert.ok(state.reads <= 10, `a v1 line takes a handful of reads (${state.reads})`);
  });

  it("hands back what it read when there is no header, and refuses what the policy refuses", async () => {
    const { reader } = pull(payload);
    const result = await readProxyHeaderFrom(reader, { policy: "optional" });
    assert.equal(result.header, null);
    assert.deepEqual(result.rest, payload.subarray(0, result.rest.length));
    assert.ok(result.rest.length > 0);
    await rejectsWith(readProxyHeaderFrom(pull(payload).reader), "HEADER_REQUIRED");
    await rejectsWith(readProxyHeaderFrom(pull(text("PROXY TCP4 1.")).reader), "CONNECTION_CLOSED");
    await rejectsWith(
      readProxyHeaderFrom({ read: () => new Promise<number | null>(() => {}) }, {
        timeout: 30,
        allowShortTimeout: true,
      }),
      "TIMEOUT",
    );
  });
});

describe("HeaderReader and bytesNeeded", () => {
  it("never asks for more bytes than a valid header still has", () => {
    const header = fc.oneof(
      fc.tuple(fc.nat(255), fc.nat(255), fc.nat(65535), fc.nat(65535)).map(([a, b, p, q]) =>
        text(`PROXY TCP4 ${a}.${b}.0.1 10.${b}.${a}.7 ${p} ${q}\r\n`)
      ),
      fc.tuple(fc.nat(0xffff), fc.nat(65535)).map(([g, p]) =>
        text(`PROXY TCP6 ${g.toString(16)}::1 :: ${p} 0\r\n`)
      ),
      fc.string({ maxLength: 40, unit: fc.constantFrom(..."ab1:. ") }).map((s) =>
        text(`PROXY UNKNOWN ${s}\r\n`)
      ),
      fc.uint8Array({ maxLength: 300 }).map((v) =>
        encodeHeader({
          version: 2,
          command: "PROXY",
          protocol: "UNKNOWN",
          tlvs: [{ type: 0xf0, value: v }],
        })
      ),
    );
    fc.assert(
      fc.property(header, (bytes) => {
        for (let i = 0; i < bytes.length; i++) {
          const need = bytesNeeded(bytes.subarray(0, i));
          assert.ok(
            need >= 1 && need <= bytes.length - i,
            `prefix ${i}: asked ${need} of ${bytes.length - i}`,
          );
        }
        assert.equal(bytesNeeded(bytes), 0);
      }),
      { numRuns: RUNS },
    );
  });

  it("reads a 64 KiB header trickled a byte at a time", () => {
    const big = encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "UNKNOWN",
      tlvs: [{ type: 0xf0, value: new Uint8Array(65532) }],
    });
    const reader = new HeaderReader({ maxLength: 65551 });
    for (let i = 0; i < big.length - 1; i++) {
      assert.equal(reader.push(big.subarray(i, i + 1)), null);
    }
    const done = reader.push(concatBytes([big.subarray(big.length - 1), text("x")]));
    assert.equal(done?.result.length, 65551);
    assert.deepEqual(done?.rest, text("x"));
  });

  it("reports an error in the fixed part as soon as it arrives, even in a large chunk", () => {
    const reader = new HeaderReader();
    assert.equal(reader.push(V2.aws1.subarray(0, 5)), null);
    const bad = V2.aws1.slice(5, 40);
    bad[12 - 5] = 0x31; // version 3
    assert.throws(
      () => reader.push(bad),
      (e: unknown) => e instanceof ProxyProtocolError && e.code === "UNSUPPORTED_VERSION",
    );
  });
});

describe("CidrSet", () => {
  it("matches IPv4, IPv6 and v4-mapped peers, and refuses bad ranges", () => {
    const set = new CidrSet([
      "10.0.0.0/8",
      "192.168.1.128/25",
      "2001:db8::/32",
      "::1",
      "0.0.0.0/32",
    ]);
    for (
      const yes of [
        "10.255.0.1",
        "192.168.1.200",
        "::ffff:10.1.2.3",
        "2001:db8:ffff::1",
        "::1",
        "0.0.0.0",
      ]
    ) {
      assert.ok(set.has(yes), yes);
    }
    for (const no of ["11.0.0.1", "192.168.1.127", "2001:db9::1", "::2", "not an address", ""]) {
      assert.ok(!set.has(no), no);
    }
    assert.ok(new CidrSet(["0.0.0.0/0"]).has("8.8.8.8"));
    assert.ok(
      !new CidrSet(["0.0.0.0/0"]).has("2001:db8::1"),
      "an IPv4 range holds no native IPv6 address",
    );
    assert.ok(new CidrSet(["::/0"]).has("8.8.8.8"), "::/0 holds v4-mapped addresses too");
    assert.ok(new CidrSet(["fe80::/10"]).has("fe80::1%eth0"));
    for (
      const bad of ["10.0.0.0/33", "10.0.0/8", "::1/129", "10.0.0.0/", "10.0.0.0/08", "example.com"]
    ) {
      assert.throws(() => new CidrSet([bad]), TypeError, bad);
    }
  });
});

describe("HeaderReader keeps its own copy", () => {
  it("even when the chunk is a Buffer-like view whose slice() shares memory", () => {
    // Node's and Bun's Buffer#slice returns a view; a runtime may reuse a chunk's memory.
    class ViewSlice extends Uint8Array {
      override slice(start?: number, end?: number): Uint8Array<ArrayBuffer> {
        return this.subarray(start, end);
      }
    }
    const bytes = text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nhello");
    const first = new ViewSlice(bytes.subarray(0, 10));
    const reader = new HeaderReader();
    assert.equal(reader.push(first), null);
    first.fill(0x41); // the runtime reuses the memory
    const done = reader.push(bytes.subarray(10));
    assert.equal(done?.result.header.source?.address, "1.2.3.4");
  });
});
