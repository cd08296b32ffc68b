#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The first limit of a run named from the kernel's drop counters (#17):
//! a connect timeout put down to the limit that dropped the SYNs, not "a
//! full SYN queue or accept backlog, a full conntrack table, or a firewall".

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use serde_json::Value;
use socket2::{Domain, Socket, Type};

/// A full accept backlog: a listener with a backlog of 1 that never
/// accepts. Its queue takes two connections; the kernel drops the SYNs of
/// the others (ListenOverflows, ListenDrops) until their connects time out.
#[test]
fn a_full_accept_backlog_is_named() {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into()).unwrap();
    listener.listen(1).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["load", &addr.to_string(), "-c", "8", "--connect-timeout", "1s", "--hold", "0s", "--json", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "goal not met: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    let timeout = errors.iter().find(|e| e["errno"] == "ETIMEDOUT").unwrap_or_else(|| panic!("{errors:#?}"));
    let meaning = timeout["meaning"].as_str().unwrap();
    assert!(meaning.starts_with("the listener's accept backlog was full"), "{meaning}");
    assert!(meaning.contains("ListenOverflows +"), "{meaning}");
    assert!(!meaning.contains("or a firewall"), "{meaning}");
    assert!(timeout["fix"].as_str().unwrap().contains("somaxconn"), "{timeout:#}");
    drop(listener);
}
