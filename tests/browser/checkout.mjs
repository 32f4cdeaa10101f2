// Drives a checkout page in headless Chromium as a payer with a browser wallet would: an
// EIP-1193 provider is injected before the page loads, its requests go to the anvil chain
// (which signs with the testnet payer's key), "Pay with wallet" is clicked, and the page is
// watched until it shows "settled" (and, with a redirect URL, until it leaves for it).
//
//   node tests/browser/checkout.mjs <page url> <rpc url> <payer address> [screenshot.png]
//
// Prints one JSON line: {"settled": bool, "final_url": "...", "log": [...]}.
//
// With CHECKOUT_EXPECT=inspect, <page url> is a comma-separated list of pages that are only
// looked at, not paid: each is watched until it lists why it refuses the invoice (#refused) or
// has polled the nodes once (#status's data-polls), and the line is {"pages": [{"url", "refused", "problems", "pay_visible",
// "state"}], "log": [...]}.
import { chromium } from "playwright-core";
import { execSync } from "node:child_process";

const [pageUrl, rpcUrl, payer, screenshot] = process.argv.slice(2);
const log = [];
let rpcId = 0;

async function rpc(method, params) {
  const res = await fetch(rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params: params || [] }),
  });
  const body = await res.json();
  if (body.error) throw new Error(body.error.message);
  return body.result;
}

const executablePath = process.env.CHROMIUM || execSync("command -v chromium").toString().trim();
const browser = await chromium.launch({
  executablePath,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let result = { settled: false, final_url: "", log };
try {
  const context = await browser.newContext({ viewport: { width: 640, height: 1100 } });
  // The wallet's backend: every request but the account list goes to the chain.
  await context.exposeBinding("__walletRpc", async (_source, method, params) => {
    log.push(method);
    if (method === "eth_requestAccounts" || method === "eth_accounts") return [payer];
    return rpc(method, params);
  });
  await context.addInitScript(() => {
    window.ethereum = {
      isTestWallet: true,
      request: ({ method, params }) => window.__walletRpc(method, params || []),
      on: () => {},
      removeListener: () => {},
    };
  });
  if (process.env.CHECKOUT_EXPECT === "inspect") {
    const pages = [];
    for (const url of pageUrl.split(",")) {
      const page = await context.newPage();
      page.on("console", (m) => log.push("console: " + m.text()));
      page.on("pageerror", (e) => log.push("page error: " + e.message));
      await page.goto(url, { waitUntil: "load" });
      await page.locator('#refused:not([hidden]), #status[data-polls]:not([data-polls="0"])').first().waitFor({ timeout: 15000 });
      pages.push({
        url,
        refused: await page.locator("#refused:not([hidden])").count() > 0,
        problems: (await page.locator("#refused").textContent()) || "",
        pay_visible: await page.locator("#pay:not([hidden])").count() > 0,
        state: await page.locator("#status").getAttribute("data-state"),
      });
      await page.close();
    }
    result = { pages, log };
  } else {
    const page = await context.newPage();
    page.on("console", (m) => log.push("console: " + m.text()));
    await page.goto(pageUrl, { waitUntil: "load" });
    await page.locator("#pay:not([hidden])").waitFor({ timeout: 15000 });
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
    const initial = await page.locator("#status").getAttribute("data-state");
    log.push("initial state: " + initial);
    await page.click("#pay");
    await page.waitForFunction(
      () => ["seen", "confirmed", "settled"].includes(document.getElementById("status")?.dataset.state),
      null,
      { timeout: 60000 },
    );
    log.push("after pay: " + (await page.locator("#status").getAttribute("data-state")));
    await page.waitForFunction(
      () => document.getElementById("status")?.dataset.state === "settled",
      null,
      { timeout: 120000, polling: 500 },
    );
    result.settled = true;
    log.push("wallet says: " + (await page.locator("#wallet").textContent()));
    // A redirect, when the invoice has one, follows settlement within seconds.
    await page.waitForTimeout(4000);
    result.final_url = page.url();
  }
} catch (e) {
  log.push("error: " + (e && e.message ? e.message.split("\n")[0] : String(e)));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
