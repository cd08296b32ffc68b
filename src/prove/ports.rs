//! Ephemeral ports: a (source IP, destination) pair runs out at the size of
//! the local port range, and binding before connect turns that into a limit
//! per source IP for every destination at once.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Ctx;
use super::kit::{self, Sink, Sock, Window, connect_wait, errno};
use super::report::Outcome;
use crate::sys::net;
use crate::units::group;

/// Source IPs no other experiment uses.
const EXHAUST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 201);
const BIND_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 202);
const NO_PORT_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 203);

/// Connects past the expected count before giving up on ever failing.
const EXTRA: u64 = 16;
/// The longest one phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(20);

/// How the range is narrowed for each socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Narrow {
    /// IP_LOCAL_PORT_RANGE set on every socket.
    PerSocket,
    /// The kernel refused the option: the system range applies.
    System,
}

/// Where a run of connects stopped.
#[derive(Debug, Default)]
struct Run {
    /// Connections established, per destination.
    per_dest: Vec<u64>,
    /// The call that failed first and its errno (`None`: nothing failed).
    stop: Option<(&'static str, &'static str)>,
    /// Local ports of established connections outside the window.
    outside: u64,
    /// Held until the run's owner drops it.
    socks: Vec<Sock>,
}

impl Run {
    fn total(&self) -> u64 {
        self.per_dest.iter().sum()
    }

    fn stop_json(&self) -> serde_json::Value {
        match self.stop {
            Some((call, e)) => json!({ "call": call, "errno": e }),
            None => serde_json::Value::Null,
        }
    }

    fn stop_text(&self) -> String {
        match self.stop {
            Some((call, e)) => format!("{call} {e}"),
            None => "no failure".into(),
        }
    }
}

/// Opens connections from `src` to `dests` in turn until the first failure,
/// at most `limit` of them. `no_port`: IP_BIND_ADDRESS_NO_PORT (the port is
/// picked at connect, per destination); otherwise bind(src, 0) picks it.
fn connect_until_failure(
    src: Ipv4Addr,
    dests: &[SocketAddr],
    w: &Window,
    narrow: Narrow,
    no_port: bool,
    limit: u64,
) -> Run {
    let mut run = Run { per_dest: vec![0; dests.len()], ..Run::default() };
    let deadline = Instant::now() + PHASE_LIMIT;
    for i in 0..limit {
        if Instant::now() >= deadline {
            run.stop = Some(("deadline", "ETIMEDOUT"));
            break;
        }
        let d = (i % dests.len() as u64) as usize;
        let attempt = || -> Result<Sock, (&'static str, io::Error)> {
            let s = Sock::tcp().map_err(|e| ("socket", e))?;
            if narrow == Narrow::PerSocket {
                net::set_local_port_range(s.fd(), w.lo, w.hi).map_err(|e| ("IP_LOCAL_PORT_RANGE", e))?;
            }
            if no_port {
                net::bind_ip_no_port(s.fd(), IpAddr::V4(src)).map_err(|e| ("bind", e))?;
            } else {
                net::bind(s.fd(), &kit::v4(src, 0)).map_err(|e| ("bind", e))?;
            }
            connect_wait(s.fd(), &dests[d]).map_err(|e| ("connect", e))?;
            Ok(s)
        };
        match attempt() {
            Ok(s) => {
                let port = net::local_addr(s.fd()).map(|a| a.port()).unwrap_or(0);
                if !(w.lo..=w.hi).contains(&port) {
                    run.outside += 1;
                }
                run.per_dest[d] += 1;
                run.socks.push(s);
            }
            Err((call, e)) => {
                run.stop = Some((call, errno(&e)));
                break;
            }
        }
    }
    run
}

