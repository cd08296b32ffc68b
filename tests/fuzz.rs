//! Fuzz targets: every parser of bytes from outside, fed hostile input.
//! None may panic or hang; the machines must come to the same outcome
//! however their input is cut into reads; the report readers may hold at
//! most [`kit::ALLOC_PER_BYTE`] times their input plus a constant.
//!
//! Each target is an ordinary test on bolero: `cargo test` replays its
//! committed seeds (`tests/__fuzz__/<target>/corpus/`) and then random
//! inputs for [`kit::TIME`]. Longer runs, and libFuzzer on a nightly
//! toolchain: docs/fuzzing.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_kit;

use std::net::SocketAddr;
use std::sync::OnceLock;

use bolero::check;
use fuzz_kit as kit;
use tcpmax::proto::{mqtt, tls::Session, ws};

macro_rules! target {
    ($name:literal) => {{
        kit::guard();
        check!(name = $name).with_test_time(kit::TIME).with_shrink_time(kit::SHRINK)
    }};
}

#[test]
fn ws_server() {
    target!("ws_server").for_each(|input: &[u8]| {
        for v in kit::variants("ws_server", input) {
            kit::machine(|| ws::Server, ws::server_state::UPGRADE, &v);
        }
    });
}

#[test]
fn ws_server_open() {
    // Frames only, after an upgrade: most random bytes never pass one.
    target!("ws_server_open").for_each(|input: &[u8]| {
        for v in kit::variants("ws_server_open", input) {
            kit::machine(|| ws::Server, ws::server_state::OPEN, &v);
        }
    });
}

#[test]
fn ws_client() {
    let make = || ws::Client { key: kit::WS_KEY, mask_seed: 7 };
    target!("ws_client").for_each(|input: &[u8]| {
        for v in kit::variants("ws_client", input) {
            kit::machine(make, ws::client_state::HANDSHAKE, &v);
            kit::machine(make, ws::client_state::OPEN, &v);
        }
    });
}

/// The HTTP upgrade request alone, whole and cut into reads.
#[test]
fn ws_upgrade() {
    target!("ws_upgrade").with_max_len(ws::MAX_HEADER).for_each(|input: &[u8]| {
        for v in kit::variants("ws_upgrade", input) {
            kit::machine(|| ws::Server, ws::server_state::UPGRADE, &v);
        }
    });
}

/// A header block (the upgrade request, the 101 answer) is at most
/// [`ws::MAX_HEADER`] bytes however it arrives: in one read too.
#[test]
fn ws_header_cap() {
    let end = |v: &[u8]| v.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    target!("ws_header_cap").with_max_len(3 * ws::MAX_HEADER).for_each(|input: &[u8]| {
        for v in kit::variants("ws_header_cap", input) {
            let server = kit::feed_in(&mut ws::Server, ws::server_state::UPGRADE, &v, &[]);
            let mut client = ws::Client { key: kit::WS_KEY, mask_seed: 7 };
            let client = kit::feed_in(&mut client, ws::client_state::HANDSHAKE, &v, &[]);
            for (side, o) in [("server", server), ("client", client)] {
                if let (true, Some(n)) = (o.events.contains(&tcpmax::proto::Event::Ready), end(&v)) {
                    assert!(n <= ws::MAX_HEADER, "the {side} took a header block of {n} bytes");
                }
            }
        }
    });
}

#[test]
fn mqtt_server() {
    target!("mqtt_server").for_each(|input: &[u8]| {
        for v in kit::variants("mqtt_server", input) {
            kit::machine(|| mqtt::Server, mqtt::server_state::AWAIT_CONNECT, &v);
        }
    });
}

#[test]
fn mqtt_client() {
    target!("mqtt_client").for_each(|input: &[u8]| {
        for v in kit::variants("mqtt_client", input) {
            kit::machine(|| mqtt::Client { subscribe: None }, mqtt::client_state::CONNECTING, &v);
            kit::machine(|| mqtt::Client { subscribe: Some("t/#") }, mqtt::client_state::CONNECTING, &v);
            kit::machine(|| mqtt::Client { subscribe: None }, mqtt::client_state::OPEN, &v);
        }
    });
}

/// A TLS server fed a client's first flight (the seeds: ClientHellos from
/// rustls), whole and cut into reads.
#[test]
fn tls_server() {
    target!("tls_server").for_each(|input: &[u8]| {
        let pki = kit::tls::pki();
        for v in kit::variants("tls_server", input) {
            for cuts in kit::cuttings(&v).into_iter().take(3) {
                kit::tls::feed_in(&mut Session::server(&pki.server).unwrap(), &v, &cuts);
            }
        }
    });
}

