// The checkout page's live parts: expiry countdown, status polled from the node, and "Pay with
// wallet" through an injected EIP-1193 provider (`window.ethereum`). The page works without
// this script; everything here writes text only (never markup).
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("checkout-data").textContent);
  const statusEl = document.getElementById("status");
  const walletEl = document.getElementById("wallet");
  const payBtn = document.getElementById("pay");
  const expiryEl = document.getElementById("expiry");
  const labels = {
    waiting: "Waiting for payment",
    seen: "Payment sent, waiting for confirmations",
    confirmed: "Payment confirmed, settling",
    settled: "Paid and settled",
    expired: "Expired",
  };
  let state = statusEl.dataset.state;
  let sent = false;
  let redirecting = false;

  const show = (next) => {
    if (sent && next === "waiting") next = "seen";
    state = next;
    statusEl.dataset.state = next;
    statusEl.className = "status " + next;
    statusEl.textContent = labels[next] || next;
    payBtn.hidden = !window.ethereum || !(next === "waiting");
  };
  const say = (text) => { walletEl.textContent = text; };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  const poll = async () => {
    for (;;) {
      try {
        const r = await fetch(data.status_url, { cache: "no-store" });
        if (r.ok) {
          const s = await r.json();
          show(s.state);
          if (s.state === "settled") {
            if (s.redirect_url && !redirecting) {
              redirecting = true;
              say("Returning to the merchant…");
              setTimeout(() => window.location.assign(s.redirect_url), 1500);
            }
            return;
          }
          if (s.state === "expired") return;
        }
      } catch (_) { /* the node may restart: try again */ }
      await sleep(2000);
    }
  };

  const countdown = () => {
    if (!data.expires_at || !expiryEl) return;
    const left = data.expires_at - Math.floor(Date.now() / 1000);
    if (state === "settled" || state === "confirmed") { expiryEl.textContent = ""; return; }
    if (left <= 0) { expiryEl.textContent = "Expired"; return; }
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    const pad = (n) => String(n).padStart(2, "0");
    expiryEl.textContent = "Expires in " + (h ? h + ":" + pad(m) : m) + ":" + pad(s);
    setTimeout(countdown, 1000);
  };

  const mined = async (eth, hash) => {
    const deadline = Date.now() + 10 * 60 * 1000;
    while (Date.now() < deadline) {
      const receipt = await eth.request({ method: "eth_getTransactionReceipt", params: [hash] });
      if (receipt) {
        if (receipt.status === "0x0") throw new Error("the transaction " + hash + " reverted");
        return;
      }
      await sleep(1000);
    }
    throw new Error("the transaction " + hash + " was not mined within 10 minutes");
  };

  const pay = async () => {
    const eth = window.ethereum;
    payBtn.disabled = true;
    try {
      const [from] = await eth.request({ method: "eth_requestAccounts" });
      const chainId = async () => parseInt(await eth.request({ method: "eth_chainId" }), 16);
      if ((await chainId()) !== data.chain_id) {
        await eth.request({ method: "wallet_switchEthereumChain", params: [{ chainId: "0x" + data.chain_id.toString(16) }] });
        // A wallet may accept the request and stay where it was: a payment elsewhere is lost.
        if ((await chainId()) !== data.chain_id) throw new Error("the wallet is not on chain " + data.chain_id);
      }
      const n = data.transactions.length;
      for (let i = 0; i < n; i++) {
        const tx = data.transactions[i];
        say("Step " + (i + 1) + " of " + n + ": " + tx.description + ". Confirm it in your wallet.");
        const hash = await eth.request({
          method: "eth_sendTransaction",
          params: [{ from, to: tx.to, value: "0x" + BigInt(tx.value).toString(16), data: tx.data }],
        });
        if (i < n - 1) {
          say("Step " + (i + 1) + " sent (" + hash + "); waiting for it to be mined.");
          await mined(eth, hash);
        } else {
          sent = true;
          show("seen");
          say("Payment sent: " + hash);
        }
      }
    } catch (e) {
      say("The wallet did not pay: " + ((e && e.message) || e));
      payBtn.disabled = false;
    }
  };

  payBtn.addEventListener("click", pay);
  show(state);
  countdown();
  if (state !== "expired") poll();
})();
