// One HTTP server for benches/http/deno_bench.ts: `deno run -A deno_server.ts MODE PORT
// [CERT KEY]`. Prints "ready" once listening. Every mode answers "hello" (5 bytes).
//   native      Deno.serve (no header)
//   node        Deno's node:http (no header)
//   ours        serve() from ./deno: the relay into Deno.serve (v2 header required)
//   emit        listen() from ./deno + node:http server.emit("connection", duplex): the
//               candidate mechanism measured against the relay (header required)
//   native-tls  Deno.serve with cert/key;  ours-tls  serve() with cert/key
import { Duplex } from "node:stream";
import http from "node:http";
import { listen, serve } from "@proxy-protocol/edge/deno";

const [mode, portText, certPath, keyPath] = Deno.args;
const port = Number(portText);
const hostname = "127.0.0.1";
const body = "hello";
const tls = certPath === undefined
  ? {}
  : { cert: Deno.readTextFileSync(certPath), key: Deno.readTextFileSync(keyPath!) };
const ready = () => console.log("ready");

switch (mode) {
  case "native":
  case "native-tls":
    Deno.serve({ hostname, port, onListen: ready, ...tls }, () => new Response(body));
    break;
  case "ours":
  case "ours-tls":
    serve({ hostname, port, onListen: ready, ...tls }, () => new Response(body));
    break;
  case "node":
    http.createServer((_req, res) => res.end(body)).listen(port, hostname, ready);
    break;
  case "emit": {
    const server = http.createServer((_req, res) => res.end(body));
    const listener = listen({ hostname, port });
    ready();
    for await (const conn of listener) {
      conn.setNoDelay(true);
      const buffer = new Uint8Array(16 * 1024);
      let reading = false;
      const duplex = new Duplex({
        async read() {
          if (reading) return;
          reading = true;
          try {
            while (true) {
              const n = await conn.read(buffer);
              if (n === null) return void this.push(null);
              if (!this.push(buffer.slice(0, n))) break;
            }
          } catch (error) {
            this.destroy(error as Error);
          } finally {
            reading = false;
          }
        },
        write(chunk, _encoding, callback) {
          conn.write(chunk).then(() => callback(), callback);
        },
        final(callback) {
          conn.closeWrite().then(() => callback(), callback);
        },
        destroy(_error, callback) {
          try {
            conn.close();
          } catch {
            // closed
          }
          callback(null);
        },
      });
      server.emit("connection", duplex);
    }
    break;
  }
  default:
    throw new Error(`unknown mode ${mode}`);
}
