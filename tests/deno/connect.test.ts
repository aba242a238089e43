// The Deno sender: the header rides with the first write (one read at the server), goes
// alone on a first read, relays a ProxyConn with chosen TLVs, and round trips with a Bun
// child (Deno sends, Bun receives; Bun sends, Deno receives).
import assert from "node:assert/strict";
import {
  decodeHeader,
  decodeTlvs,
  encodeHeader,
  encodeTlvs,
  type ProxyProtocolError,
} from "@proxy-protocol/edge";
import { connect, headerFor, listen } from "@proxy-protocol/edge/deno";
import { readAll, sanitize, text, within } from "../interop/helpers.ts";
import { HEADER } from "../connect_helpers.ts";

/** The first read of the next connection on a raw listener, and the rest until its end. */
async function firstRead(listener: Deno.TcpListener) {
  const conn = await within(listener.accept(), 5000, "a connection");
  try {
    const buffer = new Uint8Array(4096);
    const n = (await conn.read(buffer)) ?? 0;
    return { first: buffer.slice(0, n), conn };
  } catch (error) {
    conn.close();
    throw error;
  }
}

Deno.test({
  name: "deno connect: the first write carries the header, in one segment",
  ...sanitize,
  async fn() {
    using raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const payload = text("GET / HTTP/1.1\r\n\r\n");
    for (const how of ["write", "writable", "readable then write"] as const) {
      using conn = await connect({
        hostname: "127.0.0.1",
        port: raw.addr.port,
        header: HEADER,
        checksum: true,
      });
      assert.equal(conn.headerSent, false);
      if (how === "write") assert.equal(await conn.write(payload), payload.length);
      else if (how === "writable") {
        const writer = conn.writable.getWriter();
        await writer.write(payload);
        writer.releaseLock();
      } else {
        const _ = conn.readable; // taken, and a write in the same synchronous code
        await conn.write(payload);
      }
      assert.equal(conn.headerSent, true);
      const { first, conn: server } = await firstRead(raw);
      server.close();
      const decoded = decodeHeader(first)!;
      assert.deepEqual(decoded.header.source, HEADER.source, how);
      assert.deepEqual(first.subarray(decoded.length), payload, `${how}: one read`);
    }
  },
});

