// The gateway terminating TLS after the header, and sending HAProxy's SSL TLVs upstream.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { decodeTlvs } from "@proxy-protocol/edge";
import { makeCertificate } from "../certificate.ts";
import { type Seen, serve, type TestServer } from "../node/helpers.ts";
import { portOf, start, stop } from "./helpers.ts";

describe("cli: gateway --tls-cert/--tls-key", () => {
  let upstream: TestServer;
  let dir: string;
  const server = makeCertificate();
  const client = makeCertificate();
  before(async () => {
    upstream = await serve({ policy: "require" });
    dir = mkdtempSync(join(tmpdir(), "pp-cli-tls-"));
    writeFileSync(join(dir, "cert.pem"), server.cert);
    writeFileSync(join(dir, "key.pem"), server.key);
  });
  after(async () => {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("terminates TLS and sends version, cipher, SNI and the client's CN", async () => {
    const g = await start([
      "gateway",
      "--listen",
      "127.0.0.1:0",
      "--upstream",
      `127.0.0.1:${upstream.port}`,
      "--tls-cert",
      join(dir, "cert.pem"),
      "--tls-key",
      join(dir, "key.pem"),
    ]);
    try {
      const port = portOf(g.ready.listen);
      const raw = net.connect(port, "127.0.0.1");
      await new Promise((r) => raw.once("connect", r));
      raw.write("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n");
      const secure = tls.connect({
        socket: raw,
        servername: "example.com",
        rejectUnauthorized: false,
        key: client.key,
        cert: client.cert,
      });
      await new Promise((r) => secure.once("secureConnect", r));
      secure.end("over tls");
      let body = "";
      secure.setEncoding("utf8").on("data", (d: string) => body += d);
      await new Promise((r) => secure.once("close", r));
      const seen = JSON.parse(body) as Seen;
      assert.equal(seen.remoteAddress, "203.0.113.7");
      assert.equal(Buffer.from(seen.payload, "base64").toString(), "over tls");
      const fields = decodeTlvs(
        seen.tlvs.map((t) => ({ type: t.type, value: Buffer.from(t.value, "base64") })),
      );
      assert.equal(fields.authority, "example.com");
      assert.equal(fields.ssl?.ssl, true);
      assert.match(fields.ssl?.version ?? "", /^TLSv1\.[23]$/);
      assert.ok((fields.ssl?.cipher ?? "").length > 0);
      assert.equal(fields.ssl?.cn, "localhost");
      assert.equal(fields.ssl?.certInConnection, true);
    } finally {
      assert.equal(await stop(g), 0);
    }
  });
});
