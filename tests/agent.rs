//! `serve --agent` driven with HAProxy's agent-check protocol (connect to
//! the agent port, read one line) while real loopback connections fill a
//! small `--memory-budget`: the weight falls, `drain` appears at the high
//! mark, the budget refuses, and the weight comes back below the low mark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};

use common::{LIMIT, Serve};

/// One agent check: the whole reply.
fn check(agent: SocketAddr) -> String {
    let mut c = TcpStream::connect(agent).unwrap();
    c.set_read_timeout(Some(LIMIT)).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

/// The budget's share in use from a status line (`... budget (57%) | ...`).
fn percent(status: &str) -> u64 {
    let part = status.split(" | ").find(|p| p.starts_with("mem ")).expect("a mem part");
    let p = part.rsplit_once('(').unwrap().1.trim_end_matches("%)");
    p.parse().unwrap()
}

fn conns_of(status: &str) -> u64 {
    let part = status.split(" | ").find_map(|p| p.split("conns ").nth(1)).unwrap();
    part.replace(',', "").parse().unwrap()
}

fn refused_memory(status: &str) -> u64 {
    let part = status.split(" | ").find(|p| p.starts_with("refused ")).unwrap();
    let n = part.split(", ").nth(1).unwrap().trim_end_matches(" memory");
    n.replace(',', "").parse().unwrap()
}

/// The weight of an `up ready W% maxconn:N` reply, `None` for `drain`.
fn weight(reply: &str) -> Option<u64> {
    let words: Vec<&str> = reply.split_whitespace().collect();
    if words[0] == "drain" {
        return None;
    }
    assert_eq!(&words[..2], ["up", "ready"], "{reply:?}");
    Some(words[2].trim_end_matches('%').parse().unwrap())
}

fn maxconn(reply: &str) -> u64 {
    reply.split_whitespace().find_map(|w| w.strip_prefix("maxconn:")).unwrap().parse().unwrap()
}

#[test]
fn weight_falls_drain_at_the_high_mark_and_back_below_the_low_mark() {
    // Marks 30%, 50%, 70% of an 8 MiB footprint: about 600, 1,000 and
    // 1,400 sockets at ~4 KiB each.
    let srv = Serve::start(&[
        "--mode",
        "silent",
        "--shards",
        "1",
        "--memory-budget",
        "8MiB",
        "--agent",
        "127.0.0.1:0",
        "--agent-marks",
        "30%,50%,70%",
        // No look-ahead: this test follows the marks on what is held.
        "--agent-reaction",
        "0s",
    ]);
    let agent: SocketAddr = loop {
        let line = srv.stdout_rest.recv_timeout(LIMIT).expect("an agent line");
        if let Some(rest) = line.strip_prefix("agent ") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        if line.starts_with("headroom:") {
            assert!(line.contains("budget 8.0 MiB"), "{line}");
        }
    };
    let first = check(agent);
    assert!(first.starts_with("up ready 100% maxconn:"), "{first:?}");
    assert!(first.ends_with('\n') && first.matches('\n').count() == 1);

    // Rising: 100 connections at a time, each step synchronised on the
    // status line that counts them.
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut drained_at = None;
    while conns.len() < 4_000 {
        for _ in 0..100 {
            conns.push(TcpStream::connect(srv.addr).unwrap());
        }
        let want = format!("conns {} |", common::group(conns.len() as u64));
        let status = srv.until(&want, |l| l.contains(&want) || refused_memory(l) > 0);
        let reply = check(agent);
        let pct = percent(&status);
        if refused_memory(&status) > 0 {
            // The budget itself refuses: the footprint reached it. The
            // server accepts in order, so the refused ones are the last.
            assert!(pct >= 95, "refused at {pct}%: {status}");
            let mut held = conns_of(&status);
            loop {
                let next = srv.until("another status line", |_| true);
                if conns_of(&next) == held {
                    break;
                }
                held = conns_of(&next);
            }
            conns.truncate(held as usize);
            break;
        }
        assert!(maxconn(&reply) >= conns.len() as u64, "{reply:?} with {} held", conns.len());
        match weight(&reply) {
            Some(w) => {
                assert!(drained_at.is_none(), "weight {w} after drain, before the low mark: {reply:?}");
                if pct < 30 {
                    assert_eq!(w, 100, "{status}");
                }
                assert!(pct < 71, "not drained at {pct}%: {reply:?}");
            }
            None => {
                assert!(pct >= 69, "drained early at {pct}%: {status}");
                drained_at.get_or_insert(conns.len());
            }
        }
        seen.push((pct, reply));
    }
    let drained_at = drained_at.expect("drain appeared before the budget");
    let weights: Vec<u64> = seen.iter().filter_map(|(_, r)| weight(r)).collect();
    assert!(weights.windows(2).all(|w| w[1] <= w[0]), "the weight never rises with the footprint: {weights:?}");
    assert!(weights.iter().any(|&w| w > 10 && w < 100), "the weight fell in steps before drain: {seen:#?}");
    assert!(drained_at < conns.len(), "drain came before the budget refused");

    // Falling: close connections; drain holds above the low mark, then the
    // weight comes back.
    let mut back = None;
    while !conns.is_empty() {
        let close = conns.len().min(100);
        conns.truncate(conns.len() - close);
        let want = format!("conns {} |", common::group(conns.len() as u64));
        let status = srv.until(&want, |l| l.contains(&want));
        let pct = percent(&status);
        let reply = check(agent);
        match weight(&reply) {
            None => assert!(pct >= 49, "still draining at {pct}%, below the low mark: {status}"),
            Some(w) => {
                assert!(pct < 51, "admitting again at {pct}%, above the low mark: {status}");
                back = Some((pct, w));
                break;
            }
        }
    }
    let (pct, w) = back.expect("the weight came back below the low mark");
    assert!(w < 100 || pct <= 30, "ready again at {pct}% with weight {w}");
}
