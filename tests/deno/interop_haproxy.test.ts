// Interop: HAProxy 2.6 (Debian 12) in front of, and health-checking, the Deno adapter.
// HAProxy runs in the foreground as the test's child (`haproxy -db -f cfg`), no daemon, no
// chroot or user switch, no log file; its config lives in a temp dir. Its frontends refuse
// 127.0.0.9 at connection level so the readiness probe never reaches our listener.
import assert from "node:assert/strict";
import { listen, type ProxyConn, type ProxyListener } from "@proxy-protocol/edge/deno";
import {
  decodeHeader,
  decodeTlvs,
  encodeHeader,
  encodeTlvs,
  type ProxyHeaderInit,
  ProxyProtocolError,
} from "@proxy-protocol/edge";
import {
  CLIENT_V4,
  CLIENT_V6,
  echoThrough,
  freePort,
  Peer,
  peerTest,
  readAll,
  readN,
  tempDir,
  text,
  until,
  waitForPort,
  within,
} from "../interop/helpers.ts";

const NEEDS = { commands: ["haproxy"] };
const PROBE = "127.0.0.9";

/** A payload with every byte value, so nothing on the way may treat it as text. */
const PAYLOAD = Uint8Array.from({ length: 512 }, (_, i) => (i * 7 + 3) & 0xff);

function config(sections: string): string {
  return `# Written by tests/deno/interop_haproxy.test.ts; removed after the test.
global
    # Foreground child of the test: no daemon, chroot, user or log file. Logs go to
    # stderr, which the tests read (health checks, refused headers) and put in failures.
    log stderr format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 5s
    timeout server 5s
${sections}`;
}

/** A tcp frontend on 127.0.0.1:port that refuses the readiness probe's address. */
function frontend(name: string, port: number, backend: string, extra = ""): string {
  return `
frontend ${name}
    bind 127.0.0.1:${port}
    tcp-request connection reject if { src ${PROBE} }
    default_backend ${backend}${extra}
`;
}

async function startHaproxy(haproxy: string, dir: string, cfg: string): Promise<Peer> {
  const path = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(path, cfg);
  return new Peer("haproxy", haproxy, ["-db", "-f", path]);
}

function harness() {
  const errors: ProxyProtocolError[] = [];
  const listener = listen({
    hostname: "127.0.0.1",
    port: 0,
    timeout: 3000,
    onError: (e) => void errors.push(e),
  });
  return { listener, errors, port: listener.addr.port };
}

