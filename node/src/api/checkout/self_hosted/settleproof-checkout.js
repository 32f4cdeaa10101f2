// settleproof self-hosted checkout: a payment page the merchant serves from its own origin, which
// trusts no node. Write it with your own binary (`settleproof merchant checkout-bundle DIR`; every
// node also serves it at /checkout/assets/self-hosted/, but a node could serve another one) and
// host it beside your page; never load it from a node. No build step, no dependency.
//
// The page is given what the merchant knows on its own (its merchant id, the invoice's id, its
// public keys, its payout address, the InvoicePayments contract of each chain) and the request the
// merchant signed (or a node's answer carrying it). It then:
//   - reads the signed request as every node reads it, and checks the merchant's signature over it
//     with a pinned key (WebCrypto: Ed25519 or ECDSA P-256);
//   - recomputes the invoice id from the signed terms, the pinned contract and the pinned payout
//     address, and refuses any other invoice than the pinned id;
//   - checks that every term a node's answer shows is the signed one, and that its payment
//     instructions are the ones the page builds itself from the signed terms and the pins;
//   - offers to pay only once `agree` of the listed nodes hold the invoice, and shows a state only
//     when `agree` of them report it (each asked for at most 5 s).
// Anything that does not hold is listed on the page, and no pay button is shown.
//
// Use: docs/merchants.md, "A checkout on your own site". The pure parts are exported for tests.
//
// keccak-256 is written here (about 40 lines) because browsers have none and the page must not
// load code from anywhere but the merchant's origin; it is checked against known digests and
// against the node's ids in the test suite.

const MASK = (1n << 64n) - 1n;
const RC = [
  0x0000000000000001n, 0x0000000000008082n, 0x800000000000808an, 0x8000000080008000n,
  0x000000000000808bn, 0x0000000080000001n, 0x8000000080008081n, 0x8000000000008009n,
  0x000000000000008an, 0x0000000000000088n, 0x0000000080008009n, 0x000000008000000an,
  0x000000008000808bn, 0x800000000000008bn, 0x8000000000008089n, 0x8000000000008003n,
  0x8000000000008002n, 0x8000000000000080n, 0x000000000000800an, 0x800000008000000an,
  0x8000000080008081n, 0x8000000000008080n, 0x0000000080000001n, 0x8000000080008008n,
];
// Rotation of lane x + 5y.
const ROT = [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14];
const rotl = (v, n) => (n === 0 ? v : ((v << BigInt(n)) | (v >> BigInt(64 - n))) & MASK);

function keccakF(a) {
  const b = new Array(25);
  const c = new Array(5);
  for (let round = 0; round < 24; round++) {
    for (let x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
      for (let y = 0; y < 25; y += 5) a[x + y] ^= d;
    }
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(a[x + 5 * y], ROT[x + 5 * y]);
    }
    for (let y = 0; y < 25; y += 5) {
      for (let x = 0; x < 5; x++) a[x + y] = b[x + y] ^ (~b[((x + 1) % 5) + y] & MASK & b[((x + 2) % 5) + y]);
    }
    a[0] ^= RC[round];
  }
}

