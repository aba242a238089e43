// The datagram flood (udp_flood.ts) against the Deno adapter's listenDatagram. Deno only.
import { listenDatagram } from "@proxy-protocol/edge/deno";
import { floodSuite, SIZES } from "./udp_flood.ts";

console.log(`hostile datagrams (deno adapter): ${JSON.stringify(SIZES)}`);

floodSuite("deno listenDatagram", async (options) => {
  const conn = await listenDatagram({ ...options, hostname: "127.0.0.1", port: 0 });
  let served = 0;
  const echo = new TextEncoder().encode("echo:");
  const loop = (async () => {
    for await (const message of conn) {
      served++;
      await conn.send(new Uint8Array([...echo, ...message.data]), message);
    }
  })();
  return {
    port: conn.addr.port,
    served: () => served,
    async close() {
      conn.close();
      await conn.finished();
      await loop;
    },
  };
});
