// The sender on node:net: headerFor's table, when connect() writes the header (with the
// first payload, in one segment; alone for servers that speak first), forwarding TLVs from
// an accepted socket, and, on Node itself, round trips with a Deno child. Runs on Node
// (against dist/), Deno and Bun.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import net from "node:net";
import {
  decodeHeader,
  decodeTlvs,
  encodeHeader,
  encodeTlvs,
  type ProxyHeaderInit,
} from "@proxy-protocol/edge";
import {
  connect,
  headerFor,
  type ProxyProtocolError,
  type ProxySocket,
} from "@proxy-protocol/edge/node";
import { serve, text } from "./helpers.ts";
import { HEADER, rawServer } from "../connect_helpers.ts";

function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.closed) resolve();
    else socket.once("close", () => resolve());
  });
}

const TABLE: {
  name: string;
  from: Parameters<typeof headerFor>[0];
  expect: Partial<ProxyHeaderInit>;
}[] = [
  {
    name: "Node socket, IPv4",
    from: {
      remoteAddress: "203.0.113.7",
      remotePort: 1,
      localAddress: "10.0.0.5",
      localPort: 2,
    },
    expect: {
      protocol: "TCP4",
      source: { address: "203.0.113.7", port: 1 },
      destination: { address: "10.0.0.5", port: 2 },
    },
  },
  {
    name: "Deno conn, IPv6 (canonical form, zone dropped)",
    from: {
      remoteAddr: { transport: "tcp", hostname: "2001:DB8:0::7", port: 1 },
      localAddr: { transport: "tcp", hostname: "fe80::1%eth0", port: 2 },
    },
    expect: {
      protocol: "TCP6",
      source: { address: "2001:db8::7", port: 1 },
      destination: { address: "fe80::1", port: 2 },
    },
  },
  {
    name: "dual-stack listener: v4-mapped ends are IPv4",
    from: {
      remoteAddress: "::ffff:203.0.113.7",
      remotePort: 1,
      localAddress: "::ffff:10.0.0.5",
      localPort: 2,
    },
    expect: {
      protocol: "TCP4",
      source: { address: "203.0.113.7", port: 1 },
      destination: { address: "10.0.0.5", port: 2 },
    },
  },
  {
    name: "mixed families: TCP6, the IPv4 end v4-mapped",
    from: {
      remoteAddress: "::ffff:203.0.113.7",
      remotePort: 1,
      localAddress: "2001:db8::1",
      localPort: 2,
    },
    expect: {
      protocol: "TCP6",
      source: { address: "::ffff:203.0.113.7", port: 1 },
      destination: { address: "2001:db8::1", port: 2 },
    },
  },
  {
    name: "a UNIX socket: PROXY UNKNOWN",
    from: {
      remoteAddr: { transport: "unix" },
      localAddr: { transport: "unix" },
    },
    expect: { command: "PROXY", protocol: "UNKNOWN" },
  },
  {
    name: "a closed socket (no addresses): PROXY UNKNOWN",
    from: {},
    expect: { command: "PROXY", protocol: "UNKNOWN" },
  },
  { name: "no connection: LOCAL", from: null, expect: { command: "LOCAL", protocol: "UNKNOWN" } },
];

describe("headerFor", () => {
  for (const { name, from, expect } of TABLE) {
    it(name, () => {
      const header = headerFor(from);
      assert.deepEqual(header, { version: 2, command: "PROXY", ...expect });
      // Every header it builds can be written, as v2 and as v1.
      encodeHeader(header);
      encodeHeader({ ...header, version: 1 });
    });
  }

  it("forwards chosen TLVs in wire order, never a CRC32C, then adds its own", () => {
    const incoming = decodeHeader(encodeHeader({
      ...HEADER,
      tlvs: encodeTlvs({ alpn: "h2", authority: "example.com", awsVpceId: "vpce-1" }),
    }, { checksum: true }))!.header;
    const from = {
      remoteAddress: "203.0.113.7",
      remotePort: 51234,
      localAddress: "10.0.0.5",
      localPort: 443,
      proxyHeader: incoming,
    };
    const header = headerFor(from, {
      passTlvs: [0x03, 0xea, 0x02],
      tlvs: encodeTlvs({ uniqueId: text("id-1") }),
    });
    assert.deepEqual(header.tlvs!.map((t) => t.type), [0x02, 0xea, 0x05]);
    const out = decodeTlvs(decodeHeader(encodeHeader(header, { checksum: true }))!.header.tlvs);
    assert.equal(out.authority, "example.com");
    assert.equal(out.awsVpceId, "vpce-1");
    assert.equal(out.alpn, undefined);
    assert.equal(typeof out.crc32c, "number");
    // LOCAL, when asked, with the TLVs still carried.
    const local = headerFor(from, { command: "LOCAL", passTlvs: [0x02] });
    assert.deepEqual(local.command, "LOCAL");
    assert.equal(local.tlvs?.length, 1);
  });

  it("refuses what cannot be written: INVALID_HEADER", () => {
    const code = (e: unknown) => (e as ProxyProtocolError).code === "INVALID_HEADER";
    assert.throws(() => headerFor(null, { version: 1, tlvs: encodeTlvs({ alpn: "h2" }) }), code);
    assert.throws(() => headerFor(null, { version: 3 as 2 }), code);
    assert.throws(() => headerFor(null, { command: "NOPE" as "LOCAL" }), code);
    // v1 may forward nothing: an incoming header without TLVs is fine.
    assert.equal(headerFor(null, { version: 1, passTlvs: [2] }).version, 1);
  });
});

