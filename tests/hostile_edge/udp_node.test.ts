// The datagram flood (udp_flood.ts) against the node:dgram adapter's listenDatagram, on
// every runtime: Node (against the build), Deno and Bun, each through its own node:dgram.
import { listenDatagram } from "@proxy-protocol/edge/node";
import { floodSuite, SIZES } from "./udp_flood.ts";
import { runtime } from "./helpers.ts";

console.log(`hostile datagrams (node adapter on ${runtime}): ${JSON.stringify(SIZES)}`);

floodSuite("node listenDatagram", async (options) => {
  const server = await listenDatagram({ ...options, address: "127.0.0.1", port: 0 });
  let served = 0;
  const echo = new TextEncoder().encode("echo:");
  server.on("message", (data, info) => {
    served++;
    server.send(new Uint8Array([...echo, ...data]), info);
  });
  return {
    port: server.address().port,
    served: () => served,
    close: () => new Promise<void>((resolve) => server.close(resolve)),
  };
});
