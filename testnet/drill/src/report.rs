//! Printing verdicts, and the results table kept in docs/reliability.md.

use crate::scenarios::Report;
use eyre::{Result, WrapErr};
use std::path::Path;

/// Prints one drill's verdict.
pub fn print(r: &Report) {
    let v = &r.verdict;
    let kinds = |k: crate::load::Kind| r.payments.iter().filter(|p| p.kind == k).count();
    use crate::load::Kind::*;
    println!("\n== {}: {} ==", r.scenario, if v.pass() { "PASS" } else { "FAIL" });
    println!(
        "payments made          {:>4}  (native {}, erc20 {}, partial {}, late {})",
        v.payments,
        kinds(Native),
        kinds(Erc20),
        kinds(Partial),
        kinds(Late)
    );
    println!("settled exactly once   {:>4}", v.settled_once);
    println!(
        "webhooks delivered     {:>4}  distinct webhook-ids ({} deliveries, {} duplicates)",
        v.webhook_ids, v.deliveries, v.duplicates
    );
    println!("false webhooks         {:>4}", v.false_webhooks);
    println!(
        "merchant impersonations{:>4}  (invoices, keys, endpoint changes and replayed requests the merchant never signed, held or applied by a node)",
        v.impersonations
    );
    println!("lost                   {:>4}", v.lost.len());
    for l in &v.lost {
        println!("  - {l}");
    }
    println!("wrong                  {:>4}", v.wrong.len());
    for w in &v.wrong {
        println!("  - {w}");
    }
    if let Some(p) = v.notify_latency_ms {
        println!("payment included -> webhook: p50 {} ms, p95 {} ms, p99 {} ms, max {} ms", p.p50, p.p95, p.p99, p.max);
    }
}

/// The results table of several drills, in Markdown.
pub fn table(reports: &[Report], commit: &str, date: &str) -> String {
    let mut s = format!(
        "Last run: {date}, commit `{commit}`, {} drills.\n\n\
         | drill | verdict | payments | settled once | webhook ids | duplicates | false webhooks | lost | wrong | p50 / p95 / p99 to webhook |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        reports.len()
    );
    for r in reports {
        let v = &r.verdict;
        let lat = v
            .notify_latency_ms
            .map(|p| format!("{:.1} / {:.1} / {:.1} s", secs(p.p50), secs(p.p95), secs(p.p99)))
            .unwrap_or_else(|| "-".into());
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {lat} |\n",
            r.scenario,
            if v.pass() { "pass" } else { "FAIL" },
            v.payments,
            v.settled_once,
            v.webhook_ids,
            v.duplicates,
            v.false_webhooks,
            v.lost.len(),
            v.wrong.len()
        );
    }
    if let Some(o) = reports.first().map(|r| r.options) {
        s += &format!(
            "\nOptions: {} invoices at {}/s per drill, faults last {} s, settle timeout {} s.\n",
            o.invoices, o.rate, o.fault_s, o.settle_timeout_s
        );
    }
    s
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

const BEGIN: &str = "<!-- drill-results:begin -->";
const END: &str = "<!-- drill-results:end -->";

/// Replaces the block between the result markers of `file` with `table`.
pub fn write_into(file: &Path, table: &str) -> Result<()> {
    let text = std::fs::read_to_string(file).wrap_err_with(|| format!("{}", file.display()))?;
    let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
        eyre::bail!("{}: add the lines {BEGIN} and {END} where the results go", file.display());
    };
    let out = format!("{}{BEGIN}\n{table}{}", &text[..a], &text[b..]);
    std::fs::write(file, out).wrap_err_with(|| format!("{}", file.display()))
}
