// decode, send, inspect and the usage rules, run as the CLI on this runtime.
import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { encodeHeader, encodeTlvs, toHex } from "@proxy-protocol/edge";
import { portOf, run, start, stop } from "./helpers.ts";

const v2 = toHex(encodeHeader({
  version: 2,
  command: "PROXY",
  protocol: "TCP4",
  source: { address: "172.31.7.113", port: 51442 },
  destination: { address: "172.31.10.31", port: 80 },
  tlvs: encodeTlvs({ awsVpceId: "vpce-08d2bf15fac5001c9", authority: "example.com" }),
}, { checksum: true }));

describe("cli: usage", () => {
  it("--help answers every command with exit code 0", async () => {
    for (const command of ["gateway", "inspect", "send", "decode", "demo"]) {
      const r = await run([command, "--help"]);
      assert.equal(r.code, 0, command);
      assert.match(r.stdout, /^Usage: /, command);
      assert.match(r.stdout, /Exit codes|--log-level/, command);
    }
    const top = await run(["--help"]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /gateway/);
  });

  it("bad flags are a usage error with exit code 2", async () => {
    const cases = [
      [],
      ["nosuch"],
      ["decode", "--bogus"],
      ["gateway", "--listen", "127.0.0.1:0"],
      ["gateway", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--send", "v3"],
      ["gateway", "--listen", "nope", "--upstream", "127.0.0.1:1"],
      ["gateway", "--listen", ":0", "--upstream", ":1", "--send", "v1", "--tlv", "0xE0=01"],
      ["gateway", "--listen", ":0", "--upstream", ":1", "--tlv", "0xE0=0"],
      ["gateway", "--listen", ":0", "--upstream", ":1", "--accept", "maybe"],
      ["gateway", "--listen", ":0", "--upstream", ":1", "--workers", "0"],
      ["inspect"],
      ["send", "--to", "127.0.0.1:1", "--v1", "--v2"],
      ["send", "--to", "127.0.0.1:1", "--source", "host:1"],
      ["decode", "--log-level", "loud", "00"],
    ];
    for (const args of cases) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.notEqual(r.stderr, "", args.join(" "));
    }
  });
});

describe("cli: decode", () => {
  it("prints a v2 header from hex with its TLVs by meaning", async () => {
    const r = await run(["decode", v2]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.version, 2);
    assert.deepEqual(out.source, { address: "172.31.7.113", port: 51442 });
    assert.equal(out.tlvs.awsVpceId, "vpce-08d2bf15fac5001c9");
    assert.equal(out.tlvs.authority, "example.com");
    assert.equal(typeof out.tlvs.crc32c, "number");
  });

  it("reads raw bytes from stdin", async () => {
    const r = await run(["decode", "-"], "PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\nhi");
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.source.address, "2001:db8::1");
    assert.equal(out.rest, "6869");
  });

  it("a bad header is exit code 1 with its error code", async () => {
    const corrupt = v2.slice(0, -2) + (v2.endsWith("00") ? "01" : "00");
    const cases: [string[], string | undefined, string][] = [
      [["decode", "GET / HTTP/1.1\\r\\n"], undefined, "NOT_PROXY_PROTOCOL"],
      [["decode", corrupt], undefined, "CHECKSUM_MISMATCH"],
      [["decode", "-"], "PROXY TCP4 1.2.3.4", "INCOMPLETE"],
    ];
    for (const [args, input, code] of cases) {
      const r = await run(args, input);
      assert.equal(r.code, 1, args.join(" "));
      assert.equal(JSON.parse(r.stderr).error.code, code);
    }
  });
});

describe("cli: send and inspect", () => {
  it("send writes the header, then stdin; inspect answers with what came", async () => {
    const inspect = await start(["inspect", "--listen", "127.0.0.1:0"], "listening");
    try {
      const port = portOf(inspect.ready.listen);
      const r = await run([
        "send",
        "--to",
        `127.0.0.1:${port}`,
        "--source",
        "203.0.113.7:51234",
        "--destination",
        "10.0.0.5:443",
        "--tlv",
        "0x02=6578616d706c652e636f6d",
        "--crc32c",
      ], "hello\n");
      assert.equal(r.code, 0, r.stderr);
      const answer = JSON.parse(r.stdout);
      assert.deepEqual(answer.client, { address: "203.0.113.7", port: 51234 });
      assert.equal(answer.header.version, 2);
      assert.equal(answer.header.tlvs.authority, "example.com");
      assert.equal(answer.peer.address, "127.0.0.1");
      const logged = await inspect.waitLog((l) => l.msg === "connection");
      assert.deepEqual(logged.client, { address: "203.0.113.7", port: 51234 });

      // v1, the source taken from the connection itself.
      const plain = await run(["send", "--to", `127.0.0.1:${port}`, "--v1"], "");
      assert.equal(plain.code, 0, plain.stderr);
      assert.equal(JSON.parse(plain.stdout).header.version, 1);
      assert.equal(JSON.parse(plain.stdout).client.address, "127.0.0.1");
    } finally {
      assert.equal(await stop(inspect), 0);
    }
  });

  it("inspect answers an HTTP request with an HTTP JSON response", async () => {
    const inspect = await start(
      ["inspect", "--listen", "127.0.0.1:0", "--accept", "optional"],
      "listening",
    );
    try {
      const port = portOf(inspect.ready.listen);
      const reply = await new Promise<string>((resolve, reject) => {
        const c = net.connect(port, "127.0.0.1");
        let got = "";
        c.setEncoding("utf8").on("data", (d) => got += d);
        c.on("end", () => resolve(got)).on("error", reject);
        c.write("PROXY TCP4 198.51.100.9 192.0.2.1 40000 80\r\n");
        c.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      });
      assert.match(reply, /^HTTP\/1\.1 200 OK\r\n/);
      const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
      assert.deepEqual(body.client, { address: "198.51.100.9", port: 40000 });
      // No header at all (optional): the socket's own peer.
      const r = await run(["send", "--to", `127.0.0.1:${port}`, "--local"], "");
      assert.equal(JSON.parse(r.stdout).header.command, "LOCAL");
    } finally {
      assert.equal(await stop(inspect), 0);
    }
  });

  it("send to a closed port fails with exit code 1", async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as net.AddressInfo;
    await new Promise((r) => server.close(r));
    const r = await run(["send", "--to", `127.0.0.1:${port}`], "");
    assert.equal(r.code, 1);
  });
});

describe("cli: demo (npm start)", () => {
  it("a gateway in front of inspect: curl's own address comes back", async () => {
    const demo = await start(
      ["demo", "--listen", "127.0.0.1:0", "--inspect", "127.0.0.1:0"],
      /curl (http:\/\/127\.0\.0\.1:\d+\/)\n/,
    );
    try {
      const url = (demo.ready.match as string[])[1]!;
      const response = await fetch(url);
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.equal(body.header.version, 2);
      assert.equal(body.client.address, "127.0.0.1");
      assert.notEqual(body.client.port, body.peer.port); // the client's, not the gateway's
    } finally {
      assert.equal(await stop(demo), 0);
    }
  });
});
