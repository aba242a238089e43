// The shared datagram cases (tests/listen/udp_cases.ts) on the Bun.udpSocket-shaped
// adapter, and the twin of lib/bun/udp.ts's example. Runs under `bun test` only.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { encodeDatagram } from "@proxy-protocol/edge";
import { DatagramMessage, listenDatagram } from "@proxy-protocol/edge/bun";
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
    const socket = await listenDatagram({
      ...options,
      hostname: host,
      port: 0,
      socket: {
        data(socket, data, _port, _address, message) {
          seen.push({
            data: new Uint8Array(data),
            client: message.client,
            proxy: message.proxy,
            header: message.header,
          });
          socket.send(new Uint8Array([...text("echo:"), ...data]), message);
        },
      },
    });
    return {
      port: socket.port,
      seen,
      close() {
        socket.close();
        return Promise.resolve();
      },
    };
  },
};

defineDatagramSuite("bun listenDatagram", driver, { describe, it });

describe("bun listenDatagram: Bun's shape", () => {
  it("the example: data gets the payload, the client's port and address, and the message", async () => {
    const calls: [string, number, string, DatagramMessage][] = [];
    const socket = await listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      trust: ["10.0.0.0/8", "127.0.0.1"],
      binaryType: "uint8array",
      socket: {
        data(socket, data, port, address, message) {
          calls.push([decode(data), port, address, message]);
          socket.send(data, message); // echo, back through the proxy
        },
      },
    });
    const proxy = await new Proxy("127.0.0.1").bind();
    try {
      await proxy.send(
        encodeDatagram({
          version: 2,
          command: "PROXY",
          protocol: "UDP4",
          source: { address: "203.0.113.7", port: 5353 },
          destination: { address: "10.0.0.5", port: 53 },
        }, text("ping")),
        socket.port,
      );
      assert.equal(decode(await proxy.reply()), "ping");
      assert.equal(calls.length, 1);
      const [data, port, address, message] = calls[0]!;
      assert.deepEqual([data, port, address], ["ping", 5353, "203.0.113.7"]);
      assert.ok(message instanceof DatagramMessage);
      assert.equal(message.data.constructor, Uint8Array); // binaryType
      assert.deepEqual(message.proxy, { address: "127.0.0.1", port: proxy.port });
      assert.equal(socket.hostname, "127.0.0.1");
      assert.equal(socket.address.port, socket.port);
      assert.equal(socket.closed, false);
    } finally {
      await proxy.close();
      socket.close();
    }
    await until(() => socket.closed);
  });

  it("bad options reject", async () => {
    await assert.rejects(
      listenDatagram({ format: "haproxy" as never, socket: { data() {} } }),
      TypeError,
    );
  });
});
