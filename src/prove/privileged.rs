//! Ports below `net.ipv4.ip_unprivileged_port_start` need
//! CAP_NET_BIND_SERVICE. Capabilities are per thread, so one thread drops
//! the capability and another keeps it, in the same process.

use std::io;
use std::net::Ipv4Addr;

use serde_json::json;

use super::Ctx;
use super::kit::{self, Sock, errno};
use super::report::Outcome;
use crate::sys::caps::{self, CAP_NET_BIND_SERVICE};
use crate::sys::net;

/// Low ports tried, at most.
const CANDIDATES: u16 = 400;

/// Binds 127.0.0.1:`port` on a fresh socket (closed at once).
fn try_bind(port: u16) -> io::Result<()> {
    let s = Sock::tcp()?;
    net::bind(s.fd(), &kit::v4(Ipv4Addr::LOCALHOST, port))
}

/// Runs `f` in a new thread whose effective set lacks CAP_NET_BIND_SERVICE;
/// the thread puts it back before it ends (and its credentials die with it).
fn without_cap<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<(T, bool), String> {
    let t = std::thread::Builder::new().name("prove-nocap".into()).spawn(move || {
        let before = caps::get().map_err(|e| format!("capget: {e}"))?;
        caps::set(before.without_effective(CAP_NET_BIND_SERVICE)).map_err(|e| format!("capset: {e}"))?;
        let dropped = caps::get().map(|c| !c.has_effective(CAP_NET_BIND_SERVICE)).unwrap_or(false);
        let out = f();
        let _ = caps::set(before);
        Ok((out, dropped))
    });
    t.map_err(|e| format!("spawn: {e}"))?.join().map_err(|_| "the thread panicked".to_string())?
}

/// Runs `f` in a new thread that keeps the process's capabilities.
fn with_cap<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<(T, bool), String> {
    let t = std::thread::Builder::new().name("prove-cap".into()).spawn(move || {
        let has = caps::get().map(|c| c.has_effective(CAP_NET_BIND_SERVICE)).unwrap_or(false);
        (f(), has)
    });
    t.map_err(|e| format!("spawn: {e}"))?.join().map_err(|_| "the thread panicked".to_string())
}

/// privileged-ports: a thread without CAP_NET_BIND_SERVICE gets EACCES
/// below ip_unprivileged_port_start; a thread with it binds.
pub fn privileged_ports(ctx: &Ctx) -> Outcome {
    let start = match ctx.fs.sysctl_u64("net.ipv4.ip_unprivileged_port_start") {
        Ok(s) => s,
        Err(e) => return Outcome::skipped(format!("net.ipv4.ip_unprivileged_port_start: {e}")),
    };
    if start == 0 {
        return Outcome::skipped("net.ipv4.ip_unprivileged_port_start is 0: every port is unprivileged here");
    }
    match caps::get() {
        Ok(c) if c.has_effective(CAP_NET_BIND_SERVICE) => {}
        Ok(_) => {
            return Outcome::skipped(
                "this process lacks CAP_NET_BIND_SERVICE: only the failing half could be shown (run as root or with the capability)",
            );
        }
        Err(e) => return Outcome::skipped(format!("capget: {e}")),
    }
    let top = start.min(65_536) as u16 - 1;
    let first = top.saturating_sub(CANDIDATES - 1).max(1);
    let busy = kit::tcp_rows(&ctx.fs);
    let candidates: Vec<u16> = (first..=top).filter(|p| !busy.iter().any(|r| r.local_port == *p)).collect();

    // The thread with the capability finds a free low port.
    let found = with_cap(move || {
        let mut last = None;
        for p in candidates {
            match try_bind(p) {
                Ok(()) => return (Some(p), None),
                Err(e) => last = Some(errno(&e)),
            }
        }
        (None, last)
    });
    let ((port, last_err), kept) = match found {
        Ok(r) => r,
        Err(e) => return Outcome::skipped(e),
    };
    let Some(port) = port else {
        return Outcome::skipped(format!(
            "no port of {first}-{top} could be bound even with the capability (last: {})",
            last_err.unwrap_or("none tried")
        ));
    };
    let denied = match without_cap(move || try_bind(port).map_err(|e| errno(&e))) {
        Ok(r) => r,
        Err(e) => return Outcome::skipped(format!("dropping CAP_NET_BIND_SERVICE in a thread: {e}")),
    };
    let (without, dropped) = denied;
    // And again with it, after the other thread tried.
    let again = with_cap(move || try_bind(port).map_err(|e| errno(&e)));
    let (with, kept_again) = match again {
        Ok(r) => r,
        Err(e) => return Outcome::skipped(e),
    };
    let show = |r: &Result<(), &'static str>| match r {
        Ok(()) => "bound",
        Err(e) => e,
    };
    let summary = format!(
        "127.0.0.1:{port} (below {start}): thread without CAP_NET_BIND_SERVICE {}, thread with it {}",
        show(&without),
        show(&with)
    );
    let evidence = json!({
        "unprivileged_port_start": start,
        "port": port,
        "without_capability": { "capability_dropped": dropped, "bind": show(&without) },
        "with_capability": { "capability_held": kept && kept_again, "bind": show(&with) },
    });
    let holds = dropped && without == Err("EACCES") && kept_again && with.is_ok();
    Outcome::decide(holds, evidence, summary)
}