Deno.test({
  name: "deno connect: a first read sends the header alone; writes keep their order",
  ...sanitize,
  async fn() {
    using raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    using conn = await connect({ hostname: "127.0.0.1", port: raw.addr.port });
    const greeting = new Uint8Array(16);
    const reading = conn.read(greeting);
    const { first, conn: server } = await firstRead(raw);
    try {
      assert.deepEqual(decodeHeader(first), {
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
      await server.write(text("220 hi\r\n"));
      assert.equal(await reading, 8);
      // Two writes not awaited in between arrive in order.
      const a = conn.write(text("a"));
      const b = conn.write(text("b"));
      await Promise.all([a, b]);
      await conn.closeWrite();
      assert.equal(new TextDecoder().decode(await readAll(server)), "ab");
    } finally {
      server.close();
    }
  },
});

Deno.test({
  name: "deno connect: from a ProxyConn, chosen TLVs forwarded, a fresh CRC32c",
  ...sanitize,
  async fn() {
    await using front = listen({ hostname: "127.0.0.1", port: 0 });
    await using back = listen({ hostname: "127.0.0.1", port: 0 });
    using client = await Deno.connect({ hostname: "127.0.0.1", port: front.addr.port });
    await client.write(encodeHeader({
      version: 2,
      command: "PROXY",
      protocol: "TCP6",
      source: { address: "2001:db8::7", port: 40000 },
      destination: { address: "2001:db8::1", port: 8443 },
      tlvs: encodeTlvs({ authority: "example.com", awsVpceId: "vpce-9" }),
    }, { checksum: true }));
    using accepted = await front.accept();
    using upstream = await connect({
      hostname: "127.0.0.1",
      port: back.addr.port,
      header: headerFor(accepted, { passTlvs: [0x02, 0x03] }),
      checksum: true,
    });
    await upstream.write(text("x"));
    using relayed = await back.accept();
    assert.deepEqual(relayed.remoteAddr, {
      transport: "tcp",
      hostname: "2001:db8::7",
      port: 40000,
    });
    const tlvs = decodeTlvs(relayed.proxyHeader!.tlvs);
    assert.equal(tlvs.authority, "example.com");
    assert.equal(tlvs.awsVpceId, undefined);
    assert.equal(typeof tlvs.crc32c, "number", "a fresh one, verified by the listener");
    // The v1 form of the same: no TLVs; forwarding them is refused.
    assert.throws(
      () => headerFor(accepted, { version: 1, passTlvs: [0x02] }),
      (e: unknown) => (e as ProxyProtocolError).code === "INVALID_HEADER",
    );
    await assert.rejects(
      connect({ hostname: "127.0.0.1", port: 1, header: HEADER, from: accepted }),
      TypeError,
    );
  },
});

const BUN = "node_modules/.bin/bun";

function bun(code: string): Promise<string> {
  const child = new Deno.Command(BUN, {
    args: ["-e", code],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = within(child.output(), 20_000, "the Bun child");
  return output.then((out) => {
    const stdout = new TextDecoder().decode(out.stdout);
    if (!out.success) {
      throw new Error(`bun failed: ${new TextDecoder().decode(out.stderr)}\n${stdout}`);
    }
    return stdout;
  });
}

Deno.test({
  name: "round trip: Bun's connect sends, Deno's listen receives",
  ...sanitize,
  async fn() {
    await using listener = listen({ hostname: "127.0.0.1", port: 0 });
    const sending = bun(`
      import { connect } from "@proxy-protocol/edge/bun";
      await connect({
        hostname: "127.0.0.1",
        port: ${listener.addr.port},
        header: {
          version: 2, command: "PROXY", protocol: "TCP6",
          source: { address: "2001:db8::7", port: 61000 },
          destination: { address: "2001:db8::5", port: 443 },
        },
        checksum: true,
        socket: { open(socket) { socket.end("from bun"); } },
      });
    `);
    using conn = await within(listener.accept(), 10_000, "Bun's connection");
    await sending;
    assert.equal(conn.remoteAddr.hostname, "2001:db8::7");
    assert.equal(conn.proxyHeader?.version, 2);
    assert.equal(new TextDecoder().decode(await readAll(conn)), "from bun");
  },
});

Deno.test({
  name: "round trip: Deno's connect sends, Bun's listen receives",
  ...sanitize,
  async fn() {
    const child = new Deno.Command(BUN, {
      args: [
        "-e",
        `
        import { listen } from "@proxy-protocol/edge/bun";
        const listener = listen({
          hostname: "127.0.0.1", port: 0,
          socket: {
            data(socket, data) {
              console.log(JSON.stringify({
                remote: socket.remoteAddress + ":" + socket.remotePort,
                version: socket.proxyHeader?.version,
                data: new TextDecoder().decode(data),
              }));
              socket.end();
              listener.stop(true);
            },
          },
        });
        console.log(listener.port);
        `,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    try {
      while (!out.includes("\n")) out += (await within(lines.read(), 10_000, "Bun's port")).value;
      const port = Number(out.slice(0, out.indexOf("\n")));
      using conn = await connect({
        hostname: "127.0.0.1",
        port,
        header: { ...HEADER, version: 1 },
      });
      await conn.write(text("from deno"));
      while (out.split("\n").length < 3) {
        const { value, done } = await within(lines.read(), 10_000, "Bun's report");
        if (done) break;
        out += value;
      }
      assert.deepEqual(JSON.parse(out.split("\n")[1]!), {
        remote: "203.0.113.7:51234",
        version: 1,
        data: "from deno",
      });
    } finally {
      await lines.cancel();
      await child.stderr.cancel();
      try {
        child.kill();
      } catch {
        // exited
      }
      await child.status;
    }
  },
});
