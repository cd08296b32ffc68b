//! Records the git commit the binary was built from, for the `machine`
//! section of reports ("unknown" outside a git checkout). A build without
//! the repository (the Dockerfile's) gives it as `TCPMAX_COMMIT`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TCPMAX_COMMIT");
    if let Ok(given) = std::env::var("TCPMAX_COMMIT")
        && !given.trim().is_empty()
    {
        println!("cargo:rustc-env=TCPMAX_COMMIT={}", given.trim());
        return;
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        // Only the code counts: a benchmark run rewrites docs/bench/*.json.
        .args(["status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock", "build.rs"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    let suffix = if dirty && commit != "unknown" { "-dirty" } else { "" };
    println!("cargo:rustc-env=TCPMAX_COMMIT={commit}{suffix}");
    // Any change to the sources re-runs this script, so "-dirty" is never stale.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=.git/index");
}
