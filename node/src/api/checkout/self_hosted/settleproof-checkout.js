// settleproof self-hosted checkout: a payment page the merchant serves from its own origin, which
// trusts no node. Every node serves this file at /checkout/assets/self-hosted/settleproof-checkout.js
// for download (no build step, no dependency): host it beside your page, never load it from a node.
//
// The page is given what the merchant knows on its own (its public keys, its payout address, the
// InvoicePayments contract of each chain) and an invoice as a node answered with it. It then:
//   - checks the merchant's signature over the request the invoice was made from (WebCrypto:
//     Ed25519 or ECDSA P-256), and that every term the answer shows is the signed one;
//   - recomputes the invoice id from those terms, the pinned contract and the pinned payout address;
//   - builds the payment transactions itself, from the signed terms and the pins, and compares the
//     node's own instructions with them when the answer has some;
//   - asks several nodes for the invoice's state and shows a state only when `agree` of them say so.
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

/** A 32-byte ABI word of a uint (BigInt or number), an address, or 32 bytes given in hex. */
function word(v) {
  if (typeof v === "bigint" || typeof v === "number") return unhex(BigInt(v).toString(16).padStart(64, "0"));
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
  return "0x" + hex(keccak256(concat(
    keccak256(INVOICE_TYPE), word(BigInt(t.chain_id)), word(t.payments), keccak256(t.merchant_id),
    word(t.payout), word(t.token), word(BigInt(t.amount)), word(BigInt(t.expires_at || 0)), word(t.nonce), extras,
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

/** The terms the merchant's signed request sets, after checking its signature against `pins.keys`. */
async function signedTerms(statement, pins, problems) {
  const parts = String(statement.jwt || "").split(".");
  if (parts.length !== 3) throw new Error("signed_request.jwt is not a JWT");
  const header = JSON.parse(new TextDecoder().decode(b64url(parts[0])));
  const claims = JSON.parse(new TextDecoder().decode(b64url(parts[1])));
  const input = parts[0] + "." + parts[1];
  let key = null;
  for (const k of pins.keys) if ((await keyId(k)) === header.kid) key = k;
  if (!key) problems.push("signed by key " + header.kid + ", none of the merchant's pinned keys");
  else if (!(await signatureHolds(key, header.alg, input, b64url(parts[2])))) {
    problems.push("the merchant's signature does not hold");
  }
  if (pins.merchant && claims.iss !== pins.merchant) problems.push("signed for merchant " + claims.iss + ", not " + pins.merchant);
  const [method, target] = String(claims.uri || "").split(" ");
  if (method !== "POST" || !target || target.slice(target.indexOf("/")) !== "/v1/invoices") {
    problems.push("the signed request is `" + claims.uri + "`, not an invoice's creation");
  }
  const bodyHash = hex(new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(statement.body))));
  if (claims.reqHash !== bodyHash) problems.push("the body is not the one the merchant signed");
  const req = JSON.parse(statement.body);
  if (!Number.isSafeInteger(req.chain_id)) throw new Error("the signed request names no chain_id");
  if (!/^[1-9][0-9]{0,76}$/.test(String(req.amount))) throw new Error("the signed amount is not a decimal amount");
  if (req.token !== "native" && !ADDRESS.test(String(req.token))) throw new Error("the signed token is not native or an address");
  const expires = req.expires_at != null ? req.expires_at : req.expires_in != null ? claims.nbf + req.expires_in : null;
  const nonce = req.nonce ? String(req.nonce).toLowerCase() : "0x" + hex(keccak256(concat(utf8("settleproof/invoice-nonce/1\0"), utf8(input))));
  const payments = pins.payments[String(req.chain_id)];
  if (!payments || !ADDRESS.test(payments)) throw new Error("chain " + req.chain_id + " has no pinned payments contract");
  return {
    merchant_id: claims.iss, chain_id: req.chain_id, amount: req.amount,
    token: req.token === "native" ? ZERO : req.token.toLowerCase(), expires_at: expires,
    metadata: req.metadata === undefined ? null : req.metadata, redirect_url: req.redirect_url == null ? null : req.redirect_url,
    nonce, payments: payments.toLowerCase(), payout: pins.payout.toLowerCase(),
  };
}

/**
 * Checks `answer` (a create or get answer of /v1/invoices, or a webhook body) against `pins`
 * ({keys, payout, payments: {chainId: address}, merchant?}). Returns {ok, problems, terms, id,
 * transactions}; the transactions are built here, never taken from the answer.
 */
export async function checkInvoice(answer, pins) {
  const invoice = answer && answer.data && answer.data.invoice ? answer.data.invoice : answer || {};
  const problems = [];
  if (!invoice.signed_request) return { ok: false, problems: ["no signed_request: nothing shows the merchant made this invoice"] };
  let t;
  try {
    t = await signedTerms(invoice.signed_request, pins, problems);
  } catch (e) {
    return { ok: false, problems: [...problems, "signed_request makes no invoice: " + e.message] };
  }
  const id = invoiceId(t);
  const shown = {
    merchant_id: [invoice.merchant_id, t.merchant_id], chain_id: [invoice.chain_id, t.chain_id],
    amount: [invoice.amount, t.amount], token: [String(invoice.token).toLowerCase(), t.token === ZERO ? "native" : t.token],
    expires_at: [invoice.expires_at == null ? null : invoice.expires_at, t.expires_at],
    metadata: [canonicalJson(invoice.metadata == null ? null : invoice.metadata), canonicalJson(t.metadata)],
    redirect_url: [invoice.redirect_url == null ? null : invoice.redirect_url, t.redirect_url],
    nonce: [String(invoice.nonce).toLowerCase(), t.nonce], payout_address: [String(invoice.payout_address).toLowerCase(), t.payout],
    id: [String(invoice.id).toLowerCase(), id],
  };
  for (const [field, [got, want]] of Object.entries(shown)) {
    if (got !== want) problems.push(field + " is " + JSON.stringify(got) + ", but the merchant signed " + JSON.stringify(want));
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

/**
 * The state `agree` of the nodes' `reports` vouch for: the furthest of waiting, confirmed, settled
 * that at least `agree` reports reached (a report of settled vouches for confirmed too). So fewer
 * than `agree` lying nodes can neither show a payment that did not happen nor hide one.
 */
export function agreedState(reports, agree) {
  let shown = "waiting";
  for (const state of ORDER) {
    if (reports.filter((r) => ORDER.indexOf(r) >= ORDER.indexOf(state)).length >= agree) shown = state;
  }
  return shown;
}

/** Nodes that must agree by default: f + 1 of n = 3f + 1 listed nodes (1 for a single node). */
export const defaultAgree = (n) => Math.floor(Math.max(n - 1, 0) / 3) + 1;

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

/**
 * Renders the checkout of `config.invoice` (or of the JSON at `config.invoice_url`) into `root`,
 * with `config` = pins + {nodes: [node API URLs], agree?, tokens?: {"chainId:address": {symbol,
 * decimals}}, native?: {symbol, decimals}}.
 */
export async function mount(root, config) {
  const answer = config.invoice || (await (await fetch(config.invoice_url, { cache: "no-store" })).json());
  const checked = await checkInvoice(answer, config);
  const status = element("p", { id: "status", class: "status", "data-state": "checking" }, "Checking the invoice…");
  const wallet = element("p", { id: "wallet" });
  const pay = element("button", { id: "pay", type: "button", hidden: "" }, "Pay with wallet");
  const refused = element("ul", { id: "refused", hidden: "" });
  root.replaceChildren(status, refused, pay, wallet);
  if (!checked.ok) {
    status.dataset.state = "refused";
    status.textContent = "This invoice cannot be paid here: what the node answered is not what the merchant signed.";
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
  const labels = { waiting: "Waiting for payment", seen: "Payment sent, waiting for confirmations", confirmed: "Payment confirmed, settling", settled: "Paid and settled", expired: "Expired" };
  const nodes = config.nodes || [];
  const agree = config.agree || defaultAgree(nodes.length);
  let sent = false;
  const show = (state) => {
    if (state === "waiting" && t.expires_at && Date.now() / 1000 > t.expires_at) state = "expired";
    if (state === "waiting" && sent) state = "seen";
    status.dataset.state = state;
    status.className = "status " + state;
    status.textContent = labels[state] || state;
    pay.hidden = !window.ethereum || state !== "waiting";
    return state;
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const poll = async () => {
    for (;;) {
      const reports = await Promise.all(nodes.map(async (n) => {
        try {
          const r = await fetch(n.replace(/\/$/, "") + "/checkout/" + checked.id + "/status", { cache: "no-store" });
          return r.ok ? (await r.json()).state : null;
        } catch (_) { return null; }
      }));
      const state = show(agreedState(reports, agree));
      if (state === "settled") {
        if (t.redirect_url) setTimeout(() => window.location.assign(t.redirect_url), 1500);
        return;
      }
      if (state === "expired") return;
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
        wallet.textContent = "Step " + (i + 1) + " of " + txs.length + ": " + txs[i].description + ". Confirm it in your wallet.";
        const hash = await eth.request({ method: "eth_sendTransaction", params: [{ from, to: txs[i].to, value: "0x" + BigInt(txs[i].value).toString(16), data: txs[i].data }] });
        if (i < txs.length - 1) await mined(eth, hash);
        else { sent = true; show("waiting"); wallet.textContent = "Payment sent: " + hash; }
      }
    } catch (e) {
      wallet.textContent = "The wallet did not pay: " + ((e && e.message) || e);
      pay.disabled = false;
    }
  });
  show("waiting");
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
