// Interop: Debian's go-proxyproto 0.4.2 on the other end of the Deno adapter, both ways,
// through the tiny program in tests/interop/go (built once for this file, offline, in a temp
// dir: a go.mod `replace` to the Debian source, GOPROXY=off, GOFLAGS=-mod=mod, GOSUMDB=off).
// Where go-proxyproto and the spec disagree, the library follows the spec and the steps
// below show the peer's behaviour.
import assert from "node:assert/strict";
import { listen } from "@proxy-protocol/edge/deno";
import {
  concatBytes,
  decodeHeader,
  decodeTlvs,
  encodeHeader,
  encodeTlvs,
  type ProxyHeaderInit,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
  toHex,
} from "@proxy-protocol/edge";
import {
  buildGo,
  CLIENT_V4,
  CLIENT_V6,
  GO_NEEDS,
  Peer,
  peerTest,
  readAll,
  readUntil,
  sleep,
  tempDir,
  text,
  until,
  within,
} from "../interop/helpers.ts";

interface GoSend {
  case: string;
  header: string;
  reply: string;
  error?: string;
}

interface GoSaw {
  remote?: string;
  local?: string;
  version?: number;
  command?: string;
  transport?: number;
  tlvs?: { type: number; value: string }[];
  payload?: string;
  error?: string;
}

const sendInit = (
  version: 1 | 2,
  protocol: "TCP4" | "TCP6",
  src: string,
  dst: string,
  tlvs: ProxyHeaderInit["tlvs"] = [],
): ProxyHeaderInit => ({
  version,
  command: "PROXY",
  protocol,
  source: { address: src, port: 1111 },
  destination: { address: dst, port: 2222 },
  ...(version === 2 ? { tlvs } : {}),
});

/** A listener of go-proxyproto's (`ppinterop listen`): send it bytes, get what it saw. */
async function withGoListener(
  binary: string,
  fn: (
    send: (bytes: Uint8Array, payload: string) => Promise<GoSaw & { clientPort: number }>,
  ) => Promise<void>,
): Promise<void> {
  await using go = new Peer("ppinterop listen", binary, ["listen"]);
  const { port } = await go.nextJson<{ port: number }>();
  await fn(async (bytes, payload) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new Uint8Array([...bytes, ...text(payload)]));
      const saw = await go.nextJson<GoSaw>();
      const reply = new TextDecoder().decode(await readAll(conn));
      if (saw.error === undefined) assert.equal(reply, `echo:${payload}`);
      else assert.equal(reply, "", "go-proxyproto closed the refused connection");
      return { ...saw, clientPort: (conn.localAddr as Deno.NetAddr).port };
    } finally {
      conn.close();
    }
  });
}

function tlvList(init: Uint8Array): { type: number; value: string }[] {
  return decodeHeader(init)!.header.tlvs.map((t) => ({ type: t.type, value: toHex(t.value) }));
}

