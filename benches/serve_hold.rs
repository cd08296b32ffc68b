//! Holds N connections (default 500,000) against `tcpmax serve` on loopback
//! and writes JSON: connections held, the server's anonymous RSS in total and
//! per connection, the accept rate, the shards used, the kernel's memory per
//! connection, and the machine.
//!
//! `cargo bench --bench serve_hold -- --count 500k --json docs/bench/serve_hold.json`

#[path = "common/mod.rs"]
mod util;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::json;
use tcpmax::engine::client::{Client, ClientConfig, CloseMode, cross};
use tcpmax::engine::sizing;
use tcpmax::machine::{self, Machine};
use util::ServeChild;

fn main() -> Result<(), String> {
    let count = util::arg("--count").map_or(Ok(500_000), |c| tcpmax::units::parse_count(&c))?;
    let out = util::arg("--json").unwrap_or_else(|| "serve_hold.json".into());
    let nofile = machine::raise_nofile().map_err(|e| e.to_string())?;
    let plan = sizing::plan(count, nofile.soft, sizing::cores());

    let server = ServeChild::start(&["--mode", "echo", "--max-conns", &count.to_string()])?;
    server.next_conns(Duration::from_secs(10)).ok_or("no status line")?;
    let server_rss_idle = machine::rss_anon(server.pid()).unwrap_or(0);
    let (slab_before, free_before) = machine::kernel_memory().ok_or("meminfo")?;
    let client_rss_before = machine::rss_anon(std::process::id()).unwrap_or(0);

    // 10,000 connections per source IP: far under 40% of the port range.
    let sources: Vec<IpAddr> = (0..count.div_ceil(10_000))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)))
        .collect();
    let config = ClientConfig {
        pairs: cross(&sources, &[server.addr]),
        count,
        shards: plan.shards,
        elastic: false,
        in_flight: 1024,
        rate: None,
        connect_timeout: Duration::from_secs(20),
        ping_rate: 0.0,
        message: None,
        first_message: None,
        reconnect: false,
        close: CloseMode::Rst,
    };
    eprintln!("opening {count} connections: {} client shards, {} server shards", plan.shards, server.shards);
    let t0 = Instant::now();
    let mut client = Client::start(&config).map_err(|e| e.to_string())?;
    let settled = client.wait_settled(Duration::from_secs(600));
    let client_done = t0.elapsed();
    let seen =
        server.until_conns(Duration::from_secs(60), |n| n >= settled.opened).ok_or("server never saw them all")?;
    let ramp = seen.duration_since(t0);
    let server_rss = machine::rss_anon(server.pid()).unwrap_or(0);
    let client_rss = machine::rss_anon(std::process::id()).unwrap_or(0);
    let (slab_after, free_after) = machine::kernel_memory().ok_or("meminfo")?;
    let held = settled.open;
    eprintln!("held {held} in {:.1}s; failures: {}", ramp.as_secs_f64(), settled.errors.summary());

    let t_down = Instant::now();
    let (fin, _) = client.stop();
    server.until_conns(Duration::from_secs(120), |n| n == 0).ok_or("server did not drain")?;
    let teardown = t_down.elapsed();
    let server_shards = server.shards;
    server.stop()?;

    let per = |bytes: u64| {
        if held == 0 { 0.0 } else { bytes as f64 / held as f64 }
    };
    let report = json!({
        "benchmark": "serve_hold",
        "target": count,
        "held": held,
        "failed": settled.failed,
        "errors": settled.errors,
        "closed_at_teardown": fin.closed,
        "ramp_seconds": ramp.as_secs_f64(),
        "client_settled_seconds": client_done.as_secs_f64(),
        "accept_rate_per_s": per_second(held, ramp),
        "teardown_seconds": teardown.as_secs_f64(),
        "server": {
            "shards": server_shards,
            "rss_anon_idle_bytes": server_rss_idle,
            "rss_anon_bytes": server_rss,
            "rss_anon_bytes_per_connection": per(server_rss),
            "rss_anon_growth_bytes_per_connection": per(server_rss.saturating_sub(server_rss_idle)),
        },
        "client": {
            "shards": plan.shards,
            "rss_anon_bytes": client_rss,
            "rss_anon_growth_bytes_per_connection": per(client_rss.saturating_sub(client_rss_before)),
        },
        "kernel": {
            "slab_bytes_per_connection": per(slab_after.saturating_sub(slab_before)),
            "free_memory_bytes_per_connection": per(free_before.saturating_sub(free_after)),
        },
        "machine": Machine::read(),
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&out, text + "\n").map_err(|e| format!("writing {out}: {e}"))?;
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    Ok(())
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}
