// Send one merchant API request signed with your own key (jose).
//
//   npm install jose tsx
//   export SETTLEPROOF_MERCHANT_ID=shop-2 SETTLEPROOF_MERCHANT_KEY=merchant.pem
//   export SETTLEPROOF_AUDIENCE=settleproof:31337:0x...   # `audience` of any node's /health/ready
//   npx tsx merchant_client.ts POST http://127.0.0.1:8700/v1/invoices '{"amount": "1000", "token": "native", "chain_id": 31337}'
//
// Each request gets a JWT of its own: header alg, kid, typ and a fresh nonce; claims iss (the
// merchant), sub (the key id), nbf/exp one minute apart, uri ("METHOD host[:port]/path") and
// reqHash (SHA-256 of the exact body bytes), and aud (the network, SETTLEPROOF_AUDIENCE, which
// nodes require): no other network where the key is registered takes the request or what it
// makes.
// Prints the status and the answer; exits 1 on an error status.

import { createHash, createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { SignJWT, importPKCS8 } from "jose";

type Alg = "EdDSA" | "ES256";

function keyId(pem: string): { alg: Alg; kid: string } {
  const jwk = createPublicKey(createPrivateKey(pem)).export({ format: "jwk" });
  let alg: Alg;
  let raw: Buffer;
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") {
    alg = "EdDSA";
    raw = Buffer.from(jwk.x!, "base64url");
  } else if (jwk.kty === "EC" && jwk.crv === "P-256") {
    alg = "ES256";
    raw = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, "base64url"), Buffer.from(jwk.y!, "base64url")]);
  } else {
    throw new Error("the key must be Ed25519 or P-256 (settleproof merchant keygen makes one)");
  }
  // The key id names the key: mk_ and 20 bytes of SHA-256 over the algorithm, a zero byte and the key.
  const digest = createHash("sha256").update(alg).update(Buffer.from([0])).update(raw).digest("hex");
  return { alg, kid: `mk_${digest.slice(0, 40)}` };
}

export async function signedFetch(method: string, url: string, body: string | undefined, merchantId: string, pem: string) {
  const { alg, kid } = keyId(pem);
  const key = await importPKCS8(pem, alg);
  const u = new URL(url);
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    iss: merchantId,
    sub: kid,
    nbf: now,
    exp: now + 60,
    // The host as written in the URL: URL.host keeps an explicit port and drops a default one.
    uri: `${method.toUpperCase()} ${u.host.toLowerCase()}${u.pathname || "/"}`,
  };
  if (body) claims.reqHash = createHash("sha256").update(body).digest("hex");
  const aud = process.env.SETTLEPROOF_AUDIENCE;
  if (!aud) throw new Error("set SETTLEPROOF_AUDIENCE: the network the request is for (nodes require it)");
  claims.aud = aud;
  const jwt = await new SignJWT(claims)
    .setProtectedHeader({ alg, kid, typ: "JWT", nonce: randomBytes(16).toString("hex") })
    .sign(key);
  const headers: Record<string, string> = { authorization: `Bearer ${jwt}` };
  if (body) headers["content-type"] = "application/json";
  return fetch(url, { method: method.toUpperCase(), headers, body });
}

async function main() {
  const [method, url, data] = process.argv.slice(2);
  if (!method || !url) throw new Error("usage: merchant_client.ts METHOD URL [JSON]");
  const body = data === undefined ? undefined : JSON.stringify(JSON.parse(data));
  const pem = readFileSync(process.env.SETTLEPROOF_MERCHANT_KEY!, "utf8");
  const resp = await signedFetch(method, url, body, process.env.SETTLEPROOF_MERCHANT_ID!, pem);
  console.log(resp.status);
  console.log(await resp.text());
  if (resp.status >= 400) process.exit(1);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
