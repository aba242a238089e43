// startTls() from ./deno: server-side TLS on a connection after its PROXY header, against
// Deno's own TLS client. Deno.test with op and resource sanitizers on.
import assert from "node:assert/strict";
import { makeCertificate } from "../certificate.ts";
import { listen, startTls } from "@proxy-protocol/edge/deno";

const sanitize = { sanitizeOps: true, sanitizeResources: true };
const text = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);
const V1 = text("PROXY TCP4 203.0.113.7 10.0.0.5 51234 993\r\n");

const { cert, key } = makeCertificate();

/** Reads to the end with read() (the readable stream would close the connection). */
async function readAll(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(65536);
  let out = "";
  const decoder = new TextDecoder();
  for (let n; (n = await conn.read(buffer)) !== null;) {
    out += decoder.decode(buffer.subarray(0, n), { stream: true });
  }
  return out;
}

Deno.test("startTls: ALPN, both directions, the client's addresses", sanitize, async () => {
  await using listener = listen({ hostname: "127.0.0.1", port: 0 });
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await raw.write(V1);
  const serving = (async () => {
    const conn = await listener.accept();
    const tls = await startTls(conn, { cert, key, alpnProtocols: ["h2", "imap"] });
    assert.equal((await tls.handshake()).alpnProtocol, "imap");
    assert.deepEqual(tls.remoteAddr, { transport: "tcp", hostname: "203.0.113.7", port: 51234 });
    assert.equal(tls.proxyHeader?.version, 1);
    assert.equal(tls.peer.remoteAddress, "127.0.0.1");
    const got = await readAll(tls); // until the client's close_notify
    await tls.write(text(`${got.length} bytes from ${tls.remoteAddr.hostname}`));
    tls.close();
    await tls.closed();
  })();
  using client = await Deno.startTls(raw, {
    hostname: "localhost",
    caCerts: [cert],
    alpnProtocols: ["imap"],
  });
  assert.equal((await client.handshake()).alpnProtocol, "imap");
  const big = new Uint8Array(1024 * 1024).fill(0x61);
  let at = 0;
  while (at < big.length) at += await client.write(big.subarray(at));
  await client.closeWrite();
  assert.equal(await readAll(client), "1048576 bytes from 203.0.113.7");
  await serving;
});

Deno.test("startTls: no ALPN offered gives null", sanitize, async () => {
  await using listener = listen({ hostname: "127.0.0.1", port: 0 });
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await raw.write(V1);
  const serving = (async () => {
    using tls = await startTls(await listener.accept(), { cert, key });
    assert.equal((await tls.handshake()).alpnProtocol, null);
    await tls.write(text("hi"));
    await tls.closeWrite();
    await readAll(tls);
  })();
  using client = await Deno.startTls(raw, { hostname: "localhost", caCerts: [cert] });
  assert.equal(await readAll(client), "hi");
  await client.closeWrite();
  await serving;
});

Deno.test("startTls: a plaintext client fails the handshake", sanitize, async () => {
  await using listener = listen({ hostname: "127.0.0.1", port: 0 });
  using raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await raw.write(V1);
  await raw.write(text("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  const tls = await startTls(await listener.accept(), { cert, key });
  await assert.rejects(tls.handshake());
  tls.close();
  await tls.closed(); // the client still holds its end: closed after the linger time
});

Deno.test("startTls: a bad key throws and leaves the connection open", sanitize, async () => {
  await using listener = listen({ hostname: "127.0.0.1", port: 0 });
  using raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await raw.write(V1);
  using conn = await listener.accept();
  await assert.rejects(startTls(conn, { cert, key: "not a key" }));
  await conn.write(text("still open"));
  const buffer = new Uint8Array(32);
  const n = await raw.read(buffer);
  assert.equal(decode(buffer.subarray(0, n!)), "still open");
});
