// Shared plumbing for the Deno interop tests (tests/deno/interop_*.test.ts): finding the
// peers, running them as children of the test, free loopback ports, a node:net client that
// can choose its source address, and timeouts so a silent peer fails a test instead of
// hanging the run. Everything here stays on loopback.
import net from "node:net";
import assert from "node:assert/strict";
import type { ProxyConn, ProxyListener } from "@proxy-protocol/edge/deno";

/** Deno.test options for every interop test: any leaked socket, timer or process fails it. */
export const sanitize = { sanitizeOps: true, sanitizeResources: true } as const;

/** `CI=true`: a missing peer fails the test instead of being ignored. */
export const IN_CI = Deno.env.get("CI") === "true";

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const decodeText = (b: Uint8Array): string => new TextDecoder().decode(b);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Where a peer binary may live: PATH, then the sbin directories Debian puts daemons in. */
export function findCommand(name: string): string | null {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (dir === "") continue;
    const path = `${dir}/${name}`;
    try {
      const info = Deno.statSync(path);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return path;
    } catch {
      // not here
    }
  }
  return null;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** What a test needs installed: commands (found on PATH or in sbin) and files. */
export interface Needs {
  commands?: string[];
  paths?: string[];
}

/**
 * Registers a Deno.test that needs real peers. With every peer present it runs `fn` with
 * the commands' resolved paths. With one missing it fails under `CI=true` (CI installs them:
 * see .ci/run), and is registered as ignored, with the reason in its name, otherwise.
 */
export function peerTest(
  name: string,
  needs: Needs,
  fn: (commands: Record<string, string>, t: Deno.TestContext) => Promise<void>,
): void {
  const commands: Record<string, string> = {};
  const missing: string[] = [];
  for (const command of needs.commands ?? []) {
    const path = findCommand(command);
    if (path === null) missing.push(`command '${command}'`);
    else commands[command] = path;
  }
  for (const path of needs.paths ?? []) {
    if (!exists(path)) missing.push(path);
  }
  if (missing.length === 0) {
    Deno.test({ name, ...sanitize, fn: (t) => fn(commands, t) });
  } else if (IN_CI) {
    Deno.test({
      name,
      ...sanitize,
      fn() {
        throw new Error(
          `interop peer missing: ${missing.join(", ")}. CI=true makes this a failure; ` +
            ".ci/run installs the Debian packages (haproxy, nginx-light, " +
            "libnginx-mod-stream, curl, golang-go, golang-github-pires-go-proxyproto-dev).",
        );
      },
    });
  } else {
    Deno.test({
      name: `${name} (ignored: ${missing.join(", ")} not found; CI=true fails instead)`,
      ignore: true,
      fn() {},
    });
  }
}

/**
 * A free TCP port on `hostname`: binds port 0, reads the port, closes. For peers that need
 * a fixed port in their configuration. There is a small race: another process may take the
 * port between this close and the peer's bind; the peer then fails to start and the test
 * fails with its stderr (nothing else on a test machine is expected to grab loopback ports).
 */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** A temporary directory removed (recursively) when disposed. */
export async function tempDir(prefix: string): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

/** Resolves `promise`, or rejects after `ms` with `what` in the message. Leaves no timer. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A peer process started by a test and stopped by it, through its own handle: `stop()` (or
 * `await using`) sends SIGTERM to this child only and waits for its status and its output
 * streams. stdout is split into lines for `nextLine()`; stderr is kept for error messages.
 */
export class Peer implements AsyncDisposable {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  #lines: string[] = [];
  #lineWaiters: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  #stdoutDone = false;
  #stderr = "";
  #pumps: Promise<void>;
  #exited: Deno.CommandStatus | undefined;
  #status: Promise<Deno.CommandStatus>;