/// A TLS client that sent its ClientHello, fed what a server might
/// answer: the input, a mutated seed, and the real answer of a server to
/// this very client, mutated (its ServerHello is in the clear).
#[test]
fn tls_client() {
    target!("tls_client").for_each(|input: &[u8]| {
        let pki = kit::tls::pki();
        let hello = |c: &mut Session| {
            let mut hello = Vec::new();
            c.feed(&mut [], &mut Vec::new(), &mut hello).unwrap();
            hello
        };
        for v in kit::variants("tls_client", input) {
            for cuts in kit::cuttings(&v).into_iter().take(3) {
                let mut c = Session::client(&pki.client).unwrap();
                hello(&mut c);
                kit::tls::feed_in(&mut c, &v, &cuts);
            }
        }
        let mut c = Session::client(&pki.client).unwrap();
        let mut flight = Vec::new();
        let mut s = Session::server(&pki.server).unwrap();
        s.feed(&mut hello(&mut c), &mut Vec::new(), &mut flight).unwrap();
        kit::tls::feed_in(&mut c, &kit::mutate(&flight, input), &[]);
    });
}

/// The record layer at rest (the keys only): segments of the input are
/// raw bytes or real records the peer seals, so both the header checks and
/// what follows decryption are reached.
#[test]
fn tls_records() {
    target!("tls_records").for_each(|input: &[u8]| {
        let mut cuttings = None;
        for i in 0..3 {
            let (mut c, mut s) = kit::tls::compact_pair();
            let wire = kit::tls::records(&mut c, input);
            let cuts = cuttings.get_or_insert_with(|| kit::cuttings(&wire));
            let Some(cuts) = cuts.get(i) else { break };
            kit::tls::feed_in(&mut s, &wire, cuts);
        }
    });
}

/// The bare TCP ping frames, any split.
#[test]
fn ping_frames() {
    use tcpmax::engine::frame::{PING_LEN, Partial};
    target!("ping_frames").for_each(|input: &[u8]| {
        let mut whole = (Partial::default(), Vec::new());
        let bad = whole.0.feed(input, |p| whole.1.push(p));
        assert_eq!(whole.1.len() + bad, input.len() / PING_LEN);
        for cuts in kit::cuttings(input) {
            let (mut part, mut got, mut bad2, mut from) = (Partial::default(), Vec::new(), 0, 0);
            for &to in cuts.iter().chain(std::iter::once(&input.len())) {
                bad2 += part.feed(&input[from..to], |p| got.push(p));
                from = to;
            }
            assert_eq!((&got, bad2), (&whole.1, bad));
        }
    });
}

/// The /metrics request parser and the agent port's reader, as pure
/// functions: a head that cannot fit is refused, never waited for; every
/// request gets a response; more bytes never turn a verdict back into
/// "wait" (so any segmentation gets the same answer).
#[test]
fn side_port_requests() {
    use tcpmax::serve::agent_port::{Heard, MAX_SEND, heard};
    use tcpmax::serve::metrics::{MAX_REQUEST, parse_request, response};
    target!("side_port_requests").with_max_len(2 * MAX_REQUEST).for_each(|input: &[u8]| {
        let verdict = parse_request(input);
        if input.len() >= MAX_REQUEST {
            assert!(verdict.is_some(), "{} bytes without a verdict", input.len());
        }
        if let Some(req) = verdict {
            let page = response(req, "x 1\n");
            assert!(page.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&page));
            let mut longer = input.to_vec();
            longer.extend_from_slice(b"\r\n\r\nmore");
            assert_eq!(parse_request(&longer), Some(req), "more bytes changed the verdict");
        }
        let h = heard(input);
        if input.len() >= MAX_SEND {
            assert_ne!(h, Heard::More, "{} bytes and still waiting", input.len());
        }
    });
}

/// The metrics page reads a request head, whatever it is: every request
/// gets the page or a closed connection, the server never stops answering.
#[test]
fn metrics_request() {
    use tcpmax::serve::metrics::{Metrics, MetricsServer};
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    let addr = *SERVER.get_or_init(|| {
        let s = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Metrics::new(false)).unwrap();
        let addr = s.addr();
        std::mem::forget(s); // served until the process ends
        addr
    });
    target!("metrics_request").with_iterations(kit::SOCKET_INPUTS).for_each(|input: &[u8]| {
        let got = kit::port::exchange(addr, input);
        let answers: [&[u8]; 5] =
            [b"HTTP/1.1 200 ", b"HTTP/1.1 400 ", b"HTTP/1.1 404 ", b"HTTP/1.1 405 ", b"HTTP/1.1 431 "];
        assert!(
            got.is_empty() || answers.iter().any(|a| got.starts_with(a)),
            "answer {:?}",
            String::from_utf8_lossy(&got)
        );
        let page = kit::port::exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(page.starts_with(b"HTTP/1.1 200 OK\r\n"), "the server stopped answering");
    });
}