/** keccak-256 (Ethereum's, with the original padding) of `data` (Uint8Array or string). */
export function keccak256(data) {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const rate = 136;
  const padded = new Uint8Array(Math.floor(bytes.length / rate + 1) * rate);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const state = new Array(25).fill(0n);
  for (let off = 0; off < padded.length; off += rate) {
    for (let i = 0; i < rate / 8; i++) {
      let lane = 0n;
      for (let k = 7; k >= 0; k--) lane = (lane << 8n) | BigInt(padded[off + i * 8 + k]);
      state[i] ^= lane;
    }
    keccakF(state);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 4; i++) {
    for (let k = 0; k < 8; k++) out[i * 8 + k] = Number((state[i] >> BigInt(8 * k)) & 0xffn);
  }
  return out;
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (s) => {
  const h = s.startsWith("0x") ? s.slice(2) : s;
  if (h.length % 2 || /[^0-9a-fA-F]/.test(h)) throw new Error("not hex: " + s);
  return Uint8Array.from(h.match(/../g) || [], (b) => parseInt(b, 16));
};
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const b64url = (s) => {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  return Uint8Array.from(b, (ch) => ch.charCodeAt(0));
};
const utf8 = (s) => new TextEncoder().encode(s);
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

const UINT256 = 1n << 256n;

/** A 32-byte ABI word of a uint (BigInt or number, below 2^256), an address, or 32 bytes in hex. */
function word(v) {
  if (typeof v === "bigint" || typeof v === "number") {
    const n = BigInt(v);
    if (n < 0n || n >= UINT256) throw new Error("not a uint256: " + n);
    return unhex(n.toString(16).padStart(64, "0"));
  }
  const b = unhex(v);
  if (b.length > 32) throw new Error("more than 32 bytes: " + v);
  return concat(new Uint8Array(32 - b.length), b);
}
const selector = (signature) => keccak256(signature).slice(0, 4);

/** Canonical JSON, as invoice ids commit to metadata: keys sorted by their UTF-8 bytes, no spaces. */
export function canonicalJson(value) {
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const cmp = (a, b) => {
      const [x, y] = [utf8(a), utf8(b)];
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
      return x.length - y.length;
    };
    return "{" + Object.keys(value).sort(cmp).map((k) => JSON.stringify(k) + ":" + canonicalJson(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
}

const INVOICE_TYPE =
  "SettleproofInvoice(uint256 chainId,address payments,bytes32 merchant,address payout,address token,uint256 amount,uint64 expiresAt,bytes32 nonce,bytes32 metadataHash)";
const ZERO = "0x" + "00".repeat(20);

/** The invoice id `terms` commit to (docs/merchants.md, "What to trust, exactly"). */
export function invoiceId(t) {
  let extras = keccak256(canonicalJson(t.metadata === undefined ? null : t.metadata));
  if (t.redirect_url != null) extras = keccak256(concat(extras, keccak256(t.redirect_url)));
  const expires = BigInt(t.expires_at || 0);
  if (expires >= 1n << 64n) throw new Error("expiry beyond uint64");
  return "0x" + hex(keccak256(concat(
    keccak256(INVOICE_TYPE), word(BigInt(t.chain_id)), word(t.payments), keccak256(t.merchant_id),
    word(t.payout), word(t.token), word(BigInt(t.amount)), word(expires), word(t.nonce), extras,
  )));
}

/** The transactions that pay invoice `id` of `t`: to the pinned contract, for the pinned payout. */
export function paymentTransactions(id, t) {
  if (t.token === ZERO) {
    return [{
      description: "pay the invoice in the native coin",
      to: t.payments, value: BigInt(t.amount).toString(),
      data: "0x" + hex(concat(selector("payNative(bytes32,address)"), word(id), word(t.payout))),
    }];
  }
  return [
    {
      description: "approve the payment contract to transfer the amount",
      to: t.token, value: "0",
      data: "0x" + hex(concat(selector("approve(address,uint256)"), word(t.payments), word(BigInt(t.amount)))),
    },
    {
      description: "pay the invoice in the token",
      to: t.payments, value: "0",
      data: "0x" + hex(concat(selector("payToken(bytes32,address,address,uint256)"), word(id), word(t.payout),
        word(t.token), word(BigInt(t.amount)))),
    },
  ];
}

/** A merchant key's id: `mk_` and the first 20 bytes of SHA-256(alg ‖ 0 ‖ public key). */
export async function keyId(key) {
  const digest = await crypto.subtle.digest("SHA-256", concat(utf8(key.alg), new Uint8Array([0]), unhex(key.public_key)));
  return "mk_" + hex(new Uint8Array(digest).slice(0, 20));
}

async function signatureHolds(key, alg, input, signature) {
  if (alg !== key.alg) return false;
  const [params, verify] = alg === "EdDSA"
    ? [{ name: "Ed25519" }, { name: "Ed25519" }]
    : [{ name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" }];
  const pub = await crypto.subtle.importKey("raw", unhex(key.public_key), params, false, ["verify"]);
  return crypto.subtle.verify(verify, pub, signature, utf8(input));
}

/** An address is EIP-55 checksummed when it has a capital letter (as nodes read it: `0x` is lower case). */
function checksumHolds(address) {
  const h = address.slice(2);
  if (h === h.toLowerCase()) return true;
  const hash = hex(keccak256(h.toLowerCase()));
  return [...h].every((c, i) => !/[a-fA-F]/.test(c) || (parseInt(hash[i], 16) >= 8) === (c === c.toUpperCase()));
}

/** The keys of a JSON object's text, in order, repeats included (the text parses). */
function topLevelKeys(text) {
  const keys = [];
  let depth = 0, expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)));
      expectKey = false;
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = c === "{" && depth === 1;
    } else if (c === "}" || c === "]") depth--;
    else if (c === "," && depth === 1) expectKey = true;
  }
  return keys;
}

