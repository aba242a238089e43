// A self-signed certificate for localhost and 127.0.0.1, made with openssl at test time, for
// every TLS test on every runtime (node:child_process and node:fs run on all three).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** PEM key and certificate (CN and subjectAltName localhost, IP 127.0.0.1; not a CA). */
export interface Certificate {
  key: string;
  cert: string;
}

/** Makes a new key and self-signed certificate, valid for a day. */
export function makeCertificate(): Certificate {
  const dir = mkdtempSync(join(tmpdir(), "pp-tls-"));
  try {
    execFileSync("openssl", [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
      ...["-nodes", "-days", "1", "-subj", "/CN=localhost"],
      ...["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
      ...["-addext", "basicConstraints=critical,CA:FALSE"],
      ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
    ], { stdio: "ignore" });
    return {
      key: readFileSync(join(dir, "key.pem"), "utf8"),
      cert: readFileSync(join(dir, "cert.pem"), "utf8"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
