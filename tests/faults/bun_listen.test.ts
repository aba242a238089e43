// Regression tests for the header phase's faults, on the Bun adapter (`listen` of
// "@proxy-protocol/edge/bun"). Bun only: run by `bun test`, excluded from Deno and Node.
// 1. Memory stays bounded while an async `validate` runs (the socket pauses); every byte
//    still arrives, in order.
// 2. A connection keeps no more than its header: TLV values own their bytes.
// 3. accept() out of file descriptors: no spin, the server survives and recovers.
import { describe } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import net from "node:net";
import type { ProxyHeader } from "@proxy-protocol/edge";
import { listen } from "@proxy-protocol/edge/bun";
import { KiB, noise } from "./helpers.ts";
import { AWS_HEADER, faultSuite, ownershipCases, printSizes } from "./suite.ts";

printSizes("bun_listen.test.ts");

const PAYLOAD = noise(7, 32 * KiB);

interface Seen {
  header: ProxyHeader | null;
  payload: Buffer;
}

async function oneWrite(validate: boolean): Promise<Seen> {
  let seen: ((s: Seen) => void) | undefined;
  const got = new Promise<Seen>((resolve) => seen = resolve);
  const listener = listen<{ chunks: Buffer[] }>({
    hostname: "127.0.0.1",
    port: 0,
    policy: "require",
    ...(validate ? { validate: () => new Promise<boolean>((r) => setTimeout(r, 20, true)) } : {}),
    onError: (error) => assert.fail(`refused: ${error.code} ${error.message}`),
    socket: {
      open(socket) {
        socket.data = { chunks: [] };
      },
      data(socket, chunk) {
        socket.data.chunks.push(Buffer.from(chunk)); // a copy: `data` may reuse its memory
      },
      end(socket) {
        seen!({ header: socket.proxyHeader, payload: Buffer.concat(socket.data.chunks) });
        socket.end();
      },
    },
  });
  try {
    const client = net.connect(listener.port, "127.0.0.1");
    client.on("error", () => {});
    client.end(Buffer.concat([AWS_HEADER, PAYLOAD]));
    client.resume();
    return await got;
  } finally {
    listener.stop(true);
  }
}

describe("faults: bun listen", () => {
  ownershipCases(oneWrite, PAYLOAD);

  faultSuite("bun");
});