  constructor(name: string, command: string, args: string[], options: Deno.CommandOptions = {}) {
    this.name = name;
    this.child = new Deno.Command(command, {
      ...options,
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.child.status.then((status) => this.#exited = status);
    this.#pumps = Promise.all([this.#pumpStdout(), this.#pumpStderr()]).then(() => {});
  }

  async #pumpStdout(): Promise<void> {
    let partial = "";
    for await (const chunk of this.child.stdout.pipeThrough(new TextDecoderStream())) {
      partial += chunk;
      let nl;
      while ((nl = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        const waiter = this.#lineWaiters.shift();
        if (waiter !== undefined) waiter.resolve(line);
        else this.#lines.push(line);
      }
    }
    if (partial !== "") {
      const waiter = this.#lineWaiters.shift();
      if (waiter !== undefined) waiter.resolve(partial);
      else this.#lines.push(partial);
    }
    this.#stdoutDone = true;
    for (const waiter of this.#lineWaiters.splice(0)) {
      waiter.reject(new Error(`${this.name} closed its stdout; stderr:\n${this.#stderr}`));
    }
  }

  async #pumpStderr(): Promise<void> {
    for await (const chunk of this.child.stderr.pipeThrough(new TextDecoderStream())) {
      this.#stderr += chunk;
    }
  }

  /** Everything the peer wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** The exit status once the process has ended, else `undefined`. */
  get exited(): Deno.CommandStatus | undefined {
    return this.#exited;
  }

  /** The next line the peer writes to stdout, within `ms`. */
  nextLine(ms = 5000): Promise<string> {
    const line = this.#lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.#stdoutDone) {
      return Promise.reject(new Error(`${this.name} closed its stdout; stderr:\n${this.#stderr}`));
    }
    let waiter!: { resolve: (line: string) => void; reject: (e: Error) => void };
    const next = new Promise<string>((resolve, reject) => {
      waiter = { resolve, reject };
      this.#lineWaiters.push(waiter);
    });
    return within(next, ms, `a line from ${this.name}`).catch((error) => {
      // Drop the waiter so that a later line is not lost to it.
      this.#lineWaiters = this.#lineWaiters.filter((w) => w !== waiter);
      throw new Error(`${error.message}; stderr so far:\n${this.#stderr}`);
    });
  }

  /** The stdout lines not taken yet, joined by newlines (all of it, once `finished()`). */
  takeStdout(): string {
    return this.#lines.splice(0).join("\n");
  }

  /** The next stdout line, parsed as JSON. */
  async nextJson<T = Record<string, unknown>>(ms = 5000): Promise<T> {
    return JSON.parse(await this.nextLine(ms)) as T;
  }

  /** Waits for the process to end by itself (e.g. a client), within `ms`. */
  async finished(ms = 10_000): Promise<Deno.CommandStatus> {
    const status = await within(this.#status, ms, `${this.name} to exit`);
    await this.#pumps;
    return status;
  }

  /** SIGTERM to this child (if still running), then its status and output. */
  async stop(): Promise<Deno.CommandStatus> {
    if (this.#exited === undefined) {
      try {
        this.child.kill("SIGTERM");
      } catch {
        // it ended between the check and the kill
      }
    }
    const status = await this.#status;
    await this.#pumps;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/**
 * Connects with node:net (Deno.connect cannot choose its source address) from
 * `localAddress`; resolves once connected, or `null` when refused.
 */
function tryConnect(
  host: string,
  port: number,
  localAddress: string,
): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, localAddress });
    const onError = () => {
      socket.destroy();
      socket.once("close", () => resolve(null));
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

/** Waits for a node:net socket to close, destroying it first. */
function destroyed(socket: net.Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once("close", () => resolve());
    socket.destroy();
  });
}

/**
 * Waits until `host:port` accepts a connection from `probeFrom`, so that a peer has bound
 * its listeners. Peer configs refuse `probeFrom` at connection level (HAProxy's
 * `tcp-request connection reject`, nginx's `deny`), so the probes never reach the backend
 * (our listener) as stray connections. Fails early, with the peer's stderr, if it exits.
 */
export async function waitForPort(
  peer: Peer,
  host: string,
  port: number,
  probeFrom = "127.0.0.9",
  ms = 5000,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const socket = await tryConnect(host, port, probeFrom);
    if (socket !== null) {
      await destroyed(socket);
      return;
    }
    if (peer.exited !== undefined) {
      throw new Error(
        `${peer.name} exited (${peer.exited.code}) before ${host}:${port} accepted; stderr:\n` +
          peer.stderr,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(`${host}:${port} never accepted; ${peer.name} stderr:\n${peer.stderr}`);
    }
    await sleep(20);
  }
}

/** A node:net client bound to a chosen loopback source address, with promise helpers. */
export class NetClient implements AsyncDisposable {
  readonly socket: net.Socket;
  #chunks: Uint8Array[] = [];
  #size = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(new Uint8Array(chunk));
      this.#size += chunk.length;
      this.#wake?.();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake?.();
    });
    socket.on("error", (error) => {
      this.#error = error;
      this.#ended = true;
      this.#wake?.();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake?.();
    });
  }

  /** Connects from `localAddress` to `host:port`. */
  static async connect(host: string, port: number, localAddress: string): Promise<NetClient> {
    const socket = await within(
      tryConnect(host, port, localAddress),
      5000,
      `connect ${localAddress} -> ${host}:${port}`,
    );
    if (socket === null) throw new Error(`${host}:${port} refused ${localAddress}`);
    socket.setNoDelay(true);
    return new NetClient(socket);
  }

  /** The client's own address and port (what the header's source should be). */
  get local(): { address: string; port: number } {
    return { address: this.socket.localAddress!, port: this.socket.localPort! };
  }

  /** Writes, resolving once the bytes are handed to the kernel. */
  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(bytes, (error) => error ? reject(error) : resolve());
    });
  }

  /** Reads exactly `n` bytes (fewer if the stream ends first), within `ms`. */
  async read(n: number, ms = 5000): Promise<Uint8Array> {
    await within(
      (async () => {
        while (this.#size < n && !this.#ended) {
          await new Promise<void>((resolve) => this.#wake = resolve);
          this.#wake = undefined;
        }
      })(),
      ms,
      `${n} bytes from ${this.socket.remoteAddress}:${this.socket.remotePort}`,
    ).finally(() => {
      // within() may have given up: let the waiting loop finish on the next event.
      this.#wake?.();
    });
    const all = new Uint8Array(this.#size);
    let at = 0;
    for (const chunk of this.#chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    const take = Math.min(n, all.length);
    this.#chunks = take < all.length ? [all.slice(take)] : [];
    this.#size = all.length - take;
    if (take < n && this.#error !== undefined) throw this.#error;
    return all.subarray(0, take);
  }

  /** Destroys the socket and waits for its close event. */
  close(): Promise<void> {
    return destroyed(this.socket);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Reads from a Deno connection until `n` bytes, the end, or `ms`. */
export async function readN(
  conn: { read(p: Uint8Array): Promise<number | null> },
  n: number,
  ms = 5000,
): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let have = 0;
  await within(
    (async () => {
      while (have < n) {
        const got = await conn.read(out.subarray(have));
        if (got === null) break;
        have += got;
      }
    })(),
    ms,
    `${n} bytes`,
  );
  return out.subarray(0, have);
}

/** Reads from a Deno connection until it ends, within `ms`. */
export async function readAll(
  conn: { read(p: Uint8Array): Promise<number | null> },
  ms = 5000,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await within(
    (async () => {
      for (;;) {
        const buf = new Uint8Array(4096);
        let got: number | null;
        try {
          got = await conn.read(buf);
        } catch (error) {
          if (error instanceof Deno.errors.ConnectionReset) break;
          throw error;
        }
        if (got === null) break;
        parts.push(buf.subarray(0, got));
      }
    })(),
    ms,
    "the end of the stream",
  );
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Reads from a Deno connection up to and including the first `delimiter`, within `ms`. */
export async function readUntil(
  conn: { read(p: Uint8Array): Promise<number | null> },
  delimiter: string,
  ms = 5000,
): Promise<string> {
  let got = "";
  const buf = new Uint8Array(1);
  await within(
    (async () => {
      while (!got.endsWith(delimiter)) {
        const n = await conn.read(buf);
        if (n === null) break;
        got += String.fromCharCode(buf[0]!);
      }
    })(),
    ms,
    `${JSON.stringify(delimiter)}`,
  );
  return got;
}

/**
 * Waits until `cond()` holds, polling every 10 ms, within `ms`. Give `peer` to have its
 * stderr in the failure message.
 */
export async function until(
  cond: () => boolean,
  ms: number,
  what: string,
  peer?: Peer,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) {
      const log = peer === undefined ? "" : `; ${peer.name} stderr:\n${peer.stderr}`;
      assert.fail(`timed out after ${ms} ms waiting for ${what}${log}`);
    }
    await sleep(10);
  }
}

/**
 * One client from `from` through a relaying peer at `host:port`: sends `payload`, and our
 * listener echoes it back. Returns the accepted connection (closed by then) and the
 * client's own address.
 */
export async function echoThrough(
  listener: ProxyListener,
  host: string,
  port: number,
  from: string,
  payload: Uint8Array,
  peer: string,
): Promise<{ conn: ProxyConn; client: { address: string; port: number } }> {
  await using client = await NetClient.connect(host, port, from);
  await client.write(payload);
  const conn = await within(listener.accept(), 5000, `${peer}'s connection`);
  try {
    const got = await readN(conn, payload.length);
    assert.deepEqual(got, payload, "the payload arrives after the header, untouched");
    await conn.write(got);
    assert.deepEqual(await client.read(payload.length), payload, "the echo comes back");
  } finally {
    conn.close();
  }
  return { conn, client: client.local };
}

/** A client's v4 endpoints, as the interop tests encode them. */
export const CLIENT_V4 = {
  protocol: "TCP4",
  source: { address: "203.0.113.7", port: 51234 },
  destination: { address: "10.0.0.5", port: 443 },
} as const;

/** A client's v6 endpoints, as the interop tests encode them. */
export const CLIENT_V6 = {
  protocol: "TCP6",
  source: { address: "2001:db8::7", port: 51234 },
  destination: { address: "2001:db8::1", port: 443 },
} as const;

/** Debian's go-proxyproto source, which the Go programs under tests/interop build against. */
export const PROXYPROTO_SRC = Deno.env.get("PROXYPROTO_SRC") ??
  "/usr/share/gocode/src/github.com/pires/go-proxyproto";

/** What a test of one of those programs needs: `go` and the go-proxyproto source. */
export const GO_NEEDS: Needs = { commands: ["go"], paths: [`${PROXYPROTO_SRC}/header.go`] };

/**
 * Builds the Go program in tests/interop/`program` into `dir`, offline: its go.mod's
 * `replace` points at the Debian source, with GOPROXY=off, GOFLAGS=-mod=mod, GOSUMDB=off.
 *
 * @returns The binary's path.
 */
export async function buildGo(go: string, program: string, dir: string): Promise<string> {
  const source = new URL(`./${program}/`, import.meta.url);
  const mod = (await Deno.readTextFile(new URL("go.mod", source))).replace(
    /^replace github\.com\/pires\/go-proxyproto => .*$/m,
    `replace github.com/pires/go-proxyproto => ${PROXYPROTO_SRC}`,
  );
  await Deno.writeTextFile(`${dir}/go.mod`, mod);
  await Deno.copyFile(new URL("main.go", source), `${dir}/main.go`);
  const env: Record<string, string> = {
    GOPROXY: "off",
    GOFLAGS: "-mod=mod",
    GOSUMDB: "off",
    GONOSUMDB: "*",
    GO111MODULE: "on",
    GOTOOLCHAIN: "local",
  };
  // go needs a build cache; without HOME it has no default one.
  if (Deno.env.get("GOCACHE") === undefined && Deno.env.get("HOME") === undefined) {
    env.GOCACHE = `${dir}/gocache`;
  }
  const out = await new Deno.Command(go, {
    args: ["build", "-o", `${dir}/pp-${program}`, "."],
    cwd: dir,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`go build failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return `${dir}/pp-${program}`;
}
