//! `tcpmax serve` driven as a binary, on real loopback sockets (port 0).
//! Tests wait on the server's own events: its announce lines on stdout and
//! its once-a-second status lines on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Instant;

use common::{LIMIT, Serve, fds_of};

fn rss_anon_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sockets in TIME_WAIT whose local port is `port`.
fn time_wait_on(port: u16) -> usize {
    let t = std::fs::read_to_string("/proc/net/tcp").unwrap();
    t.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            f[3] == "06" && local_port == Some(port)
        })
        .count()
}

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn echo_survives_partial_reads_and_writes() {
    let srv = Serve::start(&["--mode", "echo"]);
    let mut seed = 42;
    let data: Vec<u8> = (0..4 << 20).map(|_| xorshift(&mut seed) as u8).collect();
    let mut conn = TcpStream::connect(srv.addr).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let sent = data.clone();
    let w = std::thread::spawn(move || {
        let mut seed = 7;
        let mut off = 0;
        while off < sent.len() {
            let n = (1 + xorshift(&mut seed) % 9000) as usize;
            let end = (off + n).min(sent.len());
            writer.write_all(&sent[off..end]).unwrap();
            off = end;
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(data.len());
    let mut buf = [0u8; 777];
    loop {
        let n = conn.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    w.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echo returns the same bytes in order");
}

#[test]
fn backpressure_bounds_server_memory() {
    let srv = Serve::start(&["--mode", "echo"]);
    srv.until("a first status line", |_| true);
    let before = rss_anon_kib(srv.pid());
    let conn = TcpStream::connect(srv.addr).unwrap();
    conn.set_nonblocking(true).unwrap();
    let mut w = &conn;
    let chunk = vec![0x5au8; 64 * 1024];
    let mut sent = 0usize;
    // Send without ever reading until the status line shows the server
    // holding this connection back, the kernel buffers on both sides full.
    let mut blocked = false;
    let deadline = Instant::now() + LIMIT;
    while !blocked && Instant::now() < deadline {
        match w.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let line = srv.status.recv_timeout(LIMIT).unwrap();
                blocked = line.contains("backpressured 1 |");
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(blocked, "the server reports the connection as backpressured");
    let after = rss_anon_kib(srv.pid());
    assert!(sent > 1 << 20, "the kernel buffered {sent} bytes before pushing back");
    // The server holds at most one 16 KiB chunk for this peer, whatever it sent.
    assert!(after < before + 1024, "server anonymous RSS grew from {before} KiB to {after} KiB after {sent} bytes");

    // Reading drains everything in order, and the server resumes.
    conn.set_nonblocking(false).unwrap();
    let mut r = &conn;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0usize;
    while got < sent {
        let n = r.read(&mut buf).unwrap();
        assert!(buf[..n].iter().all(|&b| b == 0x5a));
        got += n;
    }
    assert_eq!(got, sent);
    srv.until("backpressure released", |l| l.contains("backpressured 0 |"));
}

#[test]
fn sigterm_stops_cleanly_with_exit_zero_and_a_valid_summary() {
    let json = std::env::temp_dir().join(format!("tcpmax-serve-summary-{}.json", std::process::id()));
    let srv = Serve::start(&["--json", json.to_str().unwrap()]);
    let _c = TcpStream::connect(srv.addr).unwrap();
    srv.until_conns(1);
    let (status, out) = srv.stop("-TERM");
    assert_eq!(status.code(), Some(0), "SIGTERM is the ordinary stop of a service");
    assert!(out.contains("accepted            1"), "{out}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    common::validate("serve", &summary);
    assert_eq!(summary["stopped_by"], "SIGTERM");
    assert_eq!(summary["totals"]["opened"], 1);
    assert_eq!(summary["totals"]["held_at_stop"], 1);
}

#[test]
fn sigint_closes_everything_and_exits_130() {
    let srv = Serve::start(&[]);
    let port = srv.addr.port();
    let conns: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(srv.addr).unwrap()).collect();
    srv.until_conns(100);
    let pid = srv.pid();
    let (status, out) = srv.stop("-INT");
    assert_eq!(status.code(), Some(130), "exit status {status:?}");
    assert!(out.contains("served"), "final summary printed: {out}");
    assert!(out.contains("accepted            100"), "{out}");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "no process left");
    for mut c in conns {
        let mut b = [0u8; 1];
        // Reset by the server: an error or end of stream, never a hang.
        c.set_read_timeout(Some(LIMIT)).unwrap();
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    }
    assert_eq!(time_wait_on(port), 0, "the server leaves no TIME_WAIT behind");
}

#[test]
fn killing_the_supervisor_kills_every_shard() {
    let srv = Serve::start(&["--shards", "4"]);
    let addr = srv.addr;
    let mut c = TcpStream::connect(addr).unwrap();
    srv.until_conns(1);
    let (status, _) = srv.stop("-KILL");
    assert!(!status.success());
    // No shard survives to accept or hold anything.
    assert!(TcpStream::connect(addr).is_err(), "nothing listens any more");
    let mut b = [0u8; 1];
    c.set_read_timeout(Some(LIMIT)).unwrap();
    assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
}

#[test]
fn hostile_peers_leave_no_descriptor_behind() {
    let srv = Serve::start(&["--mode", "echo"]);
    srv.until("a first status line", |_| true);
    let baseline = fds_of(srv.pid());

    // Garbage, then gone.
    let mut seed = 3;
    let garbage: Vec<u8> = (0..64 * 1024).map(|_| xorshift(&mut seed) as u8).collect();
    TcpStream::connect(srv.addr).unwrap().write_all(&garbage).unwrap();
    // Half-close: the echo still comes back, then the server closes.
    let mut half = TcpStream::connect(srv.addr).unwrap();
    half.write_all(b"abc").unwrap();
    half.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    half.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"abc");
    // RST instead of FIN.
    for _ in 0..50 {
        let mut c = TcpStream::connect(srv.addr).unwrap();
        c.write_all(b"x").ok();
        socket2::SockRef::from(&c).set_linger(Some(std::time::Duration::ZERO)).unwrap();
    }
    // A flood of connect-then-close.
    for _ in 0..2000 {
        drop(TcpStream::connect(srv.addr).unwrap());
    }
    // A peer that never reads, then vanishes.
    let vanish = TcpStream::connect(srv.addr).unwrap();
    vanish.set_nonblocking(true).unwrap();
    let chunk = vec![1u8; 64 * 1024];
    for _ in 0..256 {
        if (&vanish).write(&chunk).is_err() {
            break;
        }
    }
    drop(vanish);

    let line = srv.until_conns(0);
    assert!(line.contains("errors:"), "{line}");
    assert_eq!(fds_of(srv.pid()), baseline, "descriptors back to the baseline");
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["serve", "--listen", &addr.to_string(), "--shards", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr.to_string()), "{err}");
    assert!(err.contains("EADDRINUSE"), "{err}");
}

#[test]
fn tcp_and_udp_share_one_port_number() {
    let srv = Serve::start(&["--udp"]);
    let mut t = TcpStream::connect(srv.addr).unwrap();
    t.write_all(b"tcp").unwrap();
    let mut b = [0u8; 3];
    t.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"tcp");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(LIMIT)).unwrap();
    u.send_to(b"udp", srv.addr).unwrap();
    let mut b = [0u8; 16];
    let (n, from) = u.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"udp");
    assert_eq!(from, srv.addr, "the same IP and port number, another protocol");
}