/// Whether this kernel takes IP_LOCAL_PORT_RANGE, and its errno if not.
fn per_socket_range(w: &Window) -> Result<Narrow, String> {
    let s = Sock::tcp().map_err(|e| format!("socket: {e}"))?;
    match net::set_local_port_range(s.fd(), w.lo, w.hi) {
        Ok(()) => Ok(Narrow::PerSocket),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(Narrow::System),
        Err(e) => Err(format!("IP_LOCAL_PORT_RANGE: {}", errno(&e))),
    }
}

fn window_json(w: &Window, narrow: Narrow) -> serde_json::Value {
    json!({
        "low": w.lo,
        "high": w.hi,
        "size": w.size(),
        "how": if narrow == Narrow::PerSocket { "IP_LOCAL_PORT_RANGE" } else { "net.ipv4.ip_local_port_range" },
        "reserved": w.reserved,
        "in_use_before": w.in_use,
        "expected": { "min": w.expected_min(), "max": w.expected_max() },
    })
}

fn expected_text(w: &Window) -> String {
    if w.expected_min() == w.expected_max() {
        group(w.expected_min())
    } else {
        format!("{}-{}", group(w.expected_min()), group(w.expected_max()))
    }
}

fn within(n: u64, w: &Window) -> bool {
    (w.expected_min()..=w.expected_max()).contains(&n)
}

/// Chooses the window, clear of every port in use now (the experiment's own
/// listeners included): a narrow one per socket where the kernel allows it,
/// else the whole system range if the descriptors allow it.
fn choose(ctx: &Ctx, size: u16, sockets_per_port: u64) -> Result<(Window, Narrow), Outcome> {
    let range =
        kit::system_range(&ctx.fs).ok_or_else(|| Outcome::skipped("net.ipv4.ip_local_port_range unreadable"))?;
    let rows = kit::tcp_rows(&ctx.fs);
    let reserved = kit::reserved_ports(&ctx.fs);
    let narrow_w = kit::pick_window(range, size, &rows, &reserved);
    let narrow = per_socket_range(&narrow_w).map_err(Outcome::skipped)?;
    if narrow == Narrow::PerSocket {
        return Ok((narrow_w, narrow));
    }
    let full = kit::pick_window(range, range.1 - range.0 + 1, &rows, &reserved);
    // Both ends of every connection live in this process's fd table.
    let needed = 2 * sockets_per_port * full.size() + 64;
    if needed > ctx.nofile {
        return Err(Outcome::skipped(format!(
            "IP_LOCAL_PORT_RANGE refused (ENOPROTOOPT, Linux < 6.3) and the system range {}-{} needs {} descriptors, above RLIMIT_NOFILE {}",
            range.0,
            range.1,
            group(needed),
            group(ctx.nofile)
        )));
    }
    Ok((full, Narrow::System))
}

/// port-exhaustion: one source IP to one destination stops at the number
/// of ports in the range, with EADDRNOTAVAIL.
pub fn port_exhaustion(ctx: &Ctx) -> Outcome {
    // The listener first: its own port must not fall in the window.
    let sink = match Sink::start(Ipv4Addr::LOCALHOST, 4096) {
        Ok(s) => s,
        Err(e) => return Outcome::skipped(format!("listener: {e}")),
    };
    let (w, narrow) = match choose(ctx, 1000, 1) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let run = connect_until_failure(EXHAUST_SOURCE, &[sink.addr()], &w, narrow, true, w.expected_max() + EXTRA);
    let n = run.total();
    let eaddrnotavail = run.stop == Some(("connect", "EADDRNOTAVAIL"));
    let summary = format!(
        "{EXHAUST_SOURCE} -> {}: {} connects in ports {}-{} (expected {}), then {}",
        sink.addr(),
        group(n),
        w.lo,
        w.hi,
        expected_text(&w),
        run.stop_text()
    );
    let evidence = json!({
        "source": EXHAUST_SOURCE.to_string(),
        "destination": sink.addr().to_string(),
        "range": window_json(&w, narrow),
        "established": n,
        "accepted": sink.accepted(),
        "ports_outside_range": run.outside,
        "stopped_by": run.stop_json(),
    });
    drop(run);
    Outcome::decide(within(n, &w) && eaddrnotavail, evidence, summary)
}