const BODY_FIELDS = ["amount", "token", "expires_at", "expires_in", "metadata", "chain_id", "redirect_url", "nonce", "idempotency_key"];
const B64URL = /^[A-Za-z0-9_-]*$/;
const isUint = (v) => Number.isSafeInteger(v) && v >= 0;

/**
 * The terms a merchant's signed `POST /v1/invoices` sets, read as every node reads it (the node's
 * `merchants::invoice_record::read`): a request no node would take throws, naming the field.
 */
export function readSigned(statement) {
  const jwt = String(statement.jwt || ""), body = String(statement.body || "");
  if (utf8(body).length > 8192 || jwt.length > 2048) throw new Error("body: larger than any node takes");
  const parts = jwt.split(".");
  if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) throw new Error("authorization: not a JWT");
  const header = JSON.parse(new TextDecoder().decode(b64url(parts[0])));
  const claims = JSON.parse(new TextDecoder().decode(b64url(parts[1])));
  if (typeof header.kid !== "string" || claims.sub !== header.kid) throw new Error("authorization: `sub` is not the signing key");
  if (typeof claims.iss !== "string" || !isUint(claims.nbf)) throw new Error("authorization: no `iss` or `nbf`");
  const [method, target] = String(claims.uri || "").split(" ");
  if (method !== "POST" || !target || target.indexOf("/") < 0 || target.slice(target.indexOf("/")) !== "/v1/invoices") {
    throw new Error("authorization: `" + claims.uri + "` is not an invoice's creation");
  }
  const req = JSON.parse(body);
  if (req === null || typeof req !== "object" || Array.isArray(req)) throw new Error("body: not a JSON object");
  const keys = topLevelKeys(body);
  const unknown = keys.find((k) => !BODY_FIELDS.includes(k));
  if (unknown !== undefined) throw new Error("body: unknown field `" + unknown + "`");
  if (new Set(keys).size !== keys.length) throw new Error("body: a field given twice");
  const field = (name, ok) => { if (req[name] != null && !ok(req[name])) throw new Error(name + ": not as a node takes it"); };
  field("chain_id", isUint);
  if (req.chain_id == null) throw new Error("chain_id: required");
  if (typeof req.amount !== "string" || !/^[0-9]+$/.test(req.amount)) throw new Error("amount: not a decimal string");
  const amount = BigInt(req.amount);
  if (amount === 0n || amount >= UINT256) throw new Error("amount: zero or beyond 256 bits");
  if (req.token !== "native" && !(typeof req.token === "string" && ADDRESS.test(req.token) && checksumHolds(req.token) && BigInt(req.token) !== 0n)) {
    throw new Error("token: not native or an ERC-20 address");
  }
  field("expires_at", (v) => isUint(v) && v > 0);
  field("expires_in", (v) => isUint(v) && v >= 1 && v <= 31536000);
  if (req.expires_at != null && req.expires_in != null) throw new Error("expires_at: with expires_in");
  field("nonce", (v) => typeof v === "string" && /^0x[0-9a-fA-F]{64}$/.test(v));
  field("idempotency_key", (v) => typeof v === "string" && /^[\x20-\x7e]{1,255}$/.test(v));
  field("metadata", (v) => typeof v === "object" && !Array.isArray(v) && utf8(JSON.stringify(v)).length <= 4096);
  field("redirect_url", (v) => {
    if (typeof v !== "string" || v.length > 2048) return false;
    try { return ["https:", "http:"].includes(new URL(v).protocol); } catch (_) { return false; }
  });
  const input = parts[0] + "." + parts[1];
  return {
    kid: header.kid, alg: header.alg, input, signature: b64url(parts[2]), req_hash: claims.reqHash,
    merchant_id: claims.iss, chain_id: req.chain_id, amount: amount.toString(),
    token: req.token === "native" ? ZERO : req.token.toLowerCase(),
    expires_at: req.expires_at != null ? req.expires_at : req.expires_in != null ? claims.nbf + req.expires_in : null,
    metadata: req.metadata == null ? null : req.metadata, redirect_url: req.redirect_url == null ? null : req.redirect_url,
    nonce: req.nonce != null ? req.nonce.toLowerCase() : "0x" + hex(keccak256(concat(utf8("settleproof/invoice-nonce/1\0"), utf8(input)))),
  };
}

