//! Runs every benchmark behind docs/benchmarks.md and writes the numbers to
//! `docs/benchmarks/results.json`; `tests/bench/report.py` turns them into the page and its
//! plots. Run both through `./tests/bench.sh`.
//!
//! Usage: `bench [--quick] [--only gas,api,latency,throughput,footprint] [--rates 25,50,...] [--criterion DIR]
//! [--out FILE]`

use eyre::{Result, WrapErr};
use serde_json::{Value, json};
use settleproof_tests::bench::setup::{self, arg};
use settleproof_tests::bench::{api, footprint, gas, latency, throughput};
use settleproof_tests::harness::Testnet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn command(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Mean time of every criterion benchmark under `dir`, ns, keyed `group/function/parameter`.
fn criterion_means(dir: &Path) -> Value {
    let mut out = serde_json::Map::new();
    let walk = |p: &Path| std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).collect::<Vec<_>>();
    for group in walk(dir).into_iter().filter(|p| p.is_dir()) {
        for function in walk(&group).into_iter().filter(|p| p.is_dir()) {
            for param in walk(&function).into_iter().filter(|p| p.is_dir()) {
                let file = param.join("new/estimates.json");
                let Ok(text) = std::fs::read_to_string(&file) else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let key = format!("{}/{}/{}", name(&group), name(&function), name(&param));
                out.insert(key, v["mean"]["point_estimate"].clone());
            }
        }
    }
    Value::Object(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let only = arg("--only").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if !only.is_empty() && arg("--out").is_none() {
        eyre::bail!("--only writes a partial result: give --out FILE so docs/benchmarks/results.json stays whole");
    }
    let out = arg("--out").map(PathBuf::from).unwrap_or_else(|| root.join("docs/benchmarks/results.json"));
    let began = Instant::now();
    let dir = tempfile::tempdir()?;

    eprintln!("gas ...");
    let sizes: &[u32] = if quick { &[1, 10, 100] } else { &[1, 10, 100, 1000, 10_000] };
    let gas = if run("gas") { Some(gas::run(dir.path(), sizes).await.wrap_err("gas")?) } else { None };

    eprintln!("testnet: 4 nodes, 3 providers each, 1 s blocks, 2 confirmations, rounds of 1 block ...");
    let (confirmations, round_length) = (setup::CONFIRMATIONS, setup::ROUND_LENGTH);
    let mut net = if ["latency", "throughput", "api", "footprint"].iter().any(|b| run(b)) {
        Some(Testnet::start_with(setup::options()).await?)
    } else {
        None
    };

    eprintln!("latency ...");
    let count = if quick { 10 } else { 40 };
    let latency = if let (true, Some(net)) = (run("latency"), &net) {
        Some(
            latency::run(net, count, Duration::from_millis(1300), confirmations, round_length)
                .await
                .wrap_err("latency")?,
        )
    } else {
        None
    };
    eprintln!("throughput ...");
    // The quick form keeps one step at 200/s for 10 s: the one .ci/run holds against the
    // baseline (tests/bench/compare.py --gate).
    let default_rates: &[f64] = if quick { &[200.0] } else { &[50.0, 100.0, 200.0, 300.0, 400.0, 500.0] };
    let rates: Vec<f64> = arg("--rates")
        .map(|r| r.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| default_rates.to_vec());
    let throughput = if let (true, Some(net)) = (run("throughput"), &net) {
        Some(throughput::run(net, &rates, 10, Duration::from_secs(60)).await.wrap_err("throughput")?)
    } else {
        None
    };
    eprintln!("api ...");
    let api = if let (true, Some(net)) = (run("api"), &net) {
        Some(api::run(net, 500.0, if quick { 4 } else { 10 }).await.wrap_err("api")?)
    } else {
        None
    };
    eprintln!("footprint ...");
    let footprint = if let (true, Some(net)) = (run("footprint"), &mut net) {
        Some(footprint::run(net, 0, if quick { 100_000 } else { 1_000_000 }).await.wrap_err("footprint")?)
    } else {
        None
    };
    if let Some(net) = net {
        net.stop().await;
    }

    let criterion = arg("--criterion").map(|d| criterion_means(Path::new(&d))).unwrap_or(Value::Null);
    let results = json!({
        "date": command("date", &["-u", "+%Y-%m-%d"]),
        "commit": command("git", &["rev-parse", "--short", "HEAD"]),
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cpu": command("sh", &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]),
        },
        "quick": quick,
        "seconds": began.elapsed().as_secs_f64(),
        "gas": gas,
        "api": api,
        "latency": latency,
        "throughput": throughput,
        "footprint": footprint,
        "criterion_mean_ns": criterion,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&results)? + "\n")
        .wrap_err_with(|| format!("{}", out.display()))?;
    eprintln!("wrote {} after {:.0} s", out.display(), began.elapsed().as_secs_f64());
    Ok(())
}
