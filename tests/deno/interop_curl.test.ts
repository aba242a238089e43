// Interop: curl 7.88 `--haproxy-protocol` against the Deno adapter. curl sends a v1 line with
// its real connection's addresses (it cannot claim another client address), so it is bound
// to its own loopback address (127.0.0.7) to tell it apart from the listener's 127.0.0.1:
// the header's source and the socket's peer are then the same address and port.
import assert from "node:assert/strict";
import { listen } from "@proxy-protocol/edge/deno";
import type { ProxyProtocolError } from "@proxy-protocol/edge";
import { Peer, peerTest, readUntil, text, within } from "../interop/helpers.ts";

async function curlOnce(
  curl: string,
  listenHost: string,
  fromAddress: string,
  urlHost: string,
): Promise<void> {
  const errors: ProxyProtocolError[] = [];
  await using listener = listen({
    hostname: listenHost,
    port: 0,
    timeout: 3000,
    onError: (e) => void errors.push(e),
  });
  const { port } = listener.addr;
  await using client = new Peer("curl", curl, [
    "--silent",
    "--show-error",
    "--fail",
    "--max-time",
    "5",
    "--haproxy-protocol",
    "--interface",
    fromAddress,
    `http://${urlHost}:${port}/hello`,
  ]);
  const conn = await within(listener.accept(), 5000, "curl's connection");
  let body: string;
  try {
    const { proxyHeader: header, peer } = conn;
    assert.equal(peer.remoteAddress, fromAddress, "curl is bound to its own address");
    assert.equal(header?.version, 1);
    assert.equal(header.command, "PROXY");
    assert.equal(header.protocol, listenHost.includes(":") ? "TCP6" : "TCP4");
    assert.deepEqual(header.source, { address: fromAddress, port: peer.remotePort });
    assert.deepEqual(header.destination, { address: listenHost, port });
    assert.deepEqual(header.tlvs, []);
    assert.deepEqual(
      conn.remoteAddr,
      { transport: "tcp", hostname: fromAddress, port: peer.remotePort },
    );
    assert.deepEqual(conn.localAddr, { transport: "tcp", hostname: listenHost, port });

    const request = await readUntil(conn, "\r\n\r\n");
    assert.match(request, /^GET \/hello HTTP\/1\.1\r\n/);
    assert.match(request, /\r\nUser-Agent: curl\//i);
    body = `hello ${conn.remoteAddr.hostname} port ${conn.remoteAddr.port}\n`;
    await conn.write(text(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    ));
  } finally {
    conn.close();
  }
  const status = await client.finished();
  assert.equal(status.code, 0, `curl failed: ${client.stderr}`);
  assert.equal(client.takeStdout() + "\n", body);
  assert.deepEqual(errors, []);
}

peerTest(
  "interop curl --haproxy-protocol: v1 TCP4 from 127.0.0.7 to an HTTP responder",
  { commands: ["curl"] },
  async ({ curl }) => {
    await curlOnce(curl!, "127.0.0.1", "127.0.0.7", "127.0.0.1");
  },
);

peerTest(
  "interop curl --haproxy-protocol: v1 TCP6 over ::1",
  { commands: ["curl"] },
  async ({ curl }) => {
    // Loopback has a single IPv6 address, so source and destination are both ::1.
    await curlOnce(curl!, "::1", "::1", "[::1]");
  },
);