peerTest(
  "interop haproxy mode tcp: send-proxy, send-proxy-v2, and proxy-v2-options crc32c,unique-id",
  NEEDS,
  async ({ haproxy }, t) => {
    const { listener, errors, port } = harness();
    await using _listener = listener;
    await using dir = await tempDir("interop-haproxy-");
    // Free ports for the frontends; see freePort() for the small race.
    const [p1, p2, p3] = [freePort(), freePort(), freePort()];
    await using peer = await startHaproxy(
      haproxy!,
      dir.path,
      config(
        frontend("fe_v1", p1, "be_v1") +
          frontend("fe_v2", p2, "be_v2") +
          // %{+X}o: the following fields in upper-case hex; %ci: the client's IP.
          frontend("fe_v2opts", p3, "be_v2opts", "\n    unique-id-format %{+X}o%ci") + `
backend be_v1
    server s1 127.0.0.1:${port} send-proxy

backend be_v2
    server s1 127.0.0.1:${port} send-proxy-v2

backend be_v2opts
    server s1 127.0.0.1:${port} send-proxy-v2 proxy-v2-options crc32c,unique-id
`,
      ),
    );
    for (const p of [p1, p2, p3]) await waitForPort(peer, "127.0.0.1", p, PROBE);

    const common = (conn: ProxyConn, client: { address: string; port: number }, fp: number) => {
      assert.deepEqual(conn.proxyHeader?.source, client, "source: the client, from the header");
      assert.deepEqual(conn.proxyHeader?.destination, { address: "127.0.0.1", port: fp });
      assert.equal(conn.proxyHeader?.command, "PROXY");
      assert.equal(conn.proxyHeader?.protocol, "TCP4");
      assert.deepEqual(
        conn.remoteAddr,
        { transport: "tcp", hostname: "127.0.0.5", port: client.port },
      );
      assert.deepEqual(conn.localAddr, { transport: "tcp", hostname: "127.0.0.1", port: fp });
      // The socket itself is HAProxy's own connection to us.
      assert.equal(conn.peer.remoteAddress, "127.0.0.1");
      assert.equal(conn.peer.localPort, port);
    };

    await t.step("send-proxy: v1", async () => {
      const { conn, client } = await echoThrough(
        listener,
        "127.0.0.1",
        p1,
        "127.0.0.5",
        PAYLOAD,
        "HAProxy",
      );
      assert.equal(client.address, "127.0.0.5");
      assert.equal(conn.proxyHeader?.version, 1);
      assert.deepEqual(conn.proxyHeader?.tlvs, []);
      common(conn, client, p1);
    });

    await t.step("send-proxy-v2: v2 PROXY TCP4, no TLVs", async () => {
      const { conn, client } = await echoThrough(
        listener,
        "127.0.0.1",
        p2,
        "127.0.0.5",
        PAYLOAD,
        "HAProxy",
      );
      assert.equal(conn.proxyHeader?.version, 2);
      assert.deepEqual(conn.proxyHeader?.tlvs, []);
      common(conn, client, p2);
    });

    await t.step("send-proxy-v2 + crc32c,unique-id: verified CRC32C and a UNIQUE_ID", async () => {
      const { conn, client } = await echoThrough(
        listener,
        "127.0.0.1",
        p3,
        "127.0.0.5",
        PAYLOAD,
        "HAProxy",
      );
      assert.equal(conn.proxyHeader?.version, 2);
      common(conn, client, p3);
      const tlvs = decodeTlvs(conn.proxyHeader.tlvs);
      // The listener verifies the CRC32c (verifyChecksum defaults to true); it got here.
      assert.equal(typeof tlvs.crc32c, "number", "a CRC32C TLV");
      assert.ok(tlvs.uniqueId !== undefined, "a UNIQUE_ID TLV");
      // 127.0.0.5 as %{+X}o%ci prints it.
      assert.equal(new TextDecoder().decode(tlvs.uniqueId), "7F000005");
      assert.deepEqual(conn.proxyHeader.tlvs.map((x) => x.type), [0x03, 0x05]);
    });

    assert.deepEqual(errors, [], "no connection was refused");
  },
);

/**
 * Serves `n` tcp-check health checks on `listener`: asserts each header with `check`,
 * reads HAProxy's `PING\r\n` and answers `PONG\r\n`, which passes the check.
 */
async function serveChecks(
  listener: ProxyListener,
  n: number,
  check: (conn: ProxyConn) => void,
): Promise<void> {
  for (let i = 0; i < n; i++) {
    const conn = await within(listener.accept(), 5000, `health check ${i + 1} of ${n}`);
    try {
      check(conn);
      assert.equal(new TextDecoder().decode(await readN(conn, 6)), "PING\r\n");
      await conn.write(text("PONG\r\n"));
    } finally {
      conn.close();
    }
  }
}

/** A backend whose check sends PING and expects PONG after the PROXY header. */
function checkBackend(name: string, server: string): string {
  return `
backend ${name}
    option log-health-checks
    option tcp-check
    tcp-check send PING\\r\\n
    tcp-check expect string PONG
    server s1 ${server}
`;
}

