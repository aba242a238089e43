// Regression tests for the header phase's faults, on the Node adapter (`createServer`,
// node:net), which runs on Node, Deno and Bun: this file runs on all three.
// 1. Memory stays bounded while an async `validate` runs; every byte still arrives.
// 2. A connection keeps no more than its header: TLV values own their bytes.
// 3. accept() out of file descriptors: back off, report ACCEPT_FAILED once, recover.
import { describe } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import net from "node:net";
import type { ProxyHeader } from "@proxy-protocol/edge";
import { createServer, type ProxySocket } from "@proxy-protocol/edge/node";
import { KiB, noise } from "./helpers.ts";
import { AWS_HEADER, faultSuite, ownershipCases, printSizes } from "./suite.ts";

printSizes("create_server.test.ts");

const PAYLOAD = noise(7, 32 * KiB);

/** What the application saw of one connection. */
interface Seen {
  header: ProxyHeader | null;
  payload: Buffer;
}

/** One connection: the header and 32 KiB in ONE write; resolves with what the app saw. */
async function oneWrite(validate: boolean): Promise<Seen> {
  let seen: ((s: Seen) => void) | undefined;
  const got = new Promise<Seen>((resolve) => seen = resolve);
  const server = createServer({
    policy: "require",
    ...(validate ? { validate: () => new Promise<boolean>((r) => setTimeout(r, 20, true)) } : {}),
    onError: (error) => assert.fail(`refused: ${error.code} ${error.message}`),
  }, (socket: ProxySocket) => {
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => {
      seen!({ header: socket.proxyHeader, payload: Buffer.concat(chunks) });
      socket.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as net.AddressInfo;
    const client = net.connect(port, "127.0.0.1");
    client.on("error", () => {});
    client.end(Buffer.concat([AWS_HEADER, PAYLOAD]));
    client.resume();
    return await got;
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

describe("faults: createServer", () => {
  ownershipCases(oneWrite, PAYLOAD);

  faultSuite("node");
});