/** What is wrong with `pins` (the merchant's own knowledge), if anything. */
export function pinProblems(pins) {
  const p = [];
  if (typeof pins.merchant !== "string" || !pins.merchant) p.push("merchant: your merchant id is required");
  if (!/^0x[0-9a-fA-F]{64}$/.test(String(pins.id))) p.push("id: the id of the invoice this page is for is required (0x and 64 hex digits)");
  const keyOk = (k) => k && ["EdDSA", "ES256"].includes(k.alg) && /^[0-9a-f]+$/.test(String(k.public_key));
  if (!Array.isArray(pins.keys) || !pins.keys.length || !pins.keys.every(keyOk)) p.push("keys: your public keys, as {\"alg\": \"EdDSA\" or \"ES256\", \"public_key\": lowercase hex}");
  if (!ADDRESS.test(String(pins.payout))) p.push("payout: your payout address");
  const contracts = Object.values(pins.payments || {});
  if (!contracts.length || !contracts.every((a) => ADDRESS.test(String(a)))) p.push("payments: {\"<chain id>\": \"<InvoicePayments address>\"}");
  return p;
}

/**
 * Checks the invoice `answer` (a node's create or get answer of /v1/invoices, a webhook body, or
 * just `{signed_request}`) against `pins` ({id, merchant, keys, payout, payments: {chainId:
 * address}}). Returns {ok, problems, terms, id, transactions}; the transactions are built here,
 * never taken from the answer.
 */
export async function checkInvoice(answer, pins) {
  const invoice = answer && answer.data && answer.data.invoice ? answer.data.invoice : answer || {};
  const problems = pinProblems(pins);
  if (problems.length) return { ok: false, problems };
  if (!invoice.signed_request) return { ok: false, problems: ["no signed_request: nothing shows the merchant made this invoice"] };
  let t;
  try {
    t = readSigned(invoice.signed_request);
  } catch (e) {
    return { ok: false, problems: ["signed_request makes no invoice: " + e.message] };
  }
  let key = null;
  for (const k of pins.keys) if ((await keyId(k)) === t.kid) key = k;
  if (!key) problems.push("signed by key " + t.kid + ", none of the merchant's pinned keys");
  else if (!(await signatureHolds(key, t.alg, t.input, t.signature))) problems.push("the merchant's signature does not hold");
  const bodyHash = hex(new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(invoice.signed_request.body))));
  if (t.req_hash !== bodyHash) problems.push("the body is not the one the merchant signed");
  if (t.merchant_id !== pins.merchant) problems.push("signed for merchant " + t.merchant_id + ", not " + pins.merchant);
  const payments = (pins.payments[String(t.chain_id)] || "").toLowerCase();
  if (!payments) return { ok: false, problems: [...problems, "chain " + t.chain_id + " has no pinned payments contract"] };
  t.payments = payments;
  t.payout = pins.payout.toLowerCase();
  const id = invoiceId(t);
  if (id !== pins.id.toLowerCase()) problems.push("the answer is invoice " + id + ", not the one this page is for (" + pins.id + ")");
  // A node's answer shows the terms too: each must be the signed one.
  if (invoice.id !== undefined) {
    const shown = {
      id: [String(invoice.id).toLowerCase(), id], merchant_id: [invoice.merchant_id, t.merchant_id],
      chain_id: [invoice.chain_id, t.chain_id], amount: [invoice.amount, t.amount],
      token: [String(invoice.token).toLowerCase(), t.token === ZERO ? "native" : t.token],
      expires_at: [invoice.expires_at == null ? null : invoice.expires_at, t.expires_at],
      metadata: [canonicalJson(invoice.metadata == null ? null : invoice.metadata), canonicalJson(t.metadata)],
      redirect_url: [invoice.redirect_url == null ? null : invoice.redirect_url, t.redirect_url],
      nonce: [String(invoice.nonce).toLowerCase(), t.nonce], payout_address: [String(invoice.payout_address).toLowerCase(), t.payout],
    };
    for (const [field, [got, want]] of Object.entries(shown)) {
      if (got !== want) problems.push(field + " is " + JSON.stringify(got) + ", but the merchant signed " + JSON.stringify(want));
    }
  }
  const transactions = paymentTransactions(id, t);
  const pi = answer && answer.payment_instructions;
  if (pi) {
    if (String(pi.contract).toLowerCase() !== t.payments) problems.push("payment_instructions.contract is " + pi.contract + ", not the pinned " + t.payments);
    if (pi.chain_id !== t.chain_id) problems.push("payment_instructions.chain_id is " + pi.chain_id + ", not " + t.chain_id);
    const same = (a, b) => a && String(a.to).toLowerCase() === b.to.toLowerCase() && String(a.value) === b.value && String(a.data).toLowerCase() === b.data;
    const got = Array.isArray(pi.transactions) ? pi.transactions : [];
    if (got.length !== transactions.length || !transactions.every((tx, k) => same(got[k], tx))) {
      problems.push("payment_instructions.transactions do not pay this invoice to the merchant's payout address");
    }
  }
  return { ok: problems.length === 0, problems, terms: t, id, transactions };
}

