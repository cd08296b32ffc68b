//! Past 65,535 on both sides, and what a connection costs the kernel: held
//! for real with the engine's server and client, in this process.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Ctx;
use super::kit::{self, ESTABLISHED};
use super::report::Outcome;
use crate::engine::client::{Client, ClientConfig, CloseMode, cross};
use crate::engine::sizing;
use crate::engine::stats::ShardStats;
use crate::machine;
use crate::serve::{Mode, Server, ServerConfig};
use crate::units::group;

/// More than 65,535, with a margin no rounding can explain away.
const PAST: u64 = 70_000;
/// Connections held to measure their kernel memory.
const MEMORY_CONNS: u64 = 50_000;
/// How far the measured bytes per socket may be from the doctor's figure.
const MEMORY_TOLERANCE: f64 = 0.25;
/// The longest a ramp may take before what is held is reported.
const RAMP_LIMIT: Duration = Duration::from_secs(40);

/// Starts a silent server on `listens` loopback ports, sized for `count`
/// connections with the hashed spread.
fn server(ctx: &Ctx, listens: usize, count: u64) -> Result<Server, String> {
    Server::start(&ServerConfig {
        listen: vec![kit::v4(Ipv4Addr::LOCALHOST, 0); listens],
        mode: Mode::Silent,
        udp: false,
        max_conns: None,
        max_memory: None,
        shards: sizing::plan_hashed(count, ctx.nofile, sizing::cores()).shards,
        elastic: false,
        backlog: 4096,
    })
    .map_err(|e| format!("server: {e}"))
}

/// Starts a client opening `count` connections from `sources` to `targets`
/// (IP_BIND_ADDRESS_NO_PORT, RST on close).
fn client(ctx: &Ctx, sources: &[IpAddr], targets: &[SocketAddr], count: u64) -> Result<Client, String> {
    Client::start(&ClientConfig {
        pairs: cross(sources, targets),
        count,
        shards: sizing::plan(count, ctx.nofile, sizing::cores()).shards,
        elastic: false,
        in_flight: 1024,
        rate: None,
        connect_timeout: Duration::from_secs(10),
        ping_rate: 0.0,
        message: None,
        first_message: None,
        reconnect: false,
        close: CloseMode::Rst,
    })
    .map_err(|e| format!("client: {e}"))
}

/// What a ramp reached on both sides.
struct Held {
    client: ShardStats,
    server_open: u64,
    client_shards: usize,
    server_shards: usize,
}

/// Waits until the client settled and the server counts what the client
/// established (bounded).
fn settle(server: &mut Server, client: &mut Client) -> Held {
    let deadline = Instant::now() + RAMP_LIMIT;
    let t = client.wait_settled(RAMP_LIMIT);
    let mut open = server.poll().open;
    while open < t.opened && Instant::now() < deadline {
        open = server.poll_wait(Duration::from_millis(200)).open;
    }
    Held { client: t, server_open: open, client_shards: client.shards(), server_shards: server.shards() }
}

fn sources(third: u8, n: u8) -> Vec<IpAddr> {
    (1..=n).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, third, i))).collect()
}

fn held_json(h: &Held) -> serde_json::Value {
    json!({
        "client_established": h.client.open,
        "client_failed": h.client.failed,
        "client_errors": h.client.errors,
        "server_open": h.server_open,
        "client_shards": h.client_shards,
        "server_shards": h.server_shards,
    })
}

/// server-past-65535: one listening port holds more than 65,535
/// established connections.
pub fn server_past_65535(ctx: &Ctx) -> Outcome {
    let run = || -> Result<Outcome, String> {
        let mut srv = server(ctx, 1, PAST)?;
        let target = srv.local_addrs()[0];
        let src = sources(2, 8);
        let mut cli = client(ctx, &src, &[target], PAST)?;
        let h = settle(&mut srv, &mut cli);
        drop(cli);
        drop(srv);
        let summary = format!(
            "{target} holds {} established from {} source IPs (client saw {}, errors: {})",
            group(h.server_open),
            src.len(),
            group(h.client.open),
            h.client.errors.summary()
        );
        let mut evidence = held_json(&h);
        evidence["listen"] = json!(target.to_string());
        evidence["target"] = json!(PAST);
        evidence["sources"] = json!(src.iter().map(ToString::to_string).collect::<Vec<_>>());
        Ok(Outcome::decide(h.server_open >= PAST && h.client.open >= PAST, evidence, summary))
    };
    run().unwrap_or_else(|e| Outcome::skipped(format!("set-up failed: {e}")))
}

