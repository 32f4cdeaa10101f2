//! `settleproof-drill`: payment load and chaos drills against the testnet `testnet/up.sh`
//! started, each ending with a verdict (exit code 0 only when nothing was lost or wrong).

mod byzantine;
mod chain_down;
mod control;
mod forge;
mod load;
mod manifest;
mod merchant_side;
mod report;
mod rotation;
mod scenarios;
mod stats;
mod time;
mod verdict;
mod wallet;

use clap::{Parser, Subcommand};
use eyre::{Result, WrapErr};
use scenarios::{DrillOptions, Scenario};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "settleproof-drill", about = "Payment load and chaos drills on the local testnet")]
struct Cli {
    /// The testnet's manifest.
    #[arg(long, default_value = "testnet/.run/testnet.json", global = true)]
    testnet: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Shape {
    /// Invoices to create and pay.
    #[arg(long, default_value_t = 24)]
    invoices: usize,
    /// Invoices per second.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Seconds to wait after the load for the last settlements and webhooks.
    #[arg(long, default_value_t = 240)]
    settle_timeout_s: u64,
    /// Write the report (every payment, the timeline, the verdict) as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and pay invoices (native, ERC-20, partial, late) and report how many were settled
    /// and notified, with latency percentiles.
    Pay {
        #[command(flatten)]
        shape: Shape,
    },
    /// Run a payment load through a fault, heal it, and judge.
    Chaos {
        /// The fault, or `all` for every one in turn.
        scenario: String,
        #[command(flatten)]
        shape: Shape,
        /// Seconds the fault lasts.
        #[arg(long, default_value_t = 20)]
        fault_s: u64,
        /// Short form for CI: 8 invoices at 2/s, 6 s faults, 120 s settle timeout (replaces
        /// --invoices, --rate, --fault-s and --settle-timeout-s).
        #[arg(long)]
        quick: bool,
        /// Write the results table between the drill-results markers of this Markdown file.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let ctl = control::Control::new(manifest::Manifest::load(&cli.testnet)?)?;
    ctl.m.receiver()?;
    let payer = wallet::Payer::start(&ctl).await.wrap_err("starting the payer")?;
    let (scenarios, opts, report, markdown) = match cli.command {
        Command::Pay { shape } => (vec![Scenario::None], options(&shape, 0), shape.report, None),
        Command::Chaos { scenario, shape, fault_s, quick, markdown } => {
            let mut opts = options(&shape, fault_s);
            if quick {
                opts = DrillOptions { invoices: 8, rate: 2.0, fault_s: 6, settle_timeout_s: 120 };
            }
            let list = if scenario == "all" {
                scenarios::ALL.to_vec()
            } else {
                vec![<Scenario as clap::ValueEnum>::from_str(&scenario, true).map_err(|_| {
                    let names: Vec<String> = scenarios::ALL.iter().map(|s| s.name()).collect();
                    eyre::eyre!("unknown scenario {scenario:?}; one of: {}, all", names.join(", "))
                })?]
            };
            (list, opts, shape.report, markdown)
        }
    };
    let mut reports = Vec::new();
    for s in scenarios {
        println!("\n### drill: {}", s.name());
        let r = match scenarios::run(&ctl, &payer, s, opts).await {
            Ok(r) => r,
            Err(e) => scenarios::Report::not_run(s, opts, &e),
        };
        report::print(&r);
        reports.push(r);
    }
    if let Some(path) = report {
        std::fs::write(&path, serde_json::to_string_pretty(&reports)?)
            .wrap_err_with(|| format!("{}", path.display()))?;
    }
    if reports.len() > 1 {
        println!("\n{}", report::table(&reports, &commit(), &today()));
    }
    if let Some(path) = markdown {
        report::write_into(&path, &report::table(&reports, &commit(), &today()))?;
    }
    let failed = reports.iter().filter(|r| !r.verdict.pass()).count();
    if failed > 0 {
        eprintln!("{failed} of {} drills lost a payment or got something wrong", reports.len());
        std::process::exit(1);
    }
    Ok(())
}

fn options(shape: &Shape, fault_s: u64) -> DrillOptions {
    DrillOptions { invoices: shape.invoices, rate: shape.rate, fault_s, settle_timeout_s: shape.settle_timeout_s }
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
