// Interop: nginx 1.22 (Debian 12) stream proxy in front of the Deno adapter. nginx runs in
// the foreground as the test's child, with a prefix, config, pid file and logs all in a temp
// dir (`-p`, `-c`, `-e stderr`, `-g "daemon off; pid ...;"`). A custom -c file does not read
// Debian's modules-enabled, so the config loads the stream module itself. Every server
// denies 127.0.0.9, the readiness probe's address, so probes never reach our listener.
import assert from "node:assert/strict";
import { listen } from "@proxy-protocol/edge/deno";
import {
  decodeHeader,
  encodeHeader,
  encodeTlvs,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
} from "@proxy-protocol/edge";
import {
  CLIENT_V4,
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

const STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";
const NEEDS = { commands: ["nginx"], paths: [STREAM_MODULE] };
const PROBE = "127.0.0.9";

function config(dir: string, servers: string): string {
  return `# Written by tests/deno/interop_nginx.test.ts; removed after the test.
load_module ${STREAM_MODULE};
worker_processes 1;
error_log stderr notice;

events {
    worker_connections 64;
}

stream {
    access_log off;
${servers}
}
# prefix: ${dir}
`;
}

async function startNginx(nginx: string, dir: string, cfg: string): Promise<Peer> {
  const path = `${dir}/nginx.conf`;
  await Deno.writeTextFile(path, cfg);
  return new Peer("nginx", nginx, [
    "-p",
    dir,
    "-c",
    path,
    "-e",
    "stderr",
    "-g",
    `daemon off; pid ${dir}/nginx.pid;`,
  ]);
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

const PAYLOAD = Uint8Array.from({ length: 300 }, (_, i) => (i * 13 + 1) & 0xff);

peerTest(
  "interop nginx stream proxy_protocol on: v1 with the client's address (IPv4 and IPv6)",
  NEEDS,
  async ({ nginx }) => {
    const { listener, errors, port } = harness();
    await using _listener = listener;
    await using dir = await tempDir("interop-nginx-");
    // Free ports; see freePort() for the small race.
    const p4 = freePort("127.0.0.1");
    const p6 = freePort("::1");
    await using peer = await startNginx(
      nginx!,
      dir.path,
      config(
        dir.path,
        `
    server {
        listen 127.0.0.1:${p4};
        listen [::1]:${p6};
        deny ${PROBE};
        allow all;
        proxy_pass 127.0.0.1:${port};
        proxy_protocol on;
    }`,
      ),
    );
    await waitForPort(peer, "127.0.0.1", p4, PROBE);

    const v4 = await echoThrough(listener, "127.0.0.1", p4, "127.0.0.6", PAYLOAD, "nginx");
    assert.equal(v4.client.address, "127.0.0.6");
    assert.deepEqual(v4.conn.proxyHeader, {
      version: 1,
      command: "PROXY",
      protocol: "TCP4",
      source: { address: "127.0.0.6", port: v4.client.port },
      destination: { address: "127.0.0.1", port: p4 },
      tlvs: [],
    });
    assert.deepEqual(
      v4.conn.remoteAddr,
      { transport: "tcp", hostname: "127.0.0.6", port: v4.client.port },
    );
    assert.deepEqual(v4.conn.localAddr, { transport: "tcp", hostname: "127.0.0.1", port: p4 });
    assert.equal(v4.conn.peer.remoteAddress, "127.0.0.1", "the socket is nginx's");
    assert.equal(v4.conn.peer.localPort, port);

    // An IPv6 client; nginx still reaches us over IPv4.
    const v6 = await echoThrough(listener, "::1", p6, "::1", PAYLOAD, "nginx");
    assert.deepEqual(v6.conn.proxyHeader, {
      version: 1,
      command: "PROXY",
      protocol: "TCP6",
      source: { address: "::1", port: v6.client.port },
      destination: { address: "::1", port: p6 },
      tlvs: [],
    });
    assert.deepEqual(v6.conn.remoteAddr, {
      transport: "tcp",
      hostname: "::1",
      port: v6.client.port,
    });
    assert.deepEqual(v6.conn.localAddr, { transport: "tcp", hostname: "::1", port: p6 });
    assert.equal(v6.conn.peer.remoteAddress, "127.0.0.1");

    assert.deepEqual(errors, []);
  },
);

type Expect =
  | { source: { address: string; port: number } | "socket" }
  | { nginxRefuses: string }
  | { weRefuse: ProxyProtocolErrorCode };

peerTest(
  "interop nginx listen proxy_protocol + realip: our encoder's headers in; nginx's laxness",
  NEEDS,
  async ({ nginx }) => {
    const { listener, errors, port } = harness();
    await using _listener = listener;
    await using dir = await tempDir("interop-nginx-");
    const pr = freePort();
    // nginx reads the header we send; set_real_ip_from makes the header's source its client
    // address, which `proxy_protocol on` then writes to our listener as a v1 line.
    await using peer = await startNginx(
      nginx!,
      dir.path,
      config(
        dir.path,
        `
    server {
        listen 127.0.0.1:${pr} proxy_protocol;
        set_real_ip_from 127.0.0.0/8;
        deny ${PROBE};
        allow all;
        proxy_pass 127.0.0.1:${port};
        proxy_protocol on;
    }`,
      ),
    );
    await waitForPort(peer, "127.0.0.1", pr, PROBE);

    const v4 = CLIENT_V4;
    const badCrc = encodeHeader({ version: 2, command: "PROXY", ...v4 }, { checksum: true });
    badCrc[20]! ^= 1;
    const badCommand = encodeHeader({ version: 2, command: "PROXY", ...v4 });
    badCommand[12] = 0x2f; // version 2, command 0xF
    const long = encodeHeader({
      version: 2,
      command: "PROXY",
      ...v4,
      tlvs: encodeTlvs({ authority: "a".repeat(80) }),
    });
    assert.ok(long.length > 107);
    const cases: [string, Uint8Array, Expect][] = [
      ["v1 TCP4", encodeHeader({ version: 1, command: "PROXY", ...v4 }), { source: v4.source }],
      [
        "v2 TCP4 + AUTHORITY, ALPN, CRC32C",
        encodeHeader({
          version: 2,
          command: "PROXY",
          ...v4,
          tlvs: encodeTlvs({ authority: "example.com", alpn: "h2" }),
        }, { checksum: true }),
        { source: v4.source },
      ],
      ["v1 PROXY UNKNOWN", text("PROXY UNKNOWN\r\n"), { source: "socket" }],
      [
        "v2 LOCAL",
        encodeHeader({ version: 2, command: "LOCAL", protocol: "UNKNOWN" }),
        { source: "socket" },
      ],
      [
        `a ${long.length}-byte v2 header`,
        long,
        { nginxRefuses: "header is too large while reading PROXY protocol" },
      ],
      [
        "v1 port 70000",
        text("PROXY TCP4 192.168.0.1 10.0.0.1 70000 2\r\n"),
        { nginxRefuses: "broken header" },
      ],
      // Peer deviations (nginx 1.22), each refused by our decoder (asserted below):
      // a CRC32c that does not match is not checked...
      ["v2 with a wrong CRC32c (nginx deviation)", badCrc, { source: v4.source }],
      // ...a leading zero is read as decimal...
      [
        "v1 port 0443 (nginx deviation)",
        text("PROXY TCP4 192.168.0.1 10.0.0.1 0443 2\r\n"),
        { source: { address: "192.168.0.1", port: 443 } },
      ],
      // ...and a bad address or a bad v2 command does not abort the connection: nginx
      // carries on with its socket's own addresses.
      [
        "v1 IPv4 octet 256 (nginx deviation)",
        text("PROXY TCP4 192.168.0.256 10.0.0.1 1 2\r\n"),
        { source: "socket" },
      ],
      ["v2 command 0xF (nginx deviation)", badCommand, { source: "socket" }],
      // nginx writes the v1 family of the (real-ip) client but its own socket's IPv4 address
      // as the destination: "PROXY TCP6 2001:db8::7 127.0.0.1 51234 <port>". The spec wants
      // both addresses in the family's form, so our listener refuses the line.
      [
        "v1 TCP6 client over an IPv4 listener (nginx deviation: mixed-family v1 line)",
        text("PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n"),
        { weRefuse: "INVALID_ADDRESS" },
      ],
      // Last, a case that must arrive: a stray relayed connection would be accepted before
      // it and fail its match.
      ["v1 TCP4 again", encodeHeader({ version: 1, command: "PROXY", ...v4 }), {
        source: v4.source,
      }],
    ];

    for (const [name, header, expect] of cases) {
      const payload = text(`payload of ${name}\n`);
      const logFrom = peer.stderr.length;
      const errorsBefore = errors.length;
      const client = await Deno.connect({ hostname: "127.0.0.1", port: pr });
      try {
        const clientPort = (client.localAddr as Deno.NetAddr).port;
        await client.write(new Uint8Array([...header, ...payload]));
        if ("nginxRefuses" in expect) {
          assert.equal((await readAll(client)).length, 0, name);
          await until(
            () => peer.stderr.slice(logFrom).includes(expect.nginxRefuses),
            3000,
            `nginx to log "${expect.nginxRefuses}" for ${name}`,
            peer,
          );
          continue;
        }
        if ("weRefuse" in expect) {
          await until(() => errors.length > errorsBefore, 3000, `our listener to refuse ${name}`);
          assert.equal(errors[errorsBefore]!.code, expect.weRefuse, errors[errorsBefore]!.message);
          assert.equal(errors[errorsBefore]!.offset, 23, "at the destination address");
          assert.equal((await readAll(client)).length, 0, name);
          errors.splice(errorsBefore);
          continue;
        }
        const conn = await within(listener.accept(), 5000, `${name} relayed by nginx`);
        try {
          const h = conn.proxyHeader;
          assert.equal(h?.version, 1, `${name}: nginx writes v1 only`);
          assert.equal(h.protocol, "TCP4", name);
          const source = expect.source === "socket"
            ? { address: "127.0.0.1", port: clientPort }
            : expect.source;
          assert.deepEqual(h.source, source, name);
          // nginx names its own listening socket as the destination, not the header's.
          assert.deepEqual(h.destination, { address: "127.0.0.1", port: pr }, name);
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

    // What nginx let through above, our decoder refuses, as the spec asks.
    const refused: [Uint8Array, ProxyProtocolErrorCode][] = [
      [badCrc, "CHECKSUM_MISMATCH"],
      [text("PROXY TCP4 192.168.0.1 10.0.0.1 0443 2\r\n"), "INVALID_PORT"],
      [text("PROXY TCP4 192.168.0.256 10.0.0.1 1 2\r\n"), "INVALID_ADDRESS"],
      [badCommand, "INVALID_COMMAND"],
      [text("PROXY TCP6 2001:db8::7 127.0.0.1 51234 443\r\n"), "INVALID_ADDRESS"],
    ];
    for (const [bytes, code] of refused) {
      assert.throws(
        () => decodeHeader(bytes),
        (e) => e instanceof ProxyProtocolError && e.code === code,
        code,
      );
    }
    assert.deepEqual(errors, []);
  },
);
