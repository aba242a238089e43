// The datagram flood (udp_flood.ts) against the Bun adapter's listenDatagram. Bun only.
import { listenDatagram } from "@proxy-protocol/edge/bun";
import { floodSuite, SIZES } from "./udp_flood.ts";
import { until } from "./helpers.ts";

console.log(`hostile datagrams (bun adapter): ${JSON.stringify(SIZES)}`);

floodSuite("bun listenDatagram", async (options) => {
  let served = 0;
  const echo = new TextEncoder().encode("echo:");
  const socket = await listenDatagram({
    ...options,
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, data, _port, _address, message) {
        served++;
        socket.send(new Uint8Array([...echo, ...data]), message);
      },
    },
  });
  return {
    port: socket.port,
    served: () => served,
    async close() {
      socket.close();
      await until(() => socket.closed, 3000, "the socket closed");
    },
  };
});