#[test]
fn max_conns_refuses_and_counts() {
    let srv = Serve::start(&["--max-conns", "5"]);
    let mut conns: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(srv.addr).unwrap()).collect();
    let line = srv.until("3 refusals", |l| l.contains("refused 3 max-conns"));
    assert!(line.contains("conns 5 |"), "{line}");
    // Exactly three of the eight were reset; the others are held open.
    let mut reset = 0;
    for c in &mut conns {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => reset += 1,
        }
    }
    assert_eq!(reset, 3);
}

#[test]
fn metrics_serve_prometheus_text() {
    let srv = Serve::start(&["--metrics", "127.0.0.1:0"]);
    let metrics_line = srv.stdout_rest.recv_timeout(LIMIT).unwrap();
    let url = metrics_line.strip_prefix("metrics http://").expect("a metrics line");
    let addr = url.trim_end_matches("/metrics").to_string();
    let _held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(srv.addr).unwrap()).collect();
    srv.until_conns(3);
    // The status line and the metrics are refreshed on the same tick.
    srv.until("the next tick", |_| true);
    let mut c = TcpStream::connect(&addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("tcpmax_connections 3"), "{body}");
    assert!(body.contains("tcpmax_accepted_total 3"), "{body}");
    assert!(body.contains("# EOF"), "{body}");
}

#[test]
fn memory_watermark_refuses_and_counts() {
    // 1% of memory is always exceeded: every connection is refused.
    let srv = Serve::start(&["--max-memory", "1%"]);
    srv.until("the first tick, which reads memory", |_| true);
    let mut conns: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(srv.addr).unwrap()).collect();
    let line = srv.until("5 refusals", |l| l.contains("0 max-conns, 5 memory"));
    assert!(line.contains("conns 0 |"), "{line}");
    for c in &mut conns {
        let mut b = [0u8; 1];
        c.set_read_timeout(Some(LIMIT)).unwrap();
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)), "refused with a reset");
    }
}

