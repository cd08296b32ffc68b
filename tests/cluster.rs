//! `tcpmax cluster` end to end: network namespaces, HAProxy, backends with
//! budgets, a client. Runs when this process may create namespaces and
//! HAProxy is installed; otherwise it says why it skips. The refusal without
//! HAProxy runs everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Why the rehearsal cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = |name: &str| std::env::split_paths(&path).any(|d| d.join(name).is_file());
    if !found("haproxy") {
        return Some("haproxy is not installed (apt-get install -y haproxy)".into());
    }
    if !found("ip") {
        return Some("ip (iproute2) is not installed".into());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    let caps = u64::from_str_radix(caps, 16).unwrap();
    // CAP_NET_ADMIN (12) and CAP_SYS_ADMIN (21).
    if caps & (1 << 12) == 0 || caps & (1 << 21) == 0 {
        return Some("no privilege for network namespaces (CAP_SYS_ADMIN, CAP_NET_ADMIN): run as root".into());
    }
    None
}

fn namespaces_of(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("tcpmax-{pid}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn refuses_without_haproxy_with_the_fix() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["cluster", "--backends", "2", "-c", "2k"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("haproxy is not installed"), "{err}");
    assert!(err.contains("fix: apt-get install -y haproxy"), "{err}");
}

#[test]
fn bad_budgets_are_refused_before_anything_starts() {
    let out = common::tcpmax(&["cluster", "--backends", "3", "--backend-memory", "64MiB,1GiB"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 budgets for 3 backends"));
}

/// A run killed with SIGKILL leaves namespaces behind; the next run removes
/// them by name and says so, holds its connections through HAProxy, writes
/// a report that matches the schema, and leaves nothing behind itself.
#[test]
fn rehearsal_holds_through_haproxy_and_cleans_up() {
    if let Some(why) = skip_reason() {
        common::skip(&why);
        return;
    }
    let dir = TempDir(std::env::temp_dir().join(format!("tcpmax-cluster-test-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();

    // A first run, killed once its hosts are up.
    let mut first = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["cluster", "--backends", "2", "-c", "1k", "--hold", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let victim = first.id();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = lines.next().expect("the first run prints its setup").unwrap();
        if line.starts_with("client:") {
            break;
        }
        assert!(Instant::now() < deadline, "the first run never started its client");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!namespaces_of(victim).is_empty(), "SIGKILL leaves the namespaces behind");

    let json = dir.0.join("run.json");
    let out = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["cluster", "--backends", "2", "-c", "3k", "--backend-memory", "8MiB,1GiB", "--hold", "3s", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
    assert!(text.contains(&format!("removed leftovers of an earlier run (pid {victim}, no longer running)")), "{text}");
    assert!(namespaces_of(victim).is_empty(), "the leftovers are gone");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    common::validate("cluster", &report);
    assert_eq!(report["total_held"], 3000, "{text}");
    assert_eq!(report["goal_met"], true);
    assert_eq!(report["lb"]["processes"], 1);
    assert_eq!(report["lb"]["held"], 3000);
    let backends = report["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    let held: u64 = backends.iter().map(|b| b["held"].as_u64().unwrap()).sum();
    assert!(held >= 3000, "{held}");
    let small = &backends[0];
    assert!(small["peak_bytes"].as_u64().unwrap() > 0);
    assert!(small["peak_bytes"].as_u64() < small["budget_bytes"].as_u64(), "{small}");
    assert_eq!(small["refused"], 0, "{small}");
    assert!(
        report["leftovers_removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains(&victim.to_string()))
    );
    assert_eq!(report["cleanup"]["left_behind"].as_array().unwrap().len(), 0);

    // The configuration is beside the report, with an agent check on every server.
    let cfg = std::fs::read_to_string(dir.0.join("run.haproxy.cfg")).unwrap();
    assert!(cfg.contains("balance leastconn") && cfg.contains("agent-check"), "{cfg}");
    assert_eq!(cfg.matches("\n    server b").count(), 2, "{cfg}");

    // Nothing of this run is left: namespaces, processes, temporary files.
    let ns = report["network"]["namespaces"][0].as_str().unwrap();
    let run: u32 = ns.split('-').nth(1).unwrap().parse().unwrap();
    assert!(namespaces_of(run).is_empty());
    assert!(!std::env::temp_dir().join(format!("tcpmax-{run}-cluster")).exists());
    let subnet = report["network"]["subnet"].as_str().unwrap().trim_end_matches("0/24").replace('.', "\\.");
    let pattern = format!("tcpmax-{run}-|--agent {subnet}");
    let pids = Command::new("pgrep").args(["-f", "--", &pattern]).output().unwrap();
    assert!(pids.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&pids.stdout));
}
