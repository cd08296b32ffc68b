//! `--metrics ADDR`: the status counters as Prometheus text over HTTP.
//!
//! The text format comes from the `prometheus-client` crate; the HTTP side
//! is a few lines on `std::net` because it only ever answers one GET with
//! one body, which needs no HTTP framework.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::agent::{Headroom, Reply, Resource, State};
use crate::engine::stats::ShardStats;
use crate::error::{Error, Result};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrnoLabel {
    errno: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

/// Renders counters in the Prometheus text format.
pub fn render(t: &ShardStats, shards: usize, memory_ok: bool) -> String {
    render_with(t, shards, memory_ok, None)
}

/// Renders counters and, when measured, the headroom and the agent's state:
/// per resource the share in use and the sockets still allowed, the memory
/// limit and use in bytes, the agent's weight and whether it drains.
pub fn render_with(t: &ShardStats, shards: usize, memory_ok: bool, headroom: Option<&(Headroom, Reply)>) -> String {
    let mut reg = Registry::with_prefix("tcpmax");
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let g: Gauge<i64, std::sync::atomic::AtomicI64> = Gauge::default();
        g.set(v.min(i64::MAX as u64) as i64);
        reg.register(name, help, g);
    };
    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c: Counter<u64, AtomicU64> = Counter::default();
        c.inner().store(v, Ordering::Relaxed);
        reg.register(name, help, c);
    };
    gauge(&mut reg, "connections", "Connections open now", t.open);
    gauge(&mut reg, "shards", "Shards (event loops with their own fd table)", shards as u64);
    gauge(&mut reg, "memory_admitting", "1 while memory is below the watermark", memory_ok as u64);
    gauge(&mut reg, "backpressured_connections", "Connections whose peer is not reading", t.backpressured);
    counter(&mut reg, "accepted", "Connections accepted", t.opened);
    counter(&mut reg, "closed", "Connections closed", t.closed);
    counter(&mut reg, "refused_max_conns", "Connections refused by --max-conns", t.refused_max_conns);
    counter(&mut reg, "refused_memory", "Connections refused by --max-memory", t.refused_memory);
    counter(&mut reg, "bytes_in", "Payload bytes read", t.bytes_in);
    counter(&mut reg, "bytes_out", "Payload bytes written", t.bytes_out);
    counter(&mut reg, "udp_datagrams", "UDP datagrams echoed", t.udp_datagrams);
    let errors = Family::<ErrnoLabel, Counter>::default();
    for (name, n) in t.errors.ranked() {
        errors.get_or_create(&ErrnoLabel { errno: name.to_string() }).inner().store(n, Ordering::Relaxed);
    }
    reg.register("errors", "Failures by errno", errors);
    if let Some((h, r)) = headroom {
        headroom_metrics(&mut reg, h, r);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

fn headroom_metrics(reg: &mut Registry, h: &Headroom, r: &Reply) {
    let usage = Family::<ResourceLabel, Gauge<f64, AtomicU64>>::default();
    let room = Family::<ResourceLabel, Gauge>::default();
    for res in Resource::ALL {
        let label = ResourceLabel { resource: res.name().to_string() };
        usage.get_or_create(&label).set(h.usage(res));
        room.get_or_create(&label).set(h.room(res).min(i64::MAX as u64) as i64);
    }
    reg.register("headroom_usage_ratio", "Share of each resource in use (memory by the basis's rule)", usage);
    reg.register("headroom_room_sockets", "Sockets each resource still allows", room);
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let g: Gauge<i64, std::sync::atomic::AtomicI64> = Gauge::default();
        g.set(v.min(i64::MAX as u64) as i64);
        reg.register(name, help, g);
    };
    gauge(reg, "memory_limit_bytes", &format!("Memory limit ({})", h.basis.name()), h.memory_limit);
    gauge(reg, "memory_used_bytes", &format!("Memory in use ({})", h.basis.name()), h.memory_used);
    let (weight, draining) = match r.state {
        State::Up { weight } => (u64::from(weight), 0),
        State::Drain => (0, 1),
    };
    gauge(reg, "agent_weight_percent", "Weight the agent reports, percent (0 while draining)", weight);
    gauge(reg, "agent_draining", "1 while the agent reports drain", draining);
    gauge(reg, "agent_maxconn", "The agent's maxconn: sockets held plus room left", r.maxconn);
    gauge(reg, "agent_arriving_sockets", "Sockets expected before the balancer hears the agent", h.arriving);
}

/// The metrics endpoint: a thread answering every request with the latest
/// text, until dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr`.
    pub fn start(addr: SocketAddr) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::Input(format!("--metrics {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::os("metrics address", e))?;
        let body = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (body.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(c) = conn {
                        let text = b.lock().map(|g| g.clone()).unwrap_or_default();
                        let _ = answer(c, &text);
                    }
                }
            })
            .map_err(|e| Error::os("spawning the metrics thread", e))?;
        Ok(MetricsServer { addr, body, stop, thread: Some(thread) })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the text served.
    pub fn update(&self, text: String) {
        if let Ok(mut g) = self.body.lock() {
            *g = text;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut c: TcpStream, text: &str) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    c.set_write_timeout(Some(Duration::from_secs(2)))?;
    // Read the request head (bounded), whatever it asks: there is one page.
    let mut head = [0u8; 4096];
    let mut got = 0;
    while got < head.len() {
        let n = c.read(&mut head[got..])?;
        if n == 0 {
            break;
        }
        got += n;
        if head[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        text.len(),
        text
    );
    c.write_all(resp.as_bytes())
}
