// The self-hosted checkout's pure parts, as tables: keccak-256 against known digests, the state
// the page shows for what the nodes report, the nodes and `agree` it takes, and the signed
// requests it refuses as the nodes refuse them.
//
//   node tests/browser/self_hosted_units.mjs <path of settleproof-checkout.js> <path of invoice_bodies.json>
//
// The signed bodies are the nodes' own table (node/src/merchants/invoice_bodies.json), which
// their reader's tests check too: the page takes and refuses the same ones.
//
// Prints one line per failed check and exits 1 when any failed.
import { pathToFileURL } from "node:url";

const m = await import(pathToFileURL(process.argv[2]).href);
const failed = [];
const check = (what, got, want) => {
  if (JSON.stringify(got) !== JSON.stringify(want)) failed.push(what + ": got " + JSON.stringify(got) + ", want " + JSON.stringify(want));
};
const hex = (b) => Buffer.from(b).toString("hex");

check("keccak of nothing", hex(m.keccak256("")), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
check("keccak of abc", hex(m.keccak256("abc")), "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
check("keccak of a full block", hex(m.keccak256("a".repeat(136))), "a6c4d403279fe3e0af03729caada8374b5ca54d8065329a3ebcaeb4b60aa386e");
check("keccak of three blocks", hex(m.keccak256("a".repeat(300))), "5b7e0e47a96f32a88b4f14ca177982790807c40e1a105742ba0fc1babe1ef826");
check("canonical JSON sorts keys by UTF-8 bytes", m.canonicalJson({ b: 1, a: [1, { é: "x", z: null }] }), '{"a":[1,{"z":null,"é":"x"}],"b":1}');

// What the page shows for the nodes' reports, with agree = 2 (f = 1 of 4 listed).
const states = [
  [["waiting", "waiting", null, null], "waiting", "two hold it"],
  [["settled", null, null, null], null, "one liar alone: no node is known to hold it"],
  [["settled", "waiting", "waiting", null], "waiting", "one liar says settled"],
  [["settled", "settled", "waiting", null], "settled", "two say settled"],
  [["settled", "confirmed", "waiting", null], "confirmed", "settled vouches for confirmed"],
  [["expired", "expired", "waiting", null], "expired", "two say expired"],
  [["expired", "expired", "confirmed", "settled"], "confirmed", "a payment seen by two outweighs expiry"],
  [["expired", "waiting", null, null], "waiting", "one says expired"],
  [["nonsense", "other", null, null], null, "unknown states count for nothing"],
];
for (const [reports, want, why] of states) check("agreed state: " + why, m.agreedState(reports, 2), want);

// The nodes and agree a page takes.
const nodes = ["https://a.example", "https://b.example", "https://c.example", "https://d.example"];
check("four nodes, agree 2", m.nodeProblems(nodes, 2, "https:").problems, []);
check("four nodes, agree 1 is too few", m.nodeProblems(nodes, 1, "https:").problems.length, 1);
check("agree above the nodes", m.nodeProblems(nodes, 5, "https:").problems.length, 1);
check("one host counted once", m.nodeProblems(["https://a.example", "https://a.example.", "https://a.example:443"], 1, "https:").origins.length, 1);
check("http nodes on an https page", m.nodeProblems(["http://a.example"], 1, "https:").problems.length >= 1, true);
check("http nodes on an http page", m.nodeProblems(["http://127.0.0.1:8700"], 1, "http:").problems, []);
check("least agree", [1, 2, 4, 7, 10].map(m.leastAgree), [1, 1, 2, 3, 4]);

// Signed requests the nodes refuse, refused here too (the signature is not needed for that).
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const statement = (body, claims = {}) => {
  const header = { alg: "EdDSA", kid: "mk_1", typ: "JWT", nonce: "n" };
  const c = { iss: "shop", sub: "mk_1", nbf: 1000, exp: 1060, uri: "POST 127.0.0.1:8700/v1/invoices", ...claims };
  return { jwt: b64(header) + "." + b64(c) + ".c2ln", body: typeof body === "string" ? body : JSON.stringify(body) };
};
const good = { amount: "1000", token: "native", chain_id: 31337 };
const read = (st) => { try { m.readSigned(st); return true; } catch (e) { return e.message; } };
const { readFileSync } = await import("node:fs");
for (const c of JSON.parse(readFileSync(process.argv[3], "utf8"))) {
  const got = read(statement(c.body));
  check("shared body: " + c.why, got === true, c.read);
}
check("refused: sub is not the key", read(statement(good, { sub: "mk_2" })) !== true, true);
check("refused: another route", read(statement(good, { uri: "POST 127.0.0.1:8700/v1/api-keys" })) !== true, true);
const t = m.readSigned(statement({ ...good, expires_in: 900, nonce: "0x" + "AB".repeat(32) }));
check("expiry counts from nbf", t.expires_at, 1900);
check("the nonce is read in lower case", t.nonce, "0x" + "ab".repeat(32));

for (const f of failed) console.log("FAIL " + f);
if (!failed.length) console.log("ok");
process.exit(failed.length ? 1 : 0);
