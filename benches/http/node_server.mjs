// One server for node_bench.mjs: `node node_server.mjs MODE PORT [cert key]`, prints "ready".
// Modes: native (http.createServer), ours (serve(http.createServer)), native-tls
// (https.createServer), ours-tls (serve(https.createServer): TLS after the header).
// LIB is the bundled lib/node/mod.ts (node_bench.mjs builds it from the sources).
import http from "node:http";
import https from "node:https";
import { readFileSync } from "node:fs";
import process from "node:process";

const [mode, port, certFile, keyFile] = process.argv.slice(2);
const { serve } = await import(process.env.LIB);
const body = "hello world\n";
const app = (_req, res) => {
  res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
  res.end(body);
};
const tls = mode.endsWith("-tls");
const server = tls
  ? https.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, app)
  : http.createServer(app);
if (mode.startsWith("ours")) serve(server, { onError: (e) => console.error(e.code) });
server.keepAliveTimeout = 60_000;
server.listen(Number(port), "127.0.0.1", () => console.log("ready"));