peerTest(
  "interop haproxy health checks: check-send-proxy v2 LOCAL (crc32c) and v1 PROXY TCP4",
  NEEDS,
  async ({ haproxy }) => {
    const v2 = harness();
    await using _v2 = v2.listener;
    const v1 = harness();
    await using _v1 = v1.listener;
    await using dir = await tempDir("interop-haproxy-");
    // HAProxy exits when no frontend is bound ("No enabled listener found"), so the check
    // backends come with a frontend that refuses everything (the readiness probe too).
    const idle = freePort();
    await using peer = await startHaproxy(
      haproxy!,
      dir.path,
      config(
        `
frontend fe_idle
    bind 127.0.0.1:${idle}
    tcp-request connection reject
` +
          checkBackend(
            "be_check_v2",
            `127.0.0.1:${v2.port} check send-proxy-v2 check-send-proxy inter 200ms ` +
              "proxy-v2-options crc32c",
          ) +
          checkBackend(
            "be_check_v1",
            `127.0.0.1:${v1.port} send-proxy check check-send-proxy inter 200ms`,
          ),
      ),
    );
    await waitForPort(peer, "127.0.0.1", idle, PROBE);
    await Promise.all([
      serveChecks(v2.listener, 3, (conn) => {
        const header = conn.proxyHeader;
        assert.equal(header?.version, 2);
        assert.equal(header.command, "LOCAL", "v2 checks are LOCAL");
        assert.equal(header.protocol, "UNKNOWN", "LOCAL with UNSPEC, as the spec asks");
        assert.equal(header.source, null);
        assert.equal(header.destination, null);
        // The listener verified it (verifyChecksum defaults to true).
        assert.equal(typeof decodeTlvs(header.tlvs).crc32c, "number", "a CRC32C TLV");
        assert.deepEqual(header.tlvs.map((x) => x.type), [0x03], "and nothing else");
        assert.deepEqual(conn.remoteAddr, {
          transport: "tcp",
          hostname: conn.peer.remoteAddress,
          port: conn.peer.remotePort,
        });
        assert.equal(conn.remoteAddr.hostname, "127.0.0.1");
        assert.deepEqual(conn.localAddr, {
          transport: "tcp",
          hostname: "127.0.0.1",
          port: v2.port,
        });
      }),
      serveChecks(v1.listener, 3, (conn) => {
        const header = conn.proxyHeader;
        // Debian 12's HAProxy: a full PROXY TCP4 line with the check connection's own
        // addresses (not `PROXY UNKNOWN`), which comes to the same as the socket's.
        assert.equal(header?.version, 1);
        assert.equal(header.command, "PROXY");
        assert.equal(header.protocol, "TCP4");
        assert.deepEqual(header.source, { address: "127.0.0.1", port: conn.peer.remotePort });
        assert.deepEqual(header.destination, { address: "127.0.0.1", port: v1.port });
        assert.deepEqual(conn.remoteAddr, {
          transport: "tcp",
          hostname: "127.0.0.1",
          port: conn.peer.remotePort,
        });
      }),
    ]);
    // HAProxy saw the answers: each server went UP through a passed Layer7 (tcp-check) check.
    await until(
      () => /be_check_v2\/s1 succeeded, reason: Layer7 check passed.*UP/.test(peer.stderr),
      3000,
      "HAProxy to log be_check_v2 UP",
      peer,
    );
    await until(
      () => /be_check_v1\/s1 succeeded, reason: Layer7 check passed.*UP/.test(peer.stderr),
      3000,
      "HAProxy to log be_check_v1 UP",
      peer,
    );
    assert.deepEqual(v2.errors, [], "no v2 check was refused");
    assert.deepEqual(v1.errors, [], "no v1 check was refused");
  },
);

peerTest(
  "interop haproxy health checks: plain L4 checks send the header, then reset at once",
  NEEDS,
  async ({ haproxy }) => {
    const { listener, errors, port } = harness();
    await using _listener = listener;
    await using dir = await tempDir("interop-haproxy-");
    const idle = freePort();
    await using peer = await startHaproxy(
      haproxy!,
      dir.path,
      config(`
frontend fe_idle
    bind 127.0.0.1:${idle}
    tcp-request connection reject

backend be_check_l4
    option log-health-checks
    server s1 127.0.0.1:${port} check send-proxy-v2 check-send-proxy inter 100ms
`),
    );
    await waitForPort(peer, "127.0.0.1", idle, PROBE);
    // Peer behaviour (HAProxy 2.6): a connect-only check writes the v2 LOCAL header and
    // closes with SO_LINGER 0 (an RST) the moment it is connected. Linux drops the unread
    // header with the reset, so a receiver usually sees a reset connection, not a header
    // (Deno's accept() fails with "Transport endpoint is not connected (os error 107)"):
    // the listener reports CONNECTION_CLOSED and goes on. A check that waits for an answer
    // (tcp-check, above) is the way to see HAProxy's check headers.
    const accepted: ProxyConn[] = [];
    const accepting = (async () => {
      for await (const conn of listener) {
        accepted.push(conn);
        conn.close();
      }
    })();
    await until(() => accepted.length + errors.length >= 4, 5000, "four L4 checks", peer);
    await until(() => /be_check_l4\/s1 succeeded/.test(peer.stderr), 3000, "a passed check", peer);
    await peer.stop();
    listener.close();
    await accepting;
    for (const conn of accepted) {
      assert.equal(conn.proxyHeader?.command, "LOCAL", "a check whose header won the race");
    }
    for (const error of errors) {
      assert.equal(error.code, "CONNECTION_CLOSED", error.message);
    }
  },
);

