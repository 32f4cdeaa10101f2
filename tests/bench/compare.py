"""Holds benchmark results against the accepted baseline (docs/benchmarks/baseline.json) and
against the goals, without third-party packages (CI runs it on a fresh machine).

    compare.py RESULTS [--baseline FILE]      every figure more than 15% worse than the
                                              baseline, and a one-line verdict on the goals
    compare.py RESULTS --gate                 exit 1 when sustained/offered or node CPU per
                                              1,000 invoices at 200/s is more than 2x worse
                                              than the baseline (what .ci/run checks)
    compare.py RESULTS --accept               writes RESULTS' figures as the new baseline

A figure is a number with a direction: higher is better (throughput) or lower is better (CPU,
latency, memory). "More than 15% worse" means below 0.85x the baseline for the first kind and
above 1.15x for the second.
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASELINE = ROOT / "docs" / "benchmarks" / "baseline.json"
WORSE = 0.15
GATE = 2.0
GATE_RATE = 200.0


def figures(r):
    """name -> (value, 'higher' | 'lower') for every figure the results hold."""
    out = {}
    for s in r.get("throughput") or []:
        rate = s["offered_per_s"]
        out[f"throughput/{rate:g}/sustained_ratio"] = (s["sustained_per_s"] / rate, "higher")
        out[f"throughput/{rate:g}/node_cpu_s_per_1000"] = (s["node_cpu_s_per_1000"], "lower")
        out[f"throughput/{rate:g}/latency_p95_ms"] = (s["latency_ms"]["p95"], "lower")
    for a in r.get("api") or []:
        out[f"api/{a['endpoint']}/p99_ms"] = (a["latency_ms"]["p99"], "lower")
        out[f"api/{a['endpoint']}/errors"] = (a["errors"], "lower")
    lat = r.get("latency")
    if lat:
        out["latency/overhead_p50_ms"] = (lat["overhead_ms"]["p50"], "lower")
        out["latency/overhead_p95_ms"] = (lat["overhead_ms"]["p95"], "lower")
    fp = r.get("footprint")
    if fp:
        out["footprint/rss_after_reads_mb"] = (fp["rss_after_reads_bytes"] / 1e6, "lower")
        out["footprint/startup_ready_ms"] = (fp["startup_ready_ms"], "lower")
    for b in (r.get("gas") or {}).get("batches", []):
        out[f"gas/settle_per_invoice/{b['batch_size']}"] = (b["per_invoice"], "lower")
    return out


def worse_by(value, base, direction):
    """How much worse `value` is than `base`, as a fraction (0.2: 20% worse); <= 0 if not."""
    if base == 0:
        return 0.0 if value <= 0 or direction == "higher" else float("inf")
    if direction == "higher":
        return (base - value) / base
    return (value - base) / base


def regressions(r, baseline):
    """(name, value, base, fraction worse) of each figure more than WORSE worse."""
    base = baseline["figures"]
    out = []
    for name, (value, direction) in sorted(figures(r).items()):
        if name not in base:
            continue
        w = worse_by(value, base[name][0], direction)
        if w > WORSE:
            out.append((name, value, base[name][0], w))
    return out


def verdict(r):
    """One line: each goal met or not, from what the results hold."""
    parts, ok = [], True

    def goal(label, met):
        nonlocal ok
        ok = ok and met
        parts.append(f"{label} {'ok' if met else 'MISSED'}")

    steps = r.get("throughput") or []
    low = [s for s in steps if s["offered_per_s"] <= 300]
    if low:
        worst = min(s["sustained_per_s"] / s["offered_per_s"] for s in low)
        goal(f"sustained>=0.97 of offered up to 300/s ({worst:.3f})", worst >= 0.97)
    at300 = next((s["sustained_per_s"] for s in steps if s["offered_per_s"] == 300), None)
    high = [s for s in steps if s["offered_per_s"] > 300]
    if at300 is not None and high:
        least = min(s["sustained_per_s"] for s in high)
        goal(f"no collapse past 300/s ({least:.0f}/s vs {at300:.0f}/s)", least >= at300 * 0.97)
    if steps:
        cpu = max(s["node_cpu_s_per_1000"] for s in steps)
        goal(f"node CPU<=0.6 s/1000 ({cpu:.2f})", cpu <= 0.6)
    for a in r.get("api") or []:
        limit = 20.0 if a["endpoint"] == "create" else 5.0
        p99 = a["latency_ms"]["p99"]
        goal(f"{a['endpoint']} p99<{limit:g} ms ({p99:.1f}, {a['errors']} errors)", p99 < limit and a["errors"] == 0)
    fp = r.get("footprint")
    if fp and fp.get("invoices", 0) >= 1_000_000:
        rss = fp["rss_after_reads_bytes"] / 1e6
        goal(f"RSS<64 MB ({rss:.0f})", rss < 64)
        goal(f"ready<0.5 s ({fp['startup_ready_ms'] / 1000:.2f})", fp["startup_ready_ms"] < 500)
    lat = r.get("latency")
    if lat:
        p95 = lat["overhead_ms"]["p95"]
        goal(f"overhead p95<100 ms ({p95:.0f})", p95 < 100)
    return ok, "; ".join(parts)


def gate(r, baseline):
    """Failures of the CI gate: the throughput step at GATE_RATE more than GATE x worse."""
    base = baseline["figures"]
    got = figures(r)
    fails = []
    for key in (f"throughput/{GATE_RATE:g}/sustained_ratio", f"throughput/{GATE_RATE:g}/node_cpu_s_per_1000"):
        if key not in got:
            fails.append(f"{key}: not measured")
            continue
        if key not in base:
            fails.append(f"{key}: not in the baseline")
            continue
        value, direction = got[key]
        ref = base[key][0]
        bad = value < ref / GATE if direction == "higher" else value > ref * GATE
        status = "FAIL" if bad else "ok"
        print(f"  gate {key}: {value:.3f} against baseline {ref:.3f} (limit {GATE:g}x): {status}")
        if bad:
            fails.append(key)
    return fails


def main(argv):
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    results = json.loads(pathlib.Path(argv[0]).read_text())
    path = pathlib.Path(argv[argv.index("--baseline") + 1]) if "--baseline" in argv else BASELINE
    if "--accept" in argv:
        base = {
            "commit": results.get("commit"),
            "date": results.get("date"),
            "note": "The last accepted figures of ./tests/bench.sh; written by tests/bench/compare.py --accept.",
            "figures": {k: [v, d] for k, (v, d) in sorted(figures(results).items())},
        }
        path.write_text(json.dumps(base, indent=2) + "\n")
        print(f"baseline written: {path} ({len(base['figures'])} figures, commit {base['commit']})")
        return 0
    if not path.exists():
        ok, line = verdict(results)
        print(f"no baseline at {path}: accept these figures with --accept")
        print(f"verdict: {'all goals met' if ok else 'goals missed'}: {line}")
        return 1 if "--gate" in argv else 0
    baseline = json.loads(path.read_text())
    if "--gate" in argv:
        fails = gate(results, baseline)
        if fails:
            print(f"throughput gate FAILED at {GATE_RATE:g}/s: {', '.join(fails)} (baseline {baseline['commit']})")
            return 1
        print(f"throughput gate passed at {GATE_RATE:g}/s (baseline {baseline['commit']})")
        return 0
    worse = regressions(results, baseline)
    if worse:
        print(f"figures more than {WORSE:.0%} worse than the baseline ({baseline['commit']}):")
        for name, value, base, w in worse:
            print(f"  {name}: {value:.3f} against {base:.3f} ({w:+.0%} worse)")
    else:
        print(f"no figure more than {WORSE:.0%} worse than the baseline ({baseline['commit']})")
    ok, line = verdict(results)
    print(f"verdict: {'all goals met' if ok else 'goals missed'}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
