// Policy and trust on real loopback sockets: which connections are served, with which
// addresses and bytes, and which are refused with which code.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  createServer,
  type ProxyPolicy,
  ProxyProtocolError,
  type UntrustedPolicy,
} from "@proxy-protocol/edge/node";
import { b64, seen, serve, talk, type TalkOptions, type TestServer } from "./helpers.ts";

const HEADER = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n";
const BODY = "POST /x HTTP/1.0\r\n\r\n";

/** What a connection should come to. */
type Outcome =
  | "proxied" // served with the header's addresses, the header consumed
  | "direct" // served with the socket's addresses, the bytes as sent
  | "consumed" // served with the socket's addresses, the header read and dropped
  | "raw" // served with the socket's addresses, the header left in the payload
  | ProxyProtocolError["code"]; // refused

/** What the client sends: a header and a body, a body alone (cut after its first byte),
 * the start of a header and then its end, or nothing before its end. */
const SENDS = {
  header: { parts: [HEADER + "he", "llo"], payload: "hello" },
  none: { parts: ["P", BODY.slice(1)], payload: BODY },
  partial: { parts: ["PRO"], payload: "PRO" },
  empty: { parts: [], payload: "" },
} as const;
type Send = keyof typeof SENDS;

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
    assert.equal(got.command, "PROXY", label);
    assert.equal(got.payload, b64(payload), label);
    return;
  }
  assert.equal(got.remoteAddress, client.localAddress, label);
  assert.equal(got.remotePort, client.localPort, label);
  assert.equal(got.remoteFamily, client.localAddress.includes(":") ? "IPv6" : "IPv4", label);
  assert.equal(got.localPort, s.port, label);
  assert.equal(got.command, null, label);
  assert.equal(got.payload, b64(outcome === "raw" ? SENDS.header.parts.join("") : payload), label);
}

const MATRIX: Record<ProxyPolicy, Record<Send, Outcome>> = {
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

describe("node createServer: policy", () => {
  for (const [policy, row] of Object.entries(MATRIX) as [ProxyPolicy, Record<Send, Outcome>][]) {
    it(`policy ${policy}: ${JSON.stringify(row)}`, async () => {
      const s = await serve({ policy });
      try {
        for (const [send, outcome] of Object.entries(row) as [Send, Outcome][]) {
          await expectOutcome(s, send, outcome);
        }
      } finally {
        await s.close();
      }
    });
  }

  it("a policy function is asked with the peer's real endpoints", async () => {
    const asked: string[] = [];
    const s = await serve({
      policy: (peer) => {
        asked.push(`${peer.remoteAddress} ${peer.localAddress}:${peer.localPort}`);
        return peer.remoteAddress === "127.0.0.1" ? "optional" : "require";
      },
    });
    try {
      await expectOutcome(s, "header", "proxied");
      await expectOutcome(s, "none", "direct");
      assert.deepEqual(asked, Array(2).fill(`127.0.0.1 127.0.0.1:${s.port}`));
    } finally {
      await s.close();
    }
  });

  it("a policy function that throws or returns nonsense refuses the connection", async () => {
    const boom = new Error("boom");
    let calls = 0;
    const s = await serve({
      policy: () => {
        calls++;
        if (calls === 1) throw boom;
        if (calls === 2) return "nonsense" as ProxyPolicy;
        return "require";
      },
    });
    try {
      const first = await talk(s, [HEADER, "x"]);
      const second = await talk(s, [HEADER, "x"]);
      assert.equal(first.reply.length + second.reply.length, 0);
      assert.deepEqual(s.refusals.map((r) => r.error.code), [
        "VALIDATION_FAILED",
        "VALIDATION_FAILED",
      ]);
      assert.equal(s.refusals[0]?.error.cause, boom);
      assert.match(s.refusals[1]?.error.message ?? "", /nonsense/);
      await expectOutcome(s, "header", "proxied");
    } finally {
      await s.close();
    }
  });
});

const UNTRUSTED: Record<UntrustedPolicy, Record<Send, Outcome>> = {
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

describe("node createServer: trust", () => {
  it("a trusted peer (trust 127.0.0.1) gets the policy", async () => {
    const s = await serve({ trust: ["127.0.0.1"], untrusted: "deny" });
    try {
      for (const [send, outcome] of Object.entries(MATRIX.require) as [Send, Outcome][]) {
        await expectOutcome(s, send, outcome, { localAddress: "127.0.0.1" });
      }
    } finally {
      await s.close();
    }
  });

  for (
    const [untrusted, row] of Object.entries(UNTRUSTED) as [
      UntrustedPolicy,
      Record<Send, Outcome>,
    ][]
  ) {
    it(`an untrusted peer (trust 10.0.0.0/8) under untrusted ${untrusted}: ${JSON.stringify(row)}`, async () => {
      const s = await serve({ policy: "require", trust: ["10.0.0.0/8"], untrusted });
      try {
        for (const [send, outcome] of Object.entries(row) as [Send, Outcome][]) {
          await expectOutcome(s, send, outcome, { localAddress: "127.0.0.1" });
        }
      } finally {
        await s.close();
      }
    });
  }

  it("untrusted defaults to deny", async () => {
    const s = await serve({ trust: ["10.0.0.0/8"] });
    try {
      await expectOutcome(s, "header", "UNTRUSTED_SOURCE");
      await expectOutcome(s, "header", "UNTRUSTED_SOURCE");
    } finally {
      await s.close();
    }
  });

  it("IPv6: ::1 trusted by trust ::1, refused by trust 10.0.0.0/8", async () => {
    const trusted = await serve({ trust: ["::1"], policy: "optional" }, undefined, "::1");
    try {
      await expectOutcome(trusted, "header", "proxied");
      await expectOutcome(trusted, "none", "direct");
      const direct = await seen(trusted, ["hi"]);
      assert.equal(direct.remoteAddress, "::1");
      assert.equal(direct.remoteFamily, "IPv6");
      assert.equal(direct.localAddress, "::1");
    } finally {
      await trusted.close();
    }
    const denied = await serve({ trust: ["10.0.0.0/8"] }, undefined, "::1");
    try {
      await expectOutcome(denied, "header", "UNTRUSTED_SOURCE");
      assert.equal(denied.refusals[0]?.peer?.remoteAddress, "::1");
    } finally {
      await denied.close();
    }
  });

  it("an IPv4 range trusts IPv4 clients of a dual-stack listener", async () => {
    const s = await serve({ trust: ["127.0.0.0/8"] }, undefined, "::");
    try {
      const got = await seen({ port: s.port, host: "127.0.0.1" }, [HEADER, "x"]);
      assert.equal(got.remoteAddress, "203.0.113.7");
      assert.deepEqual(s.refusals, []);
    } finally {
      await s.close();
    }
  });
});

describe("node createServer: options", () => {
  it("bad options throw at once", () => {
    assert.throws(() => createServer({ policy: "maybe" as ProxyPolicy }), TypeError);
    assert.throws(() => createServer({ untrusted: "allow" as UntrustedPolicy }), TypeError);
    assert.throws(() => createServer({ trust: ["10.0.0.0/33"] }), TypeError);
    assert.throws(() => createServer({ timeout: 1000 }), RangeError);
    assert.throws(() => createServer({ maxHeaderLength: 4 }), RangeError);
    const server = createServer({ timeout: 1000, allowShortTimeout: true });
    assert.equal(server.listening, false);
  });
});