type Expect =
  | { forwards: Pick<ProxyHeaderInit, "protocol" | "source" | "destination"> | "socket" }
  | { rejected: string };

peerTest(
  "interop haproxy accept-proxy: our encoder's headers in, HAProxy's v2 out; HAProxy's laxness",
  NEEDS,
  async ({ haproxy }) => {
    const { listener, errors, port } = harness();
    await using _listener = listener;
    await using dir = await tempDir("interop-haproxy-");
    const fp = freePort();
    // HAProxy decodes the header we send, then writes its own v2 header (with the CRC32C
    // and the AUTHORITY it received) to our listener: what we read is what HAProxy read.
    await using peer = await startHaproxy(
      haproxy!,
      dir.path,
      config(`
frontend fe_accept
    bind 127.0.0.1:${fp} accept-proxy
    tcp-request connection reject if { src ${PROBE} }
    default_backend be_relay

backend be_relay
    server s1 127.0.0.1:${port} send-proxy-v2 proxy-v2-options authority,crc32c
`),
    );
    await waitForPort(peer, "127.0.0.1", fp, PROBE);

    const v4 = CLIENT_V4;
    const v6 = CLIENT_V6;
    const badCrc = encodeHeader({ version: 2, command: "PROXY", ...v4 }, { checksum: true });
    badCrc[20]! ^= 1;
    const cases: [string, Uint8Array, Expect][] = [
      ["v1 TCP4", encodeHeader({ version: 1, command: "PROXY", ...v4 }), { forwards: v4 }],
      ["v1 TCP6", encodeHeader({ version: 1, command: "PROXY", ...v6 }), { forwards: v6 }],
      [
        "v2 TCP4 + AUTHORITY, ALPN, CRC32C",
        encodeHeader({
          version: 2,
          command: "PROXY",
          ...v4,
          tlvs: encodeTlvs({ authority: "example.com", alpn: "h2" }),
        }, { checksum: true }),
        { forwards: v4 },
      ],
      [
        "v2 TCP6 + CRC32C",
        encodeHeader({ version: 2, command: "PROXY", ...v6 }, { checksum: true }),
        { forwards: v6 },
      ],
      [
        "v1 TCP6 with v4-mapped addresses (valid per spec)",
        text("PROXY TCP6 ::ffff:10.0.0.1 ::ffff:10.0.0.2 1 2\r\n"),
        {
          forwards: {
            protocol: "TCP6",
            source: { address: "::ffff:10.0.0.1", port: 1 },
            destination: { address: "::ffff:10.0.0.2", port: 2 },
          },
        },
      ],
      ["v1 PROXY UNKNOWN, short form", text("PROXY UNKNOWN\r\n"), { forwards: "socket" }],
      [
        "v2 LOCAL",
        encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" }),
        { forwards: "socket" },
      ],
      ["v2 with a wrong CRC32c", badCrc, { rejected: "invalid PROXY protocol header" }],
      // The spec lets a receiver refuse PROXY over UNSPEC; HAProxy does (we accept it).
      [
        "v2 PROXY UNSPEC",
        encodeHeader({ version: 2, command: "PROXY", protocol: "UNKNOWN" }),
        { rejected: "invalid PROXY protocol header" },
      ],
      // The spec ignores the rest of an UNKNOWN line; HAProxy 2.6 refuses it (we accept it).
      [
        "v1 PROXY UNKNOWN with addresses",
        text("PROXY UNKNOWN ::1 ::1 1 2\r\n"),
        { rejected: "unhandled protocol in the PROXY protocol header" },
      ],
      // Peer deviations: HAProxy 2.6 accepts v1 text the spec forbids, and forwards what its
      // lax parser made of it. Our decoder refuses each of these (asserted below).
      [
        "v1 IPv4 octet 256 (HAProxy deviation)",
        text("PROXY TCP4 192.168.0.256 10.0.0.1 1 2\r\n"),
        {
          forwards: {
            protocol: "TCP4",
            // The 256 carries into the third octet.
            source: { address: "192.168.1.0", port: 1 },
            destination: { address: "10.0.0.1", port: 2 },
          },
        },
      ],
      [
        "v1 port 70000 (HAProxy deviation)",
        text("PROXY TCP4 192.168.0.1 10.0.0.1 70000 2\r\n"),
        {
          forwards: {
            protocol: "TCP4",
            // 70000 mod 65536.
            source: { address: "192.168.0.1", port: 4464 },
            destination: { address: "10.0.0.1", port: 2 },
          },
        },
      ],
      [
        "v1 port with a leading zero (HAProxy deviation)",
        text("PROXY TCP4 192.168.0.1 10.0.0.1 0443 2\r\n"),
        {
          forwards: {
            protocol: "TCP4",
            source: { address: "192.168.0.1", port: 443 },
            destination: { address: "10.0.0.1", port: 2 },
          },
        },
      ],
      // Last, a case that must arrive: a connection HAProxy should have refused but relayed
      // would be accepted before it and fail its match.
      ["v1 TCP4 again", encodeHeader({ version: 1, command: "PROXY", ...v4 }), { forwards: v4 }],
    ];

    for (const [name, header, expect] of cases) {
      const payload = text(`payload of ${name}\n`);
      const logFrom = peer.stderr.length;
      const client = await Deno.connect({ hostname: "127.0.0.1", port: fp });
      try {
        const clientPort = (client.localAddr as Deno.NetAddr).port;
        try {
          await client.write(new Uint8Array([...header, ...payload]));
        } catch (error) {
          // HAProxy may reset before the write completes when it refuses the header.
          assert.ok("rejected" in expect, `${name}: ${error}`);
        }
        if ("rejected" in expect) {
          // HAProxy closes the client without connecting to us and logs why.
          const rest = await readAll(client);
          assert.equal(rest.length, 0, name);
          // (The log line names the source HAProxy had parsed so far, so match on what is new.)
          await until(
            () => peer.stderr.slice(logFrom).includes(expect.rejected),
            3000,
            `HAProxy to log "${expect.rejected}" for ${name}`,
            peer,
          );
          continue;
        }
        const conn = await within(listener.accept(), 5000, `${name} relayed by HAProxy`);
        try {
          const h = conn.proxyHeader;
          assert.equal(h?.version, 2, name);
          assert.equal(h.command, "PROXY", name);
          if (expect.forwards === "socket") {
            // HAProxy fell back to the real connection: ours, from 127.0.0.1.
            assert.deepEqual(h.source, { address: "127.0.0.1", port: clientPort }, name);
            assert.deepEqual(h.destination, { address: "127.0.0.1", port: fp }, name);
          } else {
            assert.equal(h.protocol, expect.forwards.protocol, name);
            assert.deepEqual(h.source, expect.forwards.source, name);
            assert.deepEqual(h.destination, expect.forwards.destination, name);
            assert.equal(conn.remoteAddr.hostname, expect.forwards.source!.address, name);
          }
          const tlvs = decodeTlvs(h.tlvs);
          assert.equal(typeof tlvs.crc32c, "number", `${name}: HAProxy's CRC32C, verified`);
          if (name.includes("AUTHORITY")) assert.equal(tlvs.authority, "example.com", name);
          assert.deepEqual(await readN(conn, payload.length), payload, name);
          await conn.write(text("ok\n"));
        } finally {
          conn.close();
        }
        assert.equal(new TextDecoder().decode(await readN(client, 3)), "ok\n", name);
      } finally {
        client.close();
      }
    }
    // What HAProxy let through above, our decoder refuses, as the spec asks.
    for (
      const [line, code] of [
        ["PROXY TCP4 192.168.0.256 10.0.0.1 1 2\r\n", "INVALID_ADDRESS"],
        ["PROXY TCP4 192.168.0.1 10.0.0.1 70000 2\r\n", "INVALID_PORT"],
        ["PROXY TCP4 192.168.0.1 10.0.0.1 0443 2\r\n", "INVALID_PORT"],
      ] as const
    ) {
      assert.throws(
        () => decodeHeader(text(line)),
        (e) => e instanceof ProxyProtocolError && e.code === code,
        line,
      );
    }
    // And what HAProxy refused but the spec allows, our decoder takes.
    assert.equal(decodeHeader(text("PROXY UNKNOWN ::1 ::1 1 2\r\n"))?.header.command, "LOCAL");
    assert.equal(
      decodeHeader(encodeHeader({ version: 2, command: "PROXY", protocol: "UNKNOWN" }))?.header
        .protocol,
      "UNKNOWN",
    );
    assert.deepEqual(errors, []);
  },
);