/// Reads until the peer closes (or resets); what came, bounded by LIMIT.
fn read_to_close(conn: &mut TcpStream) -> Vec<u8> {
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("no close within {LIMIT:?}: {e}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

const KEY_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n";

/// #17: a stalled upgrade was held forever, a 9 KB request in one read was
/// upgraded, and an LF-only request was never answered.
#[test]
fn ws_upgrades_are_answered_or_closed_whatever_the_segmentation() {
    let srv = Serve::start(&["--mode", "ws"]);
    // Half a request: 408 once the deadline passes, then the close.
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let got = read_to_close(&mut c);
    assert!(got.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&got));
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "not before the deadline");
    // A 9 KB header block in one write: refused, 431.
    let mut c = TcpStream::connect(srv.addr).unwrap();
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\n{KEY_HEADERS}X-Pad: {}\r\n\r\n", "a".repeat(9000));
    c.write_all(big.as_bytes()).unwrap();
    let got = read_to_close(&mut c);
    assert!(got.starts_with(b"HTTP/1.1 431"), "{}", String::from_utf8_lossy(&got));
    // LF-only line ends: answered at once.
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.write_all(format!("GET / HTTP/1.1\nHost: x\n{}\n", KEY_HEADERS.replace("\r\n", "\n")).as_bytes()).unwrap();
    let mut buf = [0u8; 12];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101");
    srv.until("the PARTIAL_TIMEOUT counted", |l| l.contains("PARTIAL_TIMEOUT 1"));
}

const MQTT_CONNECT: [u8; 14] = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0];

/// CONNECT then all but the last byte of a 65,000-byte PUBLISH.
fn mqtt_partial_publish() -> Vec<u8> {
    let total = 65_000;
    let mut p = MQTT_CONNECT.to_vec();
    p.push(0x30);
    let body = total - 4;
    p.extend_from_slice(&[(body % 128) as u8 | 0x80, ((body / 128) % 128) as u8 | 0x80, (body / 16384) as u8]);
    p.extend_from_slice(&[0, 1, b't']);
    p.resize(MQTT_CONNECT.len() + total - 1, b'x');
    p
}

/// #17: a burst of clients that each leave a partial 65 KB PUBLISH and
/// close pinned the memory and left a `--memory-budget` backend drained,
/// refusing everyone, for minutes. Now the input budget closes the
/// offenders past it (not the healthy session), and once they are gone
/// RSS is back within 10% of idle and the agent says up within 10 s.
#[test]
fn a_partial_packet_burst_closes_offenders_and_memory_comes_back() {
    let srv = Serve::start(&["--mode", "mqtt", "--memory-budget", "64MiB", "--agent", "127.0.0.1:0"]);
    srv.until("a second status line", |l| l.contains("[    2s]"));
    let idle = rss_anon_kib(srv.pid());
    let mut healthy = TcpStream::connect(srv.addr).unwrap();
    healthy.write_all(&MQTT_CONNECT).unwrap();
    let mut connack = [0u8; 4];
    healthy.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);

    let burst = mqtt_partial_publish();
    let offenders: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut c = TcpStream::connect(srv.addr).unwrap();
            // The server may close it mid-write: past the input budget.
            let _ = c.write_all(&burst);
            c
        })
        .collect();
    srv.until("offenders past the budget closed", |l| l.contains("PARTIAL_BUDGET"));
    // The healthy session is still served.
    healthy.write_all(&[0xC0, 0]).unwrap();
    let mut pingresp = [0u8; 2];
    healthy.read_exact(&mut pingresp).unwrap();
    assert_eq!(pingresp, [0xD0, 0]);

    drop(offenders);
    let gone = Instant::now();
    srv.until_within("memory back and the agent up", LIMIT, |l| {
        l.contains("conns 1 |") && l.contains("agent up") && rss_anon_kib(srv.pid()) * 10 <= idle * 11
    });
    assert!(gone.elapsed() < std::time::Duration::from_secs(10), "took {:?}", gone.elapsed());
}

/// #17: `--memory-budget 1B` was accepted: every connection refused.
#[test]
fn a_memory_budget_below_an_idle_serve_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpmax"))
        .args(["serve", "--listen", "127.0.0.1:0", "--memory-budget", "1B", "--duration", "5s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("idle serve needs") && err.contains("fix: give --memory-budget"), "{err}");
}

/// #18: after a clean `load` run (its default close is a reset) the summary
/// counts the resets as closes by the peer, not as errors, and prints no
/// agent line without `--agent`.
#[test]
fn a_clean_load_run_leaves_closes_not_errors() {
    let json = std::env::temp_dir().join(format!("tcpmax-serve-resets-{}.json", std::process::id()));
    let srv = Serve::start(&["--json", json.to_str().unwrap()]);
    let target = srv.addr.to_string();
    let out = common::tcpmax(&["load", &target, "-c", "2k", "--hold", "1s", "--ping-rate", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every reset has landed once the server holds none.
    srv.until("the resets handled", |l| l.contains("conns 0 |") && l.contains("closed 2,000 |"));
    let (status, text) = srv.stop("-TERM");
    assert_eq!(status.code(), Some(0));
    assert!(text.contains("  closed              2,000\n    by peer (RST)     2,000\n"), "{text}");
    assert!(text.contains("  errors              none\n"), "{text}");
    assert!(!text.contains("ECONNRESET") && !text.contains("  agent "), "{text}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    common::validate("serve", &summary);
    assert_eq!(summary["closed_by_peer_reset"], 2_000);
    assert_eq!(summary["totals"]["errors"], serde_json::json!({}));
}