const ORDER = ["waiting", "confirmed", "settled"];
const KNOWN = [...ORDER, "expired"];

/**
 * The state `agree` of the nodes' `reports` vouch for (a report is a node's state, or null when
 * it does not answer or does not hold the invoice): null when fewer than `agree` hold it;
 * else the furthest of waiting, confirmed, settled that at least `agree` reached (a report of
 * settled vouches for confirmed too); expired when `agree` say so and fewer than `agree` saw a
 * payment. So fewer than `agree` lying nodes can neither show a payment that did not happen,
 * nor hide one, nor offer to pay an invoice no node holds.
 */
export function agreedState(reports, agree) {
  if (reports.filter((r) => KNOWN.includes(r)).length < agree) return null;
  let shown = "waiting";
  for (const state of ORDER) {
    if (reports.filter((r) => ORDER.indexOf(r) >= ORDER.indexOf(state)).length >= agree) shown = state;
  }
  if (shown === "waiting" && reports.filter((r) => r === "expired").length >= agree) shown = "expired";
  return shown;
}

/** The smallest `agree` that f lying nodes of n = 3f + 1 listed cannot outvote: f + 1. */
export const leastAgree = (n) => Math.floor(Math.max(n - 1, 0) / 3) + 1;

/**
 * The listed nodes, one per host and port, and what is wrong with them or with `agree`:
 * https only (http too when the page itself is served over http, as on a local testnet), and
 * `agree` at least f + 1 of them.
 */
export function nodeProblems(nodes, agree, pageProtocol) {
  const p = [];
  const origins = [];
  const hosts = new Set();
  const schemes = pageProtocol === "http:" ? ["https:", "http:"] : ["https:"];
  for (const n of Array.isArray(nodes) ? nodes : []) {
    let u;
    try { u = new URL(n); } catch (_) { p.push("nodes: " + n + " is not a URL"); continue; }
    if (!schemes.includes(u.protocol)) { p.push("nodes: " + n + " is not https"); continue; }
    const host = u.hostname.replace(/\.$/, "") + ":" + (u.port || (u.protocol === "https:" ? "443" : "80"));
    if (!hosts.has(host)) { hosts.add(host); origins.push(u.origin); }
  }
  if (!origins.length) p.push("nodes: the API URLs of the nodes to ask, one per operator");
  const least = leastAgree(origins.length);
  if (!Number.isSafeInteger(agree) || agree < least || agree > origins.length) {
    p.push("agree: how many of the " + origins.length + " nodes must report a state, from " + least + " (f + 1 of 3f + 1) to " + origins.length);
  }
  return { origins, problems: p };
}

