//! `tcpmax load --agents N` and `tcpmax merge` driven as binaries: agents
//! of one plan on loopback started together, merged exactly; the start
//! wait and its interruption; the files a merge refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Serve, tcpmax, validate};
use serde_json::Value;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tcpmax-agents-{}-{name}", std::process::id()))
}

/// Unix seconds `ahead` from now, with milliseconds.
fn start_in(ahead: Duration) -> String {
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + ahead;
    format!("{}.{:03}", at.as_secs(), at.subsec_millis())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or_else(|| panic!("{path} in {v:#}"))
}

#[test]
fn two_agents_on_loopback_start_together_and_merge_exactly() {
    let srv = Serve::start(&["--max-conns", "10k", "--mode", "echo"]);
    let target = srv.addr.to_string();
    let start = start_in(Duration::from_secs(2));
    let files: Vec<PathBuf> = (0..2).map(|i| tmp(&format!("agent{i}.json"))).collect();
    let children: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            Command::new(env!("CARGO_BIN_EXE_tcpmax"))
                .args(["load", &target, "-c", "6001", "--ping-rate", "2k", "--hold", "1s", "--agents", "2"])
                .args(["--start-at", &start, "--quiet", "--json"])
                .arg(file)
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, file) in children.into_iter().zip(&files) {
        let out = child.wait_with_output().unwrap();
        // --quiet prints nothing: on failure, the report says why.
        let why = std::fs::read_to_string(file).unwrap_or_default();
        assert!(out.status.success(), "exit {:?}: {why}", out.status.code());
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "--quiet prints nothing");
    }
    let reports: Vec<Value> = files.iter().map(|f| read_json(f)).collect();
    let mut sources = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        validate("load", r);
        assert_eq!(n(r, "/agent/index"), i as u64);
        assert_eq!(r["agent"]["index_from"], "JOB_COMPLETION_INDEX");
        assert_eq!(n(r, "/agent/whole/count"), 6001);
        assert_eq!(n(r, "/count"), [3001, 3000][i]);
        assert_eq!(n(r, "/held_at_end"), n(r, "/count"), "{:#}", r["errors"]);
        assert!(n(r, "/timeline/0/unix_ms") > n(r, "/agent/ramp_start_unix_ms"));
        // It waited for the common instant (spawned 2 s before it).
        let start = n(r, "/agent/whole/start_at_unix_ms");
        assert!((start..start + 1_000).contains(&n(r, "/agent/ramp_start_unix_ms")), "{:#}", r["agent"]);
        sources.extend(r["plan"]["pairs"].as_array().unwrap().iter().map(|p| p["source"].to_string()));
    }
    let distinct: std::collections::HashSet<_> = sources.iter().collect();
    assert_eq!(distinct.len(), sources.len(), "agents on one host use disjoint sources: {sources:?}");

    let mut args = vec!["merge".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(["--json".into(), "-".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tcpmax(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate("merge", &m);
    assert_eq!((n(&m, "/held_at_end"), n(&m, "/count"), n(&m, "/agents_merged")), (6001, 6001, 2));
    assert_eq!(n(&m, "/connect_latency_us/count"), 6001);
    assert_eq!(m["complete"], true);
    // The merged percentiles are those of the two histograms added.
    let mut all = tcpmax::load::hist::decode(reports[0]["histograms"]["connect_us"].as_str().unwrap()).unwrap();
    all.add(tcpmax::load::hist::decode(reports[1]["histograms"]["connect_us"].as_str().unwrap()).unwrap()).unwrap();
    let want = tcpmax::load::report::Percentiles::of(&all);
    assert_eq!(n(&m, "/connect_latency_us/p99"), want.p99);
    assert_eq!(n(&m, "/connect_latency_us/p50"), want.p50);
    // Loose for a busy CI machine; the rehearsal benchmark records the real skew.
    assert!(n(&m, "/start_skew_ms") < 250, "ramps {}", m["agents"]);
    let human = String::from_utf8_lossy(&out.stderr);
    assert!(human.contains("2 of 2 agents of one plan: 6,001 connections"), "{human}");
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    srv.until_conns(0);
}

#[test]
fn sigint_while_waiting_for_the_start_exits_130_promptly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["load", "127.0.0.1:9", "-c", "10", "--start-at", &start_in(Duration::from_secs(60))])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = common::lines(child.stdout.take().unwrap());
    while !lines.recv_timeout(common::LIMIT).unwrap().starts_with("waiting for the start at") {}
    let sent = Instant::now();
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(sent.elapsed() < Duration::from_secs(2), "took {:?}", sent.elapsed());
}

#[test]
fn a_start_already_passed_is_refused() {
    let out = tcpmax(&["load", "127.0.0.1:9", "-c", "10", "--start-at", "2001-02-03T04:05:06Z"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--start-at 2001-02-03T04:05:06.000Z passed") && err.contains("in the future"), "{err}");
    let out = tcpmax(&["load", "127.0.0.1:9", "--agents", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JOB_COMPLETION_INDEX"));
}

#[test]
fn merge_names_bad_files_and_refuses_other_plans() {
    // Two quick reports against a port where nothing listens: ECONNREFUSED.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (a, b, cut) = (tmp("a.json"), tmp("b.json"), tmp("cut.json"));
    for (file, count) in [(&a, "10"), (&b, "20")] {
        let out = tcpmax(
            &["load", &port, "-c", count, "--hold", "0s", "--agents", "2", "--agent-index", "0", "--json"]
                .into_iter()
                .chain([file.to_str().unwrap()])
                .collect::<Vec<_>>(),
        );
        // Nothing was held: exit 1, the report written all the same.
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&cut, &text[..text.len() / 3]).unwrap();
    let merge = |files: &[&PathBuf]| {
        let mut args = vec!["merge"];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        let out = tcpmax(&args);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, err) = merge(&[&a, &cut]);
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("{} is truncated", cut.display())), "{err}");
    let (code, err) = merge(&[&a, &b]);
    assert_eq!(code, Some(2));
    assert!(err.contains("reports of different plans (-c 10 vs 20)"), "{err}");
    let missing = tmp("none.json");
    let (code, err) = merge(&[&missing]);
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("cannot read {}", missing.display())), "{err}");
    // One agent of two: merged, named missing, exit 1.
    let (code, err) = merge(&[&a]);
    assert_eq!(code, Some(1), "{err}");
    for f in [&a, &b, &cut] {
        let _ = std::fs::remove_file(f);
    }
}