/// The agent-check port answers its line to any checker, whatever the
/// checker sends first (`agent-send`), and goes on answering.
#[test]
fn agent_port_input() {
    use tcpmax::serve::agent_port::AgentPort;
    const LINE: &str = "up ready 100% maxconn:5\n";
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    let addr = *SERVER.get_or_init(|| {
        let p = AgentPort::start("127.0.0.1:0".parse().unwrap(), LINE.into()).unwrap();
        let addr = p.addr();
        std::mem::forget(p); // served until the process ends
        addr
    });
    target!("agent_port_input").with_iterations(kit::SOCKET_INPUTS).for_each(|input: &[u8]| {
        assert_eq!(kit::port::exchange(addr, input), LINE.as_bytes());
    });
}

/// `report` reads any JSON report; heap bounded by the file's size.
#[test]
fn report_input() {
    target!("report_input").for_each(|input: &[u8]| {
        for v in kit::variants("report_input", input) {
            let _ = kit::bounded("report input", v.len(), || {
                tcpmax::report::input::parse("r.json", "r".into(), &v).map(|r| r.peak())
            });
        }
    });
}

/// `merge` reads an agent's load report; heap bounded by the file's size.
#[test]
fn merge_input() {
    target!("merge_input").for_each(|input: &[u8]| {
        for v in kit::variants("merge_input", input) {
            let _ = kit::bounded("merge input", v.len(), || {
                tcpmax::merge::input::parse("a.json", &v).map(|p| p.connect_us.len())
            });
        }
    });
}

/// A serialized histogram (V2, or V2 compressed: cookie 0x1c849314 and
/// zlib) as a report carries it, in base64; heap bounded by the text.
#[test]
fn histogram() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    target!("histogram").for_each(|input: &[u8]| {
        for v in kit::variants("histogram", input) {
            let text = STANDARD.encode(&v);
            let _ = kit::bounded("histogram", text.len(), || tcpmax::load::hist::decode(&text).map(|h| h.len()));
        }
        let raw = String::from_utf8_lossy(input);
        let _ = kit::bounded("histogram text", raw.len(), || tcpmax::load::hist::decode(&raw).map(|h| h.len()));
    });
}

/// The units of the command line (`10k`, `30s`, `64KiB`, `85%`) and the
/// other value parsers of flags that take no host name (a host name would
/// be resolved): none panics, every value accepted is within its bounds.
#[test]
fn units() {
    target!("units").for_each(|input: &[u8]| {
        kit::variants("units", input).iter().for_each(|v| units_of(v));
    });
}

fn units_of(input: &[u8]) {
    use tcpmax::units::{self, CountOrPercent, MemoryLimit};
    {
        let s = String::from_utf8_lossy(input);
        let _ = units::parse_count(&s);
        if let Ok(n) = units::parse_positive_count(&s) {
            assert!((1..=units::MAX_COUNT).contains(&n), "{s:?} -> {n}");
        }
        if let Ok(d) = units::parse_duration(&s) {
            assert!(d <= units::MAX_DURATION, "{s:?} -> {d:?}");
        }
        let _ = units::parse_bytes(&s);
        if let Ok(MemoryLimit::Percent(p)) = units::parse_memory_limit(&s) {
            assert!(p > 0.0 && p <= 100.0, "{s:?} -> {p}");
        }
        if let Ok(CountOrPercent::Percent(p)) = units::parse_count_or_percent(&s) {
            assert!((0.0..=100.0).contains(&p), "{s:?} -> {p}");
        }
        if let Ok(m) = tcpmax::serve::agent::parse_marks(&s) {
            assert!(m.fall <= m.low && m.low <= m.high, "{s:?} -> {m:?}");
        }
        let _ = ws::parse_header(&s);
        let _ = tcpmax::load::bytes::parse_escaped(&s);
        let _ = tcpmax::calc::parse_port_range(&s);
        let _ = tcpmax::load::agent::parse_start_at(&s);
        let _ = tcpmax::proto::tls::parse_cert_source(&s);
    }
}

/// What other processes print and `cluster` and `prove` read back: serve
/// and load status lines, HAProxy's `show stat` CSV, /proc/net/tcp and
/// /proc/net/netstat. None may panic.
#[test]
fn status_lines() {
    use tcpmax::cluster::live;
    target!("status_lines").for_each(|input: &[u8]| {
        for v in kit::variants("status_lines", input) {
            let text = String::from_utf8_lossy(&v);
            for line in text.lines() {
                let _ = live::parse_backend(line);
                let _ = live::parse_client(line);
            }
            let _ = live::parse_stat(&text);
            let _ = live::Overflows::parse(&text);
            let _ = tcpmax::prove::kit::parse_rows(&text);
        }
    });
}

/// Writes the seeds that are made by code (the WebSocket, MQTT and TLS
/// flights, histograms) into `tests/__fuzz__/*/corpus/`:
/// `cargo test --release --test fuzz write_seeds -- --ignored`.
#[test]
#[ignore = "writes the committed seed files; run on purpose"]
fn write_seeds() {
    kit::seeds::write_all();
}
