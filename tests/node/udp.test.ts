// The shared datagram cases (tests/listen/udp_cases.ts) on the node:dgram adapter: under
// Node (against the build), Deno and Bun, each through its own node:dgram. Then what only
// the Node adapter has: the dgram-shaped "message" event and rinfo.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { encodeDatagram } from "@proxy-protocol/edge";
import {
  DatagramMessage,
  listenDatagram,
  type ProxyProtocolError,
  ProxyRemoteInfo,
} from "@proxy-protocol/edge/node";
import {
  defineDatagramSuite,
  Proxy,
  type SeenDatagram,
  type UdpDriver,
} from "../listen/udp_cases.ts";
import { decode, text, until } from "../listen/client.ts";

const driver: UdpDriver = {
  async start(options, host) {
    const seen: SeenDatagram[] = [];
    const server = await listenDatagram({ ...options, address: host, port: 0 });
    server.on("message", (data, info) => {
      seen.push({
        data: new Uint8Array(data),
        client: info.client,
        proxy: info.proxy,
        header: info.header,
      });
      server.send(new Uint8Array([...text("echo:"), ...data]), info);
    });
    return {
      port: server.address().port,
      seen,
      close: () => new Promise<void>((resolve) => server.close(resolve)),
    };
  },
};

defineDatagramSuite("node listenDatagram", driver, { describe, it });

describe("node listenDatagram: dgram's shape", () => {
  it("message gets a Buffer payload and an rinfo-like info with the client's address", async () => {
    const server = await listenDatagram({ type: "udp4", address: "127.0.0.1" });
    const proxy = await new Proxy("127.0.0.1").bind();
    try {
      const got = new Promise<[Uint8Array, ProxyRemoteInfo]>((resolve) =>
        server.once("message", (data, info) => resolve([data, info]))
      );
      await proxy.send(
        encodeDatagram({
          version: 2,
          command: "PROXY",
          protocol: "UDP4",
          source: { address: "203.0.113.7", port: 5353 },
          destination: { address: "10.0.0.5", port: 53 },
        }, text("ping")),
        server.address().port,
      );
      const [data, info] = await got;
      assert.ok(info instanceof ProxyRemoteInfo && info instanceof DatagramMessage);
      assert.equal(decode(data), "ping");
      assert.equal(data, info.data);
      assert.equal(info.address, "203.0.113.7");
      assert.equal(info.port, 5353);
      assert.equal(info.family, "IPv4");
      assert.equal(info.size, 4);
      assert.deepEqual(info.proxy, { address: "127.0.0.1", port: proxy.port });
      // A string reply, and the callback with the size sent.
      const sent = await new Promise<number>((resolve, reject) =>
        server.send("pong", info, (error, n) => error ? reject(error) : resolve(n))
      );
      assert.equal(sent, 4);
      assert.equal(decode(await proxy.reply()), "pong");
    } finally {
      await proxy.close();
      await new Promise<void>((resolve) => server.close(resolve));
    }
  });

  it("send refuses a message it did not receive", async () => {
    const server = await listenDatagram({ address: "127.0.0.1" });
    try {
      const fake = { data: text(""), client: { address: "192.0.2.1", port: 1 } } as never;
      assert.throws(() => server.send("x", fake), TypeError);
    } finally {
      await new Promise<void>((resolve) => server.close(resolve));
    }
  });

  it("a bind that fails rejects, and bad options throw at once", async () => {
    const taken = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => taken.bind(0, "127.0.0.1", resolve));
    try {
      await assert.rejects(listenDatagram({ address: "127.0.0.1", port: taken.address().port }));
    } finally {
      await new Promise<void>((resolve) => taken.close(resolve));
    }
    assert.throws(() => listenDatagram({ format: "haproxy" as never }), TypeError);
    assert.throws(() => listenDatagram({ trust: ["10.0.0.0/33"] }), TypeError);
  });

  it("a throwing onError does not stop the socket", async () => {
    const errors: ProxyProtocolError[] = [];
    const server = await listenDatagram({
      address: "127.0.0.1",
      onError(error) {
        errors.push(error);
        throw new Error("boom");
      },
    });
    const proxy = await new Proxy("127.0.0.1").bind();
    const seen: string[] = [];
    server.on("message", (data) => seen.push(decode(data)));
    try {
      await proxy.send(text("no header"), server.address().port);
      await until(() => errors.length === 1);
      await proxy.send(
        encodeDatagram({ version: 2, command: "LOCAL", protocol: "UNKNOWN" }, text("ok")),
        server.address().port,
      );
      await until(() => seen.length === 1);
      assert.equal(errors[0]!.code, "HEADER_REQUIRED");
      assert.deepEqual(seen, ["ok"]);
    } finally {
      await proxy.close();
      await new Promise<void>((resolve) => server.close(resolve));
    }
  });
});
