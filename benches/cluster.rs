//! The cluster rehearsal of docs/benchmarks.md: `tcpmax cluster` with four
//! backends (two of 64 MiB, two of 2 GiB) behind HAProxy, 50,000
//! connections; with `--kill b3@10s`, the failure rehearsal. Writes the
//! rehearsal's own JSON report (and the HAProxy configuration beside it)
//! and prints the table rows. Needs root and HAProxy.
//!
//! `cargo bench --bench cluster -- --json docs/bench/cluster_50k.json [--hold 20s] [--kill b3@10s]`

#[path = "common/mod.rs"]
mod util;

use std::process::Command;

use serde_json::Value;

fn main() -> Result<(), String> {
    let out = util::arg("--json").unwrap_or_else(|| "cluster.json".into());
    let count = util::arg("--count").unwrap_or_else(|| "50k".into());
    let hold = util::arg("--hold").unwrap_or_else(|| "20s".into());
    let mut args = vec![
        "cluster".to_string(),
        "--backends".into(),
        "4".into(),
        "-c".into(),
        count,
        "--backend-memory".into(),
        "64MiB,64MiB,2GiB,2GiB".into(),
        "--hold".into(),
        hold,
        "--json".into(),
        out.clone(),
    ];
    if let Some(kill) = util::arg("--kill") {
        args.extend(["--kill-backend".into(), kill]);
    }
    eprintln!("tcpmax {}", args.join(" "));
    let status = Command::new(env!("CARGO_BIN_EXE_tcpmax")).args(&args).status().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("tcpmax cluster exited with {status}"));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("reading {out}: {e}"))?;
    let r: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    println!("| backend | budget | held | peak held | drained at | peak memory | refused | HAProxy saw |");
    println!("|---|---|---|---|---|---|---|---|");
    for b in r["backends"].as_array().ok_or("no backends")? {
        let drained = match b["drained_at_s"].as_f64() {
            Some(t) => format!("{t:.0} s, {} held", b["drained_at_held"]),
            None => "-".into(),
        };
        let views: Vec<String> = b["lb_view"]
            .as_array()
            .map(|v| v.iter().map(|c| format!("{} @{}s", c["state"].as_str().unwrap_or(""), c["t"])).collect())
            .unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {drained} | {} | {} | {} |",
            b["name"].as_str().unwrap_or(""),
            b["budget_bytes"],
            b["held"],
            b["peak_held"],
            b["peak_bytes"],
            b["refused"],
            views.join(", ")
        );
    }
    println!("total held {} of {}, first limit: {}", r["total_held"], r["target"], r["first_limit"]["what"]);
    if !r["kill"].is_null() {
        println!("kill: {}", r["kill"]);
    }
    Ok(())
}
