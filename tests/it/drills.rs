//! The chaos drills in their short form, through the scripts an operator runs: `up.sh` (on ports
//! and in a directory of its own, so a testnet someone runs by hand is left alone), then
//! `chaos.sh all --quick`, whose exit code is the verdict, then `down.sh`, which must leave no
//! process behind.

use eyre::{Result, bail, eyre};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Scripted {
    root: PathBuf,
    dir: tempfile::TempDir,
    target: PathBuf,
}

impl Scripted {
    fn run(&self, script: &str, args: &[&str]) -> Result<std::process::ExitStatus> {
        Ok(Command::new("bash")
            .arg(self.root.join("testnet").join(script))
            .args(args)
            .current_dir(&self.root)
            .env("SETTLEPROOF_TESTNET_DIR", self.dir.path())
            .env("CARGO_TARGET_DIR", &self.target)
            .envs([
                ("ANVIL_PORT", "18545"),
                ("PROXY_PORT", "18600"),
                ("API_PORT", "18700"),
                ("P2P_PORT", "19700"),
                ("ADMIN_PORT", "18800"),
                ("MERCHANT_PORT", "19999"),
            ])
            .status()?)
    }

    fn pids(&self) -> Vec<u32> {
        std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = self.run("down.sh", &[]);
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
}

#[test]
fn every_chaos_drill_passes_in_its_quick_form() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The test binary lives in <target>/debug/deps.
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(3).ok_or_else(|| eyre!("no target dir above {}", exe.display()))?.to_path_buf();
    let net = Scripted { root, dir: tempfile::tempdir()?, target };
    if !net.run("up.sh", &["--nodes", "4"])?.success() {
        bail!("up.sh failed");
    }
    if net.run("up.sh", &[])?.success() {
        bail!("a second up.sh must refuse to start another testnet");
    }
    let drills = net.run("chaos.sh", &["all", "--quick"])?;
    let pids = net.pids();
    assert!(!pids.is_empty(), "up.sh records its processes");
    assert!(net.run("down.sh", &[])?.success());
    assert!(pids.iter().all(|p| !alive(*p)), "down.sh leaves no process behind");
    assert!(drills.success(), "a drill lost a payment or got something wrong (see the verdicts above)");
    Ok(())
}