describe("node connect", () => {
  it("header and first payload leave in one write: one read at the server", async () => {
    const s = await rawServer();
    try {
      const payload = text("GET / HTTP/1.1\r\n\r\n");
      // Written before connecting, in the connect listener, and with end(data).
      const a = connect({ host: "127.0.0.1", port: s.port, header: HEADER, noDelay: true });
      a.write(payload);
      a.end();
      const b = connect({ host: "127.0.0.1", port: s.port, header: HEADER }, () => {
        b.write(payload.subarray(0, 4));
        b.write(payload.subarray(4));
        b.end();
      });
      const c = connect({ host: "127.0.0.1", port: s.port, header: HEADER, checksum: true });
      c.end(payload);
      for (const socket of [a, b, c]) {
        socket.resume();
        await closed(socket);
      }
      await Promise.all(s.conns.map((c) => c.ended));
      assert.equal(s.conns.length, 3);
      for (const { chunks } of s.conns) {
        assert.equal(chunks.length, 1, "one read took the header and the payload");
        const decoded = decodeHeader(chunks[0]!)!;
        assert.deepEqual(decoded.header.source, HEADER.source);
        assert.deepEqual(chunks[0]!.subarray(decoded.length), Buffer.from(payload));
      }
    } finally {
      await s.close();
    }
  });

  it("sends the header alone when nothing is written: a server that speaks first", async () => {
    const s = await rawServer((socket) => {
      socket.once("data", () => socket.write("220 ready\r\n"));
    });
    try {
      const socket = connect({ host: "127.0.0.1", port: s.port, from: null });
      const greeting = await new Promise<string>((resolve) => {
        socket.once("data", (chunk: Buffer) => resolve(chunk.toString()));
      });
      assert.equal(greeting, "220 ready\r\n");
      socket.end("QUIT\r\n");
      socket.resume();
      await closed(socket);
      await s.conns[0]!.ended;
      const [first, second] = s.conns[0]!.chunks;
      assert.deepEqual(decodeHeader(first!), {
        header: {
          version: 2,
          command: "LOCAL",
          protocol: "UNKNOWN",
          source: null,
          destination: null,
          tlvs: [],
        },
        length: 16,
      });
      assert.equal(second?.toString(), "QUIT\r\n");
    } finally {
      await s.close();
    }
  });

  it("relays an accepted socket: its client, chosen TLVs forwarded, a fresh CRC32c", async () => {
    const back = await serve({ verifyChecksum: true }, (socket: ProxySocket) => {
      const tlvs = decodeTlvs(socket.proxyHeader?.tlvs ?? []);
      socket.end(JSON.stringify({
        remote: `${socket.remoteAddress}:${socket.remotePort}`,
        local: `${socket.localAddress}:${socket.localPort}`,
        authority: tlvs.authority,
        vpce: tlvs.awsVpceId ?? null,
        uniqueId: tlvs.uniqueId === undefined ? null : new TextDecoder().decode(tlvs.uniqueId),
        crc: typeof tlvs.crc32c,
      }));
    });
    const front = await serve({ allowHalfOpen: true }, (socket: ProxySocket) => {
      const upstream = connect({
        host: "127.0.0.1",
        port: back.port,
        header: headerFor(socket, {
          passTlvs: [0x02],
          tlvs: encodeTlvs({ uniqueId: text("req-1") }),
        }),
        checksum: true,
      });
      upstream.on("error", () => socket.destroy());
      socket.pipe(upstream).pipe(socket);
      upstream.on("close", () => socket.destroy());
    });
    try {
      const client = net.connect(front.port, "127.0.0.1");
      client.end(encodeHeader({
        version: 2,
        command: "PROXY",
        protocol: "TCP6",
        source: { address: "2001:db8::7", port: 40000 },
        destination: { address: "2001:db8::1", port: 8443 },
        tlvs: encodeTlvs({ authority: "example.com", awsVpceId: "vpce-9" }),
      }));
      let reply = "";
      for await (const chunk of client) reply += chunk;
      assert.deepEqual(JSON.parse(reply), {
        remote: "2001:db8::7:40000",
        local: "2001:db8::1:8443",
        authority: "example.com",
        vpce: null,
        uniqueId: "req-1",
        crc: "number",
      });
      assert.deepEqual(back.refusals, []);
      assert.deepEqual(front.refusals, []);
    } finally {
      await front.close();
      await back.close();
    }
  });

  it("refuses a bad header before connecting", () => {
    assert.throws(
      () =>
        connect({
          host: "127.0.0.1",
          port: 1,
          header: { ...HEADER, source: { address: "300.1.1.1", port: 1 } },
        }),
      (e: unknown) => (e as ProxyProtocolError).code === "INVALID_HEADER",
    );
    assert.throws(
      () => connect({ host: "127.0.0.1", port: 1, header: HEADER, from: {} }),
      TypeError,
    );
  });
});