/** The body of `r` as text, or null past `max` bytes (read no further). */
async function capped(r, max) {
  if (!r.body) return null;
  const reader = r.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) { reader.cancel().catch(() => {}); return null; }
    chunks.push(value);
  }
  return new TextDecoder().decode(concat(...chunks));
}

function element(tag, attrs, text) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text != null) el.textContent = text;
  return el;
}

function units(amount, decimals) {
  if (decimals == null) return amount + " base units";
  const v = BigInt(amount), d = 10n ** BigInt(decimals);
  const frac = (v % d).toString().padStart(decimals, "0").replace(/0+$/, "");
  return (v / d).toString() + (frac ? "." + frac : "");
}

/** A node's status of invoice `id` ({state, amount_paid}), or null: 5 s and 4 KiB at most. */
async function nodeStatus(origin, id) {
  try {
    const r = await fetch(origin + "/checkout/" + id + "/status", { cache: "no-store", signal: AbortSignal.timeout(5000) });
    if (!r.ok) return null;
    const text = await capped(r, 4096);
    const s = text && JSON.parse(text);
    return s && typeof s.state === "string" ? { state: s.state, amount_paid: String(s.amount_paid || "0") } : null;
  } catch (_) {
    return null;
  }
}

/**
 * Renders the checkout of invoice `config.id` into `root`, from `config.invoice` (or the JSON at
 * `config.invoice_url`): config = pins + {nodes: [node API URLs], agree, tokens?: {"chainId:address":
 * {symbol, decimals}}, native?: {symbol, decimals}}.
 */
