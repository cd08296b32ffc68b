//! `serve`'s side ports (`--metrics`, `--agent`) against hostile peers
//! (#17, one slow peer holds a thread hostage): a client trickling a byte
//! every 1.5 s, idle connections and a flood of them. Each test syncs on
//! events (an answer read, the end of the process) with bounds far above
//! what the fixed server needs and far below what a hostage-taker costs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{LIMIT, Serve};

/// What a request may take before the test calls it blocked. A fixed side
/// port answers in milliseconds; the old one never answered while a
/// trickling client was attached, or took 25 s behind 50 idle ones.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The metrics address from serve's announce lines.
fn metrics_addr(srv: &Serve) -> SocketAddr {
    loop {
        let line = srv.stdout_rest.recv_timeout(LIMIT).expect("a metrics line");
        if let Some(url) = line.strip_prefix("metrics http://") {
            return url.trim_end_matches("/metrics").parse().unwrap();
        }
    }
}

/// The agent address from serve's announce lines.
fn agent_addr(srv: &Serve) -> SocketAddr {
    loop {
        let line = srv.stdout_rest.recv_timeout(LIMIT).expect("an agent line");
        if let Some(rest) = line.strip_prefix("agent ") {
            return rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    }
}

/// Sends `request`, half-closes, reads the whole answer; panics past `limit`.
fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> (String, Duration) {
    let began = Instant::now();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(limit)).unwrap();
    c.write_all(request).unwrap();
    let mut got = Vec::new();
    match c.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) => panic!("no answer within {limit:?} ({e}); got {:?}", String::from_utf8_lossy(&got)),
    }
    (String::from_utf8_lossy(&got).into_owned(), began.elapsed())
}

/// A client that sends the start of a request, then one byte every 1.5 s,
/// never finishing it; at most 40 bytes (a minute), until the server closes
/// it or `stop`. Its thread returns how long the server kept it.
struct Trickle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<Duration>>>,
}

impl Trickle {
    fn attach(addr: SocketAddr) -> Trickle {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let mut c = TcpStream::connect(addr).unwrap();
        let began = Instant::now();
        c.write_all(b"G").unwrap();
        let thread = std::thread::spawn(move || {
            let mut r = c.try_clone().unwrap();
            r.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
            for b in b"ET /metrics HTTP/1.1\r\nX-Slow: yyyyyyyyyyyyyyyyyy".iter().take(39) {
                let mut sink = [0u8; 4096];
                // The pause between bytes, spent waiting for the server to
                // close (a read of 0 or a reset ends the hostage).
                match r.read(&mut sink) {
                    Ok(0) => return Some(began.elapsed()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return Some(began.elapsed()),
                }
                if s.load(Ordering::Acquire) || c.write_all(&[*b]).is_err() {
                    return None;
                }
            }
            None
        });
        Trickle { stop, thread: Some(thread) }
    }

    /// How long the server kept the client, `None` if it never let go.
    fn held_for(mut self) -> Option<Duration> {
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[test]
fn a_trickling_client_neither_blocks_a_scrape_nor_is_kept() {
    let srv = Serve::start(&["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&srv);
    let slow = Trickle::attach(addr);
    // A tick: the old single thread has taken the slow client by now.
    srv.until("a tick", |_| true);
    let (answer, took) = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", ANSWER_WITHIN);
    eprintln!("scrape beside a trickling client answered in {took:?}");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("tcpmax_connections 0"), "{answer}");
    assert!(took < ANSWER_WITHIN, "{took:?}");
    // Its deadline runs from its start, whatever it trickles: it is let go.
    let held = slow.held_for().expect("the server closes a client that never finishes its request");
    eprintln!("trickling client closed after {held:?}");
}

#[test]
fn sigint_exits_with_a_trickling_metrics_client_attached() {
    let mut srv = Serve::start(&["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&srv);
    let _slow = Trickle::attach(addr);
    srv.until("a tick", |_| true);
    let stopped = srv.stop_within("-INT", Duration::from_secs(5));
    eprintln!("SIGINT to exit with a trickling metrics client: {:?}", stopped.took);
    assert_eq!(stopped.status.code(), Some(130));
    assert!(stopped.stdout.contains("served "), "the summary: {}", stopped.stdout);
}

#[test]
fn fifty_idle_agent_connections_do_not_delay_a_check() {
    let srv = Serve::start(&["--agent", "127.0.0.1:0"]);
    let agent = agent_addr(&srv);
    // 50 checkers that connect and then do nothing: never read, never close.
    let idle: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(agent).unwrap()).collect();
    let (line, took) = exchange(agent, b"", ANSWER_WITHIN);
    eprintln!("agent check behind 50 idle connections answered in {took:?}");
    assert!(line.starts_with("up ready 100%") && line.ends_with('\n'), "{line:?}");
    assert!(took < ANSWER_WITHIN, "{took:?}");
    drop(idle);
}

#[test]
fn an_agent_check_is_heard_through_a_flood() {
    let srv = Serve::start(&["--agent", "127.0.0.1:0"]);
    let agent = agent_addr(&srv);
    // A flood: idle connections opened as fast as one thread can and kept
    // open, more than the port takes at once (bounded: 600, or until the
    // checks are done). The checks begin once 200 are open or tried.
    let stop = Arc::new(AtomicBool::new(false));
    let (s, (tx, rx)) = (stop.clone(), std::sync::mpsc::channel());
    let flood = std::thread::spawn(move || {
        let mut held = Vec::new();
        for i in 0..600 {
            if i == 200 {
                let _ = tx.send(());
            }
            if s.load(Ordering::Acquire) {
                break;
            }
            // A jammed port stops answering SYNs: a connect may then hang.
            if let Ok(c) = TcpStream::connect_timeout(&agent, Duration::from_secs(1)) {
                held.push(c);
            }
        }
        held.len()
    });
    rx.recv_timeout(LIMIT * 10).expect("200 connections opened or tried");
    for _ in 0..5 {
        let (line, took) = exchange(agent, b"hello\n", ANSWER_WITHIN);
        assert!(line.starts_with("up ready 100%") && line.ends_with('\n'), "{line:?}");
        assert!(took < ANSWER_WITHIN, "{took:?}");
    }
    stop.store(true, Ordering::Release);
    let opened = flood.join().unwrap();
    eprintln!("5 agent checks heard through a flood of {opened} idle connections");
}

#[test]
fn metrics_answer_head_unknown_paths_and_garbage() {
    let srv = Serve::start(&["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&srv);
    let (get, _) = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", LIMIT);
    let (head, _) = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", LIMIT);
    let (get_head, body) = get.split_once("\r\n\r\n").unwrap();
    assert!(body.contains("# EOF"), "{get}");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD gets no body: {head}");
    let length = |h: &str| h.lines().find_map(|l| l.strip_prefix("Content-Length: ")).map(str::to_owned);
    assert!(length(&head).is_some() && length(get_head).is_some(), "{head}");

    let (missing, _) = exchange(addr, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", LIMIT);
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let (post, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", LIMIT);
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let (garbage, _) = exchange(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", LIMIT);
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    // A head that never ends is cut at the cap, answered, and closed.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(LIMIT)).unwrap();
    let big = format!("GET /metrics HTTP/1.1\r\nX-Big: {}", "a".repeat(64 << 10));
    let _ = c.write_all(big.as_bytes());
    let _ = c.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 431 "), "{got}");
}