// Round trips with a Deno child: on Node only (Deno and Bun run their own in
// tests/deno/connect.test.ts). Deno comes with the dev dependencies, so it is never missing.
const onNode = !("Deno" in globalThis) && !("Bun" in globalThis);
const DENO = "node_modules/.bin/deno";

/** Runs `code` with Deno from the repository root; resolves with its stdout lines. */
function deno(code: string, onLine: (line: string) => void) {
  const child = spawn(DENO, ["eval", "--ext=ts", code], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  let partial = "";
  child.stderr!.on("data", (d: Buffer) => stderr += d);
  child.stdout!.on("data", (d: Buffer) => {
    partial += d;
    let nl;
    while ((nl = partial.indexOf("\n")) >= 0) {
      onLine(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
  });
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => child.kill(), 20_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`deno exited ${code}; stderr:\n${stderr}`));
    });
  });
  return { child, done };
}

describe("node connect: round trips with Deno", { skip: !onNode }, () => {
  it("Node sends, Deno's listen receives (v2, TLVs, CRC32c)", async () => {
    let port!: (p: number) => void;
    const portKnown = new Promise<number>((resolve) => port = resolve);
    let result: Record<string, unknown> | undefined;
    const { done } = deno(
      `
      import { listen } from "@proxy-protocol/edge/deno";
      import { decodeTlvs } from "@proxy-protocol/edge";
      const listener = listen({ hostname: "127.0.0.1", port: 0, timeout: 5000 });
      console.log(listener.addr.port);
      const conn = await listener.accept();
      const buffer = new Uint8Array(64);
      const n = await conn.read(buffer);
      const tlvs = decodeTlvs(conn.proxyHeader?.tlvs ?? []);
      console.log(JSON.stringify({
        remote: conn.remoteAddr, version: conn.proxyHeader?.version,
        authority: tlvs.authority, crc: typeof tlvs.crc32c,
        payload: new TextDecoder().decode(buffer.subarray(0, n ?? 0)),
      }));
      conn.close();
      listener.close();
      `,
      (line) => {
        if (/^\d+$/.test(line)) port(Number(line));
        else result = JSON.parse(line);
      },
    );
    const socket = connect({
      host: "127.0.0.1",
      port: await portKnown,
      header: { ...HEADER, tlvs: encodeTlvs({ authority: "example.com" }) },
      checksum: true,
    });
    socket.end("ping");
    socket.resume();
    await closed(socket);
    await done;
    assert.deepEqual(result, {
      remote: { transport: "tcp", hostname: "203.0.113.7", port: 51234 },
      version: 2,
      authority: "example.com",
      crc: "number",
      payload: "ping",
    });
  });

  it("Deno's connect sends, Node's createServer receives (v1)", async () => {
    const s = await serve({});
    try {
      const { done } = deno(
        `
        import { connect } from "@proxy-protocol/edge/deno";
        const conn = await connect({
          hostname: "127.0.0.1",
          port: ${s.port},
          header: {
            version: 1, command: "PROXY", protocol: "TCP6",
            source: { address: "2001:db8::7", port: 61000 },
            destination: { address: "2001:db8::5", port: 443 },
          },
        });
        await conn.write(new TextEncoder().encode("hello"));
        await conn.closeWrite();
        const buffer = new Uint8Array(4096);
        while (await conn.read(buffer) !== null);
        conn.close();
        `,
        () => {},
      );
      await done;
      assert.equal(s.accepted.length, 1);
      const socket = s.accepted[0]!;
      assert.equal(socket.proxyHeader?.version, 1);
      assert.equal(socket.remoteAddress, "2001:db8::7");
      assert.equal(socket.remotePort, 61000);
      assert.deepEqual(s.refusals, []);
    } finally {
      await s.close();
    }
  });
});