/// client-past-65535: one source IP holds more than 65,535 connections to
/// several ports of one server.
pub fn client_past_65535(ctx: &Ctx) -> Outcome {
    const PORTS: usize = 8;
    let source = Ipv4Addr::new(127, 0, 0, 77);
    let run = || -> Result<Outcome, String> {
        let mut srv = server(ctx, PORTS, PAST)?;
        let targets = srv.local_addrs().to_vec();
        let mut cli = client(ctx, &[IpAddr::V4(source)], &targets, PAST)?;
        let h = settle(&mut srv, &mut cli);
        // What the kernel lists for this source while everything is held.
        let rows = kit::tcp_rows(&ctx.fs);
        let mine = rows.iter().filter(|r| r.local_ip == Some(source) && r.state == ESTABLISHED);
        let mut per_port: BTreeMap<u16, u64> = targets.iter().map(|t| (t.port(), 0)).collect();
        let mut local_ports = BTreeSet::new();
        let mut listed = 0u64;
        for r in mine {
            if let Some(n) = per_port.get_mut(&r.remote_port) {
                *n += 1;
                listed += 1;
                local_ports.insert(r.local_port);
            }
        }
        drop(cli);
        drop(srv);
        let summary = format!(
            "{source} holds {} established to {} ports ({} each) over {} distinct local ports",
            group(listed),
            targets.len(),
            per_port.values().map(|&n| group(n)).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join("/"),
            group(local_ports.len() as u64)
        );
        let mut evidence = held_json(&h);
        evidence["source"] = json!(source.to_string());
        evidence["target"] = json!(PAST);
        evidence["ports"] = json!(targets.iter().map(SocketAddr::port).collect::<Vec<_>>());
        evidence["per_port"] = json!(per_port.iter().map(|(p, n)| (p.to_string(), *n)).collect::<BTreeMap<_, _>>());
        evidence["listed_established"] = json!(listed);
        evidence["distinct_local_ports"] = json!(local_ports.len());
        let holds = h.client.open >= PAST && listed >= PAST && h.server_open >= PAST;
        Ok(Outcome::decide(holds, evidence, summary))
    };
    run().unwrap_or_else(|e| Outcome::skipped(format!("set-up failed: {e}")))
}

/// Waits (at most 3 s) until slab memory stops moving, so sockets freed by
/// earlier work (RCU) do not blur a measurement.
fn quiet_slab() -> Option<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = machine::kernel_memory()?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = machine::kernel_memory()?;
        if now.0.abs_diff(last.0) < (1 << 20) || Instant::now() >= deadline {
            return Some(now);
        }
        last = now;
    }
}

/// memory-per-connection: the kernel's bytes per socket, measured, match
/// the doctor's prediction within 25%.
pub fn memory_per_connection(ctx: &Ctx) -> Outcome {
    let run = || -> Result<Outcome, String> {
        let predicted = crate::doctor::diagnose(&ctx.fs).kernel_bytes_per_socket;
        let mut srv = server(ctx, 1, MEMORY_CONNS)?;
        let target = srv.local_addrs()[0];
        let (slab0, free0) = quiet_slab().ok_or("/proc/meminfo unreadable")?;
        let mut cli = client(ctx, &sources(4, 8), &[target], MEMORY_CONNS)?;
        let h = settle(&mut srv, &mut cli);
        let (slab1, free1) = machine::kernel_memory().ok_or("/proc/meminfo unreadable")?;
        drop(cli);
        drop(srv);
        let sockets = h.client.open + h.server_open;
        if sockets == 0 {
            return Ok(Outcome::decide(false, held_json(&h), "no connection was held"));
        }
        let slab_per = slab1.saturating_sub(slab0) as f64 / sockets as f64;
        let free_per = free0.saturating_sub(free1) as f64 / sockets as f64;
        let ratio = slab_per / predicted.max(1) as f64;
        let free_ratio = free_per / predicted.max(1) as f64;
        let summary = format!(
            "{} sockets: slab grew {:.0} B per socket, really free fell {:.0} B; doctor predicts {} B (slab ratio {:.2})",
            group(sockets),
            slab_per,
            free_per,
            group(predicted),
            ratio
        );
        let mut evidence = held_json(&h);
        evidence["sockets"] = json!(sockets);
        evidence["slab_bytes_per_socket"] = json!(slab_per.round());
        evidence["free_bytes_per_socket"] = json!(free_per.round());
        evidence["predicted_bytes_per_socket"] = json!(predicted);
        evidence["ratio"] = json!((ratio * 1000.0).round() / 1000.0);
        evidence["free_ratio"] = json!((free_ratio * 1000.0).round() / 1000.0);
        evidence["tolerance"] = json!(MEMORY_TOLERANCE);
        let held = h.client.open >= MEMORY_CONNS && h.server_open >= MEMORY_CONNS;
        Ok(Outcome::decide(held && (ratio - 1.0).abs() <= MEMORY_TOLERANCE, evidence, summary))
    };
    run().unwrap_or_else(|e| Outcome::skipped(format!("set-up failed: {e}")))
}
