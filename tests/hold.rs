//! Holding connections past one fd table: the server and the client engine,
//! in process, on real loopback sockets.
//!
//! The test process lowers its own descriptor limit to [`TABLE`] before
//! either test runs, so 50,000 connections need many fd tables on each side
//! on any host, whatever its own limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tcpmax::engine::client::{Client, ClientConfig, CloseMode, cross};
use tcpmax::engine::sizing;
use tcpmax::serve::{Mode, Server, ServerConfig};

/// Descriptors per fd table in this test process.
const TABLE: u64 = 4096;

/// Lowers this process's `RLIMIT_NOFILE` to [`TABLE`], once, before either
/// test opens anything (both run in this process); returns the limit.
fn table() -> tcpmax::machine::Rlimit {
    static LIMIT: OnceLock<tcpmax::machine::Rlimit> = OnceLock::new();
    *LIMIT.get_or_init(|| tcpmax::machine::lower_nofile(TABLE).expect("lowering RLIMIT_NOFILE"))
}

fn server(shards: usize, mode: Mode) -> Server {
    Server::start(&ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        mode,
        udp: false,
        max_conns: None,
        max_memory: None,
        shards,
        elastic: true,
        backlog: 4096,
    })
    .expect("server starts")
}

/// Polls the server's counters (each poll waits for a shard report: an
/// event, not a sleep) until `pred` holds or `limit` passes.
fn server_until(s: &mut Server, limit: Duration, pred: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let open = s.poll_wait(Duration::from_millis(300)).open;
        if pred(open) || Instant::now() >= deadline {
            return open;
        }
    }
}

fn sources(n: u8) -> Vec<IpAddr> {
    (0..n).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, 10 + i))).collect()
}

fn hold(count: u64, ping_rate: f64) {
    let nofile = table();
    assert!(nofile.soft <= TABLE, "the limit was lowered: {nofile:?}");
    let cores = sizing::cores();
    // Both pools start with one shard per core and grow as they fill.
    let mut srv = server(cores, Mode::Echo);
    let target: SocketAddr = srv.local_addrs()[0];
    let config = ClientConfig {
        // 8 source IPs: ~6,250 connections per (source, destination) pair,
        // well under half of the default 28,232-port range.
        pairs: cross(&sources(8), &[target]),
        count,
        shards: cores,
        elastic: true,
        in_flight: 512,
        rate: None,
        connect_timeout: Duration::from_secs(10),
        ping_rate,
        message: None,
        first_message: None,
        reconnect: false,
        close: CloseMode::Rst,
    };
    let mut client = Client::start(&config).expect("client starts");
    // Both supervisors look at their shards while the ramp runs: that is
    // when the pools grow.
    let deadline = Instant::now() + Duration::from_secs(120);
    let t = loop {
        let t = client.poll_wait(Duration::from_millis(100));
        srv.poll();
        if t.opened + t.failed >= count && t.connecting == 0 || Instant::now() >= deadline {
            client.start_heartbeats();
            break t;
        }
    };
    assert_eq!(t.failed, 0, "connect failures: {}", t.errors.summary());
    assert_eq!(t.opened, count);
    assert_eq!(t.open, count);
    let open = server_until(&mut srv, Duration::from_secs(30), |o| o == count);
    assert_eq!(open, count, "every connection is counted by the server");
    if ping_rate > 0.0 {
        // Hold until some pings came back.
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.poll_wait(Duration::from_millis(300)).pongs < 100 && Instant::now() < deadline {}
    }
    if count > nofile.soft {
        // Each side holds `count` sockets: more than that many full tables.
        let tables = (count / nofile.soft) as usize;
        let (client_shards, server_shards) = (client.shards_started(), srv.peak_shards());
        eprintln!(
            "{count} connections, {} descriptors a table: {client_shards} client, {server_shards} server shards",
            nofile.soft
        );
        assert!(client_shards > tables, "the client pool grew past {tables} tables: {client_shards}");
        assert!(server_shards > tables, "the server pool grew past {tables} tables: {server_shards}");
    }
    let (t, hists) = client.stop();
    assert_eq!(t.open, 0);
    assert_eq!(t.held_at_stop, count, "every connection was held when the stop came");
    assert_eq!(t.closed, 0, "the server closed none");
    assert_eq!(hists.connect_us.len(), count);
    if ping_rate > 0.0 {
        assert!(t.pongs >= 100, "pongs {}", t.pongs);
        assert!(hists.rtt_us.len() >= 100);
        assert!(hists.rtt_us.value_at_quantile(0.5) > 0);
    }
    assert_eq!(server_until(&mut srv, Duration::from_secs(30), |o| o == 0), 0, "server sees every close");
    let fin = srv.shutdown();
    assert_eq!(fin.opened, count);
    assert_eq!(fin.closed, count, "the client's resets closed them all on the server");
}

#[test]
fn holds_a_few_connections_with_pings() {
    hold(500, 1000.0);
}

/// 50,000 connections: 100,000 sockets on loopback, each side past twelve
/// fd tables of 4,096.
#[test]
fn holds_50k_connections_past_one_fd_table() {
    hold(50_000, 10_000.0);
}