/// bind-without-no-port: bind(ip, 0) before connect reserves a port for
/// every destination; IP_BIND_ADDRESS_NO_PORT gives the range per destination.
pub fn bind_without_no_port(ctx: &Ctx) -> Outcome {
    // The listeners first: their own ports must not fall in the window.
    let sinks: Vec<Sink> = match (0..2).map(|_| Sink::start(Ipv4Addr::LOCALHOST, 4096)).collect() {
        Ok(s) => s,
        Err(e) => return Outcome::skipped(format!("listener: {e}")),
    };
    let (w, narrow) = match choose(ctx, 500, 2) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    if narrow == Narrow::System {
        return Outcome::skipped(
            "IP_LOCAL_PORT_RANGE refused (ENOPROTOOPT, Linux < 6.3): no narrow range to exhaust at bind time",
        );
    }
    // Does bind(ip, 0) honour the per-socket range? Otherwise the experiment
    // would exhaust the whole system range.
    let honoured = (|| -> io::Result<u16> {
        let s = Sock::tcp()?;
        net::set_local_port_range(s.fd(), w.lo, w.hi)?;
        net::bind(s.fd(), &kit::v4(BIND_SOURCE, 0))?;
        Ok(net::local_addr(s.fd())?.port())
    })();
    match honoured {
        Ok(p) if (w.lo..=w.hi).contains(&p) => {}
        Ok(p) => {
            return Outcome::skipped(format!(
                "bind(ip, 0) took port {p}, outside the IP_LOCAL_PORT_RANGE {}-{}: the per-socket range does not apply at bind time here",
                w.lo, w.hi
            ));
        }
        Err(e) => return Outcome::skipped(format!("bind with IP_LOCAL_PORT_RANGE: {}", errno(&e))),
    }
    let dests: Vec<SocketAddr> = sinks.iter().map(Sink::addr).collect();
    let bound = connect_until_failure(BIND_SOURCE, &dests, &w, narrow, false, w.expected_max() + EXTRA);
    let bound_total = bound.total();
    let bound_json = json!({
        "source": BIND_SOURCE.to_string(),
        "established": bound_total,
        "per_destination": bound.per_dest,
        "ports_outside_range": bound.outside,
        "stopped_by": bound.stop_json(),
    });
    let bound_stop = bound.stop_text();
    let bound_failed = bound.stop.is_some_and(|(call, _)| call == "bind" || call == "connect");
    drop(bound);
    let free =
        connect_until_failure(NO_PORT_SOURCE, &dests, &w, narrow, true, dests.len() as u64 * w.expected_max() + EXTRA);
    let free_json = json!({
        "source": NO_PORT_SOURCE.to_string(),
        "established": free.total(),
        "per_destination": free.per_dest,
        "ports_outside_range": free.outside,
        "stopped_by": free.stop_json(),
    });
    let free_ok = free.per_dest.iter().all(|&n| within(n, &w)) && free.stop == Some(("connect", "EADDRNOTAVAIL"));
    let summary = format!(
        "ports {}-{}, 2 destinations: bind(ip, 0) stops at {} in all ({bound_stop}); IP_BIND_ADDRESS_NO_PORT reaches {} ({} per destination, then {})",
        w.lo,
        w.hi,
        group(bound_total),
        group(free.total()),
        free.per_dest.iter().map(|&n| group(n)).collect::<Vec<_>>().join(" + "),
        free.stop_text()
    );
    let evidence = json!({
        "range": window_json(&w, narrow),
        "destinations": dests.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "bind_before_connect": bound_json,
        "bind_address_no_port": free_json,
    });
    drop(free);
    Outcome::decide(within(bound_total, &w) && bound_failed && free_ok, evidence, summary)
}
