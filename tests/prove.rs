//! `tcpmax prove` driven as a binary: every verdict matches what this kernel
//! does, the report validates against its schema, and the names are checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;
use std::time::Instant;

use common::{tcpmax, validate};
use serde_json::Value;

/// The experiments share the machine's ports and memory: one run at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn prove(names: &[&str]) -> Value {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = vec!["prove", "--json", "-"];
    args.extend_from_slice(names);
    let started = Instant::now();
    let out = tcpmax(&args);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status.code());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate("prove", &r);
    let ran: Vec<&str> = r["experiments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(ran, names);
    assert!(stderr.contains("experiments in"), "the table goes to stderr with --json -: {stderr}");
    eprintln!("tcpmax prove {}: {:.1} s", names.join(" "), took.as_secs_f64());
    r
}

fn experiment<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["experiments"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap()
}

/// (major, minor) of the running kernel.
fn kernel() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = rel.trim().split(|c: char| !c.is_ascii_digit()).map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// CAP_NET_BIND_SERVICE in this process's effective set.
fn has_bind_service() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << 10) != 0
}

fn sysctl(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/"))).unwrap().trim().parse().unwrap()
}

/// Confirmed, or skipped with its reason when `feature` is false.
fn confirmed_unless(e: &Value, feature: bool) {
    if feature {
        assert_eq!(e["verdict"], "confirmed", "{e:#}");
    } else {
        assert_eq!(e["verdict"], "skipped", "{e:#}");
        assert!(!e["evidence"]["reason"].as_str().unwrap().is_empty(), "{e:#}");
    }
}

#[test]
fn small_experiments_match_this_kernel() {
    let names =
        ["four-tuple", "udp-shares-port", "port-exhaustion", "bind-without-no-port", "privileged-ports", "fd-limit"];
    let r = prove(&names);

    let e = experiment(&r, "four-tuple");
    assert_eq!(e["verdict"], "confirmed", "{e:#}");
    assert_eq!(e["evidence"]["first"]["connect"], "ok");
    assert_eq!(e["evidence"]["second"]["connect"], "ok");
    assert_eq!(e["evidence"]["third"]["connect"], "EADDRNOTAVAIL", "Linux refuses a duplicate four-tuple at connect");

    let e = experiment(&r, "udp-shares-port");
    assert_eq!(e["verdict"], "confirmed", "{e:#}");
    assert_eq!(e["evidence"]["tcp_reply"], "tcp");
    assert_eq!(e["evidence"]["udp_reply"], "udp");

    // IP_LOCAL_PORT_RANGE arrived in Linux 6.3.
    let per_socket_range = kernel() >= (6, 3);
    let e = experiment(&r, "port-exhaustion");
    confirmed_unless(e, per_socket_range);
    if per_socket_range {
        let ev = &e["evidence"];
        assert_eq!(ev["range"]["how"], "IP_LOCAL_PORT_RANGE");
        assert_eq!(ev["stopped_by"]["errno"], "EADDRNOTAVAIL");
        assert_eq!(ev["ports_outside_range"], 0);
        assert!(ev["established"].as_u64().unwrap() <= ev["range"]["size"].as_u64().unwrap());
    }
    let e = experiment(&r, "bind-without-no-port");
    confirmed_unless(e, per_socket_range);
    if per_socket_range {
        let ev = &e["evidence"];
        let size = ev["range"]["size"].as_u64().unwrap();
        assert!(ev["bind_before_connect"]["established"].as_u64().unwrap() <= size);
        assert!(ev["bind_address_no_port"]["established"].as_u64().unwrap() > size);
        assert_eq!(ev["bind_address_no_port"]["stopped_by"]["errno"], "EADDRNOTAVAIL");
    }

    let e = experiment(&r, "privileged-ports");
    confirmed_unless(e, sysctl("net.ipv4.ip_unprivileged_port_start") > 0 && has_bind_service());
    if e["verdict"] == "confirmed" {
        assert_eq!(e["evidence"]["without_capability"]["bind"], "EACCES");
        assert_eq!(e["evidence"]["with_capability"]["bind"], "bound");
    }

    let e = experiment(&r, "fd-limit");
    assert_eq!(e["verdict"], "confirmed", "{e:#}");
    let ev = &e["evidence"];
    assert_eq!(ev["errno"], "EMFILE");
    assert_eq!(ev["opened_until_failure"], ev["expected_opened"]);
    assert!(ev["server_open"].as_u64().unwrap() > ev["nofile"].as_u64().unwrap());
}

/// 140,000 sockets twice and 100,000 once: about 9 s on a 2-core machine.
#[test]
fn past_65535_and_memory_match_this_kernel() {
    let names = ["server-past-65535", "client-past-65535", "memory-per-connection"];
    let r = prove(&names);
    for name in names {
        assert_eq!(experiment(&r, name)["verdict"], "confirmed", "{:#}", experiment(&r, name));
    }
    let ev = &experiment(&r, "client-past-65535")["evidence"];
    assert_eq!(ev["listed_established"], 70_000);
    let per_port = ev["per_port"].as_object().unwrap();
    assert_eq!(per_port.len(), 8);
    assert!(per_port.values().all(|n| n.as_u64().unwrap() > 0));
    let ratio = experiment(&r, "memory-per-connection")["evidence"]["ratio"].as_f64().unwrap();
    assert!((0.75..=1.25).contains(&ratio), "{ratio}");
}

#[test]
fn list_names_all_nine() {
    let out = tcpmax(&["prove", "--list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 9, "{text}");
    for name in ["four-tuple", "fd-limit", "memory-per-connection", "bind-without-no-port"] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} in {text}");
    }
}

#[test]
fn an_unknown_name_is_an_input_error() {
    let out = tcpmax(&["prove", "four-tuple", "no-such-claim"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-claim") && err.contains("port-exhaustion"), "{err}");
}
