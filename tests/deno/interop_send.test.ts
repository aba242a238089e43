// Interop, the sending side: Deno's connect() into HAProxy 2.6 `accept-proxy` (mode http,
// `option forwardfor`: the backend's X-Forwarded-For is the source we declared) and nginx
// `listen ... proxy_protocol` ($proxy_protocol_addr). A header whose CRC32c is corrupted is
// refused by HAProxy. Peers run as children of the test, as in interop_haproxy/nginx.
import assert from "node:assert/strict";
import { encodeHeader, type ProxyHeaderInit } from "@proxy-protocol/edge";
import { connect } from "@proxy-protocol/edge/deno";
import {
  freePort,
  Peer,
  peerTest,
  readAll,
  tempDir,
  text,
  waitForPort,
  within,
} from "../interop/helpers.ts";

const REQUEST = text("GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");

function v4(version: 1 | 2): ProxyHeaderInit {
  return {
    version,
    command: "PROXY",
    protocol: "TCP4",
    source: { address: "198.51.100.7", port: 40001 },
    destination: { address: "192.0.2.1", port: 80 },
  };
}

const V6: ProxyHeaderInit = {
  version: 2,
  command: "PROXY",
  protocol: "TCP6",
  source: { address: "2001:db8::42", port: 40002 },
  destination: { address: "2001:db8::1", port: 80 },
};

/** Sends `header` and one request through connect(); resolves with the whole response. */
async function request(port: number, header: ProxyHeaderInit, checksum = false) {
  using conn = await connect({ hostname: "127.0.0.1", port, header, checksum });
  await conn.write(REQUEST);
  return new TextDecoder().decode(await readAll(conn));
}

function body(response: string): string {
  assert.match(response, /^HTTP\/1\.1 200 /, response);
  return response.slice(response.indexOf("\r\n\r\n") + 4);
}

peerTest(
  "interop send: HAProxy accept-proxy takes our v1/v2 headers; a bad CRC32c is refused",
  { commands: ["haproxy"] },
  async ({ haproxy }, t) => {
    const controller = new AbortController();
    const backend = Deno.serve(
      { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
      (req) => new Response(req.headers.get("x-forwarded-for") ?? "none"),
    );
    try {
      await using dir = await tempDir("interop-send-haproxy-");
      const port = freePort();
      const cfg = `# Written by tests/deno/interop_send.test.ts; removed after the test.
global
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 5s
    timeout server 5s

frontend fe
    bind 127.0.0.1:${port} accept-proxy
    option forwardfor
    default_backend be

backend be
    server s1 127.0.0.1:${backend.addr.port}
`;
      await Deno.writeTextFile(`${dir.path}/haproxy.cfg`, cfg);
      await using peer = new Peer("haproxy", haproxy!, ["-db", "-f", `${dir.path}/haproxy.cfg`]);
      await waitForPort(peer, "127.0.0.1", port);

      await t.step("v1: X-Forwarded-For is our source", async () => {
        assert.equal(body(await request(port, v4(1))), "198.51.100.7");
      });
      await t.step("v2 with a CRC32c", async () => {
        assert.equal(body(await request(port, v4(2), true)), "198.51.100.7");
      });
      await t.step("v2 TCP6", async () => {
        assert.equal(body(await request(port, V6, true)), "2001:db8::42");
      });
      await t.step("a corrupted CRC32c: HAProxy closes without a response", async () => {
        // The same bytes by hand, first intact (the control), then with one bit flipped.
        for (const corrupt of [false, true]) {
          const header = encodeHeader(v4(2), { checksum: true });
          // TCP4: 16 + 12 address bytes, then the CRC32C TLV (type, length, 4 value bytes).
          assert.equal(header[28], 0x03);
          if (corrupt) header[34]! ^= 0x01;
          using conn = await Deno.connect({ hostname: "127.0.0.1", port });
          const bytes = new Uint8Array(header.length + REQUEST.length);
          bytes.set(header);
          bytes.set(REQUEST, header.length);
          await conn.write(bytes);
          const response = new TextDecoder().decode(await readAll(conn));
          if (corrupt) assert.equal(response, "");
          else assert.equal(body(response), "198.51.100.7");
        }
      });
    } finally {
      controller.abort();
      await within(backend.finished, 5000, "the backend to stop");
    }
  },
);

peerTest(
  "interop send: nginx listen proxy_protocol reads our v1 and v2 headers",
  { commands: ["nginx"] },
  async ({ nginx }) => {
    await using dir = await tempDir("interop-send-nginx-");
    const port = freePort();
    const path = `${dir.path}/nginx.conf`;
    await Deno.writeTextFile(
      path,
      `# Written by tests/deno/interop_send.test.ts; removed after the test.
worker_processes 1;
error_log stderr notice;
events {
    worker_connections 64;
}
http {
    access_log off;
    server {
        listen 127.0.0.1:${port} proxy_protocol;
        location / {
            return 200 "$proxy_protocol_addr:$proxy_protocol_port";
        }
    }
}
`,
    );
    await using peer = new Peer("nginx", nginx!, [
      "-p",
      dir.path,
      "-c",
      path,
      "-e",
      "stderr",
      "-g",
      `daemon off; pid ${dir.path}/nginx.pid;`,
    ]);
    await waitForPort(peer, "127.0.0.1", port);
    assert.equal(body(await request(port, v4(1))), "198.51.100.7:40001");
    assert.equal(body(await request(port, v4(2), true)), "198.51.100.7:40001");
    assert.equal(body(await request(port, V6)), "2001:db8::42:40002");
  },
);
