// `lazy: true`, written once for every listener adapter: a server that speaks first (an
// SMTP-style greeting) behind a load balancer that sends the header only with the client's
// first bytes. Each runtime supplies a LazyDriver that starts its adapter with the greeter
// below; the client is node:net (client.ts). Runtime-neutral: no Deno or Bun globals.
import assert from "node:assert/strict";
import { encodeHeader, ProxyProtocolError, type ProxyProtocolOptions } from "@proxy-protocol/edge";
import { type Client, concat, connect, decode, delay, until } from "./client.ts";
import type { Refusal, Registrar } from "./cases.ts";

/** The greeting every greeter writes as soon as it has the connection. */
export const GREETING = "220 ready\r\n";

/**
 * What the greeter does with each connection, on every runtime: writes {@linkcode GREETING}
 * at once; records what `proxyHeaderSettled` comes to (the header's command, `null`, or
 * `"rejected CODE"`); on the first payload answers `250 <remote address> <payload>` and
 * closes.
 */
export interface Greeter {
  port: number;
  /** How many connections were handed to the application. */
  accepted(): number;
  /** What each connection's `proxyHeaderSettled` came to, in order of settling. */
  settled: (string | null)[];
  close(): Promise<void>;
}

/** How one runtime's adapter is started with the greeter. */
export interface LazyDriver {
  /** Starts the adapter on 127.0.0.1, port 0, with `options` (`onError` included). */
  start(options: ProxyProtocolOptions): Promise<Greeter>;
}

/** The greeter's answer to the first payload. */
export function answer(remoteAddress: string | undefined, payload: Uint8Array): string {
  return `250 ${remoteAddress} ${decode(payload)}`;
}

/** What a settled `proxyHeaderSettled` is recorded as. */
export function outcomeOf(settled: Promise<{ command: string } | null>): Promise<string | null> {
  return settled.then(
    (header) => header?.command ?? null,
    (error: unknown) =>
      `rejected ${error instanceof ProxyProtocolError ? error.code : String(error)}`,
  );
}

const HEADER = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 25\r\n";

/** Connects and waits for the greeting; the header has not been sent yet. */
async function greeted(port: number): Promise<Client> {
  const client = await connect(port);
  await until(() => decode(client.received()).includes(GREETING));
  return client;
}

/**
 * Registers the lazy cases for one adapter.
 *
 * @param name The adapter, as test names show it.
 * @param driver How to start it.
 * @param registrar node:test's `describe` and `it`, or functions shaped like them.
 */
