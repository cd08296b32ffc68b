//! `--metrics ADDR`: the status counters as Prometheus text over HTTP.
//!
//! The text format comes from the `prometheus-client` crate; the HTTP side
//! is a few lines on `std::net` because it only ever answers one GET with
//! one body, which needs no HTTP framework.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
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

type IntGauge = Gauge<i64, AtomicI64>;

/// The registry, built once with a handle on every metric: an update stores
/// numbers into the handles (atomics), a scrape encodes the registry. Nothing
/// is rebuilt per update or per scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: IntGauge,
    shards: IntGauge,
    memory_admitting: IntGauge,
    backpressured: IntGauge,
    accepted: Counter,
    closed: Counter,
    refused_max_conns: Counter,
    refused_memory: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    udp_datagrams: Counter,
    errors: Family<ErrnoLabel, Counter>,
    headroom: Option<HeadroomMetrics>,
}

/// The headroom and agent metrics, present when serve measures headroom.
#[derive(Debug)]
struct HeadroomMetrics {
    usage: Family<ResourceLabel, Gauge<f64, AtomicU64>>,
    room: Family<ResourceLabel, IntGauge>,
    memory_limit: IntGauge,
    memory_used: IntGauge,
    weight: IntGauge,
    draining: IntGauge,
    maxconn: IntGauge,
    arriving: IntGauge,
}

fn set(g: &IntGauge, v: u64) {
    g.set(v.min(i64::MAX as u64) as i64);
}

impl Metrics {
    /// Registers every metric; with `headroom`, the headroom and agent ones.
    pub fn new(headroom: bool) -> Metrics {
        let mut reg = Registry::with_prefix("tcpmax");
        let gauge = |reg: &mut Registry, name: &str, help: &str| {
            let g = IntGauge::default();
            reg.register(name, help, g.clone());
            g
        };
        let counter = |reg: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            reg.register(name, help, c.clone());
            c
        };
        let connections = gauge(&mut reg, "connections", "Connections open now");
        let shards = gauge(&mut reg, "shards", "Shards (event loops with their own fd table)");
        let memory_admitting = gauge(&mut reg, "memory_admitting", "1 while memory is below the watermark");
        let backpressured = gauge(&mut reg, "backpressured_connections", "Connections whose peer is not reading");
        let accepted = counter(&mut reg, "accepted", "Connections accepted");
        let closed = counter(&mut reg, "closed", "Connections closed");
        let refused_max_conns = counter(&mut reg, "refused_max_conns", "Connections refused by --max-conns");
        let refused_memory = counter(&mut reg, "refused_memory", "Connections refused by --max-memory");
        let bytes_in = counter(&mut reg, "bytes_in", "Payload bytes read");
        let bytes_out = counter(&mut reg, "bytes_out", "Payload bytes written");
        let udp_datagrams = counter(&mut reg, "udp_datagrams", "UDP datagrams echoed");
        let errors = Family::<ErrnoLabel, Counter>::default();
        reg.register("errors", "Failures by errno", errors.clone());
        let headroom = headroom.then(|| {
            let usage = Family::<ResourceLabel, Gauge<f64, AtomicU64>>::default();
            let room = Family::<ResourceLabel, IntGauge>::default();
            reg.register(
                "headroom_usage_ratio",
                "Share of each resource in use (memory by the basis's rule)",
                usage.clone(),
            );
            reg.register("headroom_room_sockets", "Sockets each resource still allows", room.clone());
            HeadroomMetrics {
                usage,
                room,
                memory_limit: gauge(&mut reg, "memory_limit_bytes", "Memory limit (budget, cgroup or machine)"),
                memory_used: gauge(&mut reg, "memory_used_bytes", "Memory in use, by the same basis as the limit"),
                weight: gauge(&mut reg, "agent_weight_percent", "Weight the agent reports, percent (0 while draining)"),
                draining: gauge(&mut reg, "agent_draining", "1 while the agent reports drain"),
                maxconn: gauge(&mut reg, "agent_maxconn", "The agent's maxconn: sockets held plus room left"),
                arriving: gauge(
                    &mut reg,
                    "agent_arriving_sockets",
                    "Sockets expected before the balancer hears the agent",
                ),
            }
        });
        Metrics {
            registry: reg,
            connections,
            shards,
            memory_admitting,
            backpressured,
            accepted,
            closed,
            refused_max_conns,
            refused_memory,
            bytes_in,
            bytes_out,
            udp_datagrams,
            errors,
            headroom,
        }
    }

    /// Stores the latest counters and, when measured, the headroom.
    pub fn update(&self, t: &ShardStats, shards: usize, memory_ok: bool, headroom: Option<&(Headroom, Reply)>) {
        set(&self.connections, t.open);
        set(&self.shards, shards as u64);
        set(&self.memory_admitting, memory_ok as u64);
        set(&self.backpressured, t.backpressured);
        for (c, v) in [
            (&self.accepted, t.opened),
            (&self.closed, t.closed),
            (&self.refused_max_conns, t.refused_max_conns),
            (&self.refused_memory, t.refused_memory),
            (&self.bytes_in, t.bytes_in),
            (&self.bytes_out, t.bytes_out),
            (&self.udp_datagrams, t.udp_datagrams),
        ] {
            c.inner().store(v, Ordering::Relaxed);
        }
        for (name, n) in t.errors.ranked() {
            self.errors.get_or_create(&ErrnoLabel { errno: name.to_string() }).inner().store(n, Ordering::Relaxed);
        }
        if let (Some(m), Some((h, r))) = (&self.headroom, headroom) {
            for res in Resource::ALL {
                let label = ResourceLabel { resource: res.name().to_string() };
                m.usage.get_or_create(&label).set(h.usage(res));
                set(&m.room.get_or_create(&label), h.room(res));
            }
            set(&m.memory_limit, h.memory_limit);
            set(&m.memory_used, h.memory_used);
            let (weight, draining) = match r.state {
                State::Up { weight } => (u64::from(weight), 0),
                State::Drain => (0, 1),
            };
            set(&m.weight, weight);
            set(&m.draining, draining);
            set(&m.maxconn, r.maxconn);
            set(&m.arriving, h.arriving);
        }
    }

    /// The Prometheus text of the metrics now.
    pub fn text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The metrics endpoint: a thread answering every request with the latest
/// text, until dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr`, serving `metrics` as they are at each scrape.
    pub fn start(addr: SocketAddr, metrics: Metrics) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::Input(format!("--metrics {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::os("metrics address", e))?;
        let metrics = Arc::new(metrics);
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (metrics.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(c) = conn {
                        let _ = answer(c, &m.text());
                    }
                }
            })
            .map_err(|e| Error::os("spawning the metrics thread", e))?;
        Ok(MetricsServer { addr, metrics, stop, thread: Some(thread) })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics served, to update.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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