export async function mount(root, config) {
  const status = element("p", { id: "status", class: "status", "data-state": "checking", "data-polls": "0" }, "Checking the invoice…");
  const wallet = element("p", { id: "wallet" });
  const pay = element("button", { id: "pay", type: "button", hidden: "" }, "Pay with wallet");
  const refused = element("ul", { id: "refused", hidden: "" });
  root.replaceChildren(status, refused, pay, wallet);
  let answer = config.invoice;
  if (!answer) {
    const r = await fetch(config.invoice_url, { cache: "no-store", signal: AbortSignal.timeout(10000) });
    const text = r.ok ? await capped(r, 65536) : null;
    answer = text ? JSON.parse(text) : {};
  }
  const checked = await checkInvoice(answer, config);
  const { origins, problems } = nodeProblems(config.nodes, config.agree, window.location.protocol);
  checked.problems.push(...problems);
  if (!checked.ok || problems.length) {
    checked.ok = false;
    status.dataset.state = "refused";
    status.textContent = "This invoice cannot be paid here: it is not what the merchant signed, or the page is not set up.";
    for (const p of checked.problems) refused.append(element("li", {}, p));
    refused.hidden = false;
    return checked;
  }
  const t = checked.terms;
  const label = t.token === ZERO ? config.native || { symbol: "native coin", decimals: 18 } : (config.tokens || {})[t.chain_id + ":" + t.token] || { symbol: "token " + t.token };
  const facts = element("dl", { id: "terms" });
  for (const [k, v] of [
    ["Amount", units(t.amount, label.decimals) + " " + label.symbol], ["Chain", String(t.chain_id)],
    ["Paid to", t.payout], ["Through", t.payments], ["Invoice", checked.id],
  ]) facts.append(element("dt", {}, k), element("dd", {}, v));
  root.insertBefore(facts, status);
  const labels = {
    unknown: "Waiting for the operators to hold this invoice", waiting: "Waiting for payment",
    partial: "Partly paid: ask the merchant how to pay the rest",
    seen: "Payment sent, waiting for confirmations", confirmed: "Payment confirmed, settling", settled: "Paid and settled", expired: "Expired",
  };
  // A payment sent from this page, kept across reloads until the nodes see it, for 15 minutes
  // at most: one that never landed (the page closed before it reverted) must not hide the pay
  // button for good.
  const memory = "settleproof-checkout:" + checked.id;
  const remembered = () => {
    try {
      const m = JSON.parse(window.localStorage.getItem(memory) || "null");
      return m && typeof m.at === "number" && Date.now() - m.at < 15 * 60 * 1000 ? m.hash : null;
    } catch (_) { return null; }
  };
  const remember = (hash) => {
    try {
      if (hash) window.localStorage.setItem(memory, JSON.stringify({ hash, at: Date.now() }));
      else window.localStorage.removeItem(memory);
    } catch (_) { /* private mode */ }
  };
  let sent = Boolean(remembered());
  const show = (agreed) => {
    let state = agreed || "unknown";
    if ((state === "waiting" || state === "expired") && sent) state = "seen";
    else if (state === "waiting" && t.expires_at && Date.now() / 1000 > t.expires_at) state = "expired";
    status.dataset.state = state;
    status.className = "status " + state;
    status.textContent = labels[state] || state;
    pay.hidden = !window.ethereum || state !== "waiting";
    return state;
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const poll = async () => {
    for (let polls = 1; ; polls++) {
      const reports = await Promise.all(origins.map((o) => nodeStatus(o, checked.id)));
      let agreed = agreedState(reports.map((r) => r && r.state), config.agree);
      // Part of it paid already: the page does not ask for the whole amount again.
      const partly = reports.filter((r) => r && r.state === "waiting" && r.amount_paid !== "0").length;
      if (agreed === "waiting" && partly >= config.agree) agreed = "partial";
      if (agreed && agreed !== "waiting" && agreed !== "partial") remember(null);
      const state = show(agreed);
      status.dataset.polls = String(polls);
      if (state === "settled") {
        const u = t.redirect_url && new URL(t.redirect_url);
        if (u && ["https:", "http:"].includes(u.protocol)) setTimeout(() => window.location.assign(u.href), 1500);
        return;
      }
      // Expired here still polls: a payment sent in time may confirm after the expiry.
      await sleep(2000);
    }
  };
  const mined = async (eth, hash) => {
    for (const deadline = Date.now() + 600000; Date.now() < deadline; await sleep(1000)) {
      const receipt = await eth.request({ method: "eth_getTransactionReceipt", params: [hash] });
      if (receipt) { if (receipt.status === "0x0") throw new Error("the transaction " + hash + " reverted"); return; }
    }
    throw new Error("the transaction " + hash + " was not mined within 10 minutes");
  };
  pay.addEventListener("click", async () => {
    const eth = window.ethereum;
    pay.disabled = true;
    try {
      const [from] = await eth.request({ method: "eth_requestAccounts" });
      const chainId = async () => parseInt(await eth.request({ method: "eth_chainId" }), 16);
      if ((await chainId()) !== t.chain_id) {
        await eth.request({ method: "wallet_switchEthereumChain", params: [{ chainId: "0x" + t.chain_id.toString(16) }] });
        if ((await chainId()) !== t.chain_id) throw new Error("the wallet is not on chain " + t.chain_id);
      }
      const txs = checked.transactions;
      for (let i = 0; i < txs.length; i++) {
        // The nodes may have seen a payment meanwhile (another tab, another wallet).
        if (status.dataset.state !== "waiting") throw new Error("the invoice is " + status.dataset.state + " now");
        wallet.textContent = "Step " + (i + 1) + " of " + txs.length + ": " + txs[i].description + ". Confirm it in your wallet.";
        const hash = await eth.request({ method: "eth_sendTransaction", params: [{ from, to: txs[i].to, value: "0x" + BigInt(txs[i].value).toString(16), data: txs[i].data }] });
        if (i === txs.length - 1) {
          sent = true;
          remember(hash);
          show("waiting");
          wallet.textContent = "Payment sent: " + hash + "; waiting for it to be mined.";
        }
        await mined(eth, hash);
      }
      wallet.textContent = "Payment mined; waiting for confirmations.";
    } catch (e) {
      sent = false;
      remember(null);
      show(status.dataset.state === "seen" ? "waiting" : status.dataset.state);
      wallet.textContent = "The wallet did not pay: " + ((e && e.message) || e);
      pay.disabled = false;
    }
  });
  poll();
  return checked;
}

// A page with an element `data-settleproof-checkout` and its configuration in
// <script type="application/json" id="settleproof-checkout-config"> mounts itself.
if (typeof document !== "undefined") {
  const root = document.querySelector("[data-settleproof-checkout]");
  const source = document.getElementById("settleproof-checkout-config");
  if (root && source) {
    mount(root, JSON.parse(source.textContent)).catch((e) => {
      root.textContent = "This invoice cannot be shown: " + ((e && e.message) || e);
    });
  }
}
