//! Load from many hosts, rehearsed on one machine: 4 agent hosts (network
//! namespaces on a bridge, each its own address) run `tcpmax load --agents 4`
//! with JOB_COMPLETION_INDEX set, as a Kubernetes Indexed Job would, against
//! `tcpmax serve` on a fifth host, from a common --start-at; `tcpmax merge`
//! sums them. 4 x 2,000 connections here; `benches/rehearsal.rs` runs the
//! 400,000. Skipped, saying why, without `ip` or the privilege for
//! namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod netns;

use std::time::Duration;

use common::validate;
use netns::{Plan, Setup, rehearse};
use serde_json::Value;

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or_else(|| panic!("{path} in {v:#}"))
}

#[test]
fn four_agent_hosts_merge_into_one_report() {
    let dir = std::env::temp_dir().join(format!("tcpmax-rehearsal-{}", std::process::id()));
    // A 3 s hold gives whole wall-clock seconds in which every agent has a
    // sample (the first and last second of a merged timeline are partial).
    let plan = Plan { agents: 4, count: 8_000, hold: "3s".into(), ports: 2, start_in: Duration::from_secs(2), dir };
    let outcome = match rehearse(&plan) {
        Ok(o) => o,
        Err(Setup::Skip(why)) => {
            common::skip(&why);
            return;
        }
        Err(Setup::Fail(why)) => panic!("{why}"),
    };
    assert!(netns::leftovers().is_empty(), "left behind: {:?}", netns::leftovers());
    let m = &outcome.merged;
    validate("merge", m);
    assert_eq!(outcome.merge_code, Some(0), "{}", outcome.merge_text);
    for (k, r) in outcome.reports.iter().enumerate() {
        validate("load", r);
        assert_eq!(n(r, "/agent/index"), k as u64);
        assert_eq!(r["agent"]["index_from"], "JOB_COMPLETION_INDEX");
        assert_eq!(n(r, "/count"), 2_000);
        assert_eq!(n(r, "/agent/whole/start_at_unix_ms"), outcome.start_at_unix_ms);
        // Each host connects from its own address: the kernel's pick.
        assert_eq!(n(r, "/plan/sources"), 0);
        // The agent waited for the common instant (spawned 2 s before it).
        let late = n(r, "/agent/ramp_start_unix_ms") as i64 - outcome.start_at_unix_ms as i64;
        assert!((0..1_000).contains(&late), "agent {k} started {late} ms after the common start");
    }
    assert_eq!(n(m, "/held_at_end"), 8_000, "{}", outcome.merge_text);
    assert_eq!(n(m, "/peak_established"), 8_000, "{}", outcome.merge_text);
    assert_eq!(n(m, "/failed"), 0);
    assert_eq!(n(m, "/connect_latency_us/count"), 8_000);
    assert_eq!(m["agents"].as_array().unwrap().len(), 4);
    assert_eq!(outcome.server_peak, 8_000, "the server held them all at once");
    // Loose for a busy CI machine; the benchmark records the real skew.
    assert!(n(m, "/start_skew_ms") < 250, "ramps {:#}", m["agents"]);
    assert!(outcome.merge_text.contains("4 of 4 agents of one plan: 8,000 connections"), "{}", outcome.merge_text);
    let _ = std::fs::remove_dir_all(&plan.dir);
}
