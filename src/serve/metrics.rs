//! `--metrics ADDR`: the status counters as Prometheus text over HTTP.
//!
//! The text format comes from the `prometheus-client` crate; the HTTP side
//! is one request head parsed by `httparse` ([`parse_request`], pure and
//! capped) and one response ([`response`]), then close: it only ever serves
//! one page, which needs no HTTP framework. Connections live on a
//! [`super::side_port`] loop, so a slow client never delays a scrape (#17).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::agent::{Headroom, Reply, Resource, State};
use super::side_port::{Bounds, Exchange, SidePort, Step};
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

/// The longest request head taken, bytes; a longer one is answered 431.
pub const MAX_REQUEST: usize = 8 << 10;
/// Header lines a request may carry.
pub const MAX_HEADERS: usize = 32;
/// From accept to close, whatever the client does: a scrape sends one
/// small request and reads one page.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(2);
/// Scrapes open at once; the oldest is closed to admit a new one (see
/// [`super::side_port`] for why the oldest).
pub const MAX_SCRAPES: usize = 64;

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (`HEAD`: the same headers, no body).
    Metrics {
        /// `HEAD`.
        head: bool,
    },
    /// A `GET` or `HEAD` of any other path.
    NotFound {
        /// `HEAD`.
        head: bool,
    },
    /// A method other than `GET` and `HEAD`.
    MethodNotAllowed,
    /// Not an HTTP/1.x request head.
    BadRequest,
    /// No complete head within [`MAX_REQUEST`] bytes or [`MAX_HEADERS`] headers.
    TooLarge,
}

/// Parses the bytes received so far (only the first [`MAX_REQUEST`] are
/// looked at): `None` while the head is incomplete and may still fit.
/// Pure, for any bytes.
pub fn parse_request(received: &[u8]) -> Option<Request> {
    let buf = &received[..received.len().min(MAX_REQUEST)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST => Some(Request::TooLarge),
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => Some(Request::TooLarge),
        Err(_) => Some(Request::BadRequest),
        Ok(httparse::Status::Complete(_)) => {
            let head = match req.method {
                Some("GET") => false,
                Some("HEAD") => true,
                _ => return Some(Request::MethodNotAllowed),
            };
            let path = req.path.unwrap_or("");
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            Some(if path == "/metrics" { Request::Metrics { head } } else { Request::NotFound { head } })
        }
    }
}

/// The whole HTTP response to `req`; `text` is the metrics page. Every
/// response closes the connection.
pub fn response(req: Request, text: &str) -> Vec<u8> {
    let (status, kind, body, head) = match req {
        Request::Metrics { head } => {
            ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", text, head)
        }
        Request::NotFound { head } => ("404 Not Found", "text/plain", "not found: the metrics are at /metrics\n", head),
        Request::MethodNotAllowed => ("405 Method Not Allowed", "text/plain", "only GET and HEAD\n", false),
        Request::BadRequest => ("400 Bad Request", "text/plain", "not an HTTP/1.x request\n", false),
        Request::TooLarge => ("431 Request Header Fields Too Large", "text/plain", "request head too large\n", false),
    };
    let allow = if req == Request::MethodNotAllowed { "Allow: GET, HEAD\r\n" } else { "" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Serves the page: one request, one response.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
}

impl Exchange for Scrape {
    fn greeting(&self) -> Option<Vec<u8>> {
        None
    }

    fn heard(&self, received: &[u8]) -> Step {
        match parse_request(received) {
            None => Step::More,
            Some(req @ Request::Metrics { .. }) => Step::Answer(response(req, &self.metrics.text())),
            Some(req) => Step::Answer(response(req, "")),
        }
    }

    fn limit(&self) -> usize {
        MAX_REQUEST
    }
}

/// The metrics endpoint, served by its own loop until dropped.
#[derive(Debug)]
pub struct MetricsServer {
    metrics: Arc<Metrics>,
    port: SidePort,
}

impl MetricsServer {
    /// Listens on `addr`, serving `metrics` as they are at each scrape.
    pub fn start(addr: SocketAddr, metrics: Metrics) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::Input(format!("--metrics {addr}: {e}")))?;
        let metrics = Arc::new(metrics);
        let bounds = Bounds { max_conns: MAX_SCRAPES, deadline: SCRAPE_DEADLINE };
        let port = SidePort::start("metrics", listener, bounds, Scrape { metrics: metrics.clone() })?;
        Ok(MetricsServer { metrics, port })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.port.addr()
    }

    /// The metrics served, to update.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_to_what_they_ask() {
        let get = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse_request(get), Some(Request::Metrics { head: false }));
        assert_eq!(parse_request(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Some(Request::Metrics { head: true }));
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n\r\n"), Some(Request::NotFound { head: false }));
        assert_eq!(parse_request(b"HEAD /x HTTP/1.1\r\n\r\n"), Some(Request::NotFound { head: true }));
        assert_eq!(parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"), Some(Request::MethodNotAllowed));
        assert_eq!(parse_request(b"\x16\x03\x01 hello\r\n\r\n"), Some(Request::BadRequest));
        assert_eq!(parse_request(b"GET /metrics HTTP/2.0\r\n\r\n"), Some(Request::BadRequest));
        // Incomplete heads wait for more, up to the cap.
        for n in 0..get.len() {
            assert_eq!(parse_request(&get[..n]), None, "{n} bytes");
        }
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST - 1, b'a');
        assert_eq!(parse_request(&big), None);
        big.push(b'a');
        assert_eq!(parse_request(&big), Some(Request::TooLarge));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&big), Some(Request::TooLarge), "bytes past the cap are not read");
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let many = format!("GET /metrics HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_request(many.as_bytes()), Some(Request::TooLarge));
    }

    #[test]
    fn responses_close_and_head_has_no_body() {
        let text = "tcpmax_connections 3\n# EOF\n";
        let get = String::from_utf8(response(Request::Metrics { head: false }, text)).unwrap();
        let head = String::from_utf8(response(Request::Metrics { head: true }, text)).unwrap();
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n") && get.ends_with(text), "{get}");
        assert_eq!(head, get.strip_suffix(text).unwrap(), "HEAD: the same headers, no body");
        assert!(head.contains(&format!("Content-Length: {}\r\n", text.len())), "{head}");
        assert!(head.contains("Connection: close\r\n"));
        let nf = String::from_utf8(response(Request::NotFound { head: false }, text)).unwrap();
        assert!(nf.starts_with("HTTP/1.1 404 ") && !nf.contains("tcpmax_"), "{nf}");
        let na = String::from_utf8(response(Request::MethodNotAllowed, text)).unwrap();
        assert!(na.starts_with("HTTP/1.1 405 ") && na.contains("Allow: GET, HEAD\r\n"), "{na}");
        let bad = String::from_utf8(response(Request::BadRequest, "")).unwrap();
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
    }
}