export function defineLazySuite(name: string, driver: LazyDriver, registrar: Registrar): void {
  const it = (title: string, fn: () => Promise<void>): void => {
    registrar.it(title, fn);
  };

  async function using(
    options: ProxyProtocolOptions,
    fn: (s: Greeter, refusals: Refusal[]) => Promise<void>,
  ): Promise<void> {
    const refusals: Refusal[] = [];
    const s = await driver.start({
      ...options,
      onError: (error, peer) => void refusals.push({ error, peer }),
    });
    try {
      await fn(s, refusals);
    } finally {
      await s.close();
    }
  }

  registrar.describe(`${name}: lazy (the server speaks first)`, () => {
    it("greets before the header; the header after the greeting gives the client's address", () =>
      using({ lazy: true }, async (s, refusals) => {
        for (
          const parts of [[HEADER + "EHLO x\r\n"], [
            HEADER.slice(0, 9),
            HEADER.slice(9),
            "EHLO x\r\n",
          ]]
        ) {
          const client = await greeted(s.port);
          for (const part of parts) {
            client.socket.write(part);
            await delay(5);
          }
          await client.closed;
          assert.equal(decode(client.received()), GREETING + "250 203.0.113.7 EHLO x\r\n");
        }
        await until(() => s.settled.length === 2);
        assert.deepEqual(s.settled, ["PROXY", "PROXY"]);
        assert.deepEqual(refusals, []);
      }));

    it("a v2 header after the greeting, payload in the same write", () =>
      using({ lazy: true }, async (s) => {
        const client = await greeted(s.port);
        const header = encodeHeader({
          version: 2,
          command: "PROXY",
          protocol: "TCP6",
          source: { address: "2001:db8::7", port: 61000 },
          destination: { address: "2001:db8::5", port: 25 },
        });
        client.socket.write(concat(header, "HELO v2\r\n"));
        await client.closed;
        assert.equal(decode(client.received()), GREETING + "250 2001:db8::7 HELO v2\r\n");
      }));

    it("a bad header after the greeting: onError, closed, proxyHeaderSettled rejects", () =>
      using({ lazy: true }, async (s, refusals) => {
        const client = await greeted(s.port);
        client.socket.write("GET / HTTP/1.1\r\n\r\n");
        await client.closed;
        assert.equal(decode(client.received()), GREETING);
        await until(() => refusals.length === 1 && s.settled.length === 1);
        assert.deepEqual(refusals.map((r) => r.error.code), ["HEADER_REQUIRED"]);
        assert.equal(refusals[0]?.peer?.remotePort, client.localPort);
        assert.deepEqual(s.settled, ["rejected HEADER_REQUIRED"]);
      }));

    it("a client that never sends the header is closed on the timeout, counted from accept", () =>
      using({ lazy: true, timeout: 200, allowShortTimeout: true }, async (s, refusals) => {
        const start = Date.now();
        const client = await greeted(s.port);
        await client.closed;
        const elapsed = Date.now() - start;
        assert.ok(elapsed >= 150 && elapsed < 2000, `closed after ${elapsed} ms`);
        assert.equal(decode(client.received()), GREETING);
        await until(() => refusals.length === 1 && s.settled.length === 1);
        assert.deepEqual(refusals.map((r) => r.error.code), ["TIMEOUT"]);
        assert.deepEqual(s.settled, ["rejected TIMEOUT"]);
      }));

    it("policy optional: no header, the socket's own address", () =>
      using({ lazy: true, policy: "optional" }, async (s, refusals) => {
        const client = await greeted(s.port);
        client.socket.write("EHLO direct\r\n");
        await client.closed;
        assert.equal(decode(client.received()), GREETING + "250 127.0.0.1 EHLO direct\r\n");
        await until(() => s.settled.length === 1);
        assert.deepEqual(s.settled, [null]);
        assert.deepEqual(refusals, []);
      }));

    it("an async validate runs after the greeting; refusing it rejects", () =>
      using({
        lazy: true,
        validate: async (header) => {
          await delay(10);
          return header.source?.address === "203.0.113.7";
        },
      }, async (s, refusals) => {
        const ok = await greeted(s.port);
        ok.socket.write(HEADER + "EHLO x\r\n");
        await ok.closed;
        assert.equal(decode(ok.received()), GREETING + "250 203.0.113.7 EHLO x\r\n");
        const refused = await greeted(s.port);
        refused.socket.write("PROXY TCP4 203.0.113.8 10.0.0.5 1 25\r\nEHLO x\r\n");
        await refused.closed;
        assert.equal(decode(refused.received()), GREETING);
        await until(() => s.settled.length === 2);
        assert.deepEqual(s.settled, ["PROXY", "rejected VALIDATION_FAILED"]);
        assert.deepEqual(refusals.map((r) => r.error.code), ["VALIDATION_FAILED"]);
      }));

    it("an untrusted peer is refused before the hand-over: no greeting", () =>
      using({ lazy: true, trust: ["10.0.0.0/8"] }, async (s, refusals) => {
        const client = await connect(s.port);
        await client.closed;
        assert.equal(decode(client.received()), "");
        await until(() => refusals.length === 1);
        assert.deepEqual(refusals.map((r) => r.error.code), ["UNTRUSTED_SOURCE"]);
        assert.equal(s.accepted(), 0);
      }));

    it("without lazy, proxyHeaderSettled is already resolved to the header", () =>
      using({}, async (s, refusals) => {
        const client = await connect(s.port);
        client.socket.write(HEADER + "EHLO x\r\n");
        await client.closed;
        assert.equal(decode(client.received()), GREETING + "250 203.0.113.7 EHLO x\r\n");
        await until(() => s.settled.length === 1);
        assert.deepEqual(s.settled, ["PROXY"]);
        assert.deepEqual(refusals, []);
      }));
  });
}
