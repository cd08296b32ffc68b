//! What one TLS 1.3 connection at rest holds in user memory, each side:
//! the breakdown behind `bench --tls`'s figure. Sessions are handshaken in
//! memory, a heartbeat goes each way, then the growth of this process's
//! anonymous RSS is divided by their number. Run with `--nocapture` to see
//! the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tcpmax::proto::tls::{self, Session, Trust};

fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn handshake(c: &mut Session, s: &mut Session) {
    let (mut wire, mut plain) = (Vec::new(), Vec::new());
    c.feed(&mut [], &mut plain, &mut wire).unwrap();
    for _ in 0..4 {
        if wire.is_empty() {
            break;
        }
        let mut back = Vec::new();
        let p = s.feed(&mut wire, &mut plain, &mut back).unwrap();
        assert_eq!(p.used, wire.len());
        wire.clear();
        if !back.is_empty() {
            c.feed(&mut back, &mut plain, &mut wire).unwrap();
        }
    }
    // One heartbeat each way, as the engine does at rest.
    let mut w = Vec::new();
    c.send(b"0123456789abcdef", &mut w).unwrap();
    s.feed(&mut w, &mut plain, &mut Vec::new()).unwrap();
    let mut w = Vec::new();
    s.send(b"0123456789abcdef", &mut w).unwrap();
    c.feed(&mut w, &mut plain, &mut Vec::new()).unwrap();
    assert_eq!(plain.len(), 32);
}

#[test]
fn a_tls_connection_at_rest() {
    let (cert, key, _, _) = tls::self_signed().unwrap();
    let server_cfg = tls::server_config(vec![cert.clone()], key, 0).unwrap();
    let client_cfg = tls::client_setup(Trust::Roots(vec![cert]), "localhost", &[], false).unwrap();
    const N: usize = 5_000;
    let mut clients = Vec::with_capacity(N);
    let mut pairs = Vec::with_capacity(N);
    // Clients alone: each server is dropped once its handshake is done.
    let r0 = rss_anon();
    for _ in 0..N {
        let mut c = Box::new(Session::client(&client_cfg).unwrap());
        let mut s = Box::new(Session::server(&server_cfg).unwrap());
        handshake(&mut c, &mut s);
        clients.push(c);
    }
    let client = (rss_anon() - r0) as f64 / N as f64;
    // Both ends.
    let r1 = rss_anon();
    for _ in 0..N {
        let mut c = Box::new(Session::client(&client_cfg).unwrap());
        let mut s = Box::new(Session::server(&server_cfg).unwrap());
        handshake(&mut c, &mut s);
        pairs.push((c, s));
    }
    let both = (rss_anon() - r1) as f64 / N as f64;
    println!(
        "tls 1.3 at rest, per connection: client {client:.0} B, server {:.0} B, both {both:.0} B \
         (each side: a {} B session inline, traffic secrets and sequence numbers, and allocator slack)",
        both - client,
        std::mem::size_of::<Session>()
    );
    // The goal is 4 KiB for both ends, sockets' user-space records included.
    assert!(both < 1024.0 && client > 0.0, "{both}");
}