peerTest("interop go-proxyproto 0.4.2, both ways", GO_NEEDS, async ({ go }, t) => {
  await using dir = await tempDir("interop-go-");
  const binary = await within(buildGo(go!, "go", dir.path), 60_000, "go build");

  await t.step("go-proxyproto's Header.WriteTo to our listener", async () => {
    const errors: ProxyProtocolError[] = [];
    await using listener = listen({
      hostname: "127.0.0.1",
      port: 0,
      timeout: 3000,
      onError: (e) => void errors.push(e),
    });
    await using sender = new Peer("ppinterop send", binary, [
      "send",
      `127.0.0.1:${listener.addr.port}`,
    ]);
    // The cases of main.go's sendCases(), in order; each is sent after the previous ended.
    const expected: [string, ProxyHeaderInit][] = [
      [
        "v2-tcp4-tlvs",
        sendInit(2, "TCP4", "192.0.2.1", "192.0.2.2", [
          { type: 0x02, value: text("example.com") },
          { type: 0xf0, value: text("go") },
        ]),
      ],
      ["v1-tcp4", sendInit(1, "TCP4", "192.0.2.1", "192.0.2.2")],
      ["v2-tcp6", sendInit(2, "TCP6", "2001:db8::1", "2001:db8::2")],
      ["v1-tcp6", sendInit(1, "TCP6", "2001:db8::1", "2001:db8::2")],
    ];
    for (const [name, init] of expected) {
      const conn = await within(listener.accept(), 5000, `go-proxyproto's ${name}`);
      try {
        const h = conn.proxyHeader;
        assert.equal(h?.version, init.version, name);
        assert.equal(h.command, "PROXY", name);
        assert.equal(h.protocol, init.protocol, name);
        assert.deepEqual(h.source, init.source, name);
        assert.deepEqual(h.destination, init.destination, name);
        assert.deepEqual(h.tlvs, init.tlvs ?? [], name);
        if (name === "v2-tcp4-tlvs") assert.equal(decodeTlvs(h.tlvs).authority, "example.com");
        assert.equal(conn.remoteAddr.hostname, (init.source as { address: string }).address);
        assert.equal(conn.remoteAddr.port, 1111);
        assert.equal(conn.localAddr.port, 2222);
        assert.equal(await readUntil(conn, "\n"), `ping ${name}\n`, name);
        await conn.write(text(`pong ${conn.remoteAddr.hostname} ${conn.remoteAddr.port}\n`));
      } finally {
        conn.close();
      }
    }
    // The fifth case: go-proxyproto's v1 writer prints a v4-mapped TCP6 address with Go's
    // net.IP.String, i.e. as dotted IPv4: "PROXY TCP6 192.0.2.1 192.0.2.2 1111 2222". The
    // spec wants IPv6 text after TCP6, so our listener refuses it (peer deviation).
    await until(() => errors.length > 0, 5000, "our listener to refuse v1-tcp6-mapped", sender);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, "INVALID_ADDRESS", errors[0]!.message);

    const status = await sender.finished();
    assert.equal(status.code, 0, sender.stderr);
    const lines: GoSend[] = [];
    for (let i = 0; i < 5; i++) lines.push(await sender.nextJson<GoSend>());
    for (const [i, [name, init]] of expected.entries()) {
      const line = lines[i]!;
      assert.equal(line.case, name);
      assert.equal(line.error, undefined, `${name}: ${line.error}`);
      const src = (init.source as { address: string }).address;
      assert.equal(line.reply, `pong ${src} 1111\n`, name);
      // Byte for byte what our encoder writes for the same header.
      assert.equal(line.header, toHex(encodeHeader(init)), `${name}: same bytes as ours`);
    }
    const mapped = lines[4]!;
    assert.equal(mapped.case, "v1-tcp6-mapped");
    assert.equal(
      new TextDecoder().decode(
        Uint8Array.from(mapped.header.match(/../g)!, (h) => parseInt(h, 16)),
      ),
      "PROXY TCP6 192.0.2.1 192.0.2.2 1111 2222\r\n",
    );
    assert.equal(mapped.reply, "", "refused: no reply");
    // What go-proxyproto should have written for that header, which it reads back fine:
    assert.equal(
      new TextDecoder().decode(encodeHeader(
        sendInit(1, "TCP6", "::ffff:192.0.2.1", "::ffff:192.0.2.2"),
      )),
      "PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 1111 2222\r\n",
    );
  });

  await t.step("our encodeHeader to go-proxyproto's Listener", async () => {
    await withGoListener(binary, async (send) => {
      const v4 = CLIENT_V4;
      const v6 = CLIENT_V6;

      let saw = await send(encodeHeader({ version: 1, command: "PROXY", ...v4 }), "v1 tcp4\n");
      assert.deepEqual(
        { remote: saw.remote, local: saw.local, version: saw.version, command: saw.command },
        { remote: "203.0.113.7:51234", local: "10.0.0.5:443", version: 1, command: "PROXY" },
      );

      // v1 TCP6 with plain (not v4-mapped) addresses, which 0.4.2 reads.
      saw = await send(encodeHeader({ version: 1, command: "PROXY", ...v6 }), "v1 tcp6\n");
      assert.equal(saw.remote, "[2001:db8::7]:51234");
      assert.equal(saw.local, "[2001:db8::1]:443");
      assert.equal(saw.version, 1);

      // v2 TCP4 with TLVs and a CRC32C (go-proxyproto keeps the TLVs raw, in order).
      const withTlvs = encodeHeader({
        version: 2,
        command: "PROXY",
        ...v4,
        tlvs: encodeTlvs({
          alpn: "h2",
          authority: "example.com",
          awsVpceId: "vpce-08d2bf15fac5001c9",
          others: [{ type: 0xf1, value: Uint8Array.of(0, 1, 2, 0xff) }],
        }),
      }, { checksum: true });
      saw = await send(withTlvs, "v2 tcp4 tlvs\n");
      assert.equal(saw.remote, "203.0.113.7:51234");
      assert.equal(saw.local, "10.0.0.5:443");
      assert.equal(saw.version, 2);
      assert.equal(saw.command, "PROXY");
      assert.equal(saw.transport, 0x11);
      assert.deepEqual(saw.tlvs, tlvList(withTlvs));
      assert.deepEqual(saw.tlvs!.map((x) => x.type), [0x03, 0x01, 0x02, 0xea, 0xf1]);

      saw = await send(
        encodeHeader({ version: 2, command: "PROXY", ...v6 }, { checksum: true }),
        "v2 tcp6\n",
      );
      assert.equal(saw.remote, "[2001:db8::7]:51234");
      assert.equal(saw.local, "[2001:db8::1]:443");
      assert.equal(saw.transport, 0x21);

      // LOCAL (a health check): go-proxyproto keeps the socket's addresses.
      saw = await send(encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" }), "l\n");
      assert.equal(saw.command, "LOCAL");
      assert.equal(saw.remote, `127.0.0.1:${saw.clientPort}`);
      saw = await send(text("PROXY UNKNOWN\r\n"), "u\n");
      assert.equal(saw.command, "LOCAL");
      assert.equal(saw.remote, `127.0.0.1:${saw.clientPort}`);
    });
  });

  await t.step("where go-proxyproto 0.4.2 departs from the spec (we follow the spec)", async () => {
    await withGoListener(binary, async (send) => {
      // It refuses valid headers:
      // - v4-mapped addresses after TCP6 (what HAProxy and nginx send for mixed families).
      const mapped = text("PROXY TCP6 ::ffff:10.0.0.1 ::ffff:10.0.0.2 1 2\r\n");
      let saw = await send(mapped, "mapped\n");
      assert.match(saw.error ?? "", /invalid address/);
      assert.equal(decodeHeader(mapped)?.header.source?.address, "::ffff:10.0.0.1");

      // - v2 PROXY over UNSPEC, which the spec lets a receiver accept with the socket's
      //   addresses.
      const unspec = encodeHeader({ version: 2, command: "PROXY", protocol: "UNKNOWN" });
      saw = await send(unspec, "unspec\n");
      assert.match(saw.error ?? "", /unsupported address family and protocol/);
      const decoded = decodeHeader(unspec)?.header;
      assert.equal(decoded?.command, "PROXY");
      assert.equal(decoded.protocol, "UNKNOWN");
      assert.equal(decoded.source, null);
      // - a v1 line that does not come in one read: see the next step.

      // It accepts invalid ones, which our decoder refuses:
      const refusedByUs: [string, Uint8Array, ProxyProtocolErrorCode, string][] = [
        [
          "a CRC32c that does not match (never verified)",
          (() => {
            const b = encodeHeader({
              version: 2,
              command: "PROXY",
              protocol: "TCP4",
              source: { address: "203.0.113.7", port: 51234 },
              destination: { address: "10.0.0.5", port: 443 },
            }, { checksum: true });
            b[19]! ^= 1; // the source address's last byte: 7 -> 6
            return b;
          })(),
          "CHECKSUM_MISMATCH",
          "203.0.113.6:51234",
        ],
        [
          "a signed port",
          text("PROXY TCP4 192.0.2.1 192.0.2.2 +1111 2222\r\n"),
          "V1_MALFORMED",
          "192.0.2.1:1111",
        ],
        [
          "a port with a leading zero",
          text("PROXY TCP4 192.0.2.1 192.0.2.2 01111 2222\r\n"),
          "INVALID_PORT",
          "192.0.2.1:1111",
        ],
        [
          "a seventh field",
          text("PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222 extra\r\n"),
          "INVALID_PORT", // the destination port runs into " extra"
          "192.0.2.1:1111",
        ],
        [
          "v2 transport 0x3",
          (() => {
            const b = encodeHeader({
              version: 2,
              command: "PROXY",
              protocol: "TCP4",
              source: { address: "192.0.2.1", port: 1111 },
              destination: { address: "192.0.2.2", port: 2222 },
            });
            b[13] = 0x13;
            return b;
          })(),
          "INVALID_FAMILY",
          // Accepted, but with neither TCP nor UDP it builds no address: RemoteAddr() is a
          // nil net.Addr (calling .String() on it panics; main.go guards against that).
          "<nil>",
        ],
      ];
      for (const [name, bytes, code, goRemote] of refusedByUs) {
        saw = await send(bytes, "lax\n");
        assert.equal(saw.error, undefined, `go-proxyproto accepts ${name}`);
        assert.equal(saw.remote, goRemote, name);
        assert.throws(
          () => decodeHeader(bytes),
          (e) => e instanceof ProxyProtocolError && e.code === code,
          `our decoder refuses ${name} with ${code}`,
        );
      }
    });
  });

  await t.step("go-proxyproto refuses a v1 line split across reads; we wait for it", async () => {
    const line = text("PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n");
    await using go = new Peer("ppinterop listen", binary, ["listen"]);
    const { port } = await go.nextJson<{ port: number }>();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      conn.setNoDelay(true);
      await conn.write(line.subarray(0, 20));
      await sleep(50);
      // go-proxyproto may already have given up and closed: the rest can meet a closed socket.
      await conn.write(concatBytes([line.subarray(20), text("split\n")])).catch(() => 0);
      const saw = await go.nextJson<GoSaw>();
      assert.match(saw.error ?? "", /can't read version 1 header/);
    } finally {
      conn.close();
    }
    // The same split into our listener is read whole.
    await using listener = listen({ hostname: "127.0.0.1", port: 0, timeout: 3000 });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    try {
      client.setNoDelay(true);
      await client.write(line.subarray(0, 20));
      await sleep(50);
      await client.write(line.subarray(20));
      const ours = await within(listener.accept(), 5000, "the split header");
      assert.equal(ours.remoteAddr.hostname, "192.0.2.1");
      ours.close();
    } finally {
      client.close();
    }
  });
});
