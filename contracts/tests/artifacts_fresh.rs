//! The committed ABI and bytecode must be what the pinned compiler makes of the sources.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_artifacts_match_the_sources() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        root.join("node_modules/solc").exists(),
        "the pinned solc is not installed: run `npm ci` at the repository root (.ci/run does)"
    );
    let out = Command::new("node")
        .arg("contracts/scripts/compile.mjs")
        .arg("--check")
        .current_dir(&root)
        .output()
        .expect("node runs");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
