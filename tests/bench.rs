//! `tcpmax bench` driven as a binary: a small run checked against its
//! schema and its own invariants, and the doctor's refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{tcpmax, validate};
use serde_json::Value;

#[test]
fn a_small_bench_reports_what_it_held() {
    let out = tcpmax(&["bench", "-c", "20k", "--hold", "2s", "--ping-rate", "5k", "--json", "-"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate("bench", &r);
    let num = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k}"));
    assert_eq!(r["target"], 20_000);
    assert!(num("held") <= num("target"));
    assert_eq!(r["held"], 20_000, "a small target is held whole: {:#}", r["first_limit"]);
    assert!(r["first_limit"].is_null());
    assert!(num("ramp_seconds") > 0.0 && num("connect_rate_per_s") > 0.0);
    assert!(num("hold_seconds") >= 2.0);
    assert!(num("teardown_seconds") > 0.0);
    // Slab is measured machine-wide: sockets an earlier test closed are freed
    // (RCU) during this run and can cancel out what this run grew, so only
    // the presence of the figure is checked here; `tcpmax prove
    // memory-per-connection` checks its size in a quiet window.
    assert!(r["kernel_slab_bytes_per_connection"].is_number());
    assert!(num("user_bytes_per_connection") > 0.0);
    assert!(r["predicted"].as_u64().unwrap() >= 20_000);
    let rtt = &r["ping_rtt_us"];
    assert!(rtt["count"].as_u64().unwrap() > 0);
    assert!(rtt["p50"].as_u64().unwrap() <= rtt["p99"].as_u64().unwrap());
    assert!(!r["timeline"].as_array().unwrap().is_empty());
    assert!(r["shards"]["server"].as_u64().unwrap() >= 1);
}

#[test]
fn a_target_past_the_doctors_ceiling_is_refused() {
    let out = tcpmax(&["bench", "-c", "1G"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("doctor predicts") && err.contains("--force"), "{err}");
}

/// #18: one kernel memory figure to trust (slab growth) beside what the
/// doctor predicts, and shard counts that say when they were taken.
#[test]
fn a_small_bench_says_which_figure_the_doctor_predicts() {
    let out = tcpmax(&["bench", "-c", "2k", "--hold", "1s", "--ping-rate", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("bench: 2,000 tcp connections") && first.contains("; starting with "), "{first}");
    assert!(first.ends_with(" client shards"), "{first}");
    let kernel = text.lines().find(|l| l.starts_with("  kernel memory ")).unwrap_or_else(|| panic!("{text}"));
    assert!(kernel.ends_with(" B per connection (slab growth on the machine / held)"), "{kernel}");
    assert!(!text.contains("slab grew"), "{text}");
    assert!(text.contains("the doctor predicts ") && text.contains(" B: the slab objects of 2 idle sockets"), "{text}");
    let shards = text.lines().find(|l| l.starts_with("  shards ")).unwrap();
    assert!(shards.ends_with(" client at the peak"), "{shards}");
}
