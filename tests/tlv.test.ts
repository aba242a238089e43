import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  decodeHeader,
  decodeTlvs,
  encodeTlvs,
  fromHex,
  ProxyProtocolError,
  type Tlv,
} from "@proxy-protocol/edge";
import { ascii, V2 } from "./vectors.ts";

const tlv = (type: number, hex: string): Tlv => ({ type, value: fromHex(hex) });

describe("typed TLVs", () => {
  it("reads the AWS NLB TLVs", () => {
    const fields = decodeTlvs(decodeHeader(V2.aws1)!.header.tlvs);
    assert.equal(fields.crc32c, 0xe8d6892d);
    assert.equal(fields.awsVpceId, "vpce-08d2bf15fac5001c9");
    assert.deepEqual(fields.others, []); // NOOP padding is dropped
    assert.equal(
      decodeTlvs(decodeHeader(V2.aws2)!.header.tlvs).awsVpceId,
      "vpce-00eafc458ec97b833",
    );
  });

  it("reads the SSL TLV and its sub-TLVs", () => {
    const cert = decodeTlvs(decodeHeader(V2.clientCert)!.header.tlvs).ssl!;
    assert.equal(cert.client, 0x07);
    assert.equal(cert.verify, 0);
    assert.equal(cert.ssl, true);
    assert.equal(cert.certInConnection, true);
    assert.equal(cert.certInSession, true);
    assert.equal(cert.verified, true);
    assert.equal(cert.version, "TLSv1.3");
    assert.equal(cert.cn, "Example Common Name Client Cert");
    const v6 = decodeTlvs(decodeHeader(V2.tlsV6)!.header.tlvs).ssl!;
    assert.equal(v6.ssl, true);
    assert.equal(v6.certInConnection, false);
    assert.equal(v6.verified, false, "verify 0 without a certificate proves nothing");
    assert.equal(v6.cipher, "TLS_AES_256_GCM_SHA384");
    assert.equal(v6.cn, undefined);
  });

  it("reads the newer SSL sub-types: group, signature scheme, client certificate", () => {
    const ssl = encodeTlvs({
      ssl: {
        client: 0x03,
        verify: 20,
        sigAlg: "SHA256",
        keyAlg: "RSA2048",
        group: "X25519",
        sigScheme: "rsa_pss_rsae_sha256",
        clientCert: fromHex("308201"),
        cn: "Ünïcode",
      },
    });
    const fields = decodeTlvs(ssl).ssl!;
    assert.equal(fields.verify, 20);
    assert.equal(fields.verified, false);
    assert.equal(fields.group, "X25519");
    assert.equal(fields.sigScheme, "rsa_pss_rsae_sha256");
    assert.equal(fields.sigAlg, "SHA256");
    assert.equal(fields.keyAlg, "RSA2048");
    assert.equal(fields.cn, "Ünïcode");
    assert.deepEqual(fields.clientCert, fromHex("308201"));
    assert.deepEqual(fields.tlvs.map((t) => t.type), [0x22, 0x24, 0x25, 0x26, 0x27, 0x28]);
  });

  it("reads the Azure and GCP examples published with go-proxyproto", () => {
    assert.equal(decodeTlvs([tlv(0xee, "01 c1450021")]).azureLinkId, 0x210045c1);
    assert.equal(
      decodeTlvs([tlv(0xe0, "ffffffffc0a86402")]).gcpPscConnectionId,
      18446744072646845442n,
    );
  });

  it("reads ALPN, authority, unique id and netns", () => {
    const fields = decodeTlvs([
      tlv(0x01, ascii("h2")),
      tlv(0x02, "c3a9 2e 6578616d706c65"), // é.example, UTF-8
      tlv(0x05, "0102"),
      tlv(0x30, ascii("blue")),
    ]);
    assert.equal(fields.alpn, "h2");
    assert.equal(fields.authority, "é.example");
    assert.deepEqual(fields.uniqueId, fromHex("0102"));
    assert.equal(fields.netns, "blue");
  });

  it("keeps unknown, repeated and odd-shaped TLVs raw in others", () => {
    const odd = [
      tlv(0x01, ascii("h2")),
      tlv(0x01, ascii("http/1.1")),
      tlv(0xee, "02 00000000"),
      tlv(0xe0, "0102"),
      tlv(0xea, "02" + ascii("x")),
      tlv(0xf0, "ff"),
      tlv(0x20, "01"),
      tlv(0x03, "0102"),
    ];
    const fields = decodeTlvs(odd);
    assert.equal(fields.alpn, "h2");
    assert.equal(fields.azureLinkId, undefined);
    assert.equal(fields.gcpPscConnectionId, undefined);
    assert.equal(fields.awsVpceId, undefined);
    assert.equal(fields.ssl, undefined);
    assert.equal(fields.crc32c, undefined);
    assert.deepEqual(fields.others, odd.slice(1));
  });

  it("writes what it reads", () => {
    const init = {
      alpn: "h2",
      authority: "example.com",
      uniqueId: fromHex("00ff"),
      ssl: { client: 1, version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" },
      netns: "ns1",
      awsVpceId: "vpce-1",
      azureLinkId: 0xffffffff,
      gcpPscConnectionId: 0xffffffffffffffffn,
    };
    const fields = decodeTlvs(encodeTlvs(init));
    assert.equal(fields.alpn, init.alpn);
    assert.equal(fields.authority, init.authority);
    assert.deepEqual(fields.uniqueId, init.uniqueId);
    assert.equal(fields.ssl?.cipher, init.ssl.cipher);
    assert.equal(fields.netns, init.netns);
    assert.equal(fields.awsVpceId, init.awsVpceId);
    assert.equal(fields.azureLinkId, init.azureLinkId);
    assert.equal(fields.gcpPscConnectionId, init.gcpPscConnectionId);
  });

  it("refuses values it cannot write", () => {
    for (
      const bad of [
        { uniqueId: new Uint8Array(129) },
        { azureLinkId: -1 },
        { azureLinkId: 2 ** 32 },
        { gcpPscConnectionId: 2n ** 64n },
        { alpn: "h\u0100" },
      ]
    ) {
      assert.throws(
        () => encodeTlvs(bad),
        (e: unknown) => e instanceof ProxyProtocolError && e.code === "INVALID_HEADER",
      );
    }
  });
});
