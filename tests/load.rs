//! `tcpmax load` driven as a binary against `tcpmax serve`, a plain
//! listener, and a port with nothing listening.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use common::{Serve, tcpmax, validate};
use serde_json::Value;

/// Runs `load ARGS --json -`, checks the exit code (0: the whole target
/// held through the hold; 1: not) and the report against its schema.
fn load_json(args: &[&str], code: i32) -> Value {
    load_json_and_stderr(args, code).0
}

/// [`load_json`], with what the run wrote to stderr.
fn load_json_and_stderr(args: &[&str], code: i32) -> (Value, String) {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "-"]);
    let out = tcpmax(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate("load", &report);
    assert_eq!(report["goal_met"], code == 0);
    (report, stderr)
}

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or_else(|| panic!("{path} in {v:#}"))
}

#[test]
fn holds_30k_against_serve_with_pings() {
    let srv = Serve::start(&["--max-conns", "40k", "--mode", "echo"]);
    let target = srv.addr.to_string();
    let (r, stderr) = load_json_and_stderr(&[&target, "-c", "30k", "--hold", "2s", "--ping-rate", "10k"], 0);
    assert!(stderr.contains("closing: 30,000 of 30,000 connections left"), "the teardown is shown: {stderr}");
    assert_eq!(n(&r, "/count"), 30_000);
    assert_eq!(n(&r, "/failed"), 0, "{:#}", r["errors"]);
    assert_eq!(n(&r, "/peak_established"), 30_000);
    assert_eq!(n(&r, "/held_at_end"), 30_000);
    assert_eq!(n(&r, "/closed_by_peer"), 0);
    assert_eq!(n(&r, "/connect_latency_us/count"), 30_000);
    assert!(n(&r, "/pongs") >= 1_000, "pongs {}", r["pongs"]);
    assert!(n(&r, "/pongs") <= n(&r, "/pings_sent"));
    let (p50, p99, max) = (n(&r, "/ping_rtt_us/p50"), n(&r, "/ping_rtt_us/p99"), n(&r, "/ping_rtt_us/max"));
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "rtt {:#}", r["ping_rtt_us"]);
    assert!(r["connect_rate_per_s"].as_f64().unwrap() > 0.0);
    assert!(!r["timeline"].as_array().unwrap().is_empty());
    // The server counted every one of them.
    srv.until("30,000 connections on the server", |l| l.contains("conns 30,000 |"));
}

#[test]
fn loads_a_plain_listener_that_is_not_tcpmax() {
    // A plain blocking std listener (backlog 4096, so the kernel queues what
    // the accept loop has not taken yet).
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    sock.listen(4096).unwrap();
    let listener: TcpListener = sock.into();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for s in listener.incoming() {
            // A connection after `done` only wakes this loop up.
            if done_rx.try_recv().is_ok() {
                break;
            }
            held.push(s.unwrap());
        }
        held.len()
    });
    let r = load_json(&[&addr.to_string(), "-c", "1000", "--hold", "1s"], 0);
    done_tx.send(()).unwrap();
    drop(TcpStream::connect(addr).unwrap());
    assert_eq!(n(&r, "/peak_established"), 1000);
    assert_eq!(n(&r, "/failed"), 0);
    assert_eq!(server.join().unwrap(), 1000, "the listener accepted every connection");
}

#[test]
fn nothing_listening_is_counted_as_econnrefused() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let r = load_json(&[&port.to_string(), "-c", "100", "--hold", "0s"], 1);
    assert_eq!(n(&r, "/failed"), 100);
    assert_eq!(n(&r, "/peak_established"), 0);
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["errno"], "ECONNREFUSED");
    assert_eq!(errors[0]["count"], 100);
    assert!(errors[0]["fix"].as_str().unwrap().contains("somaxconn"));
    assert!(r["hold_ended_early"].as_str().unwrap().contains("no connection"));
}

#[test]
fn an_impossible_plan_is_refused_before_any_socket() {
    let out = tcpmax(&["load", "127.0.0.1:9", "-c", "100k", "--source", "127.0.0.5"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("100,000") && err.contains("28,232") && err.contains("--source"), "{err}");
}

#[test]
fn bad_payload_escapes_are_input_errors() {
    let out = tcpmax(&["load", "127.0.0.1:9", "-c", "1", "--message", "bad\\q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\\q"));
}

/// One source IP holds more than 65,535 connections: 70,000 from 127.0.0.5
/// over 8 destination ports of one server (IP_BIND_ADDRESS_NO_PORT lets the
/// kernel reuse each local port toward every destination). 140,000 sockets:
/// run with `cargo test --release -- --ignored`.
#[test]
#[ignore = "140,000 sockets; run by the benchmark script"]
fn one_source_ip_holds_more_than_65535() {
    let listen = ["127.0.0.1:0"; 8].join(",");
    let srv = Serve::start(&["--listen", &listen, "--max-conns", "80k", "--shards", "6", "--mode", "silent"]);
    assert_eq!(srv.addrs.len(), 8);
    let targets: Vec<String> = srv.addrs.iter().map(|a| a.to_string()).collect();
    let targets = targets.join(",");
    let r = load_json(&[&targets, "-c", "70k", "--source", "127.0.0.5", "--hold", "3s"], 0);
    assert_eq!(n(&r, "/plan/sources"), 1);
    assert_eq!(n(&r, "/failed"), 0, "{:#}", r["errors"]);
    assert_eq!(n(&r, "/peak_established"), 70_000);
    srv.until("70,000 on the server", |l| l.contains("conns 70,000 |"));
}

#[test]
fn reconnect_keeps_the_target_within_its_budget() {
    // The server admits 300: the other 200 are reset at once and reopened,
    // at most as many times as the target.
    let srv = Serve::start(&["--max-conns", "300"]);
    let r = load_json(&[&srv.addr.to_string(), "-c", "500", "--hold", "1s", "--reconnect"], 1);
    // A reset lands either after the client saw the connect (closed by
    // peer) or before (a connect failing with ECONNRESET): both count.
    assert!(n(&r, "/closed_by_peer") + n(&r, "/failed") >= 200, "{r:#}");
    assert_eq!(r["errors"][0]["errno"], "ECONNRESET");
    assert_eq!(n(&r, "/reconnects"), 500, "the reconnect budget is the target");
    assert!(n(&r, "/held_at_end") >= 300);
    assert!(n(&r, "/held_at_end") <= 500);
}

#[test]
fn ctrl_c_stops_early_and_still_reports() {
    let srv = Serve::start(&[]);
    let report = std::env::temp_dir().join(format!("tcpmax-load-int-{}.json", std::process::id()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["load", &srv.addr.to_string(), "-c", "1000", "--hold", "10m", "--json"])
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let progress = common::lines(child.stderr.take().unwrap());
    // Once every connection is up (a progress line says so), interrupt.
    let deadline = std::time::Instant::now() + common::LIMIT;
    while !progress.recv_timeout(common::LIMIT).unwrap().contains("established 1,000 / 1,000") {
        assert!(std::time::Instant::now() < deadline);
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "SIGINT: 130, report still written");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    validate("load", &r);
    assert_eq!(r["interrupted"], true);
    assert_eq!(n(&r, "/peak_established"), 1000);
    srv.until_conns(0);
}
