"""Turns docs/benchmarks/results.json (written by the `bench` binary) into docs/benchmarks.md
and its PNG plots. Run through ./tests/bench.sh."""

import json
import pathlib
import sys

import matplotlib

import compare

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OUT = DOCS / "benchmarks"


def load(path):
    """Reads results; a measurement that could not be taken is null in JSON, NaN here."""
    return json.loads(pathlib.Path(path).read_text(), object_hook=lambda d: {k: NAN if v is None else v for k, v in d.items()})


NAN = float("nan")


def save(fig, name):
    fig.tight_layout()
    fig.savefig(OUT / name, dpi=110)
    plt.close(fig)
    return f"benchmarks/{name}"


def plot_latency(r):
    lat = r["latency"]
    over = sorted(s["overhead_ms"] / 1000 for s in lat["samples"])
    total = sorted(s["total_ms"] / 1000 for s in lat["samples"])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    n = len(over)
    ys = [(i + 1) / n for i in range(n)]
    ax.step(total, ys, where="post", label="payment block → webhook")
    ax.step(over, ys, where="post", label="overhead over the chain's floor")
    floor = lat["floor_ms"]["p50"] / 1000
    ax.axvline(floor, color="grey", ls=":", label=f"floor: {lat['confirmations'] + 1} block times ({floor:.2f} s)")
    ax.axvline(0.5, color="red", ls="--", label="target: p95 overhead 0.5 s")
    ax.set_xlabel("seconds")
    ax.set_ylabel("fraction of payments")
    ax.set_title("Latency: payment to signed webhook (4 nodes, 1 s blocks)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save(fig, "latency.png")


def plot_throughput(r):
    steps = r["throughput"]
    offered = [s["offered_per_s"] for s in steps]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(offered, [s["sustained_per_s"] for s in steps], "o-", label="settled and notified")
    a.plot(offered, offered, ":", color="grey", label="offered")
    a.set_xlabel("invoices/s offered")
    a.set_ylabel("invoices/s")
    a.set_title("Throughput")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    names = [n for n, _ in steps[0]["cpu_percent"]]
    bottom = [0.0] * len(steps)
    labels = [f"{o:g}/s" for o in offered]
    for name in names:
        vals = [dict(s["cpu_percent"]).get(name, 0.0) for s in steps]
        b.bar(labels, vals, bottom=bottom, label=name)
        bottom = [x + y for x, y in zip(bottom, vals)]
    cores = r["machine"]["cores"] or 2
    b.axhline(cores * 100, color="red", ls="--", label=f"{cores} cores")
    b.set_ylabel("CPU, % of one core")
    b.set_xlabel("invoices/s offered")
    b.set_title("Where the CPU goes")
    b.legend(fontsize=7, loc="upper left")
    return save(fig, "throughput.png")


def plot_gas(r):
    g = r["gas"]
    sizes = [b["batch_size"] for b in g["batches"]]
    per = [b["per_invoice"] for b in g["batches"]]
    naive = g["batches"][0]["settle_gas"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.loglog(sizes, per, "o-", label="settleproof: settle gas per invoice")
    ax.loglog(sizes, [naive] * len(sizes), "--", label="naive: one settlement per invoice")
    ax.loglog(sizes, [g["pay_native_gas"]] * len(sizes), ":", label="the payment itself (payNative)")
    ax.set_xlabel("invoices per batch")
    ax.set_ylabel("gas per invoice")
    ax.set_title("Settlement cost per invoice (4 operators, 3 signers)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save(fig, "settle-gas.png")


def plot_bls(r):
    c = r.get("criterion_mean_ns") or {}
    ns = [4, 16, 64]
    agg = [c.get(f"attestations/aggregate_then_verify/{n}", 0) / 1e6 for n in ns]
    each = [c.get(f"attestations/verify_each/{n}", 0) / 1e6 for n in ns]
    if not any(agg):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = range(len(ns))
    ax.bar([i - 0.2 for i in x], agg, width=0.4, label="aggregate, then one verification")
    ax.bar([i + 0.2 for i in x], each, width=0.4, label="n single verifications")
    ax.set_xticks(list(x), [f"n = {n}" for n in ns])
    ax.set_ylabel("ms (mean)")
    ax.set_title("Checking n attestations of one batch (blst)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save(fig, "attestations.png")


def plot_api(r):
    fig, ax = plt.subplots(figsize=(7, 3.4))
    labels, vals, colors = [], [], []
    for e in r["api"]:
        for q in ("p50", "p95", "p99"):
            labels.append(f"{e['endpoint']} {q}")
            vals.append(e["latency_ms"][q])
            colors.append("C0" if e["endpoint"] == "create" else "C1")
    ax.bar(labels, vals, color=colors)
    for e, x0 in zip(r["api"], (2, 5)):
        ax.hlines(e["target_p99_ms"], x0 - 0.4, x0 + 0.4, colors="red", linestyles="--")
    ax.set_ylabel("ms")
    ax.set_title(f"API latency at {r['api'][0]['rate']:g} requests/s (red: p99 targets)")
    ax.tick_params(axis="x", labelsize=8)
    return save(fig, "api.png")


def ms(x):
    return f"{x:.0f} ms" if x >= 10 else f"{x:.1f} ms"


def mb(b):
    return f"{b / 1e6:.0f} MB"


def per_core(step):
    """Invoices per second one core of a node handles at the step's CPU cost."""
    c = step["node_cpu_s_per_1000"]
    return 1000 / c if c == c and c > 0 else NAN


def bottleneck(r, thr, top, best, g, chain_cap):
    """What limits throughput, said from the numbers of the highest offered rate."""
    cores = r["machine"]["cores"] or 2
    node_cpu = sum(p for n, p in top["cpu_percent"] if n.startswith("node-"))
    hog = max(top["cpu_percent"], key=lambda kv: kv[1])
    offered = top.get("offered", top["paid"])
    kept_up = top["notified"] == offered and top["sustained_per_s"] >= 0.9 * top["offered_per_s"]
    facts = (f"At {top['offered_per_s']:g} invoices/s offered, {top['notified']} of {offered} were notified"
             f" ({top['sustained_per_s']:.0f}/s sustained); the machine's {cores} cores were"
             f" {top['cpu_total_percent'] / cores:.0f}% busy (the four nodes together {node_cpu:.0f}% of one core,"
             f" the busiest process {hog[0]} at {hog[1]:.0f}%), and the chain's blocks were"
             f" {top['block_gas_used_percent']:.0f}% full. A payment costs {g['pay_native_gas']:,} gas, so 1 s blocks of"
             f" {g['block_gas_limit'] / 1e6:.0f}M gas hold about {chain_cap:.0f} payments per second. ")
    if kept_up and top["block_gas_used_percent"] > 60:
        verdict = ("The nodes kept up while the blocks filled: the chain's block gas is what bounds throughput,"
                   " as designed.")
    elif kept_up:
        verdict = ("The nodes kept up with every rate offered, so the limit was not reached here; the load"
                   " generator, anvil and the four nodes share two cores.")
    elif top["cpu_total_percent"] > 0.85 * cores * 100:
        verdict = (f"The CPU is the limit on this machine: everything (four nodes, anvil, the load and the receiver)"
                   f" shares {cores} cores, and they were saturated before the chain was.")
    else:
        prev = [s for s in thr if s["offered_per_s"] < top["offered_per_s"]]
        knee = max((s for s in prev if s["sustained_per_s"] >= 0.9 * s["offered_per_s"]
                    and s["notified"] == s.get("offered", s["paid"])),
                   key=lambda s: s["offered_per_s"], default=None)
        verdict = ("Neither the CPU (as measured: disk waits are not counted) nor the chain was saturated"
                   " when delivery fell behind"
                   + (f" (it kept up to {knee['offered_per_s']:g}/s)" if knee else "")
                   + f"; the busiest process was {hog[0]}. On one 2-core machine the load generator (one payer"
                   " account signing every payment, the RPC proxies, the receiver) competes with the nodes, so the"
                   " ceiling past this point is not established here; what is measured is the nodes' CPU cost per"
                   " invoice, below.")
    return (facts + verdict + f" At {best['node_cpu_s_per_1000']:.2f} CPU seconds per 1,000 invoices, one node on a"
            f" core of its own would handle about {per_core(best):.0f} invoices per second.")


def page(r, plots):
    lat, g, fp = r["latency"], r["gas"], r["footprint"]
    c = r.get("criterion_mean_ns") or {}
    thr = r["throughput"]
    best = max(thr, key=lambda s: s["sustained_per_s"])
    top = max(thr, key=lambda s: s["offered_per_s"])
    cores = r["machine"]["cores"]
    pay = g["pay_native_gas"]
    chain_cap = g["block_gas_limit"] / pay
    lines = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w(f"Written by `./tests/bench.sh` on {r['date']} at commit `{r['commit']}`"
      f"{' (quick form)' if r['quick'] else ''}, on {cores} cores ({r['machine']['cpu'].strip()}),"
      f" in {r['seconds'] / 60:.1f} minutes. Everything runs on this one machine: anvil, four nodes"
      " as processes (release build), three fault-free RPC proxies per node, the load generator and"
      " the merchant's receiver. The numbers behind this page: [benchmarks/results.json](benchmarks/results.json).")
    w("")
    w("## Summary")
    w("")
    w("| measurement | result | target or limit |")
    w("| --- | --- | --- |")
    o = lat["overhead_ms"]
    w(f"| latency overhead over the chain's floor, p50 / p95 / p99 | {ms(o['p50'])} / {ms(o['p95'])} / {ms(o['p99'])} | p95 < 500 ms |")
    w(f"| sustained throughput, settled and notified | {best['sustained_per_s']:.1f} invoices/s (offered {best['offered_per_s']:g}/s) | chain: {chain_cap:.0f} payments/s at 1 s blocks |")
    big = g["batches"][-1]
    w(f"| settle gas per invoice, batch of {big['batch_size']} | {big['per_invoice']:.1f} gas ({big['naive_ratio']:.0f}× less than one settlement per invoice) | naive: {g['batches'][0]['settle_gas']} gas |")
    for e in r["api"]:
        w(f"| API `{e['endpoint']}` p99 at {e['rate']:g} requests/s | {ms(e['latency_ms']['p99'])} ({e['errors']} errors of {e['requests']}) | < {e['target_p99_ms']:.0f} ms |")
    w(f"| node after {fp['invoices']:,} invoices | RSS {mb(fp['rss_after_reads_bytes'])}, store {mb(fp['store_bytes'])}, ready {fp['startup_ready_ms'] / 1000:.1f} s after start | |")
    w("")
    ok, line = compare.verdict(r)
    w(f"**Against the goals:** {'all met' if ok else 'not all met'}: {line}.")
    w("")
    if compare.BASELINE.exists():
        base = json.loads(compare.BASELINE.read_text())
        worse = compare.regressions(r, base)
        w(f"**Against the baseline** ([benchmarks/baseline.json](benchmarks/baseline.json), commit `{base['commit']}`): "
          + ("no figure more than 15% worse." if not worse else
             "more than 15% worse: " + "; ".join(f"{n} {v:.3g} against {b:.3g} ({x:+.0%})" for n, v, b, x in worse) + "."))
        w("")
    w("What these benchmarks found and fixed along the way: building the receipts of a round rebuilt its batch and"
      " Merkle tree once per payment (quadratic in the batch; delivery fell to about 100 invoices/s), now one tree"
      " per round; webhook delivery bookkeeping (attempts, acknowledgements) paid an fsync per event, now"
      " committed without one (a crash can only repeat an event, never lose one); repeated invoice"
      " announcements opened a write transaction each, now a read answers them. Throughput at 200/s offered"
      " later fell to 38/s: every delivery pass decoded every pending event (each node holds every event until"
      " its failover turn), and gossip carried every invoice 14 times and every acknowledgement twice. After"
      " that, each new invoice still went out in a gossip message of its own and each node checked the signature"
      " of about three copies of every message (the author's and two relays'); new invoices now wait for the"
      " replication tick and receivers tell their other mesh peers not to relay what they already have"
      " (IDONTWANT), about 30% less node CPU per invoice. API creates are written durably in groups by one"
      " thread instead of a commit and fsync each on a runtime worker. At low rates most of a node's CPU was"
      " paid per second rather than per invoice (gossip on fixed ticks, every invoice sent seven times):"
      " invoices now go out on a 250 ms tick or as soon as 16 wait, and are sent four times instead of seven,"
      " about 20% less node CPU per invoice at 50 and 100/s side by side. With new heads announced by"
      " subscription, a watcher still polled the head four times a block for nothing; it now waits for the next"
      " announced head until it is due (about a sixth less of a node's fixed cost), and an event's body is"
      " written once beside its delivery row instead of being rewritten, escaped, at every attempt and"
      " acknowledgement. Then most of a node's wake-ups went to a second runtime worker with nothing to steal,"
      " a delivery pass read every due entry after each attempt even with every merchant's slots in use,"
      " every node heard six heartbeats and up to eight votes a second (a vote was sent again each second"
      " until the watcher confirmed the settlement) and every invoice four times: the pipelines now run on"
      " one worker with the API on a runtime of its own (API `create` p99 about halved), a pass reads only"
      " what the merchants' bounds leave room for, a node skips its heartbeat right after a vote, a vote is"
      " not sent again while the keeper is within its deadline, and an invoice goes out again only when an"
      " operator joined around its first send. Then a watcher read each new block three times and its logs'"
      " block once more through the quorum, and the keeper's node rendered its settlement's events twice (with"
      " its receipt, and again when its watcher confirmed it): a one-block step now reads its block once, checks"
      " the checkpoint by that block's parent hash and asks for its logs by hash (a fifth fewer RPC calls), and"
      " the keeper renders once. Then most of the latency overhead was the keeper's wait for its own"
      " receipt, which alloy looked for on a 250 ms grid of its own: the keeper now asks at each head its"
      " subscription announces, and the overhead's p50 fell from about 58 to 6 ms side by side. Then every"
      " invoice still went out twice (again at 8 s, for a peer whose merchant registry might lag), and a"
      " gossip message turned out to cost a receiver about 0.3 ms: a peer now keeps an invoice its registry"
      " cannot take yet until it can, and each invoice goes out once. Then announcements went out every"
      " 250 ms, because a creator killed before its first send left the invoice on no other node: each invoice"
      " is now marked in its durable create until a send of it goes out, a node announces what is still"
      " marked when it starts, and announcements go out each second (about a sixth less node CPU per invoice"
      " at 50 and 100/s side by side, the same from 200/s up)."
      " The profiles, the cost of each cause"
      " and what each fix won back are in [benchmarks/profiles.md](benchmarks/profiles.md).")
    w("")
    w("## 1. Latency overhead")
    w("")
    k = lat["confirmations"]
    w(f"{len(lat['samples'])} payments, one every 1.3 s (so they land at every phase of a block), on the testnet"
      f" with {k} confirmations and rounds of {lat['round_length']} block. A node treats a payment in block b as"
      f" final once {k} blocks are on top of it (block b+{k}), and the earliest block that can hold its settlement"
      f" is b+{k + 1}: the floor the chain imposes is {k} block times to confirm plus the block that includes the"
      f" settlement, and ends when block b+{k + 1} appears. The overhead is the webhook's arrival at the merchant"
      " minus that moment. Block times are when a 10 ms poll first saw each block.")
    w("")
    w("| | p50 | p95 | p99 | max |")
    w("| --- | --- | --- | --- | --- |")
    for name, key in (("payment block → webhook", "total_ms"), ("floor (b → b+K+1)", "floor_ms"), ("overhead", "overhead_ms")):
        s = lat[key]
        w(f"| {name} | {ms(s['p50'])} | {ms(s['p95'])} | {ms(s['p99'])} | {ms(s['max'])} |")
    w("")
    w(f"Settlements that missed the earliest block b+K+1: {lat['missed_earliest_block']} of {len(lat['samples'])}"
      " (each such miss adds a block time to the overhead). With rounds of L blocks a payment also waits"
      " for its round to close: up to L−1 more block times, the price of batching (the testnet uses L = 3).")
    w("")
    w(f"![latency]({plots['latency']})")
    w("")
    w("## 2. Throughput")
    w("")
    w("Open-loop load: at each offered rate, invoices are created through the four nodes' APIs in turn and"
      " paid at once (native coin, signed locally, one `eth_sendRawTransaction` each), 10 s per rate. Sustained ="
      " webhook arrivals per second between the first and the last; latency = payment sent → webhook; CPU is"
      " measured while the load is offered; the nodes' CPU per 1,000 invoices includes draining what was left.")
    w("")
    w("| offered /s | errors | paid | notified | sustained /s | latency p50 / p95 | blocks to settlement p50 | CPU total (of " + str(cores * 100) + "%) | busiest | block gas used | node CPU s per 1,000 invoices |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in thr:
        busy = max(s["cpu_percent"], key=lambda kv: kv[1])
        w(f"| {s['offered_per_s']:g} | {s.get('errors', 0)} | {s['paid']} | {s['notified']} | {s['sustained_per_s']:.1f} | {ms(s['latency_ms']['p50'])} / {ms(s['latency_ms']['p95'])} | {s.get('settle_blocks', {}).get('p50', NAN):.0f} | {s['cpu_total_percent']:.0f}% | {busy[0]} {busy[1]:.0f}% | {s['block_gas_used_percent']:.1f}% | {s['node_cpu_s_per_1000']:.2f} |")
    w("")
    w("**Where the bottleneck is.** " + bottleneck(r, thr, top, best, g, chain_cap))
    w("")
    w(f"![throughput]({plots['throughput']})")
    w("")
    w("## 3. Cost")
    w("")
    w(f"Gas on anvil (Prague rules). A payment costs {pay} gas in the native coin, {g['pay_token_gas']} in an"
      f" ERC-20 (plus {g['approve_gas']} for `approve`), in either design. `settle` costs the same whatever the"
      " batch holds (the root is one word), so its cost per invoice falls with the batch size:")
    w("")
    w("| invoices per batch | `settle` gas | per invoice | naive / settleproof |")
    w("| --- | --- | --- | --- |")
    for b in g["batches"]:
        w(f"| {b['batch_size']:,} | {b['settle_gas']:,} | {b['per_invoice']:,.1f} | {b['naive_ratio']:,.0f}× |")
    w("")
    if r.get("gas_measured"):
        m = r["gas_measured"]
        w(f"(This section was measured again on {m['date']} at commit `{m['commit']}` with"
          " `bench --only gas --out FILE`, the rest of the page is from the run named at the top.)")
        w("")
    w("`settle` by operator set, as a whole transaction's `gasUsed`, 1-leaf batch. This design keeps the"
      " epoch's keys and their aggregate on chain (blobs), subtracts the non-signers (one G2ADD each), hashes"
      " the message to G1 in assembly, runs one 2-pair pairing and writes one slot. The previous design"
      " (keys in calldata checked one slot each, hash to G2 in Solidity, four slots) is the same benchmark"
      " before the change. The ECDSA multisig is `EcdsaMultisigBaseline`, built as Hyperlane's multisig ISM"
      " checks a message (validators in code, one `ecrecover` per signature) and writing one slot, measured"
      " in the same run with the same signer count. Hyperlane's own figure for its ISM is about 260k gas"
      " at 16 of 16 signers, with its mailbox around it.")
    w("")
    w("| operators | signers | `settle` gas | previous design | ECDSA multisig | calldata bytes | registration gas (txs, largest) |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for o in g["operators"]:
        p = o.get("previous_design_gas")
        prev = f"{p:,}" if isinstance(p, int) else "does not register"
        w(f"| {o['operators']} | {o['signers']} | {o['settle_gas']:,} | {prev} | {o['ecdsa_multisig_gas']:,} |"
          f" {o['calldata_bytes']:,} | {o['registration_gas']:,} ({o['registration_txs']}, {o['largest_tx_gas']:,}) |")
    w("")
    h = g.get("hash_to_curve")
    if h:
        w(f"Hashing one batch message costs {h['to_g1']:,} gas to G1 (min-sig, this design) against"
          f" {h['to_g2']:,} to G2 (min-pk, before): see docs/adr/0002-min-sig-bls-settlement.md.")
        w("")
    w(f"![settle gas]({plots['gas']})")
    w("")
    w("## 4. Crypto and batching")
    w("")
    w("Criterion (`cargo bench -p settleproof-consensus --bench crypto`), mean times:")
    w("")
    w("| attestations n | aggregate, then one verification | n single verifications | ratio |")
    w("| --- | --- | --- | --- |")
    for n in (4, 16, 64):
        a = c.get(f"attestations/aggregate_then_verify/{n}")
        e = c.get(f"attestations/verify_each/{n}")
        if a and e:
            w(f"| {n} | {ms(a / 1e6)} | {ms(e / 1e6)} | {e / a:.1f}× |")
    w("")
    w("| Merkle tree (keccak, rs_merkle) | build | proof of one leaf (includes the build) | check a proof |")
    w("| --- | --- | --- | --- |")
    for n in (1000, 100000):
        vals = [c.get(f"merkle/{f}/{n}") for f in ("build", "proof", "verify_proof")]
        if all(vals):
            w(f"| {n:,} leaves | {ms(vals[0] / 1e6)} | {ms(vals[1] / 1e6)} | {vals[2] / 1e3:.1f} µs |")
    w("")
    w(f"Per-node CPU time per 1,000 invoices (created, replicated, verified over three providers, signed, settled,"
      f" notified), from the throughput run at {best['offered_per_s']:g}/s: {best['node_cpu_s_per_1000']:.2f} s.")
    w("")
    if plots.get("bls"):
        w(f"![attestations]({plots['bls']})")
        w("")
    w("## 5. API")
    w("")
    w("Open loop on loopback against node-0 (requests sent on schedule, latency from the scheduled time, so a"
      " slow answer cannot hide the queue behind it); `create` writes the invoice durably and replicates it.")
    w("")
    w("| endpoint | rate | requests | errors | p50 | p95 | p99 | max | target p99 |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for e in r["api"]:
        s = e["latency_ms"]
        w(f"| `{e['endpoint']}` | {e['rate']:g}/s | {e['requests']} | {e['errors']} | {ms(s['p50'])} | {ms(s['p95'])} | {ms(s['p99'])} | {ms(s['max'])} | {e['target_p99_ms']:.0f} ms |")
    w("")
    w(f"![api]({plots['api']})")
    w("")
    w("## 6. Footprint")
    w("")
    w(f"{fp['invoices']:,} invoices written into node-0's stopped store in bulk ({fp['import_s']:.1f} s, one"
      " transaction per 20,000), then the node started on it.")
    w("")
    w("| | |")
    w("| --- | --- |")
    w(f"| store file | {mb(fp['store_bytes'])} ({fp['store_bytes'] / fp['invoices']:.0f} bytes per invoice) |")
    w(f"| start → `/health/live` | {ms(fp['startup_live_ms'])} |")
    w(f"| start → caught up with the chain and serving ({fp['peers_at_ready']} of 3 peers connected) | {ms(fp['startup_ready_ms'])} |")
    w(f"| RSS before (after the other benchmarks) | {mb(fp['rss_before_bytes'])} |")
    w(f"| RSS when ready | {mb(fp['rss_ready_bytes'])} |")
    w(f"| RSS after reading 2,000 invoices | {mb(fp['rss_after_reads_bytes'])} |")
    w("")
    return "\n".join(lines)


def main():
    results = load(sys.argv[1] if len(sys.argv) > 1 else OUT / "results.json")
    OUT.mkdir(parents=True, exist_ok=True)
    plots = {
        "latency": plot_latency(results),
        "throughput": plot_throughput(results),
        "gas": plot_gas(results),
        "bls": plot_bls(results),
        "api": plot_api(results),
    }
    (DOCS / "benchmarks.md").write_text(page(results, plots))
    print(f"wrote {DOCS / 'benchmarks.md'} and {len([p for p in plots.values() if p])} plots")


if __name__ == "__main__":
    main()
